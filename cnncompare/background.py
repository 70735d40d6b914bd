"""One computation in a daemon thread, read by a page once it is ready.

The first page of a fresh server must not wait for PyTorch's import (2-3 s on two
cores): the Overview starts a :class:`Background` for what needs torch (the device, the
zoo's parameters), draws everything else at once and fills those in when they arrive.
This module imports nothing heavy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    """Runs ``compute()`` once in a daemon thread named ``name``, started at once.

    :meth:`result` is None until it has returned; a failure is kept in :attr:`error`
    (``"TypeName: message"``), never raised in the thread that reads it.
    """

    def __init__(self, compute: Callable[[], T], name: str = "cnncompare-background"):
        self._compute = compute
        self._done = threading.Event()
        self._result: T | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._compute()
        except Exception as exc:  # noqa: BLE001 - shown by the page that reads it
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._done.set()

    def done(self) -> bool:
        """Whether ``compute`` has returned or failed."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`done` (or ``timeout`` s); True when it is."""
        return self._done.wait(timeout)

    def result(self) -> T | None:
        """What ``compute`` returned; None while it runs or when it failed."""
        return self._result if self._done.is_set() else None
