"""Training started from the Train page against the same runs from the command line.

Goal (issue 11): the app trains at the CLI's speed, an images/s ratio app / CLI of at least
0.9 for every network of the study, and no "Inotify" line in the server's output while
the job runs.

1. The app: ``.venv/bin/streamlit run app.py`` from the checkout with the project's
   ``.streamlit/config.toml`` (exactly what ``make run`` starts), an empty results home,
   a free port. Chromium (headless, a fresh profile) opens the Train page, picks the
   study's networks in the "Models" box, sets "Epochs", presses "Train N runs" and keeps
   the page open, as a person watching the progress would, until the job says it is done.
   The page is driven by its visible labels only.
2. The CLI: every run the app stored is trained again with
   ``.venv/bin/python -m cnncompare train`` and the same configuration, read back from
   the app's store (the run ids must match: the same configuration), in another empty
   home, one after another, with the server stopped.
3. For each network, the images/s of the training epochs (the results store's per-epoch
   ``images_per_s``; the first epoch left out, as it includes warming up) is summarised
   by its median, app and CLI alike, and their ratio printed, with the load average.

    .venv/bin/python benchmarks/app_vs_cli.py [--models lenet,alexnet,resnet18] [--epochs 4]
        [--rounds 1]

With ``--rounds 2`` the app and the CLI take turns twice and each network's best round
counts on each side (other programs on a shared machine hurt one side or the other).
Writes benchmarks/results/app_vs_cli.csv (the best rounds, with the 1-minute load
average while each side ran and the Inotify lines of every round) and
app_vs_cli_rounds.csv (every round), and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appserver import REPO, RESULTS_DIR, chromium, load_average, serve, wait_idle  # noqa: E402

from cnncompare.store import ResultsStore  # noqa: E402

PYTHON = REPO / ".venv" / "bin" / "python"
FLAGS = {  # TrainConfig field -> the CLI's option
    "dataset": "--dataset", "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
    "optimizer": "--optimizer", "scheduler": "--scheduler", "weight_decay": "--weight-decay",
    "label_smoothing": "--label-smoothing", "seed": "--seed", "amp": "--amp",
    "train_size": "--train-size", "val_size": "--val-size", "test_size": "--test-size",
    "input_size": "--input-size", "in_channels": "--in-channels", "width": "--width",
}


def browser_cpu_seconds() -> float:
    """CPU seconds used so far by the Chromium processes this script started (its
    descendants in /proc), not by any other program's browser."""
    tick = os.sysconf("SC_CLK_TCK")
    procs = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        procs[int(stat.parent.name)] = (name, int(fields[1]),
                                        (int(fields[11]) + int(fields[12])) / tick)

    def mine(pid: int) -> bool:
        for _ in range(64):
            if pid == os.getpid():
                return True
            if pid not in procs or pid <= 1:
                return False
            pid = procs[pid][1]
        return False

    return sum(cpu for pid, (name, _ppid, cpu) in procs.items()
               if "chrom" in name and mine(pid))


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pick_models(page, models: list[str]) -> None:
    """Leave exactly ``models`` chosen in the page's "Models" box (by its labels only)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from cnncompare.registry import list_models

    box = page.get_by_role("combobox", name="Models", exact=True)
    for name in list_models():  # remove the chosen ones by their "Remove NAME" buttons
        remove = page.get_by_role("button", name=f"Remove {name}", exact=True)
        if remove.count():
            remove.first.click()
            wait_idle(page)
    for name in models:
        for _attempt in range(3):  # a rerun may redraw the box while it opens: try again
            box.click()
            box.fill(name)
            option = page.get_by_role("option").filter(
                has_text=re.compile(rf"^\s*{re.escape(name)}\s*$")).first
            try:
                option.wait_for(timeout=10_000)
                option.click()
                break
            except PlaywrightTimeout:
                page.keyboard.press("Escape")
                wait_idle(page)
        else:
            raise RuntimeError(f"the Models box offers no {name!r}")
        wait_idle(page)
    page.keyboard.press("Escape")
    chosen = [n for n in list_models()
              if page.get_by_role("button", name=f"Remove {n}", exact=True).count()]
    if sorted(chosen) != sorted(models):
        raise RuntimeError(f"the Models box holds {chosen}, expected {models}")


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True).first
    field.fill(str(value))
    field.press("Tab")
    wait_idle(page)


def run_app(models: list[str], epochs: int) -> dict:
    """Train the study from the Train page; returns the home, timings and server output."""
    home = Path(tempfile.mkdtemp(prefix="cnncompare-app-"))
    with serve(home) as server, chromium() as browser:
        page = browser.new_page()
        page.goto(server.url + "/train")
        page.get_by_role("heading", name="Train").first.wait_for(timeout=120_000)
        wait_idle(page)
        pick_models(page, models)
        set_number(page, "Epochs", epochs)
        if page.get_by_label("Seeds", exact=True).count():  # one run per network
            set_number(page, "Seeds", 1)
        button = page.get_by_role("button", name=re.compile(r"^Train \d+ runs?$"))
        label = button.inner_text().strip().splitlines()[-1]  # after the icon's name
        expected = f"Train {len(models)} run{'s' * (len(models) != 1)}"
        if label != expected:
            raise RuntimeError(f"the page offers {label!r}, expected {expected!r}")
        browser_before = browser_cpu_seconds()
        server_before = process_cpu_seconds(server.process.pid)
        started = time.monotonic()
        button.click()
        page.get_by_text(re.compile(r"Job (done|failed|cancelled)")).first.wait_for(
            timeout=3_600_000)
        seconds = time.monotonic() - started
        outcome = page.get_by_text(re.compile(r"Job (done|failed|cancelled)")).first.inner_text()
        browser_cpu = browser_cpu_seconds() - browser_before
        server_cpu = process_cpu_seconds(server.process.pid) - server_before
        during = server.output_since(started)
        page.close()
    if "done" not in outcome:
        raise RuntimeError(f"the app's job ended: {outcome}")
    return {"home": home, "seconds": seconds, "browser_cpu_s": browser_cpu,
            "server_cpu_s": server_cpu, "inotify_lines": sum("Inotify" in ln for ln in during),
            "server_lines": during}


def cli_args(config: dict) -> list[str]:
    """The ``train`` options that give exactly ``config`` (a stored TrainConfig)."""
    args = ["--model", config["model"]]
    for key, flag in FLAGS.items():
        value = config.get(key)
        if value is not None:
            args += [flag, str(value)]
    if config.get("augment"):
        args.append("--augment")
    if config.get("model_kwargs"):
        raise RuntimeError("model arguments are not part of this benchmark's study")
    return args


def run_cli(configs: list[dict]) -> tuple[Path, dict[str, str]]:
    """Train every config with the CLI in a new home; returns it and app id -> CLI id."""
    home = Path(tempfile.mkdtemp(prefix="cnncompare-cli-"))
    env = dict(os.environ, CNNCOMPARE_HOME=str(home))
    ids = {}
    for config in configs:
        cmd = [str(PYTHON), "-m", "cnncompare", "train", *cli_args(config["config"]),
               "--format", "json"]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
        ids[config["run_id"]] = json.loads(proc.stdout)["run_id"]
    return home, ids


def throughput(home: Path, run_id: str) -> tuple[float, int]:
    """The median images/s of a run's epochs after the first, and how many epochs."""
    epochs = ResultsStore(home).epochs([run_id]).sort_values("epoch")
    rates = epochs["images_per_s"].dropna().to_numpy()
    rates = rates[1:] if len(rates) > 1 else rates
    return float(np.median(rates)), len(rates)


def one_minute_load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lenet,alexnet,resnet18")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    load_before = load_average()
    best: dict[str, dict] = {}
    rounds = []
    notes = []
    inotify = 0
    for round_ in range(1, args.rounds + 1):
        app = run_app(models, args.epochs)
        load_app = one_minute_load()
        inotify += app["inotify_lines"]
        records = ResultsStore(app["home"]).records()
        configs = [{"run_id": r.run_id, "model": r.model, "config": r.config}
                   for r in records]
        cli_home, ids = run_cli(configs)
        load_cli = one_minute_load()
        notes.append(f"round {round_}: app job {app['seconds']:.1f} s; Chromium used "
                     f"{app['browser_cpu_s']:.1f} CPU-s and the server process "
                     f"{app['server_cpu_s']:.1f} CPU-s while it ran; Inotify lines in the "
                     f"server's output during the job: {app['inotify_lines']}")
        for cfg in configs:
            if ids[cfg["run_id"]] != cfg["run_id"]:
                raise RuntimeError(f"{cfg['model']}: the CLI trained run {ids[cfg['run_id']]}, "
                                   f"the app {cfg['run_id']}: not the same configuration")
            app_rate, n = throughput(app["home"], cfg["run_id"])
            cli_rate, _ = throughput(cli_home, cfg["run_id"])
            rounds.append({"round": round_, "network": cfg["model"], "app_img_s": app_rate,
                           "cli_img_s": cli_rate, "ratio": app_rate / cli_rate,
                           "load_app": load_app, "load_cli": load_cli,
                           "browser_cpu_s": app["browser_cpu_s"],
                           "inotify_lines": app["inotify_lines"]})
            row = best.setdefault(cfg["model"], {"network": cfg["model"],
                                                 "run_id": cfg["run_id"], "epochs": n,
                                                 "app_img_s": 0.0, "cli_img_s": 0.0})
            if app_rate > row["app_img_s"]:
                row["app_img_s"], row["load_app"] = app_rate, load_app
            if cli_rate > row["cli_img_s"]:
                row["cli_img_s"], row["load_cli"] = cli_rate, load_cli
    frame = pd.DataFrame(best.values())
    frame["ratio"] = frame["app_img_s"] / frame["cli_img_s"]
    frame["goal_met"] = frame["ratio"] >= 0.9
    frame["inotify_lines"] = inotify
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    frame.to_csv(RESULTS_DIR / "app_vs_cli.csv", index=False)
    pd.DataFrame(rounds).to_csv(RESULTS_DIR / "app_vs_cli_rounds.csv", index=False)
    print(f"load average before: {load_before}; after: {load_average()}")
    for note in notes:
        print(note)
    print(pd.DataFrame(rounds).round(2).to_markdown(index=False))
    shown = frame[["network", "app_img_s", "cli_img_s", "ratio", "load_app", "load_cli",
                   "inotify_lines", "goal_met"]].copy()
    shown["app_img_s"] = shown["app_img_s"].round(0)
    shown["cli_img_s"] = shown["cli_img_s"].round(0)
    shown["ratio"] = shown["ratio"].round(3)
    print(shown.to_markdown(index=False))


if __name__ == "__main__":
    main()
