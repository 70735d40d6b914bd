"""Plotly figure builders: a DataFrame in, a ``go.Figure`` out. No Streamlit here.

Every chart colours a model the same way (:func:`model_color`), labels its axes with
units, and formats numbers for people.

This file is shared by several pages: add builders as new functions; keep the helpers at
the top.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

# One colour per family, shades within a family, so that a model keeps its colour on
# every chart of every page.
_FAMILY_PALETTES = {
    "LeNet": ["#7f7f7f", "#4d4d4d"],
    "AlexNet": ["#d62728", "#ff7f7f"],
    "NiN": ["#8c564b", "#c49c94"],
    "GoogLeNet": ["#2ca02c", "#98df8a"],
    "VGG": ["#9467bd", "#c5b0d5", "#6a3d9a", "#b39ddb", "#4a2c7a", "#d4c4e8", "#7e57c2",
            "#ede7f6"],
    "ResNet": ["#1f77b4", "#6baed6", "#08519c"],
    "DenseNet": ["#ff7f0e", "#fdae6b"],
}
_FALLBACK = px.colors.qualitative.Dark24


def model_color(name: str) -> str:
    """The colour of model ``name`` on every chart (stable across pages and runs)."""
    from cnncompare.registry import list_models, model_info

    try:
        family = model_info(name).family
    except ValueError:
        return _FALLBACK[sum(map(ord, name)) % len(_FALLBACK)]
    members = [n for n in list_models() if model_info(n).family == family]
    palette = _FAMILY_PALETTES.get(family, _FALLBACK)
    return palette[members.index(name) % len(palette)]


def color_map(names) -> dict[str, str]:
    """``{name: colour}`` for ``color_discrete_map``."""
    return {n: model_color(n) for n in pd.unique(pd.Series(list(names), dtype=object))}


def _style(fig: go.Figure, title: str | None = None) -> go.Figure:
    fig.update_layout(
        title=title,
        template="plotly_white",
        margin=dict(l=10, r=10, t=50 if title else 20, b=10),
        legend_title_text="",
        hovermode="closest",
    )
    return fig


def params_bar(frame: pd.DataFrame, title: str | None = "Parameters") -> go.Figure:
    """Bars of ``params`` per ``model`` (log axis: the zoo spans four orders of magnitude)."""
    fig = px.bar(frame, x="model", y="params", color="model", color_discrete_map=color_map(
        frame["model"]), log_y=True, labels={"params": "parameters (count, log)", "model": ""})
    fig.update_traces(hovertemplate="%{x}: %{y:,.0f} parameters<extra></extra>")
    fig.update_layout(showlegend=False)
    return _style(fig, title)
