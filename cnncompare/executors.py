"""Where a study's runs train: in this process (``local``) or on a Ray cluster (``ray``).

:func:`cnncompare.studies.run_grid` takes an executor; this module names the two
(:data:`EXECUTORS`, :func:`make_executor`) and holds the Ray one, :class:`RayExecutor`.

Ray core tasks, not Ray Tune
    One remote task trains one run with the project's own trainer
    (:func:`cnncompare.training.train_or_load`), so a run has the same id, the same
    checkpoints and the same per-epoch metrics wherever it trains. Tune would add what a
    study does not use (search algorithms, schedulers, its own trial names) and expects
    its checkpoints in a ``storage_path`` every node can reach (a shared or cloud file
    system, since Ray 2.7); here the results store belongs to the driver alone, so plain
    tasks that hand their results back fit better.

The driver owns the results store
    Each task trains in a temporary store of its own on the worker (nothing shared but
    the data root, which must exist at the same path on every worker). After every epoch
    the worker sends the run's record and the bytes of the checkpoint it has just written
    to a small reports actor placed on the driver's node, without waiting for it (a Ray
    task blocked in ``ray.get``, as in ``ray.util.queue.Queue.put``, lends its CPU to the
    next task, which then runs more trainings at once than there are CPUs). The driver
    drains the actor and repeats the trainer's own writes in its store: the checkpoint
    through :meth:`~cnncompare.store.ResultsStore.write_checkpoint` (atomic: temporary
    file, fsync, rename), then the epoch and the run's summary in one transaction, the
    last epoch with ``status = finished``. So the finished record is written once, after
    its checkpoint, exactly as a local run writes it, and the store never holds a
    finished run whose checkpoint is missing.

Resuming
    The checkpoint travels back with every epoch, so the driver always holds the newest
    one. When a run is sent, the driver ships its stored checkpoint (if any) with the
    task; the worker places it in its temporary store and the trainer resumes from its
    last epoch, as it does locally. A run interrupted on a worker (Ctrl-C, a lost node, a
    killed driver) therefore resumes from its last reported epoch on any worker when the
    study is run again, and no worker needs to be reachable or alive afterwards. The
    price is one checkpoint over the network per epoch (weights, optimizer state and the
    selected epoch's weights: about 4x the parameters in float32), small next to an
    epoch of training for these networks.

Which runs are sent
    The run ids are resolved on the cluster (one short task with the resources of a run,
    so a GPU worker resolves the precision it will train in); runs the driver's store
    holds finished are answered from it and not sent. The driver holds each sent run's
    lock while it trains, so a local ``train`` of the same configuration waits for it.

Resources
    Every task asks Ray for ``cpus_per_run`` CPUs (and ``gpus_per_run`` GPUs, then the
    device is CUDA) and sets torch's thread count to its CPU share (Ray sets
    ``OMP_NUM_THREADS=1`` in its workers). A run that raises is reported with its error
    and the others go on; a run whose worker died is sent again (from its newest
    checkpoint) up to ``retries`` times.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnncompare.studies import GridProgress, TrainOptions
    from cnncompare.train_config import TrainConfig

# The package's own modules (studies, train_config: torch, pandas, scipy) are imported in
# the functions that need them: the reports actor's process imports this module and
# stays light (4 s less to start), and so does the command line's start.

EXECUTORS = ("local", "ray")
"""The executors a study can run on: in this process, or on a Ray cluster."""

RAY_ADDRESS_ENV = "CNNCOMPARE_RAY_ADDRESS"
"""The Ray cluster the Train page offers (``auto``, ``HOST:6379`` or ``ray://HOST:10001``)."""

INSTALL_HINT = ("pip install 'cnncompare[ray]' (or, in a checkout, "
                "pip install -r requirements-ray.txt)")

BATCH_REPORT_SECONDS = 1.0
"""A worker reports its batch progress at most this often (epochs are always reported)."""

POLL_SECONDS = 0.2
"""How often the driver looks for finished tasks and drains the reports."""

_ROW_FIELDS = ("model", "dataset", "epochs", "params", "device", "precision", "config",
               "settings", "canonical", "model_config", "data_meta", "versions")
"""The run-row fields the trainer writes when a run begins (see ``training._train``)."""


class RayNotInstalled(ValueError):
    """The Ray executor was asked for where Ray is not installed."""


def ray_installed() -> bool:
    """Whether ``ray`` can be imported here (without importing it: it is slow)."""
    import importlib.util
    import sys

    if "ray" in sys.modules:
        return sys.modules["ray"] is not None
    return importlib.util.find_spec("ray") is not None


def import_ray():
    """The ``ray`` module, or :class:`RayNotInstalled` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayNotInstalled(
            f"The ray executor needs Ray, which is not installed here. Install it with "
            f"{INSTALL_HINT}.") from None
    return ray


def make_executor(name: str = "local", *, address: str | None = None, cpus_per_run: int = 1,
                  gpus_per_run: float = 0.0, num_cpus: int | None = None) -> Any:
    """The executor called ``name`` (:data:`EXECUTORS`). For ``ray``: ``address`` of a
    running cluster (``auto``, ``HOST:6379``, ``ray://HOST:10001``; ``None`` starts a local
    Ray with ``num_cpus`` CPUs, all by default) and the resources of one run.
    ``ValueError`` for an unknown name or bad resources; :class:`RayNotInstalled` when
    Ray is asked for and missing."""
    if name == "local":
        from cnncompare.studies import LocalExecutor  # light start: see the module top

        return LocalExecutor()
    if name != "ray":
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    return RayExecutor(address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                       num_cpus=num_cpus)


def ray_address() -> str | None:
    """The Ray cluster the Train page offers (:data:`RAY_ADDRESS_ENV`), or ``None``."""
    return os.environ.get(RAY_ADDRESS_ENV, "").strip() or None


def ray_executor_for(device: str, address: str | None = None) -> RayExecutor:
    """The Train page's Ray executor: the cluster at ``address`` (``None``: a local Ray on
    this machine's CPUs), one CPU per run, and one GPU per run when ``device`` is cuda."""
    return RayExecutor(address=address, gpus_per_run=1.0 if device == "cuda" else 0.0)


# ---------------------------------------------------------------------------------------
# What runs on a worker


def _resolve_on_worker(configs: list[dict[str, Any]], options: dict[str, Any],
                       device: str) -> list[tuple[str, str]]:
    """Each configuration's run id where the runs will train, or its error:
    ``("id", run_id)`` or ``("error", text)``."""
    from cnncompare.train_config import TrainConfig  # light start: see the module top

    out = []
    for d in configs:
        try:
            cfg = TrainConfig.from_dict(d)
            out.append(("id", cfg.key(options["data_root"], options["download"], device=device,
                                      allowed_roots=options["allowed_roots"])))
        except Exception as exc:  # noqa: BLE001 - reported for that run only
            out.append(("error", f"{type(exc).__name__}: {exc}"))
    return out


class _Reports:
    """The actor the workers report to and the driver drains: a list, in the order each
    worker sent its reports (a synchronous actor runs one caller's calls in order)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        self.items.append(item)

    def take(self) -> list[Any]:
        items, self.items = self.items, []
        return items


def _train_on_worker(index: int, config: dict[str, Any], run_id: str,
                     options: dict[str, Any], checkpoint: bytes | None, threads: int,
                     reports: Any) -> dict[str, Any]:
    """Train one run in a temporary store on this worker, reporting to ``reports`` (a
    :class:`_Reports` actor, never waited for): ``("start", index, info)`` first, then
    ``("event", index, event)`` for the trainer's status and (throttled) batch events,
    ``("epoch", index, payload)`` after each epoch, with the run's record and the
    checkpoint's bytes, and ``("end", index, outcome)`` last, with what it returns: how
    the call went (``reports``: how many it sent, so the driver knows when it has them
    all) and, when no epoch was reported (the shipped checkpoint already held every
    epoch), the record and checkpoint to close the run with.
    """
    import torch

    from cnncompare.store import ResultsStore
    from cnncompare.train_config import TrainConfig
    from cnncompare.training import train_or_load

    torch.set_num_threads(max(1, int(threads)))
    count = {"reports": 0, "epochs": 0, "batch_at": 0.0}

    def report(kind: str, payload: Any) -> None:
        reports.add.remote((kind, index, payload))
        count["reports"] += 1

    report("start", {"host": os.uname().nodename, "pid": os.getpid()})
    cfg = TrainConfig.from_dict(config)
    with tempfile.TemporaryDirectory(prefix="cnncompare-ray-") as tmp:
        store = ResultsStore(tmp)
        found = cfg.key(options["data_root"], options["download"], device=options["device"],
                        allowed_roots=options["allowed_roots"])
        if found != run_id:
            raise ValueError(
                f"This worker resolves the run to id {found}, not {run_id} as the study "
                f"planned: the cluster's workers train in different precisions. Set --amp "
                f"off (or on), or use workers of one kind.")
        if checkpoint is not None:
            store.checkpoint_path(run_id).write_bytes(checkpoint)
        def progress(event: dict[str, Any]) -> None:
            kind = event.get("kind")
            if kind == "epoch":
                count["epochs"] += 1
                report("epoch", {
                    "event": event, "record": dataclasses.replace(store.run(run_id),
                                                                  history=()),
                    "checkpoint": store.checkpoint_path(run_id).read_bytes()})
            elif kind == "batch":
                now = time.monotonic()
                if now - count["batch_at"] >= BATCH_REPORT_SECONDS:
                    count["batch_at"] = now
                    report("event", event)
            elif kind == "status":
                report("event", event)

        result = train_or_load(cfg, store=store, progress=progress, **options)
        out = {"run_id": result.run_id, "status": result.status,
               "resumed_from": result.resumed_from, "seconds": result.seconds,
               "reports": count["reports"] + 1}
        if result.status == "finished" and not count["epochs"]:
            out["record"] = dataclasses.replace(result.record, history=())
            out["checkpoint"] = store.checkpoint_path(run_id).read_bytes()
        # The last report: the driver counts the run done in the order the reports came,
        # before the next run on this worker says it started.
        report("end", out)
        return out


# ---------------------------------------------------------------------------------------
# The driver's side


class _Mirror:
    """Repeats a worker's writes of one run in the driver's store, in the trainer's
    order: the row (first report only), then per epoch the checkpoint and the epoch."""

    def __init__(self, store: Any, run_id: str):
        self.store, self.run_id = store, run_id
        self.opened = False
        self.epochs = 0

    def epoch(self, record: Any, checkpoint: bytes, finished: bool) -> None:
        import torch

        payload = torch.load(io.BytesIO(checkpoint), map_location="cpu", weights_only=True)
        history = [dict(h) for h in payload["history"]]
        if not self.opened:
            fields = {k: getattr(record, k) for k in _ROW_FIELDS}
            self.store.resume(self.run_id, history[:-1], fields)
            self.opened = True
        digest = self.store.write_checkpoint(self.run_id, payload)
        extra = {"checkpoint_sha256": digest}
        if record.confusion is not None:
            extra.update(confusion=record.confusion, per_class_acc=record.per_class_acc)
        if finished:
            extra["status"] = "finished"
        self.store.record_epoch(self.run_id, history, extra)
        self.epochs += 1

    def stopped(self) -> None:
        """The worker stopped without finishing: the run is resumable from its epochs."""
        if self.opened:
            self.store.set_status(self.run_id, "unfinished")


@dataclasses.dataclass
class _Sent:
    """A run on its way: its place in the grid, its id, its lock and its mirror."""

    index: int
    config: TrainConfig
    run_id: str
    lock: Any
    mirror: _Mirror
    started: float | None = None
    attempts: int = 1
    reports: int = 0  # reports received from the current attempt
    ended: bool = False  # its result is in


def _done_event(result: Any) -> dict[str, Any]:
    return {"kind": "done", "run_id": result.run_id, "status": result.status,
            "cached": result.cached, "epoch": result.epochs_done, "epochs": result.epochs,
            "batch": 0, "batches": 0, "test_acc": result.test_acc,
            "selected_epoch": result.selected_epoch, "seconds": result.seconds,
            "train_seconds": result.train_seconds}


class RayExecutor:
    """Trains a study's runs as Ray tasks, one run per task; see the module docstring.

    ``address``: a running cluster (``auto``, ``HOST:6379``, ``ray://HOST:10001``) or
    ``None`` to start a local Ray with ``num_cpus`` CPUs (all by default); a Ray this
    process has started already is used as it is, and left running. ``cpus_per_run``
    and ``gpus_per_run`` are the resources one run asks for (with GPUs the device is
    CUDA). ``retries``: how many times a run whose worker died is sent again.

    After :meth:`run`: :attr:`sent` lists the run ids sent to the cluster (a run sent
    again counts again) and :attr:`ray_start_seconds` how long connecting (or starting
    a local Ray) took.
    """

    def __init__(self, address: str | None = None, *, cpus_per_run: int = 1,
                 gpus_per_run: float = 0.0, num_cpus: int | None = None, retries: int = 1):
        if isinstance(cpus_per_run, bool) or not isinstance(cpus_per_run, int) \
                or cpus_per_run < 1:
            raise ValueError(f"cpus per run must be a whole number of at least 1, "
                             f"got {cpus_per_run!r}")
        if not isinstance(gpus_per_run, (int, float)) or isinstance(gpus_per_run, bool) \
                or not 0 <= gpus_per_run <= 64 or not math.isfinite(gpus_per_run):
            raise ValueError(f"gpus per run must be a number from 0 to 64, got {gpus_per_run!r}")
        self.ray = import_ray()
        self.address = address or None
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = float(gpus_per_run)
        self.num_cpus = num_cpus
        self.retries = retries
        self.sent: list[str] = []
        self.ray_start_seconds: float | None = None

    # -- connecting --------------------------------------------------------------------

    @contextlib.contextmanager
    def _connected(self):
        """Ray, started or joined for the call; shut down afterwards only if this call
        started it."""
        ray = self.ray
        t0 = time.perf_counter()
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address is None:
                kwargs["num_cpus"] = self.num_cpus
            try:
                ray.init(address=self.address, **kwargs)
            except ConnectionError as exc:
                raise ValueError(
                    f"No Ray cluster answers at {self.address}: start one with "
                    f"`ray start --head` (see README, On a cluster), or leave out the address "
                    f"to start a local Ray. Ray said: {str(exc).splitlines()[0]}") from None
            started = True
        self.ray_start_seconds = time.perf_counter() - t0
        try:
            yield ray
        finally:
            if started:
                ray.shutdown()

    def _device(self, options: TrainOptions) -> str:
        if self.gpus_per_run > 0 and options.device == "auto":
            return "cuda"
        return options.device

    def _worker_options(self, options: TrainOptions) -> dict[str, Any]:
        kw = options.kwargs()
        kw["device"] = self._device(options)
        kw["allowed_roots"] = (list(options.allowed_roots)
                               if options.allowed_roots is not None else None)
        return kw

    # -- running -----------------------------------------------------------------------

    def run(self, configs: Sequence[TrainConfig], *, store: Any, options: TrainOptions,
            progress: GridProgress | None = None, cancel: Any = None) -> list[Any]:
        """Train ``configs`` on the cluster; one entry per configuration, in order: its
        :class:`~cnncompare.training.RunResult`, the exception it raised, or ``None``
        when ``cancel`` stopped the grid before it started."""
        from cnncompare.store import ResultsStore
        from cnncompare.studies import _cancelled

        store = store if store is not None else ResultsStore()
        configs = list(configs)
        out: list[Any] = [None] * len(configs)
        tell = progress or (lambda index, event: None)
        if not configs:
            return out
        with self._connected() as ray:
            resources = {"num_cpus": self.cpus_per_run, "num_gpus": self.gpus_per_run,
                         "max_retries": 0}
            worker_options = self._worker_options(options)
            ids = ray.get(ray.remote(_resolve_on_worker).options(**resources).remote(
                [c.as_dict() for c in configs], worker_options, worker_options["device"]))
            to_send = []
            for index, (cfg, (kind, value)) in enumerate(zip(configs, ids, strict=True)):
                if kind == "error":
                    out[index] = _failure(value)
                    tell(index, {"kind": "start"})
                    tell(index, {"kind": "failed", "error": value})
                    continue
                hit = store.finished(value)
                if hit is not None:
                    out[index] = self._cached(cfg, hit, index, tell)
                else:
                    to_send.append((index, cfg, value))
            if to_send:
                self._train(ray, to_send, store, worker_options, resources, out, tell,
                            _cancelled(cancel))
        return out

    def _cached(self, cfg: TrainConfig, record: Any, index: int,
                tell: Callable[[int, dict[str, Any]], None]) -> Any:
        from cnncompare.training import RunResult

        result = RunResult(record, cfg, "finished", True, 0.0)
        tell(index, {"kind": "start"})
        tell(index, _done_event(result))
        tell(index, {"kind": "result", "result": result})
        return result

    def _train(self, ray: Any, to_send: list[tuple[int, TrainConfig, str]], store: Any,
               worker_options: dict[str, Any], resources: dict[str, Any], out: list[Any],
               tell: Callable[[int, dict[str, Any]], None],
               is_cancelled: Callable[[], bool]) -> None:
        from filelock import Timeout
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        reports = ray.remote(_Reports).options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)
        ).remote()
        task = ray.remote(_train_on_worker).options(**resources)
        pending: dict[Any, _Sent] = {}
        by_index: dict[int, _Sent] = {}

        def send(sent: _Sent) -> None:
            state = store.read_checkpoint(sent.run_id) if store.has(sent.run_id) else None
            data = (store.checkpoint_path(sent.run_id).read_bytes()
                    if state is not None else None)
            ref = task.remote(sent.index, sent.config.as_dict(), sent.run_id, worker_options,
                              data, self.cpus_per_run, reports)
            pending[ref] = sent
            self.sent.append(sent.run_id)

        try:
            for index, cfg, run_id in to_send:
                lock = store.lock(run_id)
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    message = (f"Another process is training run {run_id}; run the study "
                               f"again once it has finished.")
                    out[index] = _failure(message)
                    tell(index, {"kind": "start"})
                    tell(index, {"kind": "failed", "error": message})
                    continue
                sent = _Sent(index, cfg, run_id, lock, _Mirror(store, run_id))
                by_index[index] = sent
                send(sent)
            cancelling = False
            while pending:
                if not cancelling and is_cancelled():
                    cancelling = True
                    for ref in pending:
                        ray.cancel(ref)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                self._drain(ray, reports, by_index, out, tell)
                for ref in ready:
                    sent = pending.pop(ref)
                    self._drain_run(ray, ref, reports, sent, by_index, out, tell)
                    retry = self._collect(ray, ref, sent, out, tell, cancelling)
                    if retry:
                        sent.attempts += 1
                        send(sent)
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            for sent in by_index.values():
                if out[sent.index] is None or isinstance(out[sent.index], BaseException):
                    sent.mirror.stopped()
                sent.lock.release()
            with contextlib.suppress(Exception):
                ray.kill(reports)

    def _drain_run(self, ray: Any, ref: Any, reports: Any, sent: _Sent,
                   by_index: dict[int, _Sent], out: list[Any],
                   tell: Callable[[int, dict[str, Any]], None], wait: float = 60.0) -> None:
        """Apply the reports waiting, and for a task that returned, wait (at most
        ``wait`` seconds) until every report it sent has arrived."""
        self._drain(ray, reports, by_index, out, tell)
        try:
            expected = ray.get(ref)["reports"]
        except Exception:  # noqa: BLE001 - a failed task: what arrived is all there is
            return
        deadline = time.monotonic() + wait
        while sent.reports < expected and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS / 4)
            self._drain(ray, reports, by_index, out, tell)

    def _drain(self, ray: Any, reports: Any, by_index: dict[int, _Sent], out: list[Any],
               tell: Callable[[int, dict[str, Any]], None]) -> None:
        """Apply every report waiting in the reports actor, in order."""
        for kind, index, payload in ray.get(reports.take.remote()):
            sent = by_index[index]
            sent.reports += 1
            if kind == "start":
                if sent.started is None:
                    sent.started = time.perf_counter()
                    tell(index, {"kind": "start"})
            elif kind == "event":
                tell(index, payload)
            elif kind == "epoch":
                event = payload["event"]
                sent.mirror.epoch(payload["record"], payload["checkpoint"],
                                  finished=event["epoch"] == event["epochs"])
                tell(index, event)
            elif kind == "end" and not sent.ended:
                self._finish(sent, payload, out, tell)

    def _collect(self, ray: Any, ref: Any, sent: _Sent, out: list[Any],
                 tell: Callable[[int, dict[str, Any]], None], cancelling: bool) -> bool:
        """The outcome of a finished task into ``out``; True when the run is to be sent
        again (its worker died)."""
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        index = sent.index
        try:
            summary = ray.get(ref)
        except TaskCancelledError:
            out[index] = self._cancelled_result(sent) if sent.started is not None else None
            return False
        except RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
            if cancelling and isinstance(cause, KeyboardInterrupt | TaskCancelledError):
                out[index] = self._cancelled_result(sent)
                return False
            out[index] = cause
            tell(index, {"kind": "failed", "error": _error_text(cause)})
            return False
        except RayError as exc:  # the worker or its node died: send it again, or report
            if not cancelling and sent.attempts <= self.retries:
                tell(index, {"kind": "status", "run_id": sent.run_id, "level": "warning",
                             "message": f"The worker training this run stopped "
                                        f"({type(exc).__name__}); sending it again from its "
                                        f"newest checkpoint.",
                             "epoch": 0, "epochs": sent.config.epochs, "batch": 0,
                             "batches": 0})
                sent.started, sent.reports, sent.ended = None, 0, False
                return True
            out[index] = exc
            tell(index, {"kind": "failed", "error": _error_text(exc)})
            return False
        if not sent.ended:
            self._finish(sent, summary, out, tell)
        return False

    def _finish(self, sent: _Sent, summary: dict[str, Any], out: list[Any],
                tell: Callable[[int, dict[str, Any]], None]) -> None:
        """A task's outcome (what it returned) into ``out`` and the progress."""
        from cnncompare.training import RunResult

        sent.ended = True
        index, store = sent.index, sent.mirror.store
        if summary["status"] != "finished":
            out[index] = self._cancelled_result(sent)
            return
        if "record" in summary:  # nothing left to train: close the run from the checkpoint
            sent.mirror.epoch(summary["record"], summary["checkpoint"], finished=True)
        seconds = time.perf_counter() - sent.started if sent.started else summary["seconds"]
        result = RunResult(store.run(sent.run_id), sent.config, "finished", False, seconds,
                           summary["resumed_from"])
        out[index] = result
        tell(index, _done_event(result))
        tell(index, {"kind": "result", "result": result})

    def _cancelled_result(self, sent: _Sent) -> Any:
        from cnncompare.store import RunRecord
        from cnncompare.training import RunResult

        sent.mirror.stopped()
        store = sent.mirror.store
        try:
            record = store.run(sent.run_id)
        except ValueError:
            record = RunRecord(sent.run_id, sent.config.model, sent.config.dataset,
                               "unfinished", 0, sent.config.epochs)
        return RunResult(record, sent.config, "cancelled", False, 0.0)


class RunFailed(RuntimeError):
    """A run that failed before it could start on a worker (its error as text)."""


def _failure(text: str) -> RunFailed:
    return RunFailed(text)


def _error_text(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


# ---------------------------------------------------------------------------------------
# Progress over a whole grid


@dataclasses.dataclass
class GridTally:
    """Counts over a grid from its progress events, for a one-line status: runs done
    (trained now or stored before), running, failed, and the time left.

    The time left is the mean wall time of the runs trained so far, times the runs not
    done, divided by how many ran at once at most (the cluster's parallelism as seen)."""

    total: int
    done: int = 0
    cached: int = 0
    failed: int = 0
    running: set[int] = dataclasses.field(default_factory=set)
    peak: int = 0
    seconds: list[float] = dataclasses.field(default_factory=list)
    _started: dict[int, float] = dataclasses.field(default_factory=dict)

    def update(self, index: int, event: dict[str, Any], now: float | None = None) -> bool:
        """Count one event; True when the counts changed."""
        now = time.monotonic() if now is None else now
        kind = event.get("kind")
        before = (self.done, self.failed, len(self.running))
        if kind == "start":
            self.running.add(index)
            self._started.setdefault(index, now)
            self.peak = max(self.peak, len(self.running))
        elif kind == "result":
            self.running.discard(index)
            result = event["result"]
            if getattr(result, "status", "finished") == "finished":
                self.done += 1
                if getattr(result, "cached", False):
                    self.cached += 1
                elif index in self._started:
                    self.seconds.append(now - self._started[index])
        elif kind == "failed":
            self.running.discard(index)
            self.failed += 1
        return before != (self.done, self.failed, len(self.running))

    def seconds_left(self) -> float | None:
        if not self.seconds:
            return None
        left = self.total - self.done - self.failed
        return sum(self.seconds) / len(self.seconds) * left / max(1, self.peak)

    def line(self) -> str:
        from cnncompare.formatting import duration

        counts = {"done": self.done, "total": self.total, "cached": self.cached,
                  "running": len(self.running), "failed": self.failed}
        left = self.seconds_left()
        if left is not None and self.done + self.failed < self.total:
            return ("{done} of {total} runs done ({cached} stored before), {running} running, "
                    "{failed} failed; about {left} left.").format(left=duration(left), **counts)
        return ("{done} of {total} runs done ({cached} stored before), {running} running, "
                "{failed} failed.").format(**counts)
