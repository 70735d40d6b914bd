"""Profile & Benchmark: what each network costs, counted and measured on this machine."""

import streamlit as st

from cnncompare import list_models, plots, ui
from cnncompare.benchmark import DTYPES, BenchSettings
from cnncompare.devices import available_devices
from cnncompare.profiling import ACTIVATION_NOTE, MACS_VS_FLOPS

st.title("Profile & Benchmark")
st.caption(
    "Parameters, MACs and FLOPs are counted (the same on every machine); latency, "
    "throughput and peak memory are measured here, with the device beside every figure."
)

MODELS = list_models()
DEFAULT = ["lenet", "alexnet", "vgg11", "resnet18"]
names = tuple(st.multiselect("Models", MODELS, default=DEFAULT, key="prof-models"))
preset, config = ui.config_picker("prof")
if not names:
    st.info("Pick at least one model.")
    st.stop()

try:
    costs = ui.cost_table(names, preset, config)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

COSTS = ui.cost_columns()
COST_COLUMNS = {
    "model": "Model",
    "input": st.column_config.TextColumn("Input", help="channels x height x width"),
    "width": st.column_config.NumberColumn("Width", format="%.3g"),
    **{c: COSTS[c] for c in ("params", "macs", "flops", "train_flops", "param_mb",
                             "activation_mb", "median_ms", "throughput", "peak_mem_mb",
                             "skipped_ops")},
}

st.subheader("Cost per image")
st.caption(MACS_VS_FLOPS)
st.caption(ACTIVATION_NOTE)
cost_table_slot = st.empty()
ui.csv_download(costs, "cnncompare-costs.csv", key="dl-costs")

# One chart at a time: every chart drawn costs the browser time, even in a hidden tab.
COST_VIEWS = {"bars": "Side by side", "bubble": "MACs against parameters"}
cost_view = st.segmented_control("Chart", list(COST_VIEWS), format_func=COST_VIEWS.get,
                                 default="bars", key="prof-chart") or "bars"
st.plotly_chart(ui.cost_chart(cost_view, names, preset, config), key=f"prof-{cost_view}")

st.subheader("Where the MACs go")
depth = st.radio("Module depth", [1, 2], horizontal=True, key="prof-depth",
                 format_func=lambda d: "top-level blocks" if d == 1 else "one level deeper")
modules = ui.module_table(names, preset, config, depth)
st.plotly_chart(ui.cost_chart("modules", names, preset, config, depth), key="prof-modules")
with st.expander("Per-module table"):
    st.dataframe(modules, hide_index=True, key="prof-modules-table", column_config={
        "params": COSTS["params"],
        "macs": COSTS["macs"],
        "share": st.column_config.NumberColumn("Share of MACs", format="percent"),
    })
    ui.csv_download(modules, "cnncompare-modules.csv", key="dl-modules")

skipped = ui.skipped_table(names, preset, config)
st.markdown("**Operators fvcore skipped** (run, but not in the MACs column)")
st.dataframe(skipped, hide_index=True, key="prof-skipped")
ui.csv_download(skipped, "cnncompare-skipped-ops.csv", key="dl-skipped")

st.subheader("Benchmark on this machine")
with st.form("bench-form"):
    c1, c2, c3 = st.columns(3)
    batch_sizes = tuple(sorted(c1.multiselect("Batch sizes", [1, 2, 4, 8, 16, 32, 64],
                                              default=[1, 8], key="bench-batches")))
    mode = c2.radio("Step", ["infer", "train"], horizontal=True, key="bench-mode",
                    format_func={"infer": "Inference", "train": "Training step"}.get)
    device = c3.selectbox("Device", available_devices(), key="bench-device")
    c4, c5, c6 = st.columns(3)
    dtype = c4.selectbox("Dtype", DTYPES, key="bench-dtype",
                         help="amp: autocast (float16 on CUDA, bfloat16 on the CPU)")
    # The defaults match the Compare page's batch-1 benchmark, so each reuses the other's rows.
    iters = int(c5.number_input("Timed steps (at most)", 3, 200, 15, key="bench-iters",
                                help="Timing stops sooner once five steps spread at most "
                                     "10% around their median."))
    max_seconds = float(c6.number_input("Seconds per row (at most)", 0.5, 120.0, 3.0,
                                        key="bench-seconds",
                                        help="The time budget of one row, warm-up included. "
                                             "A row whose step would take longer is "
                                             "refused before it starts."))
    fresh = st.checkbox("Measure again (ignore rows measured before)", key="bench-fresh")
    run = st.form_submit_button("Run benchmark", icon=":material/speed:", type="primary")

bench = None
if batch_sizes:
    settings = BenchSettings(mode=mode, device=device, dtype=dtype, iters=iters,
                             min_iters=min(BenchSettings.min_iters, iters),
                             max_seconds=max_seconds)
    try:
        if run:
            bench = ui.run_benchmark(names, batch_sizes, settings, preset, config,
                                     reuse=not fresh)
        else:
            bench = ui.cached_benchmark(names, batch_sizes, settings, preset, config)
    except ValueError as exc:
        st.error(str(exc))
else:
    st.info("Pick at least one batch size.")

combined = costs
if bench is not None and len(bench):
    first = bench[bench["batch_size"] == bench["batch_size"].min()]
    combined = costs.merge(first[["model", "median_ms", "throughput", "peak_mem_mb"]],
                           on="model", how="left")
shown = [c for c in COST_COLUMNS if c in combined.columns]
cost_table_slot.dataframe(combined[shown], hide_index=True, column_config=COST_COLUMNS,
                          key="prof-costs")

if bench is None or not len(bench):
    st.caption("No benchmark for these settings yet: press **Run benchmark**. Results are "
               "kept, so the page shows them at once next time.")
else:
    row = bench.iloc[0]
    st.caption(
        f"{row['device_name']} · {row['dtype']} · torch {row['torch']} · "
        f"{row['threads']} threads · peak matmul {row['peak_gflops']:.0f} GFLOP/s · "
        f"memory: {row['mem_method']}"
    )
    shown_bench = ["model", "config", "batch_size", "median_ms", "p10_ms", "p90_ms", "spread",
                   "throughput", "peak_mem_mb", "est_mem_mb", "achieved_gflops", "peak_share",
                   "iters", "noisy", "batch_anomaly", "cached"]
    st.dataframe(bench[shown_bench], hide_index=True, key="bench-table", column_config={
        **{c: COSTS[c] for c in ("median_ms", "p10_ms", "p90_ms", "spread", "throughput",
                                 "peak_mem_mb", "est_mem_mb", "noisy", "batch_anomaly")},
        "achieved_gflops": st.column_config.NumberColumn("GFLOP/s", format="%.2f"),
        "peak_share": st.column_config.NumberColumn("Share of peak", format="percent"),
        "cached": st.column_config.CheckboxColumn("From cache"),
    })
    doubtful = bench[bench["note"].fillna("") != ""]
    if len(doubtful):
        st.warning("Some timings should not be trusted:\n\n" + "\n".join(
            f"- **{r.model}, batch {r.batch_size}**: {r.note}"
            for r in doubtful.itertuples(index=False)), icon=":material/warning:")
    else:
        st.caption("Every timing above is steady: its step times spread at most 25% around "
                   "the median (p10 to p90).")
    st.caption("The CSV holds every column: device, thread count, dtype and torch version "
               "included.")
    ui.csv_download(bench, "cnncompare-benchmark.csv", key="dl-bench")
    BENCH_VIEWS = {"median_ms": "Latency", "throughput": "Throughput",
                   "peak_mem_mb": "Memory"}
    metric = st.segmented_control("Measured", list(BENCH_VIEWS), format_func=BENCH_VIEWS.get,
                                  default="median_ms", key="bench-chart") or "median_ms"
    st.plotly_chart(plots.batch_curves(bench, metric), key=f"bench-{metric}")
