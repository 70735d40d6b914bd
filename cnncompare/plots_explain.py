"""Figures that explain how the networks see: receptive fields against depth, the effective
receptive field, the convolution arithmetic grids and the network diagrams.

Plotly figure builders, data in and ``go.Figure`` out, no Streamlit: every figure says its
unit and its method in its title or axis labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnncompare.conv_arithmetic import CELL_NAMES
from cnncompare.i18n import t

# Colours of the arithmetic grid's cell codes (see conv_arithmetic.CELL_NAMES).
_CELL_COLOURS = ["#e9ecef", "#9ec5fe", "#f1aeb5", "#ffe69c", "#198754", "#a3cfbb"]


def rf_depth_chart(frame: pd.DataFrame) -> go.Figure:
    """Receptive field against depth, one line per network, and each input size as a line.

    ``frame``: one row per step or block of a network's plan, columns ``model``,
    ``depth`` (convolutions on the longest path so far), ``rf`` (px), ``layer`` and
    ``input_size`` (px); as :func:`cnncompare.receptive_field.plan_fields` gives them.
    """
    fig = go.Figure()
    for model, rows in frame.groupby("model", sort=False):
        fig.add_trace(go.Scatter(
            x=rows["depth"], y=rows["rf"], mode="lines+markers", name=str(model),
            customdata=np.stack([rows["layer"], rows["input_size"]], axis=-1),
            hovertemplate=("%{customdata[0]}<br>"
                           + t("depth {depth} convolutions", depth="%{x}") + "<br>"
                           + t("receptive field {rf} px", rf="%{y}")
                           + "<extra>" + str(model) + "</extra>")))
    for size in sorted(frame["input_size"].unique()):
        fig.add_hline(y=float(size), line_dash="dash", line_color="#6c757d",
                      annotation_text=t("input: {size} px", size=size),
                      annotation_position="top left")
    fig.update_layout(
        title=t("Receptive field of one unit against depth (px, padding included; union over "
                "branches)"),
        xaxis_title=t("Depth (convolutions on the longest path from the input)"),
        yaxis_title=t("Receptive field (input pixels)"), hovermode="closest",
        legend_title_text=t("Network"), margin={"t": 60})
    return fig


def erf_figure(erf: np.ndarray, region: tuple[int, int, int, int], *, title: str) -> go.Figure:
    """The effective receptive field (a mean absolute input gradient, scaled to [0, 1]) as a
    heat map, with the theoretical receptive field drawn over it as a square.

    ``region``: (top, bottom, left, right), the unit's theoretical field clipped to the
    image, in pixels (inclusive).
    """
    top, bottom, left, right = region
    fig = go.Figure(go.Heatmap(
        z=erf, colorscale="Viridis", zmin=0, zmax=1,
        colorbar={"title": t("|gradient|<br>(scaled)")},
        hovertemplate=t("row {row}, column {column}", row="%{y}", column="%{x}")
        + "<br>%{z:.3f}<extra></extra>"))
    fig.add_shape(type="rect", x0=left - 0.5, x1=right + 0.5, y0=top - 0.5, y1=bottom + 0.5,
                  line={"color": "#ff4b4b", "width": 2})
    fig.add_annotation(x=left, y=top - 0.5, text=t("theoretical field"), showarrow=False,
                       yanchor="bottom", xanchor="left", font={"color": "#ff4b4b"})
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain",
                     title=t("row (px)"))
    fig.update_xaxes(constrain="domain", title=t("column (px)"))
    fig.update_layout(title=title, margin={"t": 60})
    return fig


def conv_grids_figure(padded: Sequence[Sequence[int]], output: Sequence[Sequence[int]], *,
                      title: str) -> go.Figure:
    """The padded input (cell codes of :func:`cnncompare.conv_arithmetic.grids`) beside the
    output grid, the chosen unit marked in both."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.08,
                        subplot_titles=(t("Padded input (pixels)"), t("Output (units)")))
    n_codes = len(_CELL_COLOURS)
    scale = []
    for i, colour in enumerate(_CELL_COLOURS):
        scale += [[i / n_codes, colour], [(i + 1) / n_codes, colour]]
    z = np.asarray(padded, dtype=np.int8)
    small = z.shape[0] <= 64  # cell names and gaps only where they stay light to draw
    extra = {"xgap": 1, "ygap": 1} if small else {}
    if small:
        names = np.vectorize({code: t(name) for code, name in CELL_NAMES.items()}.get)(z)
        extra.update(customdata=names,
                     hovertemplate=t("row {row}, column {column}", row="%{y}", column="%{x}")
                     + ": %{customdata}<extra></extra>")
    else:
        extra.update(hovertemplate=t("row {row}, column {column}", row="%{y}", column="%{x}")
                     + "<extra></extra>")
    fig.add_trace(go.Heatmap(z=z, zmin=-0.5, zmax=n_codes - 0.5, colorscale=scale,
                             showscale=False, **extra), row=1, col=1)
    out = np.asarray(output, dtype=np.int8)
    gaps = {"xgap": 1, "ygap": 1} if out.shape[0] <= 64 else {}
    fig.add_trace(go.Heatmap(
        z=out, zmin=0, zmax=1, colorscale=[[0, "#cfe2ff"], [1, "#198754"]], showscale=False,
        hovertemplate=t("unit ({row}, {column})", row="%{y}", column="%{x}")
        + "<extra></extra>", **gaps), row=1, col=2)
    for col in (1, 2):
        fig.update_yaxes(autorange="reversed", scaleanchor="x" if col == 1 else "x2",
                         row=1, col=col)
    for code, name in CELL_NAMES.items():  # a legend for the cell colours
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=t(name),
                                 marker={"size": 12, "color": _CELL_COLOURS[code],
                                         "symbol": "square"}))
    fig.update_layout(title=title, legend={"orientation": "h", "y": -0.08},
                      margin={"t": 70}, height=560)
    return fig


_BOX_COLOURS = {"input": "#e9ecef", "conv": "#cfe2ff", "pool": "#ffe5d0", "linear": "#f8d7da",
                "merge": "#d1e7dd", "module": "#e2e3e5", "group": "#e0cffc",
                "other": "#f8f9fa"}
_BOX_W, _BOX_H, _ROW_PX = 0.9, 0.62, 64


def diagram_figure(diagram) -> go.Figure:
    """A :class:`cnncompare.diagram.Diagram` drawn top to bottom: one row per rank (the
    longest chain of arrows from the input), boxes coloured by kind, arrows between
    them; an arrow that skips rows (a shortcut, a dense connection) is dashed and bends to
    the side. Hover a box for what it holds."""
    import textwrap

    ranks = diagram.ranks()
    rows: dict[int, list] = {}
    for box in diagram.boxes:
        rows.setdefault(ranks[box.id], []).append(box)
    pos: dict[str, tuple[float, float]] = {}
    for r, boxes in rows.items():
        for i, box in enumerate(boxes):
            pos[box.id] = (i - (len(boxes) - 1) / 2, -float(r))
    fig = go.Figure()
    half_w, half_h = _BOX_W / 2, _BOX_H / 2
    widest = max((len(b) for b in rows.values()), default=1)
    # Collected and set once: plotly's add_shape/add_annotation validate the whole list
    # again on every call (quadratic: 1.2 s of the Architectures page for two diagrams).
    shapes: list[dict] = []
    annotations: list[dict] = []
    for a, b in diagram.arrows:
        (x0, y0), (x1, y1) = pos[a], pos[b]
        if y0 - y1 > 1.01:  # skips rows: bend around the boxes in between, on its side
            sign = -1.0 if x0 < 0 else 1.0
            side = sign * ((widest - 1) / 2 + 0.75)
            path = (f"M {x0 + sign * half_w},{y0} C {side},{y0} {side},{y1} "
                    f"{x1 + sign * half_w},{y1}")
            shapes.append(dict(type="path", path=path,
                               line={"color": "#6f42c1", "dash": "dash", "width": 1.5}))
        else:
            annotations.append(dict(x=x1, y=y1 + half_h, ax=x0, ay=y0 - half_h, xref="x",
                                    yref="y", axref="x", ayref="y", showarrow=True,
                                    arrowhead=2, arrowsize=1, arrowwidth=1.2,
                                    arrowcolor="#495057", text=""))
    for box in diagram.boxes:
        x, y = pos[box.id]
        shapes.append(dict(type="rect", x0=x - half_w, x1=x + half_w, y0=y - half_h,
                           y1=y + half_h, fillcolor=_BOX_COLOURS.get(box.kind, "#f8f9fa"),
                           line={"color": "#6c757d", "width": 1}))
        label = "<br>".join(textwrap.wrap(box.label, 30)[:2])
        text = f"<b>{label}</b>" + (f"<br>{box.shape}" if box.shape else "")
        annotations.append(dict(x=x, y=y, text=text, showarrow=False, font={"size": 10}))
    fig.update_layout(shapes=shapes, annotations=annotations)
    fig.add_trace(go.Scatter(
        x=[pos[b.id][0] for b in diagram.boxes], y=[pos[b.id][1] for b in diagram.boxes],
        mode="markers", marker={"size": 28, "opacity": 0}, showlegend=False,
        customdata=[[b.id, b.detail or b.label, b.shape] for b in diagram.boxes],
        hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>"
                      + t("output: {shape}", shape="%{customdata[2]}") + "<extra></extra>"))
    n_rows = max(ranks.values(), default=0) + 1
    fig.update_xaxes(visible=False, range=[-(widest / 2) - 0.9, widest / 2 + 0.9])
    fig.update_yaxes(visible=False, range=[-n_rows + 0.4, 0.6])
    fig.update_layout(title=diagram.title,
                      height=max(300, n_rows * _ROW_PX + 80), margin={"t": 50, "l": 10,
                                                                       "r": 10, "b": 10},
                      plot_bgcolor="white")
    return fig
