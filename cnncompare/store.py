"""The results store: a SQLite database of runs and their epochs, plus checkpoint files.

Layout under the results home (:func:`cnncompare.paths.home`, ``CNNCOMPARE_HOME``)::

    results.sqlite      runs (one row per configuration) and epochs (one row per epoch)
    checkpoints/ID.pt   the latest finished epoch of run ID: weights, optimizer,
                        scheduler and RNG state, history (written atomically)
    locks/ID.lock       held while a process trains run ID

A run's id is the hash of its canonical configuration (see
:meth:`cnncompare.training.TrainConfig.key`). The database runs in WAL mode and every
write is one short transaction, so the app can read while a trainer writes. Checkpoints
hold plain Python types and tensors only and load with ``torch.load(weights_only=True)``.
Anything damaged (an unreadable checkpoint, a row that does not parse, a database file
that is not a database) is reported with a :class:`StoreWarning` and set aside; the run
is then trained again rather than crashing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnncompare import paths

DB_NAME = "results.sqlite"

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
    test_loss         REAL,
    test_acc          REAL,
    best_test_acc     REAL,
    seconds           REAL NOT NULL DEFAULT 0,   -- training time over all epochs
    params            INTEGER,
    device            TEXT,
    config            TEXT NOT NULL,       -- JSON: TrainConfig as given
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
    PRIMARY KEY (run_id, epoch)
);
CREATE INDEX IF NOT EXISTS runs_dataset ON runs (dataset);
"""

_JSON_FIELDS = ("config", "canonical", "model_config", "data_meta", "confusion",
                "per_class_acc", "versions")
EPOCH_FIELDS = ("train_loss", "train_acc", "test_loss", "test_acc", "seconds",
                "images_per_s", "lr")
CONFIG_COLUMNS = ("batch_size", "lr", "optimizer", "scheduler", "weight_decay",
                  "label_smoothing", "seed")
RUN_COLUMNS = ("run_id", "model", "dataset", "status", "epochs_done", "epochs", "test_acc",
               "test_loss", "train_acc", "train_loss", "best_test_acc", "seconds", "params",
               "created_at")


class StoreWarning(UserWarning):
    """Something stored was damaged and has been set aside (the run will be retrained)."""


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


class ResultsStore:
    """Runs, epochs and checkpoints under one results home (default: ``paths.home()``).

    Cheap to create; every call opens and closes its own connection, so one store may be
    shared between threads and many processes may use the same home at once.
    """

    def __init__(self, home: str | os.PathLike | None = None):
        self.home = Path(home).expanduser() if home is not None else paths.home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.db_path = self.home / DB_NAME
        self.checkpoint_dir = self.home / "checkpoints"
        self.lock_dir = self.home / "locks"
        for d in (self.checkpoint_dir, self.lock_dir):
            d.mkdir(exist_ok=True)
        self._init_db()

    # -- connections -------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=30.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One short transaction: committed on success, rolled back on error, closed."""
        conn = self._open()
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def _init_db(self) -> None:
        try:
            self._create_schema()
        except sqlite3.DatabaseError as exc:
            aside = self.db_path.with_name(f"{DB_NAME}.damaged-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.db_path) + suffix)
                if src.exists():
                    os.replace(src, Path(str(aside) + suffix))
            _warn(f"The results database {self.db_path} could not be read ({exc}); it was "
                  f"moved to {aside} and a new, empty one was started.")
            self._create_schema()

    def _create_schema(self) -> None:
        conn = self._open()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
            conn.execute("SELECT count(*) FROM runs").fetchone()
        finally:
            conn.close()

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

        lock = self.lock(run_id)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        return False

    # -- reading -------------------------------------------------------------------------

    def _row(self, run_id: str) -> dict[str, Any] | None:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return dict(row) if row is not None else None

    def has(self, run_id: str) -> bool:
        return self._row(run_id) is not None

    def run(self, run_id: str) -> dict[str, Any]:
        """The full record of a run: its row with JSON fields parsed, and its ``history``.

        Keys include ``config`` (the TrainConfig as a dict), ``model_config``,
        ``data_meta`` (dataset, class_names, in_channels, input_size, mean, std, ink, ...),
        ``confusion``, ``per_class_acc``, ``history`` (list of epoch dicts) and
        ``checkpoint`` (its path). ``ValueError`` for an unknown id or a damaged row.
        """
        row = self._row(run_id)
        if row is None:
            raise ValueError(f"No stored run with id {run_id!r} in {self.db_path}.")
        try:
            record = _parse(row)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"The stored record of run {run_id!r} is damaged: {exc}") from None
        record["history"] = self.epochs([run_id]).drop(columns="run_id").to_dict("records")
        record["checkpoint"] = str(self.checkpoint_path(run_id))
        if record["status"] == "running" and not self.is_training(run_id):
            record["status"] = "unfinished"
        return record

    def runs(self, dataset: str | None = None, finished_only: bool = False) -> pd.DataFrame:
        """One row per stored run, newest first, with final metrics and configuration."""
        query = "SELECT * FROM runs"
        where, args = [], []
        if dataset is not None:
            where.append("dataset = ?")
            args.append(dataset)
        if finished_only:
            where.append("status = 'finished'")
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created_at DESC, run_id"
        with self._tx() as conn:
            rows = [dict(r) for r in conn.execute(query, args).fetchall()]
        out = [self._summary(row) for row in rows]
        columns = list(RUN_COLUMNS) + list(CONFIG_COLUMNS) + [
            "train_size", "test_size", "input_size", "in_channels", "width", "model_kwargs",
            "device", "updated_at"]
        return pd.DataFrame(out, columns=columns)

    def _summary(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {k: row.get(k) for k in RUN_COLUMNS}
        out["device"] = row.get("device")
        out["updated_at"] = row.get("updated_at")
        if row["status"] == "running" and not self.is_training(row["run_id"]):
            out["status"] = "unfinished"
        try:
            canon = json.loads(row["canonical"])
            hp, data, model = canon["hparams"], canon["data"], canon["model"]
            out.update({k: hp.get(k) for k in CONFIG_COLUMNS})
            out.update(train_size=data["train_size"], test_size=data["test_size"],
                       input_size=model["input_size"], in_channels=model["in_channels"],
                       width=model["width"],
                       model_kwargs=json.dumps(model.get("extra") or {}, sort_keys=True))
        except (ValueError, TypeError, KeyError):
            out["status"] = "damaged"
        return out

    def epochs(self, run_ids: str | Iterable[str]) -> pd.DataFrame:
        """Per-epoch metrics of the given runs; ``wall_time`` is cumulative seconds."""
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        cols = ["run_id", "epoch", *EPOCH_FIELDS]
        if not ids:
            frame = pd.DataFrame(columns=cols)
        else:
            marks = ",".join("?" * len(ids))
            with self._tx() as conn:
                rows = conn.execute(
                    f"SELECT {', '.join(cols)} FROM epochs WHERE run_id IN ({marks}) "
                    "ORDER BY run_id, epoch", ids).fetchall()
            frame = pd.DataFrame([tuple(r) for r in rows], columns=cols)
        frame["wall_time"] = frame.groupby("run_id")["seconds"].cumsum() if len(frame) else []
        order = ["run_id", "epoch", "train_loss", "train_acc", "test_loss", "test_acc",
                 "seconds", "wall_time", "images_per_s", "lr"]
        return frame[order].reset_index(drop=True)

    def confusion(self, run_id: str) -> tuple[np.ndarray, list[str]]:
        """The test-set confusion matrix of the run's last finished epoch (rows: true
        class, columns: predicted) and the class names."""
        record = self.run(run_id)
        if record.get("confusion") is None:
            raise ValueError(f"Run {run_id!r} has no finished epoch yet, so no confusion matrix.")
        names = list((record.get("data_meta") or {}).get("class_names") or [])
        return np.asarray(record["confusion"], dtype=np.int64), names

    def load_model(self, run_id: str, device: str = "cpu"):
        """The trained network of a run, in eval mode on ``device``, and its record."""

        from cnncompare.registry import ModelConfig

        record = self.run(run_id)
        if record["epochs_done"] < 1:
            raise ValueError(f"Run {run_id!r} has no finished epoch, so no trained weights.")
        state = self.read_checkpoint(run_id, map_location=device)
        if state is None:
            raise ValueError(
                f"The checkpoint of run {run_id!r} ({self.checkpoint_path(run_id)}) is missing "
                "or unreadable; train the configuration again to recreate it.")
        try:
            model = ModelConfig(**record["model_config"]).build()
            model.load_state_dict(state["model"])
        except (RuntimeError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(
                f"The stored weights of run {run_id!r} do not fit the current model code "
                f"({str(exc).splitlines()[0]}); train it again.") from None
        return model.to(device).eval(), record

    # -- checkpoints ---------------------------------------------------------------------

    def write_checkpoint(self, run_id: str, payload: dict[str, Any]) -> str:
        """Save ``payload`` atomically (temporary file, fsync, rename); returns its sha256."""
        import torch

        target = self.checkpoint_path(run_id)
        fd, tmp = tempfile.mkstemp(prefix=f".{run_id}.", suffix=".tmp", dir=self.checkpoint_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            digest = file_sha256(Path(tmp))
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return digest

    def read_checkpoint(self, run_id: str, map_location: Any = "cpu") -> dict[str, Any] | None:
        """The checkpoint of ``run_id``, or ``None`` (with a warning) when it is unreadable."""
        import torch

        path = self.checkpoint_path(run_id)
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds on a bad file
            _warn(f"The checkpoint of run {run_id} ({path}) is unreadable "
                  f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).")
            return None
        if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
            _warn(f"The checkpoint of run {run_id} ({path}) does not hold a training state.")
            return None
        return state

    # -- validation ----------------------------------------------------------------------

    def finished(self, run_id: str) -> dict[str, Any] | None:
        """The record of ``run_id`` if it is finished and intact; ``None`` otherwise.

        A finished run whose row, epochs or checkpoint is damaged is reported with a
        :class:`StoreWarning` and discarded, so that it is trained again.
        """
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
        run_id = row["run_id"]
        try:
            parsed = _parse(row)
        except (ValueError, TypeError) as exc:
            return f"its row does not parse: {exc}"
        if parsed.get("test_acc") is None or parsed.get("epochs_done") != parsed.get("epochs"):
            return "its row lacks final metrics"
        for key in ("config", "canonical", "model_config", "data_meta"):
            if not isinstance(parsed.get(key), dict):
                return f"its {key} is missing"
        ep = self.epochs([run_id])
        if sorted(ep["epoch"].tolist()) != list(range(1, int(parsed["epochs"]) + 1)):
            return "its per-epoch metrics are incomplete"
        path = self.checkpoint_path(run_id)
        if not path.exists():
            return f"its checkpoint {path} is missing"
        if row.get("checkpoint_sha256") and file_sha256(path) != row["checkpoint_sha256"]:
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
        if not self.has(run_id):
            raise ValueError(f"No stored run with id {run_id!r} in {self.db_path}.")
        self.discard(run_id)


def _encode(key: str, value: Any) -> Any:
    if key in _JSON_FIELDS:
        return None if value is None else json.dumps(value, sort_keys=True, default=_clean)
    return _clean(value)


def _parse(row: dict[str, Any]) -> dict[str, Any]:
    record = dict(row)
    for key in _JSON_FIELDS:
        if record.get(key) is not None:
            record[key] = json.loads(record[key])
    return record


def _insert_epoch(conn: sqlite3.Connection, run_id: str, rec: dict[str, Any]) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO epochs (run_id, epoch, {', '.join(EPOCH_FIELDS)}) "
        f"VALUES (?, ?, {', '.join('?' * len(EPOCH_FIELDS))})",
        (run_id, int(rec["epoch"]), *(_clean(rec.get(k)) for k in EPOCH_FIELDS)))


def _summary_from(history: list[dict[str, Any]]) -> dict[str, Any]:
    if not history:
        return {"epochs_done": 0, "seconds": 0.0}
    last = history[-1]
    accs = [h["test_acc"] for h in history if h.get("test_acc") is not None]
    return {
        "epochs_done": int(last["epoch"]),
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_acc"),
        "test_loss": last.get("test_loss"),
        "test_acc": last.get("test_acc"),
        "best_test_acc": max(accs) if accs else None,
        "seconds": float(sum(h.get("seconds") or 0.0 for h in history)),
    }
