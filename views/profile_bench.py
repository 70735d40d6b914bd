"""Profile & Benchmark: what each network costs, counted and measured on this machine."""

import streamlit as st

from cnncompare import list_models, plots, ui
from cnncompare.benchmark import DTYPES, BenchSettings
from cnncompare.devices import available_devices
from cnncompare.i18n import t
from cnncompare.profiling import ACTIVATION_NOTE, MACS_VS_FLOPS

st.title(t("Profile & Benchmark"))
st.caption(t(
    "Parameters, MACs and FLOPs are counted (the same on every machine); latency, "
    "throughput and peak memory are measured here, with the device beside every figure."
))

MODELS = list_models()
DEFAULT = ["lenet", "alexnet", "vgg11", "resnet18"]
names = tuple(st.multiselect(t("Models"), MODELS, default=DEFAULT, key="prof-models"))
preset, config = ui.config_picker("prof")
if not names:
    st.info(t("Pick at least one model."))
    st.stop()

try:
    costs = ui.cost_table(names, preset, config)
except ValueError as exc:
    st.error(ui.error_text(exc))
    st.stop()

COSTS = ui.cost_columns()
COST_COLUMNS = {
    "model": t("Model"),
    "input": st.column_config.TextColumn(t("Input"), help=t("channels x height x width")),
    "width": st.column_config.NumberColumn(t("Width"), format="%.3g"),
    **{c: COSTS[c] for c in ("params", "macs", "flops", "train_flops", "param_mb",
                             "activation_mb", "median_ms", "throughput", "peak_mem_mb",
                             "skipped_ops")},
}

st.subheader(t("Cost per image"))
st.caption(t(MACS_VS_FLOPS))
st.caption(t(ACTIVATION_NOTE))
cost_table_slot = st.empty()
ui.csv_download(costs, "cnncompare-costs.csv", key="dl-costs")

# One chart at a time: every chart drawn costs the browser time, even in a hidden tab.
COST_VIEWS = {"bars": t("Side by side"), "bubble": t("MACs against parameters")}
cost_view = st.segmented_control(t("Chart"), list(COST_VIEWS), format_func=COST_VIEWS.get,
                                 default="bars", key="prof-chart") or "bars"
st.plotly_chart(ui.cost_chart(cost_view, names, preset, config), key=f"prof-{cost_view}")

st.subheader(t("Where the MACs go"))
depth = st.radio(t("Module depth"), [1, 2], horizontal=True, key="prof-depth",
                 format_func=lambda d: t("top-level blocks") if d == 1 else t("one level deeper"))
modules = ui.module_table(names, preset, config, depth)
st.plotly_chart(ui.cost_chart("modules", names, preset, config, depth), key="prof-modules")
with st.expander(t("Per-module table")):
    st.dataframe(modules, hide_index=True, key="prof-modules-table", column_config={
        "model": t("Model"),
        "module": t("Module"),
        "type": t("Type"),
        "params": COSTS["params"],
        "macs": COSTS["macs"],
        "share": st.column_config.NumberColumn(t("Share of MACs"), format="percent"),
    })
    ui.csv_download(modules, "cnncompare-modules.csv", key="dl-modules")

skipped = ui.skipped_table(names, preset, config)
st.markdown(t("**Operators fvcore skipped** (run, but not in the MACs column)"))
st.dataframe(skipped, hide_index=True, key="prof-skipped", column_config={
    "model": t("Model"), "operator": t("Operator"), "calls": t("Calls")})
ui.csv_download(skipped, "cnncompare-skipped-ops.csv", key="dl-skipped")

st.subheader(t("Benchmark on this machine"))
with st.form("bench-form"):
    c1, c2, c3 = st.columns(3)
    batch_sizes = tuple(sorted(c1.multiselect(t("Batch sizes"), [1, 2, 4, 8, 16, 32, 64],
                                              default=[1, 8], key="bench-batches")))
    STEPS = {"infer": t("Inference"), "train": t("Training step")}
    mode = c2.radio(t("Step"), ["infer", "train"], horizontal=True, key="bench-mode",
                    format_func=STEPS.get)
    device = c3.selectbox(t("Device"), available_devices(), key="bench-device")
    c4, c5, c6 = st.columns(3)
    dtype = c4.selectbox(t("Dtype"), DTYPES, key="bench-dtype",
                         help=t("amp: autocast (float16 on CUDA, bfloat16 on the CPU)"))
    # The defaults match the Compare page's batch-1 benchmark, so each reuses the other's rows.
    iters = int(c5.number_input(t("Timed steps (at most)"), 3, 200, 15, key="bench-iters",
                                help=t("Timing stops sooner once five steps spread at most "
                                       "10% around their median.")))
    max_seconds = float(c6.number_input(t("Seconds per row (at most)"), 0.5, 120.0, 3.0,
                                        key="bench-seconds",
                                        help=t("The time budget of one row, warm-up "
                                               "included. A row whose step would take "
                                               "longer is refused before it starts.")))
    fresh = st.checkbox(t("Measure again (ignore rows measured before)"), key="bench-fresh")
    run = st.form_submit_button(t("Run benchmark"), icon=":material/speed:", type="primary")

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
        st.error(ui.error_text(exc))
else:
    st.info(t("Pick at least one batch size."))

combined = costs
if bench is not None and len(bench):
    first = bench[bench["batch_size"] == bench["batch_size"].min()]
    combined = costs.merge(first[["model", "median_ms", "throughput", "peak_mem_mb"]],
                           on="model", how="left")
shown = [c for c in COST_COLUMNS if c in combined.columns]
cost_table_slot.dataframe(combined[shown], hide_index=True, column_config=COST_COLUMNS,
                          key="prof-costs")

if bench is None or not len(bench):
    st.caption(t("No benchmark for these settings yet: press **Run benchmark**. Results are "
                 "kept, so the page shows them at once next time."))
else:
    row = bench.iloc[0]
    method = str(row["mem_method"])  # how the memory was measured (benchmark's words)
    st.caption(t(
        "{device} · {dtype} · torch {torch} · {threads} threads · peak matmul {peak} GFLOP/s "
        "· memory: {memory}", device=row["device_name"], dtype=row["dtype"],
        torch=row["torch"], threads=row["threads"], peak=f"{row['peak_gflops']:.0f}",
        memory=t(method)))
    shown_bench = ["model", "config", "batch_size", "median_ms", "p10_ms", "p90_ms", "spread",
                   "throughput", "peak_mem_mb", "est_mem_mb", "achieved_gflops", "peak_share",
                   "iters", "noisy", "batch_anomaly", "cached"]
    st.dataframe(bench[shown_bench], hide_index=True, key="bench-table", column_config={
        **{c: COSTS[c] for c in ("median_ms", "p10_ms", "p90_ms", "spread", "throughput",
                                 "peak_mem_mb", "est_mem_mb", "noisy", "batch_anomaly")},
        "model": t("Model"),
        "config": t("Configuration"),
        "batch_size": t("Batch size"),
        "iters": t("Timed steps"),
        "achieved_gflops": st.column_config.NumberColumn("GFLOP/s", format="%.2f"),
        "peak_share": st.column_config.NumberColumn(t("Share of peak"), format="percent"),
        "cached": st.column_config.CheckboxColumn(t("From cache")),
    })
    doubtful = bench[bench["note"].fillna("") != ""]
    if len(doubtful):
        st.warning(t("Some timings should not be trusted:") + "\n\n" + "\n".join(
            t("- **{model}, batch {batch}**: {note}", model=r.model, batch=r.batch_size,
              note=t(r.note)) for r in doubtful.itertuples(index=False)),
            icon=":material/warning:")
    else:
        st.caption(t("Every timing above is steady: its step times spread at most 25% around "
                     "the median (p10 to p90)."))
    st.caption(t("The CSV holds every column: device, thread count, dtype and torch version "
                 "included."))
    ui.csv_download(bench, "cnncompare-benchmark.csv", key="dl-bench")
    BENCH_VIEWS = {"median_ms": t("Latency"), "throughput": t("Throughput"),
                   "peak_mem_mb": t("Memory")}
    metric = st.segmented_control(t("Measured"), list(BENCH_VIEWS), format_func=BENCH_VIEWS.get,
                                  default="median_ms", key="bench-chart") or "median_ms"
    st.plotly_chart(plots.batch_curves(bench, metric), key=f"bench-{metric}")
