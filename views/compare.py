"""Compare: stored runs grouped over seeds: mean curves with bands, accuracy with 95%
intervals, accuracy against cost, what the data can tell apart, confusion."""

import streamlit as st

from cnncompare import plots, ui
from cnncompare.compare import group_table, hide_constant_columns, per_class_accuracy
from cnncompare.store import SELECTED_LAST_EPOCH, ResultsStore
from cnncompare.studies import FACTORS, curve_bands, group_runs, separability

st.title("Compare")

store = ResultsStore()
runs = store.runs()
if runs.empty:
    st.info(
        "No stored runs yet. Train a few networks on the **Train** page (digits, the quick "
        "preset, 3 seeds: a few minutes on a laptop CPU), or from a terminal: "
        "`python -m cnncompare study --models lenet,alexnet,resnet18 --seeds 3`.",
        icon=":material/info:")
    st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

datasets = sorted(runs["dataset"].unique())
c1, c2, c3 = st.columns([1, 1, 3])
dataset = c1.selectbox("Dataset", datasets, help="Only runs on the same data are comparable.")
factor = c2.selectbox("Compare by", list(FACTORS), format_func=lambda f: FACTORS[f].title,
                      help="Runs that differ only in their seed form a group; its label "
                           "starts with this factor and names every other setting that "
                           "differs between the groups.")
pool = runs[runs["dataset"] == dataset].sort_values("created_at", kind="stable")
pool = group_runs(pool.reset_index(drop=True), factor)  # groups in the order they were trained
finished = pool[pool["status"] == "finished"]
labels = list(dict.fromkeys(pool["group"]))
chosen = c3.multiselect("Groups", labels,
                        default=list(dict.fromkeys(finished["group"])) or labels,
                        help="Each group is one configuration trained with one or more "
                             "seeds. Unfinished runs show the epochs they have in the "
                             "curves and stay out of the statistics.")
if not chosen:
    st.info("Pick at least one group.", icon=":material/info:")
    st.stop()
picked = pool[pool["group"].isin(chosen)]
ids = tuple(picked["run_id"])

per_run = picked[["run_id", "group", "group_key"]].merge(ui.results_table(ids, runs),
                                                        on="run_id")
if per_run["latency_ms"].isna().any():
    if st.button("Measure latency and memory (batch 1)", icon=":material/speed:",
                 help="Times each network's inference on this machine; cached afterwards."):
        bar = st.progress(0.0, text="Benchmarking...")
        ui.measure_speed(ids, progress=lambda f, msg: bar.progress(min(f, 1.0), text=msg))
        bar.empty()
        st.rerun()
groups = group_table(per_run, factor)
colors = plots.group_colors(per_run, by_model=factor == "model")

verdict = separability(groups)
if verdict:
    st.info(verdict, icon=":material/balance:")
notes = []
if (per_run["status"] != "finished").any():
    notes.append(f"{int((per_run['status'] != 'finished').sum())} unfinished run(s) appear in "
                 "the curves only.")
if (per_run["selected_by"] == SELECTED_LAST_EPOCH).any():
    notes.append("Runs stored by an earlier version have no validation split: they report "
                 "their last epoch's test accuracy, never their best test epoch.")
if notes:
    st.caption(" ".join(notes))

st.subheader("Learning curves")
metric = st.radio("Curve", ["val_acc", "test_acc", "val_loss", "test_loss", "train_loss"],
                  horizontal=True, format_func=plots.axis_label,
                  help="The validation accuracy chooses each run's reported epoch; the test "
                       "set is only measured.")
epochs = store.epochs(list(ids))
a, b = st.columns(2)
for col, x in ((a, "epoch"), (b, "wall_time")):
    bands = curve_bands(epochs, per_run, metric, x)
    col.plotly_chart(plots.band_curves(bands, metric, x, colors,
                                       title=f"{plots.axis_label(metric)} against "
                                             f"{plots.axis_label(x)}"),
                     key=f"curve-{x}")
st.caption("Lines: the mean over a group's seeds. Bands: \u00b1 one standard deviation for "
           "three or more seeds, the range for two; a dotted line is a single seed.")

st.subheader("Accuracy against cost")
front = groups[groups["pareto"].astype(bool)].sort_values("macs")[["macs", "test_acc_mean"]]
st.plotly_chart(plots.accuracy_vs_cost(groups, front, colors=colors,
                                       title="Mean test accuracy (95% interval) against MACs"),
                key="pareto")
on_front = ", ".join(groups.loc[groups["pareto"].astype(bool), "group"])
near = ", ".join(groups.loc[groups["within_noise"].astype(bool), "group"]) or "none"
st.caption(f"Pareto front of the means (no other group is both cheaper and more accurate on "
           f"average): {on_front}. Within noise of the front (their 95% interval reaches it): "
           f"{near}. MACs: multiply-accumulates per image, counted by fvcore; one FLOP count "
           "would be twice that.")

st.subheader("Side by side")
bars = [("test_acc_mean", "test_acc_ci_low", "test_acc_ci_high", False,
         "Test accuracy at the selected epoch (mean, 95% interval)"),
        ("final_test_acc_mean", None, None, False, "Test accuracy at the last epoch (mean)"),
        ("params", None, None, True, "Parameters"),
        ("macs", None, None, True, "MACs per image"),
        ("seconds_mean", None, None, False, "Training time (mean)"),
        ("latency_ms", None, None, False, "Latency, batch 1"),
        ("peak_mem_mb", None, None, False, "Peak memory")]
cols = st.columns(3)
shown = 0
for col, low, high, log, title in bars:
    if groups[col].notna().any():
        cols[shown % 3].plotly_chart(plots.interval_bars(groups, col, low, high, colors, log=log,
                                                         title=title), key=f"bar-{col}")
        shown += 1
st.caption("Error bars: Student's t 95% confidence interval over the seeds. A group marked "
           "(1 seed) has none: one run says nothing about the spread.")

st.subheader("Results")
hide = st.toggle("Hide columns equal across the shown runs", value=True, key="hide-equal")
table = hide_constant_columns(groups) if hide else groups
st.dataframe(table, hide_index=True, column_config={
    "group": "Group",
    **({factor: FACTORS[factor].title} if factor != "model" else {}),
    "model": "Model",
    "n_seeds": st.column_config.NumberColumn("Seeds", help="runs in the group"),
    "seeds": "Seed values",
    "test_acc_mean": st.column_config.NumberColumn(
        "Test acc. (mean)", format="percent",
        help="Test accuracy at each run's selected epoch (best validation accuracy), mean "
             "over the seeds"),
    "test_acc_std": st.column_config.NumberColumn("Std", format="percent",
                                                  help="sample standard deviation over seeds"),
    "test_acc_ci_low": st.column_config.NumberColumn("95% CI low", format="percent",
                                                     help="Student's t; empty for one seed"),
    "test_acc_ci_high": st.column_config.NumberColumn("95% CI high", format="percent"),
    "val_acc_mean": st.column_config.NumberColumn("Val. acc. (mean)", format="percent"),
    "selected_epoch_median": st.column_config.NumberColumn("Selected epoch (median)"),
    "final_test_acc_mean": st.column_config.NumberColumn(
        "Last-epoch test acc. (mean)", format="percent"),
    "largest_gap": st.column_config.NumberColumn(
        "Largest selected−last gap", format="percent",
        help="The largest drop from a seed's selected epoch to its last one"),
    "seconds_mean": st.column_config.NumberColumn("Train time (s, mean)", format="%.1f"),
    **ui.cost_columns(compact=True),
    "mem_method": "How memory was measured",
    "pareto": st.column_config.CheckboxColumn("On the front"),
    "within_noise": st.column_config.CheckboxColumn("Within noise of the front"),
    "precision": st.column_config.TextColumn("Precision", help="float32, or bf16/fp16 autocast"),
    "lr": st.column_config.NumberColumn("LR", format="%.0e"),
    "input": "Input",
    "width": st.column_config.NumberColumn("Width", format="%g"),
    "train_size": "Train images",
    "val_size": "Validation images",
    "test_size": "Test images",
    "batch_size": "Batch",
    "optimizer": "Optimizer",
    "augment": "Augment",
    "run_ids": "Run ids",
})
ui.csv_download(table, f"cnncompare-{dataset}-groups.csv", key="dl-compare")
st.caption(f"{len(groups)} groups of {len(per_run)} runs on {dataset}. The CSV holds exactly "
           "this table; `python -m cnncompare study ...` prints the same statistics and "
           "`python -m cnncompare export --out results.csv` every run.")
with st.expander("Every run"):
    st.dataframe(per_run.drop(columns=["group_key"]), hide_index=True, key="every-run")

st.subheader("Per class")
run_names = per_run["group"] + " · seed " + per_run["seed"].astype(str)
pick = st.selectbox("Run", run_names, key="confusion-run")
run_id = per_run.loc[run_names == pick, "run_id"].iloc[0]
try:
    matrix, names = store.confusion(run_id)
except ValueError as exc:
    st.info(str(exc), icon=":material/info:")
else:
    a, b = st.columns(2)
    a.plotly_chart(plots.confusion_heatmap(matrix, names,
                                           title=f"Confusion matrix at the selected epoch: "
                                                 f"{pick}"), key="confusion")
    b.plotly_chart(plots.per_class_accuracy(per_class_accuracy(matrix, names),
                                            title="Per-class accuracy"),
                   key="per-class")
