"""Compare: stored runs side by side: curves, cost, accuracy against cost, confusion."""

import streamlit as st

from cnncompare import plots, ui
from cnncompare.compare import (
    pareto_front,
    pareto_frontier_line,
    per_class_accuracy,
    run_labels,
)
from cnncompare.store import ResultsStore

st.title("Compare")

store = ResultsStore()
runs = store.runs()
if runs.empty:
    st.info(
        "No stored runs yet. Train a few networks on the **Train** page (digits, the quick "
        "preset, takes a few minutes on a laptop CPU), or from a terminal: "
        "`python -m cnncompare train --model lenet --epochs 5`.", icon=":material/info:")
    st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

datasets = sorted(runs["dataset"].unique())
c1, c2 = st.columns([1, 3])
dataset = c1.selectbox("Dataset", datasets, help="Only runs on the same data are comparable.")
pool = runs[runs["dataset"] == dataset].reset_index(drop=True)
pool["label"] = run_labels(pool)
finished = pool[pool["status"] == "finished"]
chosen = c2.multiselect("Runs", list(pool["label"]),
                        default=list(finished["label"] if len(finished) else pool["label"]),
                        help="Unfinished runs show the epochs they have.")
if not chosen:
    st.info("Pick at least one run.", icon=":material/info:")
    st.stop()
ids = tuple(pool.set_index("label").loc[chosen, "run_id"])

table = ui.results_table(ids, runs)
if table["latency_ms"].isna().any():
    if st.button("Measure latency and memory (batch 1)", icon=":material/speed:",
                 help="Times each network's inference on this machine; cached afterwards."):
        bar = st.progress(0.0, text="Benchmarking...")
        ui.measure_speed(ids, progress=lambda f, msg: bar.progress(min(f, 1.0), text=msg))
        bar.empty()
        st.rerun()

epochs = store.epochs(list(ids)).merge(table[["run_id", "label", "model"]], on="run_id")

st.subheader("Learning curves")
t1, t2 = st.tabs(["Against epoch", "Against wall time"])
for tab, x in ((t1, "epoch"), (t2, "wall_time")):
    with tab:
        a, b = st.columns(2)
        a.plotly_chart(plots.learning_curves(epochs, "test_acc", x, title="Test accuracy"),
                       key=f"acc-{x}")
        b.plotly_chart(plots.learning_curves(epochs, "test_loss", x, title="Test loss"),
                       key=f"loss-{x}")

st.subheader("Accuracy against cost")
front = pareto_frontier_line(table)
on_front = table.loc[pareto_front(table), "label"].tolist()
st.plotly_chart(plots.accuracy_vs_cost(table, front, title="Test accuracy against MACs "
                                       "(bubble area: parameters)"), key="pareto")
st.caption("On the Pareto front (no other run is both cheaper and more accurate): "
           + ", ".join(on_front) + ". MACs: multiply-accumulates per image, counted by "
           "fvcore; one FLOP count would be twice that.")

st.subheader("Side by side")
bars = [("test_acc", False, "Test accuracy"), ("params", True, "Parameters"),
        ("macs", True, "MACs per image"), ("seconds", False, "Training time"),
        ("latency_ms", False, "Latency, batch 1"), ("peak_mem_mb", False, "Peak memory")]
cols = st.columns(3)
for i, (col, log, title) in enumerate(bars):
    if table[col].notna().any():
        cols[i % 3].plotly_chart(plots.metric_bars(table, col, log=log, title=title),
                                 key=f"bar-{col}")

st.subheader("Results")
st.dataframe(table, hide_index=True, column_config={
    "label": "Run",
    "model": "Model",
    "dataset": "Dataset",
    "status": "Status",
    "test_acc": st.column_config.ProgressColumn("Test accuracy", min_value=0.0, max_value=1.0,
                                                format="percent"),
    "best_test_acc": st.column_config.NumberColumn("Best test acc.", format="percent"),
    "epochs_done": "Epochs",
    "seconds": st.column_config.NumberColumn("Train time (s)", format="%.1f"),
    "params": st.column_config.NumberColumn("Parameters", format="compact"),
    "macs": st.column_config.NumberColumn("MACs", format="compact",
                                          help="multiply-accumulates per image (fvcore)"),
    "flops": st.column_config.NumberColumn("FLOPs", format="compact",
                                           help="floating-point operations per image, "
                                                "forward (torch FlopCounterMode)"),
    "latency_ms": st.column_config.NumberColumn("Latency (ms)", format="%.2f",
                                                help="median, batch 1, inference"),
    "peak_mem_mb": st.column_config.NumberColumn("Peak mem (MB)", format="%.1f"),
    "mem_method": "How memory was measured",
    "lr": st.column_config.NumberColumn("LR", format="%.0e"),
    "input": "Input",
    "width": st.column_config.NumberColumn("Width", format="%g"),
    "train_size": "Train images",
    "test_size": "Test images",
    "batch_size": "Batch",
    "optimizer": "Optimizer",
    "seed": "Seed",
    "run_id": "Run id",
})
ui.csv_download(table, f"cnncompare-{dataset}-runs.csv", key="dl-compare")
st.caption(f"{len(table)} runs on {dataset}; every figure reproduces with "
           "`python -m cnncompare export --out results.csv`.")

st.subheader("Per class")
pick = st.selectbox("Run", table["label"], key="confusion-run")
run_id = table.set_index("label").loc[pick, "run_id"]
try:
    matrix, names = store.confusion(run_id)
except ValueError as exc:
    st.info(str(exc), icon=":material/info:")
else:
    a, b = st.columns(2)
    a.plotly_chart(plots.confusion_heatmap(matrix, names, title=f"Confusion matrix: {pick}"),
                   key="confusion")
    b.plotly_chart(plots.per_class_accuracy(per_class_accuracy(matrix, names),
                                            title="Per-class accuracy"),
                   key="per-class")
