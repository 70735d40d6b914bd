"""The results store: a SQLite database of runs and their epochs, plus checkpoint files.

Layout under the results home (:func:`cnncompare.paths.home`, ``CNNCOMPARE_HOME``)::

    results.sqlite      runs (one row per configuration) and epochs (one row per epoch)
    checkpoints/ID.pt   the latest finished epoch of run ID: weights, optimizer,
                        scheduler and RNG state, history, and the weights of the
                        selected epoch (best validation accuracy; written atomically)
    locks/ID.lock       held while a process trains run ID

A run's id is the hash of its canonical configuration (see
:meth:`cnncompare.training.TrainConfig.key`). The database runs in WAL mode and every
write is one short transaction, so the app can read while a trainer writes. Checkpoints
hold plain Python types and tensors only and load with ``torch.load(weights_only=True)``.
Anything damaged (an unreadable checkpoint, a row that does not parse) is reported with a
:class:`StoreWarning` and set aside; the run is then trained again rather than crashing.

The database itself is set aside only when SQLite proves it damaged (``PRAGMA
quick_check`` fails, or a query answers "database disk image is malformed" or "file is not
a database"), and only by a writing caller (:meth:`ResultsStore.recover`, which training
calls before it writes): the rows that still read are copied into a new database and the
damaged file is kept as ``results.sqlite.damaged-<time>``. A reading caller facing a
damaged database gets :class:`StoreDamaged`, which says how to recover, and changes
nothing. A full disk, a read-only home, an I/O error or a lock held too long is never
damage: the caller gets :class:`StoreUnavailable` (what happened, where, what to do) and
nothing is renamed or changed. Reading works on a read-only home or a full disk (the
database is then opened read-only, ``immutable`` where SQLite cannot create its WAL index).

Reads come back as :class:`RunRecord` objects: typed, one per run, with the trainer's
flat ``settings`` (hyperparameters, sizes, model arguments, precision) beside the metrics,
so no caller needs to know how a run's key is built. A database written by an earlier
version is migrated once when it is opened (see :func:`_migrate`): its runs stay, as
they were, readable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import secrets
import sqlite3
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnncompare import cache, paths
from cnncompare.store_health import (  # noqa: F401 - the errors are public here too
    DB_NAME,
    Damaged,
    StoreDamaged,
    StoreError,
    StoreUnavailable,
    connect_read_only,
    database_damage,
    first_line,
    proves_damage,
    quick_check,
    salvage_database,
    unavailable,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id            TEXT PRIMARY KEY,
    model             TEXT NOT NULL,
    dataset           TEXT NOT NULL,
    status            TEXT NOT NULL,       -- running | unfinished | finished
    epochs_done       INTEGER NOT NULL DEFAULT 0,
    epochs            INTEGER NOT NULL,
    train_loss        REAL,
    train_acc         REAL,
    test_loss         REAL,                -- at selected_epoch
    test_acc          REAL,                -- at selected_epoch: the run's reported accuracy
    best_test_acc     REAL,                -- written by earlier versions; never read
    seconds           REAL NOT NULL DEFAULT 0,   -- training time over all epochs
    params            INTEGER,
    device            TEXT,
    val_loss          REAL,                -- at selected_epoch
    val_acc           REAL,                -- at selected_epoch (the best so far)
    selected_epoch    INTEGER,             -- best validation accuracy; NULL: no validation
    final_test_loss   REAL,                -- at the last finished epoch
    final_test_acc    REAL,                -- at the last finished epoch
    precision         TEXT,                -- float32 | bfloat16 | float16
    config            TEXT NOT NULL,       -- JSON: TrainConfig as given
    settings          TEXT,                -- JSON: the resolved settings, flat (see RunRecord)
    canonical         TEXT NOT NULL,       -- JSON: the resolved configuration (the key's input)
    model_config      TEXT NOT NULL,       -- JSON: ModelConfig.as_dict()
    data_meta         TEXT,                -- JSON: DataMeta.as_dict()
    confusion         TEXT,                -- JSON: list of lists (rows: true class)
    per_class_acc     TEXT,                -- JSON: list
    checkpoint_sha256 TEXT,
    versions          TEXT,                -- JSON: torch, cnncompare
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id       TEXT NOT NULL,
    epoch        INTEGER NOT NULL,
    train_loss   REAL,
    train_acc    REAL,
    test_loss    REAL,
    test_acc     REAL,
    seconds      REAL,
    images_per_s REAL,
    lr           REAL,
    val_loss     REAL,
    val_acc      REAL,
    PRIMARY KEY (run_id, epoch)
);
CREATE INDEX IF NOT EXISTS runs_dataset ON runs (dataset);
"""

_JSON_FIELDS = ("config", "settings", "canonical", "model_config", "data_meta", "confusion",
                "per_class_acc", "versions")
_DICT_FIELDS = ("config", "settings", "canonical", "model_config", "data_meta", "versions")
EPOCH_FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                "seconds", "images_per_s", "lr")
"""What the store keeps per epoch: train (running averages over the epoch's batches),
validation and test metrics, time, speed and learning rate."""
SETTINGS_COLUMNS = ("batch_size", "lr", "optimizer", "scheduler", "weight_decay",
                    "label_smoothing", "seed", "augment", "train_size", "val_size", "test_size",
                    "input_size", "in_channels", "width", "model_kwargs")
"""The resolved settings a run stores (``settings`` JSON), one column each in :meth:`runs`."""
RUN_COLUMNS = ("run_id", "model", "dataset", "status", "epochs_done", "epochs", "test_acc",
               "selected_epoch", "val_acc", "final_test_acc", "test_loss", "train_acc",
               "train_loss", "seconds", "params", "precision", "selected_by", "created_at")
FRAME_COLUMNS = (*RUN_COLUMNS, *SETTINGS_COLUMNS, "device", "updated_at")
"""The columns of :meth:`ResultsStore.runs`, in order."""

SELECTED_BY_VALIDATION = "best validation accuracy"
SELECTED_LAST_EPOCH = "last epoch (stored without a validation split)"
"""How a run's reported epoch was chosen (:attr:`RunRecord.selected_by`). Runs stored by
versions before validation splits report their last epoch: never the best test epoch."""


class StoreWarning(UserWarning):
    """Something stored was damaged and has been set aside (the run will be retrained)."""


@dataclass(frozen=True)
class RunRecord:
    """One stored run: what it is, how far it got, and its metrics.

    ``test_acc`` is the run's reported accuracy: the test accuracy at ``selected_epoch``,
    the epoch with the best validation accuracy (so the test set never chooses). Runs
    stored before validation splits have no ``selected_epoch``; they report their last
    epoch (see :attr:`selected_by`). ``final_test_acc`` is the last finished epoch's.
    ``settings`` holds the resolved hyperparameters, split sizes and model arguments as
    the trainer wrote them (see :data:`SETTINGS_COLUMNS`); ``config`` is the
    :class:`~cnncompare.train_config.TrainConfig` as it was given; ``canonical`` is what
    its run id hashes. ``confusion`` and ``per_class_acc`` are those of the selected epoch.
    ``history`` (one dict per finished epoch) is filled by :meth:`ResultsStore.run` only.
    """

    run_id: str
    model: str
    dataset: str
    status: str  # running | unfinished | finished
    epochs_done: int
    epochs: int
    train_loss: float | None = None
    train_acc: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    selected_epoch: int | None = None
    final_test_loss: float | None = None
    final_test_acc: float | None = None
    precision: str | None = None
    seconds: float = 0.0  # training time over all finished epochs
    params: int | None = None
    device: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    canonical: dict[str, Any] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)
    data_meta: dict[str, Any] = field(default_factory=dict)
    confusion: list[list[int]] | None = None
    per_class_acc: list[float | None] | None = None
    checkpoint_sha256: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""
    history: tuple[dict[str, Any], ...] = ()

    damage: str = ""  # why the row did not parse ("" when it is intact)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunRecord:
        """Parse a ``runs`` row. A JSON field that does not parse is left empty and named
        in :attr:`damage`, so that a listing still shows the run."""
        values, problems = {}, []
        for key, value in row.items():
            if key in _JSON_FIELDS and value is not None:
                try:
                    value = json.loads(value)
                    if key in _DICT_FIELDS and not isinstance(value, dict):
                        raise TypeError("not a mapping")
                except (ValueError, TypeError) as exc:
                    problems.append(f"{key}: {exc}")
                    continue
            values[key] = value
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known and v is not None}
        try:
            return cls(**values, damage="; ".join(problems))
        except TypeError as exc:  # a required column is NULL
            return cls(run_id=str(row.get("run_id")), model=str(row.get("model")),
                       dataset=str(row.get("dataset")), status=str(row.get("status")),
                       epochs_done=0, epochs=0, damage=str(exc))

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.data_meta.get("class_names") or []]

    def model_cfg(self):
        """The exact :class:`~cnncompare.registry.ModelConfig` this run trained."""
        from cnncompare.registry import ModelConfig  # the store stays importable without torch

        return ModelConfig(**self.model_config)

    @property
    def selected_by(self) -> str:
        """How the reported epoch was chosen: on validation, or the last epoch for a run
        stored without a validation split."""
        if self.selected_epoch is not None:
            return SELECTED_BY_VALIDATION
        return SELECTED_LAST_EPOCH if self.epochs_done else ""

    def row(self) -> dict[str, Any]:
        """One flat row: :data:`FRAME_COLUMNS`, as :meth:`ResultsStore.runs` lists them.
        Settings a run stored before they existed read as their value then (no
        augmentation, no validation images)."""
        out = {k: getattr(self, k) for k in RUN_COLUMNS}
        defaults = {"augment": False, "val_size": 0}
        out.update({k: self.settings.get(k, defaults.get(k)) for k in SETTINGS_COLUMNS})
        out.update(device=self.device, updated_at=self.updated_at)
        return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _warn(message: str) -> None:
    warnings.warn(message, StoreWarning, stacklevel=3)


def _clean(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, for JSON and SQLite."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _default_home() -> Path:
    """``paths.home()``; its path even where it cannot be created (then nothing reads)."""
    try:
        return paths.home()
    except OSError:
        env = os.environ.get("CNNCOMPARE_HOME")
        return Path(env).expanduser() if env else paths.DATA_DIR / "runtime"


def _stamp() -> str:
    """A local time for names of files set aside: ``20250101-120000``."""
    return time.strftime("%Y%m%d-%H%M%S")


def _free_name(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ... : the first name no file has."""
    candidate, n = path, 1
    while candidate.exists() or Path(f"{candidate}-wal").exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _empty_database() -> sqlite3.Connection:
    """An in-memory database with the schema: what a home without results reads as."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(_SCHEMA)
    conn.row_factory = sqlite3.Row
    return conn


class ResultsStore:
    """Runs, epochs and checkpoints under one results home (default: ``paths.home()``).

    Cheap to create; every call opens and closes its own connection, so one store may be
    shared between threads and many processes may use the same home at once.

    Creating a store never moves, renames or deletes anything. Where it can, it creates
    the folders and the schema and migrates an older database (as every version did);
    where it cannot (a read-only home, a full disk), it remembers why, reads read-only,
    and a write raises :class:`StoreUnavailable`. A database SQLite proves damaged is
    remembered too: reads raise :class:`StoreDamaged`, and the first write recovers it
    (:meth:`recover`).
    """

    def __init__(self, home: str | os.PathLike | None = None):
        self.home = Path(home).expanduser() if home is not None else _default_home()
        self.db_path = self.home / DB_NAME
        self.checkpoint_dir = self.home / "checkpoints"
        self.lock_dir = self.home / "locks"
        self._ready = False  # folders and schema in place: writes may go ahead
        self._unavailable: StoreUnavailable | None = None  # why writes cannot
        self._damage: str | None = None  # what SQLite reported, when it proved damage
        self._temp_files_swept = False
        self._prepare()

    # -- opening -------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Folders, schema, migration and a quick check of the database. A failure is
        remembered (never raised here, never acted on): a read-only home or a full disk
        still reads, and a damaged database is recovered by a writing caller only."""
        self._ready, self._unavailable = False, None
        try:
            for folder in (self.home, self.checkpoint_dir, self.lock_dir):
                folder.mkdir(parents=True, exist_ok=True)
            self._create_schema()
        except sqlite3.Error as exc:
            if proves_damage(exc):
                self._damage = first_line(exc)
            else:
                self._unavailable = unavailable(exc, self.db_path, "opened for writing")
            return
        except Damaged as exc:
            self._damage = str(exc)
            return
        except OSError as exc:
            self._unavailable = unavailable(exc, self.home, "prepared for writing")
            return
        self._damage = None
        self._ready = True

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=30.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """A connection that cannot change anything: ``mode=ro``, or ``immutable`` where
        SQLite cannot create the WAL index beside the file (a read-only folder, a full
        disk). Where the file or its tables do not exist, an empty in-memory database."""
        if not self.db_path.exists():
            return _empty_database()
        conn = connect_read_only(self.db_path)
        try:
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except BaseException:
            conn.close()
            raise
        if not {"runs", "epochs"} <= tables:
            conn.close()
            return _empty_database()
        conn.row_factory = sqlite3.Row
        return conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading; it never writes, moves or creates anything."""
        if self._damage is not None:
            raise self._damaged_error()
        try:
            conn = self._open() if self._ready else self._open_read_only()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None
        try:
            yield conn
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None
        finally:
            conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One short writing transaction: committed on success, rolled back on error,
        closed. Recovers a damaged database first; :class:`StoreUnavailable` where the
        home cannot be written."""
        self.ensure_writable()
        try:
            conn = self._open()
        except sqlite3.Error as exc:
            raise self._error(exc, "written") from None
        try:
            with conn:
                yield conn
        except sqlite3.Error as exc:
            raise self._error(exc, "written") from None
        finally:
            conn.close()

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        """The typed error for a failed query: damage (remembered) or unavailability."""
        if proves_damage(exc):
            self._damage = first_line(exc)
            return self._damaged_error()
        return unavailable(exc, self.db_path, doing)

    def _damaged_error(self) -> StoreDamaged:
        return StoreDamaged(
            f"The results database {self.db_path} is damaged (SQLite reports: "
            f"{self._damage}). Nothing was changed. Run `python -m cnncompare repair` to copy "
            f"every run that still reads into a new database; the damaged file is then kept "
            f"beside it as {DB_NAME}.damaged-<time>. Training (the train and study commands, "
            f"the Train page) does the same before it writes.")

    def ensure_writable(self) -> None:
        """Make the store ready for writes: recover a damaged database (once), retry a
        home that could not be prepared, and remove temporary files that killed writers
        left. :class:`StoreUnavailable` (nothing changed) where it cannot be written."""
        if self._damage is not None:
            self.recover()
        if not self._ready:
            self._prepare()
            if self._damage is not None:
                self.recover()
        if self._unavailable is not None:
            raise self._unavailable
        if not self._temp_files_swept:
            self._temp_files_swept = True
            for folder in (self.home, self.checkpoint_dir, *self.home.glob("cache/*")):
                cache.remove_stale_temp_files(folder)

    @property
    def writable(self) -> bool:
        """Whether writes can go ahead now (the home was prepared)."""
        return self._ready

    def _init_db(self) -> None:  # kept for callers of earlier versions
        self._prepare()

    def _create_schema(self) -> None:
        conn = self._open()
        try:
            quick_check(conn, self.db_path)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
            with conn:
                _migrate(conn)
            conn.execute("SELECT count(*) FROM runs").fetchone()
        finally:
            conn.close()

    # -- recovery ------------------------------------------------------------------------

    def recover(self) -> str | None:
        """Salvage a database SQLite proves damaged; ``None`` when it is intact.

        Under a lock (two processes recover once): the damage is checked again on a fresh
        read-only connection, every row of ``runs`` and ``epochs`` that still reads is
        copied into a new database (written beside it, then renamed into place), and the
        damaged file (with its ``-wal``) is kept as ``results.sqlite.damaged-<time>``.
        Returns (and warns with :class:`StoreWarning`) what was salvaged. An I/O error or
        a full disk on the way raises :class:`StoreUnavailable` with the original file
        untouched.
        """
        from filelock import FileLock, Timeout

        try:
            if database_damage(self.db_path) is None:  # intact: nothing to lock or change
                self._damage = None
                self._prepare()
                return None
        except sqlite3.Error as exc:
            raise unavailable(exc, self.db_path, "checked") from None
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.lock_dir / f"{DB_NAME}.recover.lock"),
                            thread_local=False)
            lock.acquire(timeout=120)
        except (OSError, Timeout) as exc:
            raise unavailable(exc, self.home, "locked for its recovery") from None
        try:
            try:
                problem = database_damage(self.db_path)
            except sqlite3.Error as exc:
                raise unavailable(exc, self.db_path, "checked") from None
            if problem is None:  # intact, or another process recovered it meanwhile
                self._damage = None
                self._prepare()
                return None
            report = self._salvage(problem)
        finally:
            lock.release()
        self._damage = None
        self._prepare()
        _warn(report)
        return report

    def _salvage(self, problem: str) -> str:
        tmp = self.home / f".{DB_NAME}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            counts = salvage_database(self.db_path, tmp, _SCHEMA, SCHEMA_VERSION)
            aside = _free_name(self.db_path.with_name(f"{DB_NAME}.damaged-{_stamp()}"))
            os.replace(self.db_path, aside)
            wal = Path(f"{self.db_path}-wal")  # pages not yet in the file: kept beside it
            if wal.exists() and wal.stat().st_size > 0:
                os.replace(wal, f"{aside}-wal")
            for leftover in (wal, Path(f"{self.db_path}-shm")):  # empty, or an index
                leftover.unlink(missing_ok=True)
            os.replace(tmp, self.db_path)
        except (OSError, sqlite3.Error) as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise unavailable(exc, self.db_path, "recovered") from None
        runs, known, epochs = counts
        of = f" of the {known} it indexes" if known is not None and known >= runs else ""
        return (f"The results database {self.db_path} was damaged (SQLite reports: "
                f"{problem}). {runs} run(s){of} and {epochs} epoch row(s) still read and were "
                f"copied into a new database; the damaged file is kept as {aside}. A run that "
                f"could not be read is trained again when it is asked for.")

    # -- paths and locks ---------------------------------------------------------------

    def checkpoint_path(self, run_id: str) -> Path:
        return self.checkpoint_dir / f"{run_id}.pt"

    def lock(self, run_id: str):
        """The inter-process lock a trainer holds while it trains ``run_id``."""
        from filelock import FileLock

        return FileLock(str(self.lock_dir / f"{run_id}.lock"), thread_local=False)

    def is_training(self, run_id: str) -> bool:
        """Whether some process holds ``run_id``'s lock right now."""
        from filelock import Timeout

        if not self._ready:  # nobody trains where the store cannot be written
            return False
        lock = self.lock(run_id)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        except OSError:  # the lock file cannot be created: no trainer could have one
            return False
        lock.release()
        return False

    # -- reading -------------------------------------------------------------------------

    def _row(self, run_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return dict(row) if row is not None else None

    def has(self, run_id: str) -> bool:
        return self._row(run_id) is not None

    def _live_status(self, rec: RunRecord) -> RunRecord:
        """A ``running`` run whose trainer holds no lock any more is ``unfinished``."""
        if rec.status == "running" and not self.is_training(rec.run_id):
            return dataclasses.replace(rec, status="unfinished")
        return rec

    def run(self, run_id: str) -> RunRecord:
        """The full record of a run, with its ``history`` (one dict per finished epoch).

        ``ValueError`` for an unknown id or a damaged row.
        """
        row = self._row(run_id)
        if row is None:
            raise ValueError(f"No stored run with id {run_id!r} in {self.db_path}.")
        rec = RunRecord.from_row(row)
        if rec.damage:
            raise ValueError(f"The stored record of run {run_id!r} is damaged: {rec.damage}")
        history = self.epochs([run_id]).drop(columns="run_id").to_dict("records")
        return self._live_status(dataclasses.replace(rec, history=tuple(history)))

    def records(self, run_ids: Iterable[str] | None = None, *, dataset: str | None = None,
                finished_only: bool = False) -> list[RunRecord]:
        """The runs (all, or those in ``run_ids``), newest first, in one query; no history.

        A row that does not parse comes back with its :attr:`RunRecord.damage` set.
        """
        query = "SELECT * FROM runs"
        where, args = [], []
        if run_ids is not None:
            ids = list(run_ids)
            if not ids:
                return []
            where.append(f"run_id IN ({','.join('?' * len(ids))})")
            args += ids
        if dataset is not None:
            where.append("dataset = ?")
            args.append(dataset)
        if finished_only:
            where.append("status = 'finished'")
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created_at DESC, run_id"
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(query, args).fetchall()]
        return [self._live_status(RunRecord.from_row(row)) for row in rows]

    def runs(self, dataset: str | None = None, finished_only: bool = False) -> pd.DataFrame:
        """One row per stored run, newest first: :data:`FRAME_COLUMNS`."""
        rows = [r.row() for r in self.records(dataset=dataset, finished_only=finished_only)]
        return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))

    def epochs(self, run_ids: str | Iterable[str]) -> pd.DataFrame:
        """Per-epoch metrics of the given runs; ``wall_time`` is cumulative seconds. The
        validation columns are empty for runs stored without a validation split."""
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        cols = ["run_id", "epoch", *EPOCH_FIELDS]
        if not ids:
            frame = pd.DataFrame(columns=cols)
        else:
            marks = ",".join("?" * len(ids))
            with self._read() as conn:  # SELECT *: a read-only, unmigrated database reads too
                rows = conn.execute(
                    f"SELECT * FROM epochs WHERE run_id IN ({marks}) "
                    "ORDER BY run_id, epoch", ids).fetchall()
            frame = pd.DataFrame([dict(r) for r in rows], columns=cols)
        frame["wall_time"] = frame.groupby("run_id")["seconds"].cumsum() if len(frame) else []
        order = ["run_id", "epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                 "test_loss", "test_acc", "seconds", "wall_time", "images_per_s", "lr"]
        return frame[order].reset_index(drop=True)

    def confusion(self, run_id: str) -> tuple[np.ndarray, list[str]]:
        """The test-set confusion matrix at the run's selected epoch (the last finished
        epoch for a run stored without a validation split; rows: true class, columns:
        predicted) and the class names."""
        record = self.run(run_id)
        if record.confusion is None:
            raise ValueError(f"Run {run_id!r} has no finished epoch yet, so no confusion matrix.")
        return np.asarray(record.confusion, dtype=np.int64), record.class_names

    def load_model(self, run_id: str, device: str = "cpu"):
        """The trained network of a run, in eval mode on ``device``, and its :class:`RunRecord`.

        The weights are those of the selected epoch (best validation accuracy), the ones
        whose test accuracy the run reports; a checkpoint written before validation splits
        holds the last epoch's only."""
        record = self.run(run_id)
        if record.epochs_done < 1:
            raise ValueError(f"Run {run_id!r} has no finished epoch, so no trained weights.")
        state = self.read_checkpoint(run_id, map_location=device)
        if state is None:
            raise ValueError(
                f"The checkpoint of run {run_id!r} ({self.checkpoint_path(run_id)}) is missing "
                "or unreadable; train the configuration again to recreate it.")
        try:
            model = record.model_cfg().build()
            selected = state.get("selected") or {}
            model.load_state_dict(selected.get("model") or state["model"])
        except (RuntimeError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(
                f"The stored weights of run {run_id!r} do not fit the current model code "
                f"({str(exc).splitlines()[0]}); train it again.") from None
        return model.to(device).eval(), record

    # -- checkpoints ---------------------------------------------------------------------

    def write_checkpoint(self, run_id: str, payload: dict[str, Any]) -> str:
        """Save ``payload`` atomically (temporary file, fsync, rename); returns its sha256."""
        import torch

        self.ensure_writable()
        target = self.checkpoint_path(run_id)
        try:
            with cache.atomic_open(target, fsync=True) as f:
                torch.save(payload, f)
        except OSError as exc:
            raise unavailable(exc, target, "written") from None
        except RuntimeError as exc:  # torch wraps the file's OSError in its own
            if "write" not in str(exc).lower():
                raise
            raise unavailable(exc, target, "written") from None
        return file_sha256(target)

    def set_aside_checkpoint(self, run_id: str) -> Path | None:
        """Rename an unusable checkpoint to ``ID.pt.bad-<time>`` (kept for the user);
        returns the new path, ``None`` when there was none."""
        path = self.checkpoint_path(run_id)
        if not path.exists():
            return None
        aside = _free_name(path.with_name(f"{path.name}.bad-{_stamp()}"))
        try:
            os.replace(path, aside)
        except OSError as exc:
            raise unavailable(exc, path, "set aside") from None
        return aside

    def read_checkpoint(self, run_id: str, map_location: Any = "cpu", *,
                        problems: list[str] | None = None) -> dict[str, Any] | None:
        """The checkpoint of ``run_id``, or ``None`` when it is missing or unreadable.

        Why it is unreadable is warned (:class:`StoreWarning`), or appended to
        ``problems`` when a list is given (the trainer says it once, with what it did)."""
        import torch

        path = self.checkpoint_path(run_id)
        if not path.exists():
            return None
        problem = None
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds on a bad file
            problem = f"it is unreadable ({type(exc).__name__}: {first_line(exc)})"
        else:
            if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
                problem = "it does not hold a training state"
        if problem is None:
            return state
        if problems is not None:
            problems.append(problem)
        else:
            _warn(f"The checkpoint of run {run_id} ({path}) cannot be used: {problem}.")
        return None

    # -- validation ----------------------------------------------------------------------

    def finished(self, run_id: str) -> RunRecord | None:
        """The record of ``run_id`` if it is finished and intact; ``None`` otherwise.

        A finished run whose row, epochs or checkpoint is damaged is reported with a
        :class:`StoreWarning` and discarded, so that it is trained again.
        """
        if self._damage is not None:  # a writing caller asks: recover first
            self.recover()
        row = self._row(run_id)
        if row is None or row["status"] != "finished":
            return None
        problem = self._check_finished(row)
        if problem is None:
            return self.run(run_id)

        _warn(f"Stored run {run_id} is damaged ({problem}); it will be trained again.")
        self.discard(run_id)
        return None

    def _check_finished(self, row: dict[str, Any]) -> str | None:
        rec = RunRecord.from_row(row)
        if rec.damage:
            return f"its row does not parse ({rec.damage})"
        if rec.test_acc is None or rec.epochs_done != rec.epochs:
            return "its row lacks final metrics"
        ep = self.epochs([rec.run_id])
        if sorted(ep["epoch"].tolist()) != list(range(1, rec.epochs + 1)):
            return "its per-epoch metrics are incomplete"
        path = self.checkpoint_path(rec.run_id)
        if not path.exists():
            return f"its checkpoint {path} is missing"
        if rec.checkpoint_sha256 and file_sha256(path) != rec.checkpoint_sha256:
            return f"its checkpoint {path} does not match the stored checksum"
        return None

    # -- writing (used by the trainer) ---------------------------------------------------

    def begin(self, run_id: str, fields: dict[str, Any]) -> None:
        """Start (or restart from nothing) the row of ``run_id``; clears its old epochs."""
        now = _now()
        row = {k: _encode(k, v) for k, v in fields.items()}
        row.update(run_id=run_id, status="running", epochs_done=0, seconds=0.0,
                   created_at=now, updated_at=now)
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        with self._tx() as conn:
            conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(row.values()))

    def resume(self, run_id: str, history: list[dict[str, Any]], fields: dict[str, Any]) -> None:
        """Mark ``run_id`` running again and make its epochs table match ``history``."""
        with self._tx() as conn:
            exists = conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if not exists:
            self.begin(run_id, fields)
        with self._tx() as conn:
            conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            for rec in history:
                _insert_epoch(conn, run_id, rec)
            summary = _summary_from(history)
            sets = {k: _encode(k, v) for k, v in {**fields, **summary}.items()}
            sets.update(status="running", updated_at=_now())
            conn.execute(
                f"UPDATE runs SET {', '.join(f'{k} = ?' for k in sets)} WHERE run_id = ?",
                (*sets.values(), run_id))

    def record_epoch(self, run_id: str, history: list[dict[str, Any]],
                     extra: dict[str, Any] | None = None) -> None:
        """Store the newest epoch of ``history`` and the run's running summary."""
        with self._tx() as conn:
            _insert_epoch(conn, run_id, history[-1])
            sets = {k: _encode(k, v) for k, v in {**_summary_from(history),
                                                   **(extra or {})}.items()}
            sets["updated_at"] = _now()
            conn.execute(
                f"UPDATE runs SET {', '.join(f'{k} = ?' for k in sets)} WHERE run_id = ?",
                (*sets.values(), run_id))

    def set_status(self, run_id: str, status: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?",
                         (status, _now(), run_id))

    def discard(self, run_id: str) -> None:
        """Forget ``run_id``: its row, its epochs and its checkpoint."""
        with self._tx() as conn:
            conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
        with contextlib.suppress(FileNotFoundError):
            self.checkpoint_path(run_id).unlink()

    def delete(self, run_id: str) -> None:
        """Delete a stored run (``ValueError`` if there is none)."""
        self.ensure_writable()
        if not self.has(run_id):
            raise ValueError(f"No stored run with id {run_id!r} in {self.db_path}.")
        self.discard(run_id)


SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of a database this code wrote; older ones are migrated once."""

_ADDED_COLUMNS = {
    "runs": ("settings TEXT", "val_loss REAL", "val_acc REAL", "selected_epoch INTEGER",
             "final_test_loss REAL", "final_test_acc REAL", "precision TEXT"),
    "epochs": ("val_loss REAL", "val_acc REAL"),
}


def precision_from_device(device: str | None) -> str:
    """The precision a run of an earlier version trained in, from the ``device`` text it
    recorded (``"cpu (2 threads), amp bfloat16"`` -> ``bfloat16``; no ``amp`` -> float32)."""
    text = (device or "").lower()
    for name in ("bfloat16", "float16"):
        if f"amp {name}" in text:
            return name
    return "float32"


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database written by an earlier version up to :data:`SCHEMA_VERSION`, once.

    Version 1 added the ``settings`` column; rows written before it get their settings
    from the ``canonical`` payload they stored. Version 2 added validation metrics, the
    selected epoch, the final epoch's test metrics and the precision. Runs of earlier
    versions keep their run id, rows, epochs and checkpoints; they get their precision from
    the ``device`` text they recorded, ``final_test_*`` from their last epoch (which is
    also the epoch they report: they had no validation split, so ``selected_epoch`` stays
    empty), and the settings that did not exist then (no augmentation; ``val_size`` from
    their data spec, 0 where it had none). Nothing is retrained.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return
    for table, added in _ADDED_COLUMNS.items():
        columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for column in added:
            if column.split()[0] not in columns:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    rows = conn.execute("SELECT run_id, canonical, settings, device FROM runs "
                        "WHERE precision IS NULL").fetchall()
    for run_id, canonical, settings_text, device in rows:
        precision = precision_from_device(device)
        conn.execute("UPDATE runs SET precision = ?, final_test_acc = test_acc, "
                     "final_test_loss = test_loss WHERE run_id = ?", (precision, run_id))
        try:
            canon = json.loads(canonical)
            hp, data, model = canon["hparams"], canon["data"], canon["model"]
            settings = json.loads(settings_text) if settings_text else {
                **{k: hp.get(k) for k in SETTINGS_COLUMNS if k in hp},
                "train_size": data["train_size"], "test_size": data["test_size"],
                "input_size": model["input_size"], "in_channels": model["in_channels"],
                "width": model["width"],
                "model_kwargs": json.dumps(model.get("extra") or {}, sort_keys=True)}
            settings.setdefault("augment", False)
            settings.setdefault("val_size", int(data.get("val_size") or 0))
            settings["precision"] = precision
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # a damaged row stays as it is and is reported when read
        conn.execute("UPDATE runs SET settings = ? WHERE run_id = ?",
                     (json.dumps(settings, sort_keys=True), run_id))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _encode(key: str, value: Any) -> Any:
    if key in _JSON_FIELDS:
        return None if value is None else json.dumps(value, sort_keys=True, default=_clean)
    return _clean(value)


def _insert_epoch(conn: sqlite3.Connection, run_id: str, rec: dict[str, Any]) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO epochs (run_id, epoch, {', '.join(EPOCH_FIELDS)}) "
        f"VALUES (?, ?, {', '.join('?' * len(EPOCH_FIELDS))})",
        (run_id, int(rec["epoch"]), *(_clean(rec.get(k)) for k in EPOCH_FIELDS)))


def select_epoch(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The epoch a run reports: the highest validation accuracy (ties: the lower validation
    loss, then the earlier epoch). ``None`` when no epoch has a validation accuracy."""
    scored = [h for h in history if h.get("val_acc") is not None]
    if not scored:
        return None
    return min(scored, key=lambda h: (-h["val_acc"],
                                      h["val_loss"] if h.get("val_loss") is not None
                                      else math.inf, h["epoch"]))


def _summary_from(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's row from its epochs: test and validation metrics at the selected epoch,
    the last epoch's test metrics beside them, the last epoch's training metrics."""
    if not history:
        return {"epochs_done": 0, "seconds": 0.0}
    last = history[-1]
    chosen = select_epoch(history)
    shown = chosen or last
    return {
        "epochs_done": int(last["epoch"]),
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_acc"),
        "test_loss": shown.get("test_loss"),
        "test_acc": shown.get("test_acc"),
        "val_loss": shown.get("val_loss"),
        "val_acc": shown.get("val_acc"),
        "selected_epoch": int(chosen["epoch"]) if chosen else None,
        "final_test_loss": last.get("test_loss"),
        "final_test_acc": last.get("test_acc"),
        "seconds": float(sum(h.get("seconds") or 0.0 for h in history)),
    }
