"""Train: pick models, seeds, a dataset and a preset; train the study's missing runs."""

import time

import pandas as pd
import streamlit as st

from cnncompare import data, executors, list_models, plots, ui
from cnncompare.compare import shown_words
from cnncompare.devices import DEVICE_CHOICES
from cnncompare.formatting import duration
from cnncompare.i18n import N_, t, tn
from cnncompare.store import ResultsStore
from cnncompare.studies import FACTORS, parse_values, study_configs
from cnncompare.train_config import OPTIMIZERS, PRESETS, TrainConfig, run_status

st.title(t("Train"))
st.caption(t(
    "Train several networks on the same data with the same settings, each with several "
    "seeds, so that Compare can tell a real difference from luck. Every run holds out a "
    "validation split (10% of its training images) and reports the test accuracy at the "
    "epoch with the best validation accuracy. Finished runs are stored under a hash of their "
    "configuration (precision included) and never trained twice; an interrupted run "
    "resumes from its last finished epoch."
))

DEFAULTS = TrainConfig("lenet")  # the command line's defaults: a README run is found here
manager = ui.job_manager()
store = ResultsStore()
session = ui.session_key()
roots = data.app_data_roots()

models = st.multiselect(t("Models"), list_models(), default=["lenet", "alexnet", "resnet18"])
c1, c2, c3 = st.columns(3)
dataset = c1.selectbox(t("Dataset"), data.list_datasets(),
                       format_func=lambda n: t(data.dataset_info(n).title),
                       help=t("digits is bundled with scikit-learn and works offline."))
info = data.dataset_info(dataset)
c1.caption(t(info.description))
data_root, download = None, False
if info.needs_root:
    data_root = c1.text_input(
        t("Data root"), placeholder=str(data.DEFAULT_DATA_ROOT),
        help=t("A folder that holds the dataset (for an image folder: one subfolder per "
               "class). It must lie inside a folder this server allows: the results home, "
               "the project's data folder, or one named in {env}. Empty: the project's data "
               "folder (MNIST, Fashion-MNIST, CIFAR-10).", env=data.DATA_ROOTS_ENV)) or None
    if info.downloadable:
        download = c1.checkbox(t("Download if missing"),
                               help=t("Fetches the dataset when training starts (the server "
                                      "needs internet access)."))
preset = c2.radio(t("Preset"), list(PRESETS), format_func=lambda p: t(PRESETS[p]))
epochs = c2.number_input(t("Epochs"), 1, 200, DEFAULTS.epochs)
seeds = c2.number_input(t("Seeds"), 1, 20, 3 if preset == "quick" else 1,
                        help=t("Each model trains once per seed (0, 1, 2, ...): Compare then "
                               "shows the mean with a 95% confidence interval. One seed "
                               "gives no interval."))
device = c2.selectbox(t("Device"), DEVICE_CHOICES,
                      help=t("auto: CUDA, then Apple MPS, then CPU"))
use_ray, ray_address = False, executors.ray_address()
if executors.ray_installed():  # Ray itself is imported only when a job starts on it
    if ray_address:
        use_ray = c2.checkbox(
            t("Train on the Ray cluster"),
            help=t("The runs train as Ray tasks on the cluster at {address}, one CPU each (one "
                   "GPU each with the cuda device); the results come back to this server's "
                   "store.", address=ray_address))
    else:
        use_ray = c2.checkbox(
            t("Start a local Ray"),
            help=t("The runs train at once as Ray tasks on this machine's CPUs, one CPU each; "
                   "Ray takes about 10 s to start. To use a cluster instead, start the server "
                   "with {env} set to its address.", env=executors.RAY_ADDRESS_ENV))
batch_size = c3.number_input(
    t("Batch size"), 1, 4096, DEFAULTS.batch_size,
    help=t("Small sets like digits need enough steps: 32 gives 41 steps an epoch on the "
           "1,293 digits trained on (the other 144 of its 1,437 are the validation split)."))
lr = c3.number_input(t("Learning rate"), 1e-5, 1.0, DEFAULTS.lr, format="%.5f",
                     help=t("The peak: one epoch of warm-up, then held, then a linear decay "
                            "to zero over the last 30% of the steps."))
optimizer = c3.selectbox(t("Optimizer"), OPTIMIZERS,
                         index=OPTIMIZERS.index(DEFAULTS.optimizer))
augment = c3.checkbox(t("Augment"), value=DEFAULTS.augment,
                      help=t("Random shifts and small rotations (digits, MNIST) or crops and "
                             "flips (CIFAR-10, image folders), drawn per batch on the device."))
factors = [f for f in FACTORS if f != "model"]
with st.expander(t("Compare another factor")):
    factor = st.selectbox(t("Factor"), ["model", *factors],
                          format_func=lambda f: t("None (models only)") if f == "model"
                          else t(FACTORS[f].title),
                          help=t("Train every model with each value, e.g. Adam against SGD."))
    values_text = ""
    if factor != "model":
        values_text = st.text_input(t("Values (comma-separated)"),
                                    placeholder={"optimizer": "adam,sgd", "lr": "0.01,0.001",
                                                 "batch_size": "32,128", "width": "0.25,0.5",
                                                 "train_size": "500,1437",
                                                 "augment": "off,on"}[factor])
with st.expander(t("Split sizes")):
    s1, s2, s3 = st.columns(3)
    train_size = s1.number_input(t("Train images (0: the dataset's default)"), 0, 10**6, 0,
                                 help=t("Images drawn for training; the validation images are "
                                        "held out of them."))
    val_size = s2.number_input(t("Validation images (0: 10% of the train images)"), 0, 10**6,
                               0)
    test_size = s3.number_input(t("Test images (0: the dataset's default)"), 0, 10**6, 0)

check = data.check(dataset, root=data_root, download=download, allowed_roots=roots)
if not check.ok:
    st.error(ui.error_text(check.message("app")), icon=":material/error:")
    st.stop()
if check.state == data.DOWNLOAD:
    st.info(ui.error_text(check.message("app")), icon=":material/download:")

try:
    values = parse_values(factor, values_text) if factor != "model" else []
    configs = study_configs(
        models, list(range(int(seeds))), factor=factor, values=values, preset=preset,
        dataset=dataset, epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
        optimizer=optimizer, augment=bool(augment), train_size=int(train_size) or None,
        val_size=int(val_size) or None, test_size=int(test_size) or None)
    status = run_status(configs, store, data_root, download, device=device,
                        allowed_roots=roots, factor=factor)
except data.DatasetNotFoundError as exc:
    st.error(ui.error_text(exc.message("app")), icon=":material/error:")
    st.stop()
except (ValueError, FileNotFoundError) as exc:
    st.error(ui.error_text(exc), icon=":material/error:")
    st.stop()

st.subheader(t("Runs"))
st.caption(t("One row per model and seed. Test accuracy is the one at the selected epoch "
             "(best validation accuracy)."))
st.dataframe(shown_words(status), hide_index=True, column_config={
    "model": t("Model"),
    "seed": st.column_config.NumberColumn(t("Seed"), format="%d"),
    **({factor: t(FACTORS[factor].title)} if factor != "model" else {}),
    "state": st.column_config.TextColumn(
        t("Stored?"), help=t("stored: finished; partial: resumes from its last finished "
                             "epoch; new: not trained yet")),
    "epochs_done": st.column_config.NumberColumn(t("Epochs done")),
    "epochs": st.column_config.NumberColumn(t("Epochs")),
    "test_acc": st.column_config.ProgressColumn(t("Test accuracy"), min_value=0.0,
                                                max_value=1.0, format="percent",
                                                help=t("At the selected epoch")),
    "selected_epoch": st.column_config.NumberColumn(
        t("Selected epoch"), format="%d", help=t("The epoch with the best validation accuracy")),
    "precision": st.column_config.TextColumn(
        t("Precision"), help=t("float32, or bf16/fp16 autocast: part of the run's key")),
    "run_id": st.column_config.TextColumn(t("Run id"), help=t("hash of the configuration")),
})
todo = status["state"] != "stored"
missing = [c for c, t in zip(configs, todo, strict=True) if t]
active = manager.active()
n = len(missing)
label = tn("Train {n} run", "Train {n} runs", n) if missing else t("All stored")
if st.button(label, type="primary", disabled=not missing or active is not None,
             icon=":material/play_arrow:", key="train"):
    try:
        job = manager.start(missing, [N_("{model} · seed {seed}", model=c.model, seed=c.seed)
                                      for c in missing],
                            run_ids=list(status.loc[todo, "run_id"]), owner=session,
                            device=device, data_root=data_root, download=download,
                            allowed_roots=roots,
                            executor=executors.ray_executor_for(device, ray_address)
                            if use_ray else None)
        st.session_state["watch_job"] = job.job_id
        active = job
    except (ValueError, RuntimeError) as exc:
        st.error(ui.error_text(exc), icon=":material/error:")
if not missing:
    st.success(t("Every chosen run is stored: open **Compare** to see them side by side."),
               icon=":material/check_circle:")
    st.page_link("views/compare.py", label=t("Compare"), icon=":material/compare_arrows:")

job = active or manager.get(st.session_state.get("watch_job", ""))
# A job's and its runs' states (jobs.ItemState.status: data), as shown.
JOB_WORDS = {"queued": N_("queued"), "running": N_("running"), "done": N_("done"),
             "cached": N_("cached"), "cancelled": N_("cancelled"), "failed": N_("failed")}


# Every refresh redraws the bars and the live chart in the browser, on the cores the
# training uses: once a second cost a 2-core machine a third of its training speed
# (benchmarks/app_vs_cli.py). Every 3 s keeps the page live at a fraction of that.
@st.fragment(run_every=3.0 if job is not None and job.running else None)
def progress_panel() -> None:
    ui.apply_language()  # a fragment's own rerun skips app.py, which sets the language
    if job is None:
        return
    snap = job.snapshot()
    st.subheader(t("Progress"))
    if snap.seconds_left:
        overall = t("{share} of the job · about {left} left", share=f"{snap.fraction:.0%}",
                    left=duration(snap.seconds_left))
    else:
        overall = t("{share} of the job", share=f"{snap.fraction:.0%}")
    st.progress(snap.fraction, text=overall)
    counts = {state: sum(i.status == state for i in snap.items)
              for state in ("done", "cached", "running", "failed")}
    st.caption(t("{done} runs trained, {cached} found stored, {running} running and {failed} "
                 "failed.", **counts))
    now = time.monotonic()
    for item in snap.items:
        parts = [t("**{label}** · {status}", label=t(item.label),
                   status=t(JOB_WORDS.get(item.status, item.status)))]
        if item.status == "running":
            parts.append(t("epoch {epoch}/{epochs}", epoch=item.epoch, epochs=item.epochs)
                         if item.epoch else t("starting"))
            own = item.seconds_left(now)
            if own is not None:
                parts.append(t("about {left} left", left=duration(own)))
        if item.test_acc is not None:
            parts.append(t("test accuracy {acc}", acc=f"{item.test_acc:.1%}"))
        st.progress(item.fraction, text=" · ".join(parts))
        if item.error:
            st.error(t("{label}: {error}", label=t(item.label), error=ui.error_text(item.error)),
                     icon=":material/error:")
    if job.running and job.may_cancel(session, ui.is_local_visitor()):
        st.button(t("Cancel"), on_click=job.cancel, args=(session, ui.is_local_visitor()),
                  icon=":material/stop:", key="cancel",
                  help=t("Stops after the batch in flight; finished epochs stay stored."))
    elif job.running:
        st.caption(t("Started by another visitor: only they can cancel it."))
    else:
        outcome = {"done": st.success, "cancelled": st.warning, "failed": st.error}
        ended = {"done": N_("Job done. Finished epochs are stored."),
                 "cancelled": N_("Job cancelled. Finished epochs are stored."),
                 "failed": N_("Job failed. Finished epochs are stored.")}
        outcome.get(snap.state, st.info)(
            t(ended.get(snap.state, N_("Job {state}. Finished epochs are stored.",
                                       state=snap.state))))
        if st.session_state.pop("watch_job_running", False):
            st.rerun(scope="app")  # refresh the stored/partial table above
    st.session_state["watch_job_running"] = job.running


progress_panel()


# Redrawing the chart took most of the browser's CPU on each refresh (plotly lays it out
# again even when nothing changed): it refreshes every 10 s, the bars every 3 s.
@st.fragment(run_every=10.0 if job is not None and job.running else None)
def live_chart() -> None:
    ui.apply_language()  # a fragment's own rerun skips app.py, which sets the language
    snap = job.snapshot() if job is not None else None
    if snap is None or not snap.history:
        return
    curve = pd.DataFrame(snap.history)
    shown = {str(i.label): t(i.label) for i in snap.items}  # labels: marked texts
    curve["label"] = curve["label"].map(lambda label: shown.get(str(label), label))
    st.plotly_chart(plots.learning_curves(curve, y="val_acc",
                                          title=t("Validation accuracy, live")),
                    key=f"live-{snap.job_id}")


live_chart()
