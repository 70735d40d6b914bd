"""What can go wrong with the results database, told apart: damage or unavailability.

The rule the store follows: only a database that SQLite itself proves damaged
(``SQLITE_CORRUPT``/``SQLITE_NOTADB``, or a failed ``PRAGMA quick_check``) is ever set
aside, and only by a writer; an I/O error, a full disk, a read-only home or a lock held too
long is :class:`StoreUnavailable` with one message (what, which path, what to do) and
changes nothing. This module holds the errors, the classification, the read-only
connections and the salvage of a damaged file (rows copied into a database made with the
schema the caller passes); :mod:`cnncompare.store` decides when to use them.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

DB_NAME = "results.sqlite"
"""The database's file name inside a results home."""


class StoreError(RuntimeError):
    """The results store cannot do what was asked. ``str()`` is the whole message for the
    user, one line: what happened, which path, what to do (the CLI prints it as its
    ``error:`` line, the app as one error box)."""


class StoreUnavailable(StoreError):
    """The store could not be read or written (full disk, read-only home, I/O error, a
    lock held too long). Nothing was renamed or changed."""


class StoreDamaged(StoreError):
    """SQLite reports the database damaged; a reading caller changed nothing
    (:meth:`ResultsStore.recover` salvages it)."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Damaged(Exception):
    """``PRAGMA quick_check`` found damage (internal: becomes :class:`StoreDamaged`)."""


_DAMAGE_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_DAMAGE_TEXTS = ("database disk image is malformed", "file is not a database")


def proves_damage(exc: BaseException) -> bool:
    """Whether SQLite itself says the file is damaged (``SQLITE_CORRUPT``/``NOTADB``).

    Everything else (I/O errors, a full disk, a read-only file, a busy lock, out of
    memory, an error without a code) is not damage: the file is left as it is."""
    name = getattr(exc, "sqlite_errorname", None)
    if name:
        return str(name).startswith(_DAMAGE_CODES)
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and any(t in text for t in _DAMAGE_TEXTS)


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}


def unavailable(exc: BaseException, path: Path, doing: str) -> StoreUnavailable:
    """The one-line message for a store that cannot be used right now: what happened
    (from the SQLite code, the errno or the message), which path, and what to do."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    code = getattr(exc, "errno", None)
    text = first_line(exc)
    low = text.lower()
    folder = path if path.is_dir() else path.parent
    if path.name == DB_NAME and path.is_dir():
        return StoreUnavailable(
            f"The results store at {path} could not be {doing}: that path is a folder, not a "
            f"database file. Nothing was changed or moved. Move the folder away, or point "
            f"CNNCOMPARE_HOME at another folder.")
    if name.startswith("SQLITE_IOERR") or "i/o error" in low or "write failed" in low:
        # SQLite says "disk I/O error" for a full disk or a read-only folder too (when it
        # cannot create the WAL index): ask the folder which it is.
        if _nearly_full(folder):
            code = errno.ENOSPC
        elif not os.access(folder, os.W_OK):
            code = errno.EROFS
    if name.startswith("SQLITE_FULL") or code in _FULL_ERRNOS or "disk is full" in low \
            or "no space left" in low:
        what = "the disk holding it is full"
        todo = ("Free some space there, or point CNNCOMPARE_HOME at another folder, and run "
                "the command again; reading commands (runs, export) still work.")
    elif name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN")) \
            or code in _READ_ONLY_ERRNOS or "readonly" in low or "read-only" in low \
            or "permission denied" in low or "unable to open" in low:
        what = "it cannot be written there (a read-only folder or file)"
        todo = ("Make the folder writable, or point CNNCOMPARE_HOME at a writable folder; "
                "reading commands (runs, export) still work.")
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in low \
            or "timeout" in type(exc).__name__.lower():
        what = "another process kept it locked for too long"
        todo = "Wait until the other process (a training run, a recovery) is done and try again."
    else:
        what = "the system reported an input/output error"
        todo = "Check the disk and the folder, then run the command again."
    return StoreUnavailable(
        f"The results store at {path} could not be {doing}: {what} ({text}). Nothing was "
        f"changed or moved. {todo}")


def _nearly_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has less than 1 MiB free (or says nothing)."""
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def quick_check(conn: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA quick_check`` once per state of the file in this process (a few
    milliseconds for a store of thousands of epochs); :class:`Damaged` on damage."""
    key = _file_state(path)
    if key in _CHECKED:
        return
    rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
    if rows != ["ok"]:
        raise Damaged("; ".join(str(r) for r in rows)[:300])
    _CHECKED.add(key)


_CHECKED: set[tuple] = set()


def _file_state(path: Path) -> tuple:
    """The file and its WAL as they are now (an empty WAL, which every connection
    recreates, counts as none)."""
    out: list[Any] = [str(path)]
    for suffix in ("", "-wal"):
        try:
            st = os.stat(f"{path}{suffix}")
        except OSError:
            st = None
        out += [st.st_ino, st.st_size, st.st_mtime_ns] if st and st.st_size else [None]
    return tuple(out)


def database_damage(path: Path) -> str | None:
    """What SQLite reports wrong with the database at ``path`` (read-only ``quick_check``),
    or ``None`` when it is intact or absent. Errors that are not damage are raised."""
    if not path.exists():
        return None
    try:
        conn = connect_read_only(path)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if proves_damage(exc):
            return first_line(exc)
        raise
    return None if rows == ["ok"] else "; ".join(str(r) for r in rows)[:300]


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection to ``path`` that cannot change it: ``mode=ro``, or ``immutable`` where
    SQLite cannot open the WAL index beside the file (a read-only folder, a full disk).
    The connection has answered one query; an error that is damage is raised at once."""
    uri = path.resolve().as_uri()
    last: sqlite3.Error | None = None
    for options in ("mode=ro", "mode=ro&immutable=1"):
        conn = sqlite3.connect(f"{uri}?{options}", uri=True, timeout=30.0)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            conn.close()
            if proves_damage(exc):
                raise
            last = exc
            continue
        return conn
    assert last is not None
    raise last


SALVAGE_PROBES = 200_000
"""At most this many rowids are tried one by one in a table whose scan broke off."""


def _readable_rows(conn: sqlite3.Connection, table: str, columns: list[str]) -> dict[int, tuple]:
    """Every row of ``table`` that still reads, by rowid: a scan, then (where the scan
    broke off on a damaged page) a lookup of each rowid the scan did not reach."""
    select = f"SELECT rowid, {', '.join(columns)} FROM {table}"
    rows: dict[int, tuple] = {}
    try:
        for row in conn.execute(select):
            rows[row[0]] = tuple(row[1:])
        return rows
    except sqlite3.DatabaseError:
        pass
    try:
        top = int(conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0)
    except (sqlite3.DatabaseError, TypeError, ValueError):
        top = 0
    top = min(max(top, max(rows, default=0) + 10_000), SALVAGE_PROBES)
    for rowid in range(1, top + 1):
        if rowid in rows:
            continue
        try:
            row = conn.execute(f"{select} WHERE rowid = ?", (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None:
            rows[rowid] = tuple(row[1:])
    return rows


def _salvage_connection(src: Path) -> sqlite3.Connection:
    """A read-only connection to a damaged database that reads as much as can be read:
    ``writable_schema`` lets SQLite open a file shorter than its header says (a copy cut
    short) instead of refusing it whole; the connection stays read-only."""
    uri = src.resolve().as_uri()
    last: sqlite3.Error | None = None
    for options in ("mode=ro", "mode=ro&immutable=1"):
        conn = sqlite3.connect(f"{uri}?{options}", uri=True, timeout=30.0)
        try:
            conn.execute("PRAGMA writable_schema = ON")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            if proves_damage(exc):
                return conn  # even its schema does not read: the queries below fail alone
            conn.close()
            last = exc
            continue
        return conn
    assert last is not None
    raise last


def salvage_database(src: Path, dst: Path, schema: str, schema_version: int
                     ) -> tuple[int, int | None, int]:
    """Copy every readable row of ``runs`` and ``epochs`` of the database ``src`` into a
    new database ``dst`` (the current schema; the old schema version, so that it is
    migrated as usual). Epochs of runs that were lost are left out. Returns the runs
    copied, the runs ``src``'s index knows (``None`` when unreadable) and the epochs."""
    old = _salvage_connection(src)
    new = sqlite3.connect(dst)
    try:
        new.executescript(schema)
        try:
            version = int(old.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError:
            version = schema_version
        try:
            known = int(old.execute("SELECT count(run_id) FROM runs").fetchone()[0])
        except sqlite3.DatabaseError:
            known = None
        copied: dict[str, int] = {}
        kept_runs: set[str] = set()
        for table in ("runs", "epochs"):
            try:
                have = [r[1] for r in old.execute(f"PRAGMA table_info({table})")]
            except sqlite3.DatabaseError:
                have = []
            wanted = {r[1] for r in new.execute(f"PRAGMA table_info({table})")}
            columns = [c for c in have if c in wanted]
            copied[table] = 0
            if "run_id" not in columns:
                continue
            insert = (f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) "
                      f"VALUES ({', '.join('?' * len(columns))})")
            at = columns.index("run_id")
            for values in _readable_rows(old, table, columns).values():
                if table == "epochs" and values[at] not in kept_runs:
                    continue
                try:
                    added = new.execute(insert, values).rowcount
                except sqlite3.Error:  # a row whose required values did not survive
                    continue
                if added and table == "runs":
                    kept_runs.add(values[at])
                copied[table] += max(0, added)
        new.execute(f"PRAGMA user_version = {min(version, schema_version)}")
        new.commit()
    finally:
        old.close()
        new.close()
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return copied["runs"], known, copied["epochs"]
