"""Compare: stored runs grouped over seeds: mean curves with bands, accuracy with 95%
intervals, accuracy against cost, what the data can tell apart, confusion."""

import pandas as pd
import streamlit as st

from cnncompare import plots, ui
from cnncompare.compare import group_table, hide_constant_columns, per_class_accuracy, shown_words
from cnncompare.i18n import t, tn
from cnncompare.store import SELECTED_LAST_EPOCH, ResultsStore
from cnncompare.studies import FACTORS, curve_bands, group_runs, separability

st.title(t("Compare"))

store = ResultsStore()
runs = store.runs()
if runs.empty:
    st.info(t(
        "No stored runs yet. Train a few networks on the **Train** page (digits, the quick "
        "preset, 3 seeds: a few minutes on a laptop CPU), or from a terminal: "
        "`python -m cnncompare study --models lenet,alexnet,resnet18 --seeds 3`."),
        icon=":material/info:")
    st.page_link("views/train.py", label=t("Go to Train"), icon=":material/model_training:")
    st.stop()

datasets = sorted(runs["dataset"].unique())
c1, c2, c3 = st.columns([1, 1, 3])
dataset = c1.selectbox(t("Dataset"), datasets,
                       help=t("Only runs on the same data are comparable."))
factor = c2.selectbox(t("Compare by"), list(FACTORS), format_func=lambda f: t(FACTORS[f].title),
                      help=t("Runs that differ only in their seed form a group; its label "
                             "starts with this factor and names every other setting that "
                             "differs between the groups."))
pool = runs[runs["dataset"] == dataset].sort_values("created_at", kind="stable")
pool = group_runs(pool.reset_index(drop=True), factor)  # groups in the order they were trained
finished = pool[pool["status"] == "finished"]
labels = list(dict.fromkeys(pool["group"]))
chosen = c3.multiselect(t("Groups"), labels,
                        default=list(dict.fromkeys(finished["group"])) or labels,
                        help=t("Each group is one configuration trained with one or more "
                               "seeds. Unfinished runs show the epochs they have in the "
                               "curves and stay out of the statistics."))
if not chosen:
    st.info(t("Pick at least one group."), icon=":material/info:")
    st.stop()
picked = pool[pool["group"].isin(chosen)]
ids = tuple(picked["run_id"])

per_run = picked[["run_id", "group", "group_key"]].merge(ui.results_table(ids, runs),
                                                        on="run_id")
if per_run["latency_ms"].isna().any():
    if st.button(t("Measure latency and memory (batch 1)"), icon=":material/speed:",
                 help=t("Times each network's inference on this machine; cached afterwards.")):
        bar = st.progress(0.0, text=t("Benchmarking..."))
        ui.measure_speed(ids, progress=lambda f, msg: bar.progress(min(f, 1.0), text=t(msg)))
        bar.empty()
        st.rerun()
groups = group_table(per_run, factor)
colors = plots.group_colors(per_run, by_model=factor == "model")

verdict = separability(groups)
if verdict:
    st.info(verdict, icon=":material/balance:")
notes = []
if (per_run["status"] != "finished").any():
    unfinished = int((per_run["status"] != "finished").sum())
    notes.append(tn("{n} unfinished run appears in the curves only.",
                    "{n} unfinished runs appear in the curves only.", unfinished))
if (per_run["selected_by"] == SELECTED_LAST_EPOCH).any():
    notes.append(t("Runs stored by an earlier version have no validation split: they report "
                   "their last epoch's test accuracy, never their best test epoch."))
if notes:
    st.caption(" ".join(notes))

st.subheader(t("Learning curves"))
metric = st.radio(t("Curve"), ["val_acc", "test_acc", "val_loss", "test_loss", "train_loss"],
                  horizontal=True, format_func=plots.axis_label,
                  help=t("The validation accuracy chooses each run's reported epoch; the "
                         "test set is only measured."))
epochs = store.epochs(list(ids))
a, b = st.columns(2)
for col, x in ((a, "epoch"), (b, "wall_time")):
    bands = curve_bands(epochs, per_run, metric, x)
    col.plotly_chart(plots.band_curves(bands, metric, x, colors,
                                       title=t("{metric} against {x}",
                                               metric=plots.axis_label(metric),
                                               x=plots.axis_label(x))),
                     key=f"curve-{x}")
st.caption(t("Lines: the mean over a group's seeds. Bands: \u00b1 one standard deviation for "
             "three or more seeds, the range for two; a dotted line is a single seed."))

st.subheader(t("Accuracy against cost"))
front = groups[groups["pareto"].astype(bool)].sort_values("macs")[["macs", "test_acc_mean"]]
st.plotly_chart(plots.accuracy_vs_cost(groups, front, colors=colors,
                                       title=t("Mean test accuracy (95% interval) against "
                                               "MACs")),
                key="pareto")
on_front = ", ".join(groups.loc[groups["pareto"].astype(bool), "group"])
near = ", ".join(groups.loc[groups["within_noise"].astype(bool), "group"]) or t("none")
st.caption(t("Pareto front of the means (no other group is both cheaper and more accurate on "
             "average): {front}. Within noise of the front (their 95% interval reaches it): "
             "{near}. MACs: multiply-accumulates per image, counted by fvcore; one FLOP count "
             "would be twice that.", front=on_front, near=near))

st.subheader(t("Side by side"))
bars = [("test_acc_mean", "test_acc_ci_low", "test_acc_ci_high", False,
         t("Test accuracy at the selected epoch (mean, 95% interval)")),
        ("final_test_acc_mean", None, None, False, t("Test accuracy at the last epoch (mean)")),
        ("params", None, None, True, t("Parameters")),
        ("macs", None, None, True, t("MACs per image")),
        ("seconds_mean", None, None, False, t("Training time (mean)")),
        ("latency_ms", None, None, False, t("Latency, batch 1")),
        ("peak_mem_mb", None, None, False, t("Peak memory"))]
cols = st.columns(3)
shown = 0
for col, low, high, log, title in bars:
    if groups[col].notna().any():
        cols[shown % 3].plotly_chart(plots.interval_bars(groups, col, low, high, colors, log=log,
                                                         title=title), key=f"bar-{col}")
        shown += 1
st.caption(t("Error bars: Student's t 95% confidence interval over the seeds. A group marked "
             "(1 seed) has none: one run says nothing about the spread."))

st.subheader(t("Results"))
hide = st.toggle(t("Hide columns equal across the shown runs"), value=True, key="hide-equal")
table = hide_constant_columns(groups) if hide else groups
st.dataframe(shown_words(table), hide_index=True, column_config={
    "group": t("Group"),
    **({factor: t(FACTORS[factor].title)} if factor != "model" else {}),
    "model": t("Model"),
    "n_seeds": st.column_config.NumberColumn(t("Seeds"), help=t("runs in the group")),
    "seeds": t("Seed values"),
    "test_acc_mean": st.column_config.NumberColumn(
        t("Test acc. (mean)"), format="percent",
        help=t("Test accuracy at each run's selected epoch (best validation accuracy), mean "
               "over the seeds")),
    "test_acc_std": st.column_config.NumberColumn(
        t("Std"), format="percent", help=t("sample standard deviation over seeds")),
    "test_acc_ci_low": st.column_config.NumberColumn(t("95% CI low"), format="percent",
                                                     help=t("Student's t; empty for one seed")),
    "test_acc_ci_high": st.column_config.NumberColumn(t("95% CI high"), format="percent"),
    "val_acc_mean": st.column_config.NumberColumn(t("Val. acc. (mean)"), format="percent"),
    "selected_epoch_median": st.column_config.NumberColumn(t("Selected epoch (median)")),
    "final_test_acc_mean": st.column_config.NumberColumn(
        t("Last-epoch test acc. (mean)"), format="percent"),
    "largest_gap": st.column_config.NumberColumn(
        t("Largest selected−last gap"), format="percent",
        help=t("The largest drop from a seed's selected epoch to its last one")),
    "seconds_mean": st.column_config.NumberColumn(t("Train time (s, mean)"), format="%.1f"),
    **ui.cost_columns(compact=True),
    "mem_method": t("How memory was measured"),
    "pareto": st.column_config.CheckboxColumn(t("On the front")),
    "within_noise": st.column_config.CheckboxColumn(t("Within noise of the front")),
    "precision": st.column_config.TextColumn(t("Precision"),
                                             help=t("float32, or bf16/fp16 autocast")),
    "lr": st.column_config.NumberColumn(t("LR"), format="%.0e"),
    "input": t("Input"),
    "width": st.column_config.NumberColumn(t("Width"), format="%g"),
    "train_size": t("Train images"),
    "val_size": t("Validation images"),
    "test_size": t("Test images"),
    "batch_size": t("Batch"),
    "optimizer": t("Optimizer"),
    "augment": t("Augment"),
    "run_ids": t("Run ids"),
    "dataset": t("Dataset"),
    "epochs": t("Epochs"),
    "scheduler": t("Scheduler"),
    "weight_decay": t("Weight decay"),
    "label_smoothing": t("Label smoothing"),
    "model_kwargs": t("Model arguments"),
})
ui.csv_download(table, f"cnncompare-{dataset}-groups.csv", key="dl-compare")
st.caption(t("{groups} of {runs} on {dataset}. The CSV holds exactly this table; "
             "`python -m cnncompare study ...` prints the same statistics and "
             "`python -m cnncompare export --out results.csv` every run.",
             groups=tn("{n} group", "{n} groups", len(groups)),
             runs=tn("{n} run", "{n} runs", len(per_run)), dataset=dataset))
with st.expander(t("Every run")):
    st.dataframe(shown_words(per_run.drop(columns=["group_key"])), hide_index=True,
                 key="every-run", column_config={
                     "run_id": t("Run id"), "group": t("Group"), "label": t("Label"),
                     "model": t("Model"), "dataset": t("Dataset"), "status": t("Status"),
                     "test_acc": st.column_config.NumberColumn(t("Test accuracy"),
                                                               format="percent"),
                     "selected_epoch": t("Selected epoch"),
                     "val_acc": st.column_config.NumberColumn(t("Validation accuracy"),
                                                              format="percent"),
                     "final_test_acc": st.column_config.NumberColumn(
                         t("Last-epoch test accuracy"), format="percent"),
                     "selected_by": t("Epoch chosen by"), "epochs_done": t("Epochs done"),
                     "epochs": t("Epochs"), "seconds": t("Train time (s)"),
                     **ui.cost_columns(compact=True),
                     "mem_method": t("How memory was measured"), "precision": t("Precision"),
                     "input": t("Input"), "width": t("Width"), "train_size": t("Train images"),
                     "val_size": t("Validation images"), "test_size": t("Test images"),
                     "batch_size": t("Batch"), "lr": t("LR"), "optimizer": t("Optimizer"),
                     "scheduler": t("Scheduler"), "weight_decay": t("Weight decay"),
                     "label_smoothing": t("Label smoothing"), "augment": t("Augment"),
                     "model_kwargs": t("Model arguments"), "seed": t("Seed")})

st.subheader(t("Per class"))
run_names = pd.Series([t("{group} · seed {seed}", group=g, seed=s_)
                       for g, s_ in zip(per_run["group"], per_run["seed"], strict=True)],
                      index=per_run.index)
pick = st.selectbox(t("Run"), run_names, key="confusion-run")
run_id = per_run.loc[run_names == pick, "run_id"].iloc[0]
try:
    matrix, names = store.confusion(run_id)
except ValueError as exc:
    st.info(ui.error_text(exc), icon=":material/info:")
else:
    a, b = st.columns(2)
    a.plotly_chart(plots.confusion_heatmap(matrix, names,
                                           title=t("Confusion matrix at the selected "
                                                   "epoch: {run}", run=pick)), key="confusion")
    b.plotly_chart(plots.per_class_accuracy(per_class_accuracy(matrix, names),
                                            title=t("Per-class accuracy")),
                   key="per-class")
