"""Write a benchmark's table as CSV and as a short Markdown table under benchmarks/results/."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def markdown_table(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """A GitHub Markdown table; ``formats`` maps a column to a ``str.format`` pattern."""
    formats = formats or {}

    def cell(col: str, value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if col in formats:
            return formats[col].format(value)
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(cell(c, row[c]) for c in frame.columns) + " |")
    return "\n".join(lines) + "\n"


def write_results(frame: pd.DataFrame, stem: str, title: str, note: str = "",
                  formats: dict[str, str] | None = None) -> tuple[Path, Path]:
    """``results/<stem>.csv`` and ``results/<stem>.md``; prints the Markdown too."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = RESULTS / f"{stem}.csv", RESULTS / f"{stem}.md"
    frame.to_csv(csv_path, index=False)
    text = f"### {title}\n\n{note}\n\n" + markdown_table(frame, formats)
    md_path.write_text(text)
    print(text)
    return csv_path, md_path
