"""Command line: ``python -m cnncompare list|profile|bench|train|study|runs|export``.

Every subcommand prints a table (``--format table``), CSV or JSON on stdout and its
progress on stderr. A bad argument (an unknown model, an impossible size, a missing
dataset) ends with one ``error:`` line on stderr and exit status 2, never a traceback.

Subcommands live beside this file: ``list`` here, ``profile``/``bench`` in
``cli_cost.py``, ``train``/``runs``/``export``/``repair`` in ``cli_train.py``, ``study`` in
``cli_study.py``. Each of those modules
has ``register(subparsers)``, which adds its parsers with ``func=handler``.

Only the module of the command being run is imported (they import torch, seconds);
``--help`` and a mistyped command import none of them and answer at once.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("table", "csv", "json")

COMMANDS: dict[str, tuple[str | None, str]] = {
    "list": (None, "list the model zoo"),
    "profile": ("cnncompare.cli_cost",
                "parameters, MACs, FLOPs and memory per model, or a layer table"),
    "bench": ("cnncompare.cli_cost",
              "latency, throughput and peak memory per model and batch size"),
    "train": ("cnncompare.cli_train", "train a model (or return its stored run)"),
    "study": ("cnncompare.cli_study",
              "train models x seeds (x one factor) and summarise over the seeds"),
    "runs": ("cnncompare.cli_train", "list stored runs with their final metrics"),
    "export": ("cnncompare.cli_train",
               "write runs, final metrics and each model's cost to one CSV"),
    "repair": ("cnncompare.cli_train",
               "recover a damaged results database (the damaged file is kept)"),
}
"""Every subcommand: the module whose ``register`` adds it (None: this one), its help."""

DEBUG_ENV = "CNNCOMPARE_DEBUG"
"""Set to 1 to see the traceback of an unexpected error instead of its one-line summary."""


class CliError(Exception):
    """A problem with the user's request: printed as one line, exit status 2."""


def emit(frame: pd.DataFrame, fmt: str, out=None) -> None:
    """Write ``frame`` to ``out`` (stdout) as a text table, CSV or JSON records."""
    import pandas as pd  # imported on first use: --help needs no pandas

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


def emit_records(rows: list[dict[str, Any]], fmt: str, out=None) -> None:
    """Write plain rows (str, int and float values) as :func:`emit` writes a frame.

    Without pandas (a quarter to half a second to import), for commands that must answer
    fast: ``list``. The table is right-aligned, one space between columns, like pandas'.
    """
    out = out or sys.stdout
    columns = list(rows[0]) if rows else []
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([row[c] for c in columns] for row in rows)
    elif fmt == "json":
        json.dump(rows, out, indent=2)
        out.write("\n")
    elif fmt == "table":
        cells = [[str(c) for c in columns]] + [[str(row[c]) for c in columns] for row in rows]
        widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
        for line in cells:
            out.write(" ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) + "\n")
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
    from cnncompare.registry import list_models, zoo_rows  # imported on first use: torch

    names = list_models(args.pattern) if args.pattern else None
    if names == []:
        raise CliError(f"no model matches {args.pattern!r}; "
                       "run `python -m cnncompare list` for every name.")
    emit_records(zoo_rows(names), args.format)
    return 0


def _register_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help=COMMANDS["list"][1])
    p.add_argument("--pattern", help="glob on model names, e.g. 'vgg*'")
    add_format(p)
    p.set_defaults(func=_cmd_list)


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The parser, with the full parser of ``command`` (``"*"``: of every command).

    The other commands get a placeholder that only carries their one-line help, so that
    building the parser for ``--help`` or for ``list`` imports no command module.
    """
    parser = argparse.ArgumentParser(
        prog="python -m cnncompare",
        description="Compare the classic convolutional networks: cost, speed and accuracy.",
        epilog="`python -m cnncompare COMMAND --help` describes a command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = COMMANDS[command][0] if command in COMMANDS else None
    for name, (module, help_text) in COMMANDS.items():
        if name in sub.choices:
            continue  # registered with another command of its module
        if command != "*" and name != command and (module is None or module != wanted):
            sub.add_parser(name, help=help_text, add_help=False)
        elif module is None:
            _register_list(sub)
        else:
            try:
                importlib.import_module(module).register(sub)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
                # A checkout without that module: its commands say so when run.
                sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word that is not an option), if any."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure ends in one ``error:`` line and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_chosen_command(argv))
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        print(f"error: the command {args.command!r} is not available in this installation.",
              file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, FileNotFoundError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `| head`: the reader has gone, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's promise: one line, never a traceback
        store = sys.modules.get("cnncompare.store")  # loaded if the error can be the store's
        if store is not None and isinstance(exc, store.StoreError):
            # full disk, read-only home, damaged database: the message says what to do
            print(f"error: {one_line(exc, limit=1000)}", file=sys.stderr)
            return 2
        if os.environ.get(DEBUG_ENV):
            raise
        if isinstance(exc, MemoryError):
            print("error: out of memory: choose a smaller model, input or batch size.",
                  file=sys.stderr)
        elif _is_out_of_memory(exc):
            print(f"error: out of memory ({one_line(exc)}): choose a smaller model, input "
                  "or batch size.", file=sys.stderr)
        else:
            print(f"error: {type(exc).__name__}: {one_line(exc)} (set {DEBUG_ENV}=1 for "
                  "the traceback)", file=sys.stderr)
        return 2


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("out of memory", "can't allocate memory",
                                   "cannot allocate memory", "not enough memory"))
