"""`python -m cnncompare list` and the CLI's error handling."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pandas as pd

from cnncompare import count_params, list_models
from cnncompare.cli import main


def test_list_csv_parses_and_counts_match(capsys):
    assert main(["list", "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(frame["model"]) == list_models()
    assert {"model", "family", "year", "paper", "params", "input"} <= set(frame.columns)
    row = frame.set_index("model").loc["resnet50"]
    assert row["params"] == count_params("resnet50") == 25_557_032
    assert row["input"] == "3x224x224"


def test_list_json_and_pattern(capsys):
    assert main(["list", "--pattern", "vgg1?", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in records] == ["vgg11", "vgg13", "vgg16", "vgg19"]


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "cnncompare", "list", "--format", "csv"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.splitlines()[0].startswith("model,family,year")


def test_bad_subcommand_exits_nonzero():
    proc = subprocess.run([sys.executable, "-m", "cnncompare", "nonsense"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "invalid choice" in proc.stderr
