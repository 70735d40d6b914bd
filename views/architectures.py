"""Architectures: one network layer by layer, its model card, and two side by side."""

import streamlit as st

from cnncompare import list_models, model_info, plots, ui
from cnncompare.formatting import human
from cnncompare.profiling import ACTIVATION_NOTE, MACS_VS_FLOPS

st.title("Architectures")
st.caption(
    "Every layer the network runs, with its output shape, the arithmetic that gives it, "
    "its parameters and its multiply-adds (MACs)."
)

MODELS = list_models()
COSTS = ui.cost_columns()
LAYER_COLUMNS = {
    "layer": "Layer",
    "type": "Type",
    "kernel": "Kernel",
    "stride": "Stride",
    "padding": "Padding",
    "input_shape": st.column_config.TextColumn("Input", help="channels x height x width"),
    "output_shape": st.column_config.TextColumn("Output", help="channels x height x width"),
    "shape_arithmetic": st.column_config.TextColumn(
        "Shape arithmetic", help="out = floor((in + 2p - k) / s) + 1", width="large"),
    "params": COSTS["params"],
    "macs": COSTS["macs"],
    "output_mb": COSTS["output_mb"],
    "shared": st.column_config.CheckboxColumn(
        "Reused", help="A module called again (counted on its first call)"),
}
SHOWN = list(LAYER_COLUMNS)
COMPACT = ["layer", "type", "output_shape", "shape_arithmetic", "params", "macs"]


def show_card(name: str, stem: str) -> None:
    """Paper, year, key ideas and what the small-input stem changes."""
    info = model_info(name)
    st.subheader(f"{name} · {info.family}, {info.year}")
    st.markdown(f"**Paper:** [{info.paper}]({info.paper_url})")
    st.markdown("**Key ideas**\n" + "\n".join(f"- {idea}" for idea in info.key_ideas))
    used = "this configuration uses it" if stem == "small" else "not used at this input size"
    st.markdown(f"**Small-input adaptation** ({used}): {info.adaptation}")
    if info.notes:
        st.caption(info.notes)


def layer_view(name: str, preset, config, columns: list[str], key: str):
    """The layer table of ``name`` with its download button; None if the config cannot run."""
    try:
        table = ui.layer_table(name, preset, config)
    except ValueError as exc:
        st.error(str(exc))
        return None
    st.dataframe(table[columns], hide_index=True,
                 column_config={c: LAYER_COLUMNS[c] for c in columns}, key=f"table-{key}")
    ui.csv_download(table, f"layers-{name}.csv", key=f"dl-layers-{key}")
    return table


name = st.selectbox("Model", MODELS, index=MODELS.index("resnet18"), key="arch-model")
preset, config = ui.config_picker("arch")
try:
    totals = ui.cost_summary(name, preset, config)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

card, numbers = st.columns([3, 2])
with card:
    show_card(name, totals["stem"])
with numbers:
    st.markdown(f"**Configuration:** `{totals['label']}`")
    m1, m2 = st.columns(2)
    m1.metric("Parameters", human(totals["params"]), help=f"{totals['params']:,}")
    m2.metric("MACs / image", human(totals["macs"]), help=f"{totals['macs']:,} (fvcore)")
    m1.metric("FLOPs / image", human(totals["flops"]),
              help=f"{totals['flops']:,} (torch FlopCounterMode, forward)")
    m2.metric("Activations", f"{totals['activation_mb']:.3g} MB", help=ACTIVATION_NOTE)
    st.caption(MACS_VS_FLOPS)
    if totals["skipped_ops"]:
        st.caption(f"Not counted by fvcore: {totals['skipped_ops']}")

st.subheader("Layer by layer")
table = layer_view(name, preset, config, SHOWN, "main")
if table is not None:
    st.plotly_chart(plots.layer_cost_bars(table, name, "macs", title="MACs per layer"),
                    key="arch-macs-chart")

st.subheader("Side by side")
st.caption("Two networks at the same configuration choice, layer by layer.")
left, right = st.columns(2)
for col, default, key in ((left, name, "left"), (right, "vgg11", "right")):
    with col:
        other = st.selectbox("Model", MODELS, index=MODELS.index(default), key=f"side-{key}")
        try:
            s = ui.cost_summary(other, preset, config)
            st.caption(f"`{s['label']}` · {human(s['params'])} parameters · "
                       f"{human(s['macs'])} MACs")
        except ValueError:
            pass
        layer_view(other, preset, config, COMPACT, key)
