"""Comparing stored runs: one results table, the Pareto front of accuracy against cost.

Pure pandas, so that the Compare page and the CLI's ``export`` show the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_front(frame: pd.DataFrame, cost: str = "macs", score: str = "test_acc") -> pd.Series:
    """A boolean mask: the rows that no other row beats on both cost and score.

    A row is dominated when another costs no more and scores no less, and is strictly
    better on one of the two. Rows with a missing cost or score are never on the front.
    """
    c = frame[cost].to_numpy(dtype=float)
    s = frame[score].to_numpy(dtype=float)
    valid = ~(np.isnan(c) | np.isnan(s))
    on_front = np.zeros(len(frame), dtype=bool)
    for i in np.flatnonzero(valid):
        no_worse = valid & (c <= c[i]) & (s >= s[i])
        strictly = (c < c[i]) | (s > s[i])
        on_front[i] = not np.any(no_worse & strictly)
    return pd.Series(on_front, index=frame.index, name="pareto")


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """A short, unique label per run: the model, plus what tells it apart from its twins."""
    base = runs["model"].astype(str)
    if "width" in runs:
        width = runs["width"].astype(float)
        base = base.where(width == 1.0, base + " w" + width.map("{:g}".format))
    dup = base.duplicated(keep=False)
    return base.where(~dup, base + " · " + runs["run_id"].astype(str).str[:6])


def pareto_frontier_line(frame: pd.DataFrame, cost: str = "macs",
                         score: str = "test_acc") -> pd.DataFrame:
    """The front's points sorted by cost: the staircase to draw on the chart."""
    front = frame[pareto_front(frame, cost, score)]
    return front.sort_values(cost)[[cost, score]]
