"""Command line: ``python -m cnncompare list|profile|bench|train|runs|export``.

Every subcommand prints a table (``--format table``), CSV or JSON on stdout and its
progress on stderr. A bad argument (an unknown model, an impossible size, a missing
dataset) ends with one ``error:`` line on stderr and exit status 2, never a traceback.

Subcommands live beside this file: ``list`` here, ``profile``/``bench`` in
``cli_cost.py``, ``train``/``runs``/``export`` in ``cli_train.py``. Each of those modules
has ``register(subparsers)``, which adds its parsers with ``func=handler``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from cnncompare.registry import list_models, zoo_frame

FORMATS = ("table", "csv", "json")
_COMMAND_MODULES = ("cnncompare.cli_cost", "cnncompare.cli_train")


class CliError(Exception):
    """A problem with the user's request: printed as one line, exit status 2."""


def emit(frame: pd.DataFrame, fmt: str, out=None) -> None:
    """Write ``frame`` to ``out`` (stdout) as a text table, CSV or JSON records."""
    out = out or sys.stdout
    if fmt == "csv":
        frame.to_csv(out, index=False)
    elif fmt == "json":
        records = json.loads(frame.to_json(orient="records"))
        json.dump(records, out, indent=2)
        out.write("\n")
    elif fmt == "table":
        with pd.option_context("display.max_rows", None, "display.max_columns", None,
                               "display.width", 200, "display.max_colwidth", 60):
            out.write(frame.to_string(index=False) + "\n")
    else:  # argparse's choices keep this out of reach
        raise CliError(f"unknown format {fmt!r}")


def add_format(parser: argparse.ArgumentParser, default: str = "table") -> None:
    parser.add_argument("--format", choices=FORMATS, default=default,
                        help=f"output format (default: {default})")


def parse_list(text: str, cast: Callable[[str], Any] = str, what: str = "value") -> list[Any]:
    """``"a,b , c"`` -> ``["a", "b", "c"]``, each converted by ``cast``."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise CliError(f"expected a comma-separated list of {what}s, got {text!r}")
    try:
        return [cast(t) for t in items]
    except ValueError as exc:
        raise CliError(f"bad {what} in {text!r}: {exc}") from None


def _cmd_list(args: argparse.Namespace) -> int:
    frame = zoo_frame()
    if args.pattern:
        frame = frame[frame["model"].isin(list_models(args.pattern))]
    emit(frame, args.format)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cnncompare",
        description="Compare the classic convolutional networks: cost, speed and accuracy.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("list", help="list the model zoo")
    p.add_argument("--pattern", help="glob on model names, e.g. 'vgg*'")
    add_format(p)
    p.set_defaults(func=_cmd_list)
    for mod_name in _COMMAND_MODULES:
        importlib.import_module(mod_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `| head`: the reader has gone, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
