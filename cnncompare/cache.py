"""Two small things every on-disk cache here needs: a stable hash of plain data, and
writes that no reader ever sees half done.

Used by the profile and benchmark caches and by the results store's checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def stable_hash(payload: Any, length: int = 16) -> str:
    """A hex digest of ``payload`` (JSON with sorted keys; other objects via ``str``).

    The same data gives the same digest in every process and on every machine, so it can
    name a file or key a run. (The JSON uses ``json.dumps``' default separators: run ids
    stored by earlier versions were hashed that way, so changing them would orphan runs.)
    """
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *,
                fsync: bool = False) -> Iterator[IO[Any]]:
    """A file to write ``path`` through: a temporary file in the same folder, renamed over
    ``path`` when the block ends without an error, removed when it fails.

    A reader sees the old file or the new one, never a part. With ``fsync`` the bytes are
    on disk before the rename (for files that must survive a power cut, like checkpoints).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes, *, fsync: bool = False) -> None:
    """Write ``data`` (text or bytes) to ``path`` with :func:`atomic_open`."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w", fsync=fsync) as f:
        f.write(data)


def read_json(path: str | os.PathLike) -> Any | None:
    """The JSON in ``path``, or None when it is missing, unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path: str | os.PathLike, data: Any) -> None:
    """:func:`atomic_write` of ``data`` as JSON."""
    atomic_write(path, json.dumps(data))
