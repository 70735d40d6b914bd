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


def _python(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout."""
    import os

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **env))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_imports_neither_torch_nor_pandas():
    code = ("import sys\nfrom cnncompare.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    code = e.code\n"
            "print('RESULT', code, 'torch' in sys.modules, 'pandas' in sys.modules)")
    out = _python(code)
    assert "list the model zoo" in out and "export" in out  # every command is listed
    assert out.splitlines()[-1] == "RESULT 0 False False"


def test_unknown_command_imports_no_command_module():
    code = ("import sys\nfrom cnncompare.cli import main\n"
            "try:\n    main(['trian'])\nexcept SystemExit as e:\n    code = e.code\n"
            "print('RESULT', code, 'torch' in sys.modules)")
    assert _python(code).splitlines()[-1] == "RESULT 2 False"


def test_package_import_is_lazy_and_names_still_resolve():
    code = ("import sys, cnncompare\nlazy = 'torch' not in sys.modules\n"
            "from cnncompare import get_model, list_models, model_info, count_params\n"
            "print(lazy, len(list_models()), model_info('lenet').year, "
            "count_params('lenet'), 'get_model' in dir(cnncompare))")
    assert _python(code).split() == ["True", "19", "1998", "61706", "True"]


def test_subcommand_help_still_lists_its_options(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "--batch-sizes" in capsys.readouterr().out


def test_list_table_is_aligned(capsys):
    assert main(["list", "--pattern", "resnet*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].split()[:3] == ["model", "family", "year"]
    assert len({len(line) for line in lines}) == 1  # every column padded to one width
    assert lines[1].split()[0] == "resnet18"


def test_pattern_without_a_match_is_one_error_line(capsys):
    assert main(["list", "--pattern", "transformer*"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: no model matches 'transformer*'; run `python -m cnncompare list` "
                   "for every name."]


def test_a_command_whose_module_is_absent_is_one_error_line(capsys, monkeypatch):
    from cnncompare import cli

    monkeypatch.setitem(cli.COMMANDS, "ghost", ("cnncompare.cli_ghost", "not shipped here"))
    assert main(["ghost"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: the command 'ghost' is not available in this installation."]
    assert main(["list", "--pattern", "lenet"]) == 0  # the others still work
