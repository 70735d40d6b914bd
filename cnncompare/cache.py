"""Two small things every on-disk cache here needs: a stable hash of plain data, and
writes that no reader ever sees half done.

Used by the profile and benchmark caches and by the results store's checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
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
    The temporary file is ``.<name>.tmp-<pid>-<random>``: a writer killed before the rename
    leaves it behind, and :func:`remove_stale_temp_files` recognises it by that name.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}{os.getpid()}-")
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


TEMP_MARK = ".tmp-"
"""What names a temporary file of :func:`atomic_open`: ``.<name>.tmp-<pid>-<random>``."""
STALE_TEMP_SECONDS = 15 * 60
"""A temporary file older than this is stale even when its pid runs (pids are reused)."""
_TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)-[^/]+$")
_OLD_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # written by earlier versions


def _pid_running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike,
                            older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove the temporary files that writers killed mid-write left in ``folder``: those
    named by :func:`atomic_open` whose process has ended or that are older than
    ``older_than`` seconds (and those of earlier versions older than that). Files of a
    writer still at work are left alone. Returns what was removed; errors are ignored
    (a read-only folder keeps its files)."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None and _OLD_TEMP_NAME.match(entry.name) is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            old = now - entry.stat(follow_symlinks=False).st_mtime > older_than
            if old or (match is not None and not _pid_running(int(match.group(1)))):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


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
