"""The results store under faults the tests build themselves: a full disk, a read-only
home, I/O errors and busy locks, a database with damaged pages, checkpoints with the right
key and the wrong contents, temporary files left by killed writers.

How each fault is made. The project's container runs the tests as root, where ``chmod``
does not stop a write, so:

- real faults: a tmpfs filled to its last byte, and a read-only bind mount of the home,
  each made inside a private mount namespace (``unshare -m``: the mounts vanish with the
  process; skipped, with the reason, where the namespace or the mount is not allowed);
  a home made read-only with ``chmod`` and the CLI run as ``nobody`` (as the user itself
  when the tests do not run as root);
- injected faults, which always run: ``sqlite3.connect`` raising SQLite's own messages
  ("disk I/O error", "database or disk is full", "attempt to write a readonly database",
  "database is locked", "unable to open database file") for every connection that could
  write, and a checkpoint write failing with ``ENOSPC``.

Every case checks that the database file is unchanged byte for byte and that nothing was
set aside (``*.damaged-*``), unless SQLite itself proved it damaged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest
import torch

from cnncompare import cache
from cnncompare.cli import main
from cnncompare.store import (
    ResultsStore,
    StoreDamaged,
    StoreUnavailable,
    StoreWarning,
    database_damage,
)
from cnncompare.training import TrainConfig, train_or_load

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--model", "lenet", "--epochs", "2", "--train-size", "200", "--test-size",
         "100", "--device", "cpu"]
"""A tiny run (a few seconds on a CPU); ``--seed 7`` makes a second, not yet stored one."""
CFG = TrainConfig("lenet", epochs=2, train_size=200, test_size=100)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _set_aside(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir() if ".damaged-" in p.name)


def _fake_runs(store: ResultsStore, n: int = 40, epochs: int = 3) -> None:
    """``n`` finished runs of ``epochs`` epochs written through the store's own API (no
    training): enough rows for a database of a few dozen pages."""
    for i in range(n):
        run_id = f"fake{i:03d}"
        store.begin(run_id, {"model": "lenet", "dataset": "digits", "epochs": epochs,
                             "config": {"model": "lenet", "note": "x" * 1500, "i": i},
                             "canonical": {"i": i}, "model_config": {"name": "lenet"}})
        history = []
        for epoch in range(1, epochs + 1):
            history.append({"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5,
                            "val_loss": 0.5, "val_acc": 0.8, "test_loss": 1.0,
                            "test_acc": 0.9, "seconds": 1.0, "lr": 0.1})
            store.record_epoch(run_id, history,
                               {"status": "finished"} if epoch == epochs else None)


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(code: int, err: str, *fragments: str) -> str:
    """The run ended with status 2 and exactly one ``error:`` line, no traceback."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------
# Injected I/O faults: every connection that could write fails, read-only ones work.

IO_FAULTS = [
    ("disk I/O error", "input/output error"),
    ("database or disk is full", "the disk holding it is full"),
    ("attempt to write a readonly database", "read-only"),
    ("unable to open database file", "read-only"),
    ("database is locked", "locked for too long"),
]


def _fail_writable_connections(monkeypatch, message: str, *, reads_too: bool = False) -> None:
    """``sqlite3.connect`` raises ``OperationalError(message)`` for every connection but a
    read-only one (``mode=ro`` URI), or for every connection with ``reads_too``."""
    real = sqlite3.connect

    def connect(database, *args, **kwargs):
        read_only = kwargs.get("uri") and "mode=ro" in str(database)
        if str(database) != ":memory:" and (reads_too or not read_only):
            raise sqlite3.OperationalError(message)
        return real(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)


@pytest.mark.parametrize(("message", "explained"), IO_FAULTS)
def test_io_faults_change_nothing_and_reads_still_work(cnncompare_home, monkeypatch, capsys,
                                                       message, explained):
    _fake_runs(ResultsStore(), n=5)
    db = cnncompare_home / "results.sqlite"
    before = _sha(db)

    _fail_writable_connections(monkeypatch, message)
    store = ResultsStore()  # opening neither raises nor moves anything
    assert len(store.runs()) == 5 and store.run("fake000").epochs_done == 3
    assert len(store.epochs(["fake000", "fake001"])) == 6
    for write in (store.ensure_writable, lambda: store.set_status("fake000", "x"),
                  lambda: store.discard("fake001")):
        with pytest.raises(StoreUnavailable, match=explained) as info:
            write()
        assert "Nothing was changed or moved" in str(info.value) and "\n" not in str(info.value)

    code, out, err = _cli(capsys, ["runs", "--format", "json"])
    assert code == 0 and len(json.loads(out)) == 5 and not err
    for argv in ([*TRAIN, "--seed", "7"], ["study", "--models", "lenet", "--seeds", "1",
                                               *TRAIN[3:]]):
        code, _, err = _cli(capsys, argv)
        _one_error_line(code, err, str(db), explained)
    assert _sha(db) == before and not _set_aside(cnncompare_home)
    assert sorted(p.name for p in (cnncompare_home / "checkpoints").iterdir()) == []


def test_an_unreadable_home_is_one_message_and_nothing_moves(cnncompare_home, monkeypatch,
                                                             capsys):
    _fake_runs(ResultsStore(), n=3)
    db = cnncompare_home / "results.sqlite"
    before = _sha(db)
    _fail_writable_connections(monkeypatch, "disk I/O error", reads_too=True)
    with pytest.raises(StoreUnavailable, match="could not be read: the system reported"):
        ResultsStore().runs()
    for argv in (["runs"], ["export", "--out", "-"], [*TRAIN, "--seed", "7"]):
        code, _, err = _cli(capsys, argv)
        _one_error_line(code, err, str(db))
    assert _sha(db) == before and not _set_aside(cnncompare_home)


def test_a_full_disk_during_a_checkpoint_write_stops_cleanly_and_resumes(monkeypatch):
    """The disk fills after the first epoch: the run stops with one clear error, keeps
    its first epoch and no temporary file; once there is space it resumes from epoch 2."""
    real_save = torch.save
    calls = []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(StoreUnavailable, match="the disk holding it is full"):
        train_or_load(CFG, device="cpu")
    store = ResultsStore()
    run_id = CFG.resolve(device="cpu").run_id
    assert store.run(run_id).status == "unfinished" and store.run(run_id).epochs_done == 1
    assert [p.name for p in store.checkpoint_dir.iterdir()] == [f"{run_id}.pt"]
    monkeypatch.setattr(torch, "save", real_save)
    again = train_or_load(CFG, device="cpu")
    assert again.status == "finished" and again.resumed_from == 1


# ---------------------------------------------------------------------------------------
# Real faults: a full tmpfs and a read-only bind mount (private mount namespace).

DRIVER = r'''
import hashlib, json, os, subprocess, sys
spec = json.loads(sys.argv[1])
home = spec["home"]

def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)

def digest(path):
    try:
        return hashlib.sha256(open(path, "rb").read()).hexdigest()
    except OSError:
        return None

def cli(argv):
    p = subprocess.run([sys.executable, "-m", "cnncompare", *argv], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, CNNCOMPARE_HOME=home))
    return {"argv": argv, "rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}

try:
    if spec["mode"] == "full":
        sh("mount", "-t", "tmpfs", "-o", "size=4096k", "tmpfs", spec["mount"])
        sh("cp", "-a", home + "/.", spec["mount"])
        home = spec["mount"]
        for name, block in (("fill", 65536), ("fill2", 512), ("fill3", 1)):
            try:
                with open(os.path.join(home, name), "wb") as f:
                    while True:
                        f.write(b"\0" * block)
                        f.flush()
            except OSError:
                pass
    else:
        sh("mount", "--bind", home, home)
        sh("mount", "-o", "remount,ro,bind", home, home)
except (OSError, subprocess.CalledProcessError) as exc:
    print(json.dumps({"skip": f"cannot mount here: {exc}"}))
    sys.exit(0)
db = os.path.join(home, "results.sqlite")
out = {"before": digest(db), "commands": [cli(a) for a in spec["commands"]]}
out["after"] = digest(db)
out["files"] = sorted(os.listdir(home))
if spec["mode"] == "full":  # space freed: everything works again, nothing was lost
    for name in ("fill", "fill2", "fill3"):
        os.unlink(os.path.join(home, name))
    out["freed"] = cli(spec["after_freeing"])
    import sqlite3
    with sqlite3.connect(db) as conn:
        out["runs_after_freeing"] = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
print(json.dumps(out))
'''


def _in_mount_namespace(spec: dict, tmp_path: Path) -> dict:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: no private mount namespace")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here ({probe.stderr.strip()}); the injected "
                    "faults above cover the same paths")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.run(["unshare", "-m", sys.executable, str(driver), json.dumps(spec)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    if "skip" in result:
        pytest.skip(result["skip"])
    return result


@pytest.mark.parametrize(("mode", "explained"), [("full", "the disk holding it is full"),
                                                 ("read-only", "read-only")])
def test_real_full_disk_and_read_only_home(cnncompare_home, tmp_path, capsys, mode, explained):
    code, _, _ = _cli(capsys, [*TRAIN, "--format", "json"])
    assert code == 0
    stored = json.loads(_cli(capsys, ["runs", "--format", "json"])[1])
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    spec = {"home": str(cnncompare_home), "mode": mode, "mount": str(mount),
            "commands": [["runs", "--format", "json"], ["export", "--out", "-"],
                         [*TRAIN, "--format", "json"], [*TRAIN, "--seed", "7"]],
            "after_freeing": [*TRAIN, "--seed", "7"]}
    result = _in_mount_namespace(spec, tmp_path)
    runs, export, cached, new = result["commands"]
    assert result["before"] == result["after"] is not None
    assert not [f for f in result["files"] if ".damaged-" in f]
    assert runs["rc"] == 0 and json.loads(runs["stdout"]) == stored and not runs["stderr"]
    assert export["rc"] == 0 and export["stdout"].count("\n") == 2  # header and one run
    assert cached["rc"] == 0 and json.loads(cached["stdout"])["cached"] is True
    _one_error_line(new["rc"], new["stderr"], "results.sqlite", explained,
                    "Nothing was changed or moved")
    if mode == "full":
        assert result["freed"]["rc"] == 0, result["freed"]["stderr"]
        assert result["runs_after_freeing"] == 2  # the first run is still there


def test_a_read_only_folder_for_an_ordinary_user(capsys):
    """``chmod`` a home read-only and run the CLI as a user it binds (``nobody`` when the
    tests run as root, where chmod would not stop a write)."""
    base = Path(tempfile.mkdtemp(prefix="cnncompare-ro-", dir="/tmp"))
    try:
        home = base / "home"
        env = dict(os.environ, CNNCOMPARE_HOME=str(home), HOME=str(base))
        subprocess.run([sys.executable, "-m", "cnncompare", *TRAIN], env=env, check=True,
                       capture_output=True, cwd=REPO, timeout=300)
        db = home / "results.sqlite"
        before = _sha(db)
        for path in [home, *home.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        base.chmod(0o755)
        user = 65534 if os.geteuid() == 0 else None
        if user is None and os.access(home, os.W_OK):
            pytest.skip("chmod does not stop this user's writes")
        if user is not None:
            try:
                subprocess.run([sys.executable, "-c", "import cnncompare"], cwd=REPO,
                               user=user, group=user, check=True, capture_output=True)
            except (OSError, subprocess.CalledProcessError) as exc:
                pytest.skip(f"user nobody cannot run this Python ({exc}); the read-only "
                            "bind mount and the injected faults cover the same paths")

        def cli(*argv):
            return subprocess.run([sys.executable, "-m", "cnncompare", *argv], env=env,
                                  capture_output=True, text=True, cwd=REPO, timeout=300,
                                  user=user, group=user)

        runs = cli("runs", "--format", "json")
        assert runs.returncode == 0, runs.stderr
        assert [r["model"] for r in json.loads(runs.stdout)] == ["lenet"]
        new = cli(*TRAIN, "--seed", "7")
        _one_error_line(new.returncode, new.stderr, "read-only", str(db))
        assert _sha(db) == before and not _set_aside(home)
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# A database whose header is valid and whose middle pages are damaged.


def _damage_middle_pages(db: Path) -> bytes:
    """Overwrite two pages in the middle of the file (not the header page) with a
    pattern; returns the damaged file's bytes."""
    size = db.stat().st_size
    pages = size // 4096
    assert pages >= 10, pages
    with open(db, "r+b") as f:
        for page in (pages // 2, pages // 2 + 1):
            f.seek(page * 4096)
            f.write(bytes([0xA5]) * 4096)
    return db.read_bytes()


@pytest.fixture
def damaged_home(cnncompare_home) -> tuple[Path, bytes]:
    _fake_runs(ResultsStore(), n=40)
    db = cnncompare_home / "results.sqlite"
    return cnncompare_home, _damage_middle_pages(db)


def test_a_damaged_database_is_reported_by_readers_and_recovered_once(damaged_home, capsys):
    home, damaged = damaged_home
    db = home / "results.sqlite"
    assert database_damage(db) is not None  # SQLite itself says so
    store = ResultsStore()  # opening: no warning, nothing moved
    with pytest.raises(StoreDamaged, match="is damaged .*python -m cnncompare repair"):
        store.runs()
    for argv in (["runs"], ["export", "--out", "-"]):
        code, _, err = _cli(capsys, argv)
        _one_error_line(code, err, str(db), "python -m cnncompare repair")
    assert db.read_bytes() == damaged and not _set_aside(home)

    code, _, err = _cli(capsys, ["repair"])
    assert code == 0 and "was damaged" in err and "Traceback" not in err
    salvaged = int(err.split(" run(s)")[0].rsplit(" ", 1)[1])
    assert 0 < salvaged <= 40
    (aside,) = _set_aside(home)
    assert (home / aside).read_bytes() == damaged  # the user's file, byte for byte
    assert database_damage(db) is None
    code, out, _ = _cli(capsys, ["runs", "--format", "json"])
    assert code == 0 and len(json.loads(out)) == salvaged
    listed = ResultsStore().epochs([r["run_id"] for r in json.loads(out)])
    assert len(listed) == 3 * salvaged  # each salvaged run keeps its epochs
    code, _, err = _cli(capsys, ["repair"])
    assert code == 0 and "intact" in err and _set_aside(home) == [aside]  # once


def test_a_database_cut_short_is_salvaged_as_far_as_it_reads(cnncompare_home):
    store = ResultsStore()
    _fake_runs(store, n=40)
    db = store.db_path
    os.truncate(db, db.stat().st_size // 2)  # a copy that stopped half way
    cut = db.read_bytes()
    with pytest.raises(StoreDamaged, match="malformed"):
        ResultsStore().runs()
    assert db.read_bytes() == cut and not _set_aside(cnncompare_home)
    with pytest.warns(StoreWarning, match=r"\d+ run\(s\) of the 40 it indexes"):
        report = ResultsStore().recover()
    salvaged = int(report.split(" run(s)")[0].rsplit(" ", 1)[1])
    assert 0 < salvaged < 40 and len(ResultsStore().runs()) == salvaged
    (aside,) = _set_aside(cnncompare_home)
    assert (cnncompare_home / aside).read_bytes() == cut and database_damage(db) is None


def test_training_recovers_a_damaged_database_before_it_writes(damaged_home):
    home, _ = damaged_home
    with pytest.warns(StoreWarning, match="was damaged"):
        result = train_or_load(CFG, device="cpu")
    assert result.status == "finished" and len(_set_aside(home)) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to report any more
        store = ResultsStore()
        assert store.run(result.run_id).status == "finished"
        assert train_or_load(CFG, device="cpu").cached


# ---------------------------------------------------------------------------------------
# Checkpoints with the right key and the wrong contents.


@pytest.fixture(scope="module")
def one_epoch_home(tmp_path_factory) -> tuple[Path, float]:
    """A home holding CFG stopped after its first epoch, and the test accuracy of a clean,
    uninterrupted run of CFG."""
    mp = pytest.MonkeyPatch()
    try:
        clean = tmp_path_factory.mktemp("clean")
        mp.setenv("CNNCOMPARE_HOME", str(clean))
        clean_acc = train_or_load(CFG, device="cpu").test_acc
        home = tmp_path_factory.mktemp("one-epoch")
        mp.setenv("CNNCOMPARE_HOME", str(home))
        store = ResultsStore()
        stopped = train_or_load(CFG, device="cpu",
                                cancel=lambda: len(store.epochs(
                                    CFG.resolve(device="cpu").run_id)) >= 1)
        assert stopped.status == "cancelled" and stopped.epochs_done == 1
    finally:
        mp.undo()
    return home, clean_acc


def _wrong_shape(state):
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3)


def _wrong_optimizer_tensor(state):
    entry = next(iter(state["optimizer"]["state"].values()))
    key = next(k for k in entry if k != "step")
    entry[key] = torch.zeros(7)


def _bad_rng(state):
    state["rng"]["cpu"] = torch.zeros(10)


def _history_of_strings(state):
    state["history"] = ["epoch one"]


def _string_metrics(state):
    state["history"][0]["test_acc"] = "0.9"


def _epochs_past_the_run(state):
    # "Resuming from epoch 4 of 2": a checkpoint that claims more epochs than the run has
    state["history"] = [dict(state["history"][0], epoch=e) for e in (1, 2, 3)]
    state["epoch"] = 3


def _selected_of_another_network(state):
    state["selected"]["model"] = {"weight": torch.zeros(1)}


BAD_CHECKPOINTS = {
    "wrong tensor shape": (_wrong_shape, "do not fit the network"),
    "missing optimizer state": (lambda s: s.pop("optimizer"), "lacks optimizer"),
    "optimizer tensor of another shape": (_wrong_optimizer_tensor, "optimizer state does not"),
    "bad rng state": (_bad_rng, "random-number-generator"),
    "history of strings": (_history_of_strings, "history is not one record per epoch"),
    "metric as a string": (_string_metrics, "history holds '0.9'"),
    "missing keys": (lambda s: [s.pop(k) for k in ("history", "rng")], "lacks history, rng"),
    "more epochs than the run": (_epochs_past_the_run, "claims epoch 3 of a run of 2"),
    "scheduler off its step": (lambda s: s["scheduler"].update(last_epoch=1),
                               "schedule is not at step"),
    "selected weights of another network": (_selected_of_another_network,
                                            "selected epoch's weights do not fit"),
    "not a dict": ("list", "does not hold a training state"),
    "not a checkpoint": ("bytes", "unreadable"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_an_unusable_checkpoint_is_set_aside_and_the_run_starts_over(one_epoch_home, tmp_path,
                                                                     monkeypatch, case):
    source, clean_acc = one_epoch_home
    home = tmp_path / "home"
    shutil.copytree(source, home)
    monkeypatch.setenv("CNNCOMPARE_HOME", str(home))
    store = ResultsStore()
    run_id = CFG.resolve(device="cpu").run_id
    path = store.checkpoint_path(run_id)
    change, reason = BAD_CHECKPOINTS[case]
    if change == "list":
        torch.save([1, 2, 3], path)
    elif change == "bytes":
        path.write_bytes(b"PK\x03\x04 not a checkpoint")
    else:
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, path)
    bad = path.read_bytes()

    events: list[dict] = []
    with warnings.catch_warnings():  # also warned; checked on the progress events, which
        warnings.simplefilter("ignore", StoreWarning)  # no other thread's warnings touch
        result = train_or_load(CFG, device="cpu", progress=events.append)
    said = [e["message"] for e in events if e["kind"] == "status" and e["level"] == "warning"]
    assert len(said) == 1 and reason in said[0], said
    assert result.status == "finished" and result.resumed_from == 0
    assert result.test_acc == clean_acc  # the same as a run that never stopped
    (aside,) = [p for p in store.checkpoint_dir.iterdir() if ".bad-" in p.name]
    assert aside.name.startswith(f"{run_id}.pt.bad-") and aside.read_bytes() == bad
    statuses = [e["message"] for e in events if e["kind"] == "status"]
    assert len([m for m in statuses if "cannot be used" in m]) == 1
    assert not [m for m in statuses if m.startswith("Resuming")]
    assert train_or_load(CFG, device="cpu").cached  # and the next call does not retrain


def test_a_good_checkpoint_resumes_within_the_runs_epochs(one_epoch_home, tmp_path,
                                                          monkeypatch):
    source, clean_acc = one_epoch_home
    shutil.copytree(source, tmp_path / "home")
    monkeypatch.setenv("CNNCOMPARE_HOME", str(tmp_path / "home"))
    events: list[dict] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        result = train_or_load(CFG, device="cpu", progress=events.append)
    assert result.resumed_from == 1 and result.test_acc == clean_acc
    statuses = [e["message"] for e in events if e["kind"] == "status"]
    assert statuses == ["Resuming from epoch 2 of 2."]


# ---------------------------------------------------------------------------------------
# Temporary files left by writers killed mid-write.

KILLED_WRITER = r'''
import sys, time
from cnncompare import cache
with cache.atomic_open(sys.argv[1], fsync=True) as f:
    f.write(b"half a checkpoint" * 1000)
    f.flush()
    print("writing", flush=True)
    time.sleep(120)
'''


def test_temporary_files_of_killed_writers_are_removed_when_the_store_writes():
    store = ResultsStore()
    target = store.checkpoint_path("abc")
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    (left,) = [p for p in store.checkpoint_dir.iterdir()]
    assert left.name.startswith(f".abc.pt.tmp-{writer.pid}-") and not target.exists()

    live = store.checkpoint_dir / f".def.pt.tmp-{os.getpid()}-busy"  # a writer at work
    live.write_bytes(b"x")
    stale = store.checkpoint_dir / f".ghi.pt.tmp-{os.getpid()}-old"  # pid reused, too old
    stale.write_bytes(b"x")
    old = time.time() - cache.STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    recovery = store.home / f".results.sqlite.tmp-{writer.pid}-dead"
    recovery.write_bytes(b"x")
    ours = store.checkpoint_dir / "abc.pt.bad-20250101-000000"  # kept for the user
    ours.write_bytes(b"x")

    reader = ResultsStore()
    reader.runs()  # reading removes nothing
    assert left.exists() and recovery.exists()
    ResultsStore().ensure_writable()
    assert sorted(p.name for p in store.checkpoint_dir.iterdir()) == [live.name, ours.name]
    assert not recovery.exists()


# Last: the app's pages start background threads that outlive their test.


def test_the_pages_show_one_error_for_a_damaged_database(damaged_home):
    from streamlit.testing.v1 import AppTest

    home, damaged = damaged_home
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert [e.value for e in at.error if "damaged" in e.value] and len(at.error) == 1
    assert "python -m cnncompare repair" in at.error[0].value
    at.switch_page("views/compare.py").run()
    assert not at.exception and len(at.error) == 1 and "damaged" in at.error[0].value
    assert (home / "results.sqlite").read_bytes() == damaged and not _set_aside(home)
    with pytest.warns(StoreWarning):
        ResultsStore().recover()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception and not at.error
