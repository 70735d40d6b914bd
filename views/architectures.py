"""Architectures: one network layer by layer, its model card, its diagram beside another's,
receptive fields against depth, and the effective receptive field of a trained run."""

import streamlit as st

from cnncompare import list_models, model_info, plots, plots_explain, ui
from cnncompare.formatting import human
from cnncompare.i18n import get_language, t, tn
from cnncompare.profiling import ACTIVATION_NOTE, MACS_VS_FLOPS

st.title(t("Architectures"))
st.caption(t(
    "Every layer the network runs, with its output shape, the arithmetic that gives it, "
    "its receptive field, its parameters and its multiply-adds (MACs); its diagram; how "
    "far each network sees."
))

MODELS = list_models()
COSTS = ui.cost_columns()
number = st.column_config.NumberColumn
LAYER_COLUMNS = {
    "layer": t("Layer"),
    "type": t("Type"),
    "kernel": t("Kernel"),
    "stride": t("Stride"),
    "padding": t("Padding"),
    "input_shape": st.column_config.TextColumn(t("Input"), help=t("channels x height x width")),
    "output_shape": st.column_config.TextColumn(t("Output"),
                                                help=t("channels x height x width")),
    "shape_arithmetic": st.column_config.TextColumn(
        t("Shape arithmetic"), help="out = floor((in + 2p - k) / s) + 1", width="large"),
    "rf": number(t("Receptive field (px)"), format="%d",
                 help=t("The size in input pixels of the region that can affect one unit of "
                        "this layer, padding included (union over branches).")),
    "rf_jump": number(t("Jump (px)"), format="%d",
                      help=t("Input pixels between the regions of two neighbouring units: the "
                             "product of the strides so far.")),
    "rf_start": number(t("Start (px)"), format="%d",
                       help=t("Input coordinate of the first pixel of the first unit's region; "
                              "negative where padding puts it outside the image.")),
    "params": COSTS["params"],
    "macs": COSTS["macs"],
    "output_mb": COSTS["output_mb"],
    "shared": st.column_config.CheckboxColumn(
        t("Reused"), help=t("A module called again (counted on its first call)")),
}
SHOWN = list(LAYER_COLUMNS)
COMPACT = ["layer", "type", "output_shape", "shape_arithmetic", "rf", "params", "macs"]


@st.cache_data(show_spinner=False, max_entries=64)
def card_facts(name: str, preset, config: dict, lang: str) -> tuple[int, list[str]]:
    """The depth of ``name`` and the notes (in ``lang``, the current language) on what this
    configuration's size does to it."""
    from cnncompare.model_card import model_depth, size_notes
    from cnncompare.registry import config_for

    return model_depth(name), size_notes(config_for(name, preset, **config))


@st.cache_data(show_spinner=False, max_entries=32)
def diagram(name: str, preset, config: dict, depth: int, expand: tuple[str, ...], lang: str):
    """The diagram of one configuration (:func:`cnncompare.diagram.network_diagram`), its
    labels in ``lang`` (the current language)."""
    from cnncompare.diagram import network_diagram
    from cnncompare.registry import config_for

    return network_diagram(config_for(name, preset, **config), depth=depth, expand=expand)


@st.cache_data(show_spinner=False, max_entries=16)
def fields_by_depth(names: tuple[str, ...], preset, config: dict):
    """Receptive field after each step or block of every network, for the chart."""
    from cnncompare.receptive_field import field_by_depth
    from cnncompare.registry import config_for

    return field_by_depth([config_for(n, preset, **config) for n in names])


@st.cache_data(show_spinner=False, max_entries=16)
def erf(run_id: str, updated_at: str, images: int):
    """The effective field of a stored run and of its freshly initialised twin."""
    from cnncompare.effective_field import run_effective_field
    from cnncompare.store import ResultsStore

    return run_effective_field(ResultsStore(), run_id, images=images)


def show_card(name: str, stem: str, depth: int, notes: list[str]) -> None:
    """Paper, year, depth, key ideas, what the small-input stem and this size change, and
    the pitfalls people meet when they write the network themselves."""
    info = model_info(name)
    st.subheader(f"{name} · {info.family}, {info.year}")
    st.markdown(t("**Paper:** [{paper}]({url})", paper=info.paper, url=info.paper_url))
    st.markdown(tn("**Depth:** {n} weighted layer (convolutions and fully connected layers "
                   "on the longest path from the input to the output).",
                   "**Depth:** {n} weighted layers (convolutions and fully connected layers "
                   "on the longest path from the input to the output).", depth))
    st.markdown(t("**Key ideas**") + "\n" + "\n".join(f"- {t(idea)}"
                                                    for idea in info.key_ideas))
    if stem == "small":
        st.markdown(t("**Small-input adaptation** (this configuration uses it): {adaptation}",
                      adaptation=t(info.adaptation)))
    else:
        st.markdown(t("**Small-input adaptation** (not used at this input size): "
                      "{adaptation}", adaptation=t(info.adaptation)))
    for note in notes:
        st.info(note, icon=":material/straighten:")
    if info.notes:
        st.caption(t(info.notes))
    if info.pitfalls:
        with st.expander(t("Common pitfalls when you write it yourself")):
            st.markdown("\n".join(f"- {t(p)}" for p in info.pitfalls))


def layer_view(name: str, preset, config, columns: list[str], key: str):
    """The layer table of ``name`` with its download button; None if the config cannot run."""
    try:
        table = ui.layer_table(name, preset, config)
    except ValueError as exc:
        st.error(ui.error_text(exc))
        return None
    st.dataframe(table[columns], hide_index=True,
                 column_config={c: LAYER_COLUMNS[c] for c in columns}, key=f"table-{key}")
    ui.csv_download(table, f"layers-{name}.csv", key=f"dl-layers-{key}")
    return table


name = st.selectbox(t("Model"), MODELS, index=MODELS.index("resnet18"), key="arch-model")
preset, config = ui.config_picker("arch")
try:
    totals = ui.cost_summary(name, preset, config)
except ValueError as exc:
    st.error(ui.error_text(exc))
    st.stop()

card, numbers = st.columns([3, 2])
with card:
    show_card(name, totals["stem"], *card_facts(name, preset, config, get_language()))
with numbers:
    st.markdown(t("**Configuration:** `{label}`", label=totals["label"]))
    m1, m2 = st.columns(2)
    m1.metric(t("Parameters"), human(totals["params"]), help=f"{totals['params']:,}")
    m2.metric(t("MACs / image"), human(totals["macs"]), help=f"{totals['macs']:,} (fvcore)")
    m1.metric(t("FLOPs / image"), human(totals["flops"]),
              help=t("{flops} (torch FlopCounterMode, forward)", flops=f"{totals['flops']:,}"))
    m2.metric(t("Activations"), f"{totals['activation_mb']:.3g} MB", help=t(ACTIVATION_NOTE))
    st.caption(t(MACS_VS_FLOPS))
    if totals["skipped_ops"]:
        st.caption(t("Not counted by fvcore: {ops}", ops=totals["skipped_ops"]))

st.subheader(t("Layer by layer"))
table = layer_view(name, preset, config, SHOWN, "main")
if table is not None:
    st.plotly_chart(plots.layer_cost_bars(table, name, "macs", title=t("MACs per layer")),
                    key="arch-macs-chart")

st.subheader(t("Side by side"))
st.caption(t("Two networks at the same configuration choice, layer by layer."))
left, right = st.columns(2)
for col, default, key in ((left, name, "left"), (right, "vgg11", "right")):
    with col:
        other = st.selectbox(t("Model"), MODELS, index=MODELS.index(default),
                             key=f"side-{key}")
        try:
            s = ui.cost_summary(other, preset, config)
            st.caption(t("`{label}` · {params} parameters · {macs} MACs", label=s["label"],
                         params=human(s["params"]), macs=human(s["macs"])))
        except ValueError:
            pass
        layer_view(other, preset, config, COMPACT, key)

# --------------------------------------------------------------------------- diagrams
st.subheader(t("Diagram"))
st.caption(t(
    "Drawn from the network's own modules and one recorded forward pass: each box is a "
    "layer, a merge or a closed block, with its output shape; dashed arrows skip rows "
    "(shortcuts, dense connections); ×N marks N repeated blocks. Open a block to see inside."))
d_left, d_right = st.columns(2)
for col, default, key in ((d_left, name, "left"), (d_right, "densenet121", "right")):
    with col:
        other = st.selectbox(t("Model"), MODELS, index=MODELS.index(default),
                             key=f"diagram-{key}-model")
        level = st.slider(t("Open modules down to this depth"), 0, 4, 2,
                          key=f"diagram-{key}-depth")
        opened: tuple[str, ...] = ()
        try:
            with st.spinner(t("Drawing the diagram...")):
                drawn = diagram(other, preset, config, level, opened, get_language())
            labels = {b.id: b.label for b in drawn.boxes if b.expandable}
            opened = tuple(st.multiselect(t("Open these blocks"), list(labels),
                                          format_func=labels.get, key=f"diagram-{key}-open"))
            if opened:
                drawn = diagram(other, preset, config, level, opened, get_language())
        except ValueError as exc:
            st.error(ui.error_text(exc))
            continue
        st.plotly_chart(plots_explain.diagram_figure(drawn), key=f"diagram-{key}-chart",
                        config={"displayModeBar": False})

# -------------------------------------------------------------------- receptive fields
st.subheader(t("Receptive field against depth"))
st.caption(t(
    "The size of the input region one unit can see after each layer or block (padding "
    "included; where branches merge, the union over them). Where a line crosses the "
    "dashed input size, a unit in the middle of the map can see the whole image."))
compare = st.multiselect(t("Networks"), MODELS, default=["alexnet", "vgg16", "resnet18",
                                                          "googlenet"], key="arch-rf-models")
if compare:
    try:
        frame = fields_by_depth(tuple(compare), preset, config)
    except ValueError as exc:
        st.error(ui.error_text(exc))
    else:
        st.plotly_chart(plots_explain.rf_depth_chart(frame), key="arch-rf-chart")

st.subheader(t("Effective receptive field of a trained run"))
st.caption(t(
    "The gradient of one unit in the middle of the last feature map with respect to the "
    "input, in absolute value, averaged over test images: where the unit really looks. "
    "The red square is its theoretical field. Beside it, the same network freshly "
    "initialised."))
from cnncompare.store import ResultsStore  # noqa: E402 - the store is only needed here

runs = ResultsStore().runs(finished_only=True)
if runs.empty:
    st.info(t("No trained run yet: train one on the Train page (or the quick LeNet on "
              "Classify) to see its effective receptive field."))
    st.stop()
labels = {r: t("{model} · {dataset} · run {run}", model=m, dataset=d, run=r)
          for r, m, d in zip(runs["run_id"], runs["model"], runs["dataset"], strict=True)}
r1, r2 = st.columns([3, 1])
run_id = r1.selectbox(t("Run"), list(labels), format_func=labels.get, key="arch-erf-run")
images = r2.slider(t("Test images"), 1, 64, 16, key="arch-erf-images")
if not st.toggle(t("Compute it (a few seconds the first time: the run's test images are "
                   "loaded and each image's gradient is taken)"), key="arch-erf-show"):
    st.stop()
updated = str(runs.set_index("run_id").loc[run_id, "updated_at"])
try:
    with st.spinner(t("Computing the effective receptive field...")):
        trained, fresh = erf(run_id, updated, images)
except (ValueError, OSError, RuntimeError) as exc:
    st.error(t("The effective receptive field of run {run} cannot be computed: {error}",
               run=run_id, error=ui.error_text(exc)))
    st.stop()
e_left, e_right = st.columns(2)
for col, result, key in ((e_left, trained, "Trained"), (e_right, fresh, "At initialisation")):
    with col:
        if key == "Trained":
            title = t("Trained: |∂ unit / ∂ input| over {n} test images", n=result.images)
        else:
            title = t("At initialisation: |∂ unit / ∂ input| over {n} test images",
                      n=result.images)
        fig = plots_explain.erf_figure(result.map, result.region, title=title)
        st.plotly_chart(fig, key=f"arch-erf-{key}")
        st.caption(t(
            "Unit {unit} of {layer}: theoretical field {theoretical} px; 90% of the gradient "
            "lies in a square of {effective} px.", unit=result.unit, layer=result.layer,
            theoretical=result.theoretical, effective=result.effective))
