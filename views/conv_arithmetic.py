"""Convolution arithmetic: one convolution or pooling worked out, with the picture."""

import streamlit as st

from cnncompare import conv_arithmetic as CA
from cnncompare import plots_explain, ui
from cnncompare.i18n import t

st.title(t("Convolution arithmetic"))
st.caption(t(
    "How big is the output of a convolution or a pooling? Choose the input size, kernel, "
    "stride, padding and dilation (or a layer of a classic network) and see where the kernel "
    "lands, the formula with your numbers, and what PyTorch does when it is not whole."
))

FIELDS = ("size", "kernel", "stride", "padding", "dilation")
TITLES = [p.title for p in CA.PRESETS]


def load_preset() -> None:
    """Copy the chosen preset into the widgets (a callback: it runs before they are drawn)."""
    layer = CA.preset(st.session_state["ca-preset"]).layer
    for name in FIELDS:
        st.session_state[f"ca-{name}"] = getattr(layer, name)
    st.session_state["ca-kind"] = layer.kind
    st.session_state["ca-ceil"] = layer.ceil_mode


if "ca-size" not in st.session_state:
    st.session_state["ca-preset"] = TITLES[0]
    load_preset()

chosen = st.selectbox(t("Start from a layer of a classic network"), TITLES, key="ca-preset",
                      format_func=t, on_change=load_preset)
st.info(t(CA.preset(chosen).lesson), icon=":material/school:")

c1, c2, c3, c4, c5 = st.columns(5)
size = c1.number_input(t("Input size (px)"), 1, CA.MAX_SIDE, key="ca-size")
kernel = c2.number_input(t("Kernel"), 1, CA.MAX_SIDE, key="ca-kernel")
stride = c3.number_input(t("Stride"), 1, 64, key="ca-stride")
padding = c4.number_input(t("Padding"), 0, 64, key="ca-padding")
dilation = c5.number_input(t("Dilation"), 1, 16, key="ca-dilation")
k1, k2 = st.columns([3, 2])
kind = k1.radio(t("Layer"), CA.KINDS, format_func=lambda k: t(CA.KIND_NAMES[k]),
                horizontal=True, key="ca-kind")
ceil_mode = k2.checkbox(t("Ceil mode (round up)"), key="ca-ceil", disabled=kind == "conv",
                        help=t("Poolings only: PyTorch's convolutions always round down."))

try:
    layer = CA.Layer(int(size), int(kernel), int(stride), int(padding), int(dilation), kind,
                     bool(ceil_mode) and kind != "conv")
except ValueError as exc:
    st.error(ui.error_text(exc))
    st.stop()

result = CA.explain(layer)
st.subheader(t("The formula"))
st.code(result.formula, language=None)
st.caption(t("{formula}, with ceil instead of floor for a pooling in ceil mode.",
             formula="`out = floor((in + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1`"))
for sentence in result.sentences:
    st.markdown(f"- {sentence}")

if result.out < 1:
    st.stop()

st.subheader(t("Where the kernel lands"))
u1, u2 = st.columns(2)
last = result.out - 1
row = u1.slider(t("Output row"), 0, last, min(last, last // 2), key="ca-row") if last else 0
col = u2.slider(t("Output column"), 0, last, last, key="ca-col") if last else 0
padded, output = CA.grids(layer, (int(row), int(col)))
title = t("{kind}: {size} px in, {out} units out; unit ({row}, {col}) reads the green cells",
          kind=t(CA.KIND_NAMES[kind]).capitalize(), size=layer.size, out=result.out, row=row,
          col=col)
st.plotly_chart(plots_explain.conv_grids_figure(padded, output, title=title),
                key="ca-grids")
