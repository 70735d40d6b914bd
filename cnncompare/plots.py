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


# --- Axis labels: one table, with units, for every chart -------------------------------

_AXIS_LABELS = {
    "test_acc": "test accuracy (fraction)",
    "train_acc": "train accuracy (fraction)",
    "test_loss": "test loss (cross-entropy)",
    "train_loss": "train loss (cross-entropy)",
    "epoch": "epoch",
    "wall_time": "wall time (s, cumulative)",
    "params": "parameters (count)",
    "macs": "MACs per image (fvcore multiply-adds)",
    "seconds": "training time (s)",
    "median_ms": "latency, median (ms)",
    "latency_ms": "latency, median, batch 1 (ms)",
    "peak_mem_mb": "measured peak memory (MB)",
    "images_per_s": "throughput (images/s)",
    "trainable_params": "trainable parameters (count)",
    "flops": "FLOPs per image (torch, forward)",
    "train_flops": "FLOPs per image (torch, training step)",
    "param_mb": "parameter memory (MB)",
    "activation_mb": "activations per image (MB, float32, in-place layers left out)",
    "p90_ms": "latency, p90 (ms)",
    "throughput": "throughput (images/s)",
    "est_mem_mb": "estimated memory (MB)",
    "achieved_gflops": "achieved GFLOP/s",
    "peak_share": "share of the matmul peak (fraction)",
    "batch_size": "batch size (images)",
    "share": "share of the model's MACs (fraction)",
}


def axis_label(column: str) -> str:
    """The axis label, with its unit, for a column name (shared by every chart)."""
    return _AXIS_LABELS.get(column, column.replace("_", " "))


# --- Compare page: learning curves, bars, accuracy against cost, confusion ---------------

def learning_curves(epochs: pd.DataFrame, y: str = "test_acc", x: str = "epoch",
                    title: str | None = None) -> go.Figure:
    """One line per run (``label``), coloured by ``model``; ``x`` is epoch or wall time."""
    fig = go.Figure()
    for label, run in epochs.sort_values(x).groupby("label", sort=False):
        model = str(run["model"].iloc[0])
        fig.add_trace(go.Scatter(
            x=run[x], y=run[y], mode="lines+markers", name=str(label),
            line=dict(color=model_color(model)),
            hovertemplate=f"{label}<br>{axis_label(x)}: %{{x:.3g}}<br>"
                          f"{axis_label(y)}: %{{y:.4f}}<extra></extra>",
        ))
    fig.update_xaxes(title=axis_label(x))
    if x == "epoch":  # whole epochs only; one tick each up to 20
        fig.update_xaxes(tickformat="d", dtick=1 if epochs.empty or epochs[x].max() <= 20
                         else None)
    fig.update_yaxes(title=axis_label(y))
    return _style(fig, title)


def metric_bars(frame: pd.DataFrame, y: str, log: bool = False,
                title: str | None = None) -> go.Figure:
    """Bars of column ``y`` per run ``label``, coloured by ``model``."""
    fig = px.bar(frame, x="label", y=y, color="model", color_discrete_map=color_map(
        frame["model"]), log_y=log, labels={y: axis_label(y), "label": ""})
    fig.update_traces(hovertemplate="%{x}: %{y:.4g}<extra></extra>")
    fig.update_layout(showlegend=False)
    return _style(fig, title)


def accuracy_vs_cost(frame: pd.DataFrame, front: pd.DataFrame, cost: str = "macs",
                     score: str = "test_acc", size: str = "params",
                     title: str | None = None) -> go.Figure:
    """Score against cost on a log axis, bubble area ~ ``size``, the Pareto front drawn."""
    fig = px.scatter(
        frame, x=cost, y=score, size=size, color="model", text="label",
        color_discrete_map=color_map(frame["model"]), log_x=True, size_max=45,
        labels={cost: axis_label(cost) + ", log", score: axis_label(score)},
        hover_data={size: ":,.0f", "label": True},
    )
    fig.update_traces(textposition="top center")
    if len(front):
        fig.add_trace(go.Scatter(x=front[cost], y=front[score], mode="lines",
                                 line=dict(color="#333", dash="dash", shape="hv"),
                                 name="Pareto front", hoverinfo="skip"))
    return _style(fig, title)


def confusion_heatmap(matrix, class_names, title: str | None = None) -> go.Figure:
    """Rows: true class; columns: predicted class; cells: counts."""
    names = [str(c) for c in class_names]
    fig = px.imshow(matrix, x=names, y=names, text_auto=True, color_continuous_scale="Blues",
                    labels=dict(x="predicted class", y="true class", color="images"),
                    aspect="equal")
    fig.update_xaxes(side="bottom", type="category")
    fig.update_yaxes(type="category")
    return _style(fig, title)


def per_class_accuracy(frame: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Bars of ``accuracy`` per ``class``."""
    fig = px.bar(frame, x="class", y="accuracy", range_y=[0, 1],
                 labels={"accuracy": "accuracy (fraction)", "class": "class"})
    fig.update_xaxes(type="category")
    return _style(fig, title)


def topk_bars(frame: pd.DataFrame, model: str | None = None,
              title: str | None = None) -> go.Figure:
    """Horizontal bars of ``probability`` per ``class``, best on top, in ``model``'s colour."""
    color = model_color(model) if model else _FALLBACK[0]
    labels: list[str] = []
    for c in frame["class"]:  # ImageNet has a few repeated names ("crane"): keep both bars
        label = str(c)
        while label in labels:
            label += " "
        labels.append(label)
    fig = go.Figure(go.Bar(
        x=frame["probability"], y=labels, orientation="h", marker_color=color,
        text=[f"{p:.1%}" for p in frame["probability"]], textposition="auto",
        hovertemplate="%{y}: %{x:.2%}<extra></extra>",
    ))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title="probability")
    fig.update_yaxes(type="category", autorange="reversed", categoryorder="array",
                     categoryarray=labels)
    fig.update_layout(height=60 + 32 * len(labels), showlegend=False)
    return _style(fig, title)


# --- Profile & Benchmark and Architectures pages: cost, speed, layers ---------------------

_SHORT_COST_LABELS = {
    "params": "parameters",
    "macs": "MACs / image",
    "flops": "FLOPs / image",
    "train_flops": "training FLOPs / image",
    "param_mb": "parameters (MB)",
    "activation_mb": "activations (MB / image)",
    "median_ms": "latency (ms)",
    "throughput": "images / s",
    "peak_mem_mb": "peak memory (MB)",
}


def cost_bars(frame: pd.DataFrame, metrics=("params", "macs", "flops", "param_mb",
                                            "activation_mb"),
              log: bool = True, title: str | None = None) -> go.Figure:
    """Side-by-side bar charts, one per metric column, one bar per ``model``.

    Each panel's title names the metric and its unit (the y axes are log when ``log``).
    """
    from plotly.subplots import make_subplots

    metrics = [m for m in metrics if m in frame.columns]
    fig = make_subplots(rows=1, cols=max(len(metrics), 1), horizontal_spacing=0.05,
                        subplot_titles=[_SHORT_COST_LABELS.get(m, axis_label(m))
                                        for m in metrics])
    colors = color_map(frame["model"])
    for i, metric in enumerate(metrics, start=1):
        fig.add_trace(go.Bar(
            x=frame["model"], y=frame[metric], marker_color=[colors[m] for m in frame["model"]],
            name=metric, showlegend=False,
            hovertemplate=f"%{{x}}: %{{y:,.4g}} ({axis_label(metric)})<extra></extra>",
        ), row=1, col=i)
        fig.update_yaxes(type="log" if log else "linear", row=1, col=i)
    fig.update_yaxes(title_text="log scale" if log else "", row=1, col=1)
    fig.update_annotations(font_size=12)
    fig.update_layout(height=380)
    return _style(fig, title)


def macs_params_bubble(frame: pd.DataFrame, size: str = "activation_mb",
                       title: str | None = None) -> go.Figure:
    """MACs against parameters (log-log), one bubble per model, area ~ ``size``."""
    fig = px.scatter(
        frame, x="params", y="macs", size=size if size in frame.columns else None,
        color="model", text="model", color_discrete_map=color_map(frame["model"]),
        log_x=True, log_y=True, size_max=50,
        labels={"params": axis_label("params") + ", log", "macs": axis_label("macs") + ", log",
                size: axis_label(size)},
    )
    fig.update_traces(textposition="top center")
    return _style(fig, title)


def batch_curves(frame: pd.DataFrame, y: str = "median_ms",
                 title: str | None = None) -> go.Figure:
    """``y`` (latency or throughput) against batch size, one line per model."""
    fig = go.Figure()
    for model, rows in frame.sort_values("batch_size").groupby("model", sort=False):
        fig.add_trace(go.Scatter(
            x=rows["batch_size"], y=rows[y], mode="lines+markers", name=str(model),
            line=dict(color=model_color(str(model))),
            hovertemplate=f"{model}<br>batch %{{x}}<br>{axis_label(y)}: %{{y:,.4g}}<extra></extra>",
        ))
    fig.update_xaxes(title=axis_label("batch_size") + ", log", type="log")
    fig.update_yaxes(title=axis_label(y) + ", log", type="log")
    return _style(fig, title)


def module_breakdown(frame: pd.DataFrame, value: str = "share",
                     title: str | None = None) -> go.Figure:
    """Where each model's MACs go: one horizontal bar per ``model``, a segment per ``module``.

    Segments are labelled with the module's name (where they are wide enough) and
    outlined in the model's colour; the hover gives type, MACs and parameters.
    """
    fig = px.bar(frame, x=value, y="model", color="model", orientation="h", text="module",
                 color_discrete_map=color_map(frame["model"]),
                 hover_data={"module": True, "type": True, "macs": ":,.0f",
                             "params": ":,.0f"},
                 labels={value: axis_label(value), "model": "model", "module": "module"})
    fig.update_traces(textposition="inside", insidetextanchor="middle",
                      marker_line_color="white", marker_line_width=1.5)
    fig.update_layout(barmode="stack", showlegend=False, uniformtext_minsize=9,
                      uniformtext_mode="hide", height=140 + 45 * frame["model"].nunique())
    fig.update_yaxes(type="category", autorange="reversed")
    return _style(fig, title)


def layer_cost_bars(layers: pd.DataFrame, model: str, value: str = "macs",
                    title: str | None = None) -> go.Figure:
    """One bar per layer with a non-zero ``value`` (MACs or params), in execution order."""
    rows = layers[layers[value] > 0]
    fig = go.Figure(go.Bar(
        x=rows["layer"], y=rows[value], marker_color=model_color(model),
        customdata=rows[["type", "output_shape"]],
        hovertemplate="%{x} (%{customdata[0]}, out %{customdata[1]}): %{y:,.0f}<extra></extra>",
    ))
    fig.update_xaxes(title="layer (execution order)", type="category", categoryorder="array",
                     categoryarray=list(rows["layer"]))
    fig.update_yaxes(title=axis_label(value))
    return _style(fig, title)
