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

from cnncompare.i18n import N_, t

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
    "test_acc": N_("test accuracy (fraction)"),
    "val_acc": N_("validation accuracy (fraction)"),
    "val_loss": N_("validation loss (cross-entropy)"),
    "test_acc_mean": N_("test accuracy at the validation-chosen epoch, mean over seeds (fraction)"),
    "final_test_acc_mean": N_("test accuracy at the last epoch, mean over seeds (fraction)"),
    "seconds_mean": N_("training time, mean over seeds (s)"),
    "train_acc": N_("train accuracy (fraction)"),
    "test_loss": N_("test loss (cross-entropy)"),
    "train_loss": N_("train loss (cross-entropy)"),
    "epoch": N_("epoch"),
    "wall_time": N_("wall time (s, cumulative)"),
    "params": N_("parameters (count)"),
    "macs": N_("MACs per image (fvcore multiply-adds)"),
    "seconds": N_("training time (s)"),
    "median_ms": N_("latency, median (ms)"),
    "latency_ms": N_("latency, median, batch 1 (ms)"),
    "peak_mem_mb": N_("measured peak memory (MB)"),
    "images_per_s": N_("throughput (images/s)"),
    "trainable_params": N_("trainable parameters (count)"),
    "flops": N_("FLOPs per image (torch, forward)"),
    "train_flops": N_("FLOPs per image (torch, training step)"),
    "param_mb": N_("parameter memory (MB)"),
    "activation_mb": N_("activations per image (MB, float32, in-place layers left out)"),
    "p90_ms": N_("latency, p90 (ms)"),
    "throughput": N_("throughput (images/s)"),
    "est_mem_mb": N_("estimated memory (MB)"),
    "achieved_gflops": N_("achieved GFLOP/s"),
    "peak_share": N_("share of the matmul peak (fraction)"),
    "batch_size": N_("batch size (images)"),
    "share": N_("share of the model's MACs (fraction)"),
}


def axis_label(column: str) -> str:
    """The axis label, with its unit, for a column name (shared by every chart), in the
    current language."""
    return t(_AXIS_LABELS[column]) if column in _AXIS_LABELS else column.replace("_", " ")


def log_axis_label(column: str) -> str:
    """:func:`axis_label` of a logarithmic axis: ``"parameters (count), log"``."""
    return t("{label}, log", label=axis_label(column))


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


_GROUP_PALETTE = px.colors.qualitative.Safe + px.colors.qualitative.Dark24


def group_colors(frame: pd.DataFrame, by_model: bool = True) -> dict[str, str]:
    """``{group: colour}``: each group in its model's colour when the comparison is by
    model, else one colour per group from a qualitative palette (in order of appearance)."""
    groups = pd.unique(frame["group"].astype(str))
    if by_model:
        models = frame.drop_duplicates("group").set_index("group")["model"]
        return {g: model_color(str(models[g])) for g in groups}
    return {g: _GROUP_PALETTE[i % len(_GROUP_PALETTE)] for i, g in enumerate(groups)}


def _rgba(color: str, alpha: float) -> str:
    """``"#1f77b4"`` or ``"rgb(31, 119, 180)"`` with transparency ``alpha``."""
    from plotly.colors import hex_to_rgb, unlabel_rgb

    r, g, b = hex_to_rgb(color) if color.startswith("#") else unlabel_rgb(color)
    return f"rgba({int(r)},{int(g)},{int(b)},{alpha})"


def band_curves(bands: pd.DataFrame, y: str, x: str = "epoch",
                colors: dict[str, str] | None = None, title: str | None = None) -> go.Figure:
    """Mean curve per ``group`` with a shaded band (``low``-``high``: +- one std for three
    or more seeds, min-max for two; none for one seed, whose legend entry says so).

    ``bands`` is :func:`cnncompare.studies.curve_bands`' frame; ``y`` names the metric
    for the axis label; ``x`` is ``epoch`` or ``wall_time`` (mean over the seeds)."""
    fig = go.Figure()
    colors = colors or {}
    for group, g in bands.groupby("group", sort=False):
        g = g.sort_values("epoch")
        color = colors.get(str(group), model_color(str(g["model"].iloc[0])))
        n = int(g["n"].max())
        if g["low"].notna().any():
            band = g[g["low"].notna()]
            fig.add_trace(go.Scatter(
                x=list(band["x"]) + list(band["x"])[::-1],
                y=list(band["high"]) + list(band["low"])[::-1],
                fill="toself", fillcolor=_rgba(color, 0.18), line=dict(width=0),
                hoverinfo="skip", showlegend=False, legendgroup=str(group),
                name=t("{group} band", group=group)))
        if n == 1:
            legend = t("{group} (one seed)", group=group)
        elif n == 2:
            legend = t("{group} (min–max of 2 seeds)", group=group)
        else:
            legend = t("{group} (± 1 std over {n} seeds)", group=group, n=n)
        mean_label = t("{label}, mean", label=axis_label(y))
        fig.add_trace(go.Scatter(
            x=g["x"], y=g["mean"], mode="lines+markers", name=legend,
            legendgroup=str(group), line=dict(color=color, dash="dot" if n == 1 else None),
            hovertemplate=f"{group}<br>{axis_label(x)}: %{{x:.3g}}<br>"
                          f"{mean_label}: %{{y:.4f}}<extra></extra>"))
    fig.update_xaxes(title=axis_label(x))
    if x == "epoch":
        fig.update_xaxes(tickformat="d", dtick=1 if bands.empty or bands["x"].max() <= 20
                         else None)
    fig.update_yaxes(title=t("{label}, mean over seeds", label=axis_label(y)))
    return _style(fig, title)


def _error_arrays(frame: pd.DataFrame, y: str, low: str | None, high: str | None):
    if not low or not high or low not in frame or high not in frame:
        return None
    plus = (frame[high] - frame[y]).clip(lower=0).fillna(0)
    minus = (frame[y] - frame[low]).clip(lower=0).fillna(0)
    return dict(type="data", symmetric=False, array=plus.tolist(), arrayminus=minus.tolist(),
                thickness=1.5, width=6)


def interval_bars(frame: pd.DataFrame, y: str, low: str | None = None, high: str | None = None,
                  colors: dict[str, str] | None = None, log: bool = False,
                  title: str | None = None) -> go.Figure:
    """One bar per ``group``: ``y`` (a mean) with its 95% interval (``low``, ``high``) as
    an error bar; a single-seed group has no error bar and ``(1 seed)`` under its name."""
    colors = colors or {}
    names = [t("{group} (1 seed)", group=g) if int(n) == 1 else str(g)
             for g, n in zip(frame["group"], frame["n_seeds"], strict=True)]
    fig = go.Figure(go.Bar(
        x=names, y=frame[y], marker_color=[colors.get(str(g), "#1f77b4") for g in
                                           frame["group"]],
        error_y=_error_arrays(frame, y, low, high),
        hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    fig.update_yaxes(title=log_axis_label(y) if log else axis_label(y),
                     type="log" if log else "linear")
    fig.update_xaxes(title="")
    fig.update_layout(showlegend=False)
    return _style(fig, title)


def accuracy_vs_cost(frame: pd.DataFrame, front: pd.DataFrame, cost: str = "macs",
                     score: str = "test_acc_mean", colors: dict[str, str] | None = None,
                     title: str | None = None) -> go.Figure:
    """Mean accuracy against cost (log axis) per ``group``, with 95% intervals as
    vertical error bars (none for a single seed); the Pareto front of the means as a
    dashed staircase; groups on it are filled circles, groups "within noise of the front"
    (their interval reaches it) open diamonds, the rest open circles."""
    colors = colors or {}
    fig = go.Figure()
    kinds = (("pareto", t("on the Pareto front"), "circle"),
             ("within_noise", t("within noise of the front"), "diamond-open"),
             ("other", t("behind the front"), "circle-open"))
    kind = frame.get("pareto", pd.Series(False, frame.index)).map(
        lambda v: "pareto" if v else "other")
    if "within_noise" in frame:
        kind = kind.where(~frame["within_noise"].astype(bool), "within_noise")
    for name, legend, symbol in kinds:
        part = frame[kind == name]
        if part.empty:
            continue
        fig.add_trace(go.Scatter(
            x=part[cost], y=part[score], mode="markers+text", name=legend,
            text=[t("{group} (1 seed)", group=g) if int(n) == 1 else str(g)
                  for g, n in zip(part["group"], part["n_seeds"], strict=True)],
            textposition="top center",
            marker=dict(size=13, symbol=symbol, line=dict(width=2),
                        color=[colors.get(str(g), "#1f77b4") for g in part["group"]]),
            error_y=_error_arrays(part, score, "test_acc_ci_low", "test_acc_ci_high"),
            hovertemplate="%{text}<br>" + axis_label(cost) + ": %{x:,.0f}<br>"
                          + t("mean accuracy: {value}", value="%{y:.4f}")
                          + "<extra></extra>"))
    if len(front):
        fig.add_trace(go.Scatter(x=front[cost], y=front[score], mode="lines",
                                 line=dict(color="#333", dash="dash", shape="hv"),
                                 name=t("Pareto front (means)"), hoverinfo="skip"))
    fig.update_xaxes(title=log_axis_label(cost), type="log")
    fig.update_yaxes(title=axis_label(score))
    return _style(fig, title)


def confusion_heatmap(matrix, class_names, title: str | None = None) -> go.Figure:
    """Rows: true class; columns: predicted class; cells: counts."""
    names = [str(c) for c in class_names]
    fig = px.imshow(matrix, x=names, y=names, text_auto=True, color_continuous_scale="Blues",
                    labels=dict(x=t("predicted class"), y=t("true class"),
                                color=t("images")),
                    aspect="equal")
    fig.update_xaxes(side="bottom", type="category")
    fig.update_yaxes(type="category")
    return _style(fig, title)


def per_class_accuracy(frame: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Bars of ``accuracy`` per ``class``."""
    fig = px.bar(frame, x="class", y="accuracy", range_y=[0, 1],
                 labels={"accuracy": t("accuracy (fraction)"), "class": t("class")})
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
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title=t("probability"))
    fig.update_yaxes(type="category", autorange="reversed", categoryorder="array",
                     categoryarray=labels)
    fig.update_layout(height=60 + 32 * len(labels), showlegend=False)
    return _style(fig, title)


# --- Profile & Benchmark and Architectures pages: cost, speed, layers ---------------------

_SHORT_COST_LABELS = {
    "params": N_("parameters"),
    "macs": N_("MACs / image"),
    "flops": N_("FLOPs / image"),
    "train_flops": N_("training FLOPs / image"),
    "param_mb": N_("parameters (MB)"),
    "activation_mb": N_("activations (MB / image)"),
    "median_ms": N_("latency (ms)"),
    "throughput": N_("images / s"),
    "peak_mem_mb": N_("peak memory (MB)"),
}


def cost_bars(frame: pd.DataFrame, metrics=("params", "macs", "flops", "param_mb",
                                            "activation_mb"),
              log: bool = True, title: str | None = None) -> go.Figure:
    """Side-by-side bar charts, one per metric column, one bar per ``model``.

    Each panel's title names the metric and its unit (the y axes are log when ``log``).
    """
    from plotly.subplots import make_subplots

    metrics = [m for m in metrics if m in frame.columns]
    titles = [t(_SHORT_COST_LABELS[m]) if m in _SHORT_COST_LABELS else axis_label(m)
              for m in metrics]
    fig = make_subplots(rows=1, cols=max(len(metrics), 1), horizontal_spacing=0.05,
                        subplot_titles=titles)
    colors = color_map(frame["model"])
    for i, metric in enumerate(metrics, start=1):
        fig.add_trace(go.Bar(
            x=frame["model"], y=frame[metric], marker_color=[colors[m] for m in frame["model"]],
            name=titles[i - 1], showlegend=False,
            hovertemplate=f"%{{x}}: %{{y:,.4g}} ({axis_label(metric)})<extra></extra>",
        ), row=1, col=i)
        fig.update_yaxes(type="log" if log else "linear", row=1, col=i)
    fig.update_yaxes(title_text=t("log scale") if log else "", row=1, col=1)
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
        labels={"params": log_axis_label("params"), "macs": log_axis_label("macs"),
                size: axis_label(size), "model": t("Model")},
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
            hovertemplate=(f"{model}<br>" + t("batch {batch}", batch="%{x}")
                           + f"<br>{axis_label(y)}: %{{y:,.4g}}<extra></extra>"),
        ))
    fig.update_xaxes(title=log_axis_label("batch_size"), type="log")
    fig.update_yaxes(title=log_axis_label(y), type="log")
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
                 labels={value: axis_label(value), "model": t("model"), "module": t("module"),
                         "type": t("type"), "macs": t("MACs"), "params": t("Parameters")})
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
        hovertemplate=t("{layer} ({type}, output {shape}): {value}", layer="%{x}",
                        type="%{customdata[0]}", shape="%{customdata[1]}",
                        value="%{y:,.0f}") + "<extra></extra>",
    ))
    fig.update_xaxes(title=t("layer (execution order)"), type="category", categoryorder="array",
                     categoryarray=list(rows["layer"]))
    fig.update_yaxes(title=axis_label(value))
    return _style(fig, title)
