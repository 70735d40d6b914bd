"""Train: pick models, seeds, a dataset and a preset; train the study's missing runs."""

import time

import pandas as pd
import streamlit as st

from cnncompare import data, executors, list_models, plots, ui
from cnncompare.devices import DEVICE_CHOICES
from cnncompare.formatting import duration
from cnncompare.store import ResultsStore
from cnncompare.studies import FACTORS, parse_values, study_configs
from cnncompare.train_config import OPTIMIZERS, PRESETS, TrainConfig, run_status

st.title("Train")
st.caption(
    "Train several networks on the same data with the same settings, each with several "
    "seeds, so that Compare can tell a real difference from luck. Every run holds out a "
    "validation split (10% of its training images) and reports the test accuracy at the "
    "epoch with the best validation accuracy. Finished runs are stored under a hash of their "
    "configuration (precision included) and never trained twice; an interrupted run "
    "resumes from its last finished epoch."
)

DEFAULTS = TrainConfig("lenet")  # the command line's defaults: a README run is found here
manager = ui.job_manager()
store = ResultsStore()
session = ui.session_key()
roots = data.app_data_roots()

models = st.multiselect("Models", list_models(), default=["lenet", "alexnet", "resnet18"])
c1, c2, c3 = st.columns(3)
dataset = c1.selectbox("Dataset", data.list_datasets(),
                       format_func=lambda n: data.dataset_info(n).title,
                       help="digits is bundled with scikit-learn and works offline.")
info = data.dataset_info(dataset)
c1.caption(info.description)
data_root, download = None, False
if info.needs_root:
    data_root = c1.text_input(
        "Data root", placeholder=str(data.DEFAULT_DATA_ROOT),
        help="A folder that holds the dataset (for an image folder: one subfolder per "
             "class). It must lie inside a folder this server allows: the results home, "
             "the project's data folder, or one named in "
             f"{data.DATA_ROOTS_ENV}. Empty: the project's data folder (MNIST, "
             "Fashion-MNIST, CIFAR-10).") or None
    if info.downloadable:
        download = c1.checkbox("Download if missing",
                               help="Fetches the dataset when training starts (the server "
                                    "needs internet access).")
preset = c2.radio("Preset", list(PRESETS), format_func=PRESETS.get)
epochs = c2.number_input("Epochs", 1, 200, DEFAULTS.epochs)
seeds = c2.number_input("Seeds", 1, 20, 3 if preset == "quick" else 1,
                        help="Each model trains once per seed (0, 1, 2, ...): Compare then "
                             "shows the mean with a 95% confidence interval. One seed "
                             "gives no interval.")
device = c2.selectbox("Device", DEVICE_CHOICES, help="auto: CUDA, then Apple MPS, then CPU")
use_ray, ray_address = False, executors.ray_address()
if executors.ray_installed():  # Ray itself is imported only when a job starts on it
    if ray_address:
        use_ray = c2.checkbox(
            "Train on the Ray cluster",
            help=f"The runs train as Ray tasks on the cluster at {ray_address}, one CPU each (one "
                 "GPU each with the cuda device); the results come back to this server's "
                 "store.")
    else:
        use_ray = c2.checkbox(
            "Start a local Ray",
            help="The runs train at once as Ray tasks on this machine's CPUs, one CPU each; "
                 "Ray takes about 10 s to start. To use a cluster instead, start the server "
                 f"with {executors.RAY_ADDRESS_ENV} set to its address.")
batch_size = c3.number_input(
    "Batch size", 1, 4096, DEFAULTS.batch_size,
    help="Small sets like digits need enough steps: 32 gives 41 steps an epoch on the "
         "1,293 digits trained on (the other 144 of its 1,437 are the validation split).")
lr = c3.number_input("Learning rate", 1e-5, 1.0, DEFAULTS.lr, format="%.5f",
                     help="The peak: one epoch of warm-up, then held, then a linear decay "
                          "to zero over the last 30% of the steps.")
optimizer = c3.selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(DEFAULTS.optimizer))
augment = c3.checkbox("Augment", value=DEFAULTS.augment,
                      help="Random shifts and small rotations (digits, MNIST) or crops and "
                           "flips (CIFAR-10, image folders), drawn per batch on the device.")
factors = [f for f in FACTORS if f != "model"]
with st.expander("Compare another factor"):
    factor = st.selectbox("Factor", ["model", *factors],
                          format_func=lambda f: "None (models only)" if f == "model"
                          else FACTORS[f].title,
                          help="Train every model with each value, e.g. Adam against SGD.")
    values_text = ""
    if factor != "model":
        values_text = st.text_input("Values (comma-separated)",
                                    placeholder={"optimizer": "adam,sgd", "lr": "0.01,0.001",
                                                 "batch_size": "32,128", "width": "0.25,0.5",
                                                 "train_size": "500,1437",
                                                 "augment": "off,on"}[factor])
with st.expander("Split sizes"):
    s1, s2, s3 = st.columns(3)
    train_size = s1.number_input("Train images (0: the dataset's default)", 0, 10**6, 0,
                                 help="Images drawn for training; the validation images are "
                                      "held out of them.")
    val_size = s2.number_input("Validation images (0: 10% of the train images)", 0, 10**6, 0)
    test_size = s3.number_input("Test images (0: the dataset's default)", 0, 10**6, 0)

check = data.check(dataset, root=data_root, download=download, allowed_roots=roots)
if not check.ok:
    st.error(check.message("app"), icon=":material/error:")
    st.stop()
if check.state == data.DOWNLOAD:
    st.info(check.message("app"), icon=":material/download:")

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
    st.error(exc.message("app"), icon=":material/error:")
    st.stop()
except (ValueError, FileNotFoundError) as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

st.subheader("Runs")
st.caption("One row per model and seed. Test accuracy is the one at the selected epoch "
           "(best validation accuracy).")
st.dataframe(status, hide_index=True, column_config={
    "model": "Model",
    "seed": st.column_config.NumberColumn("Seed", format="%d"),
    **({factor: FACTORS[factor].title} if factor != "model" else {}),
    "state": st.column_config.TextColumn("Stored?", help="stored: finished; partial: resumes "
                                         "from its last finished epoch; new: not trained yet"),
    "epochs_done": st.column_config.NumberColumn("Epochs done"),
    "epochs": st.column_config.NumberColumn("Epochs"),
    "test_acc": st.column_config.ProgressColumn("Test accuracy", min_value=0.0, max_value=1.0,
                                                format="percent",
                                                help="At the selected epoch"),
    "selected_epoch": st.column_config.NumberColumn(
        "Selected epoch", format="%d", help="The epoch with the best validation accuracy"),
    "precision": st.column_config.TextColumn(
        "Precision", help="float32, or bf16/fp16 autocast: part of the run's key"),
    "run_id": st.column_config.TextColumn("Run id", help="hash of the configuration"),
})
todo = status["state"] != "stored"
missing = [c for c, t in zip(configs, todo, strict=True) if t]
active = manager.active()
n = len(missing)
label = f"Train {n} run{'s' * (n != 1)}" if missing else "All stored"
if st.button(label, type="primary", disabled=not missing or active is not None,
             icon=":material/play_arrow:", key="train"):
    try:
        job = manager.start(missing, [f"{c.model} · seed {c.seed}" for c in missing],
                            run_ids=list(status.loc[todo, "run_id"]), owner=session,
                            device=device, data_root=data_root, download=download,
                            allowed_roots=roots,
                            executor=executors.ray_executor_for(device, ray_address)
                            if use_ray else None)
        st.session_state["watch_job"] = job.job_id
        active = job
    except (ValueError, RuntimeError) as exc:
        st.error(str(exc), icon=":material/error:")
if not missing:
    st.success("Every chosen run is stored: open **Compare** to see them side by side.",
               icon=":material/check_circle:")
    st.page_link("views/compare.py", label="Compare", icon=":material/compare_arrows:")

job = active or manager.get(st.session_state.get("watch_job", ""))


# Every refresh redraws the bars and the live chart in the browser, on the cores the
# training uses: once a second cost a 2-core machine a third of its training speed
# (benchmarks/app_vs_cli.py). Every 3 s keeps the page live at a fraction of that.
@st.fragment(run_every=3.0 if job is not None and job.running else None)
def progress_panel() -> None:
    if job is None:
        return
    snap = job.snapshot()
    st.subheader("Progress")
    left = f" · about {duration(snap.seconds_left)} left" if snap.seconds_left else ""
    st.progress(snap.fraction, text=f"{snap.fraction:.0%} of the job{left}")
    counts = {state: sum(i.status == state for i in snap.items)
              for state in ("done", "cached", "running", "failed")}
    st.caption("{done} runs trained, {cached} found stored, {running} running and {failed} "
               "failed.".format(**counts))
    now = time.monotonic()
    for item in snap.items:
        text = f"**{item.label}** · {item.status}"
        if item.status == "running":
            text += (f" · epoch {item.epoch}/{item.epochs}" if item.epoch
                     else " · starting")
            own = item.seconds_left(now)
            if own is not None:
                text += f" · about {duration(own)} left"
        if item.test_acc is not None:
            text += f" · test accuracy {item.test_acc:.1%}"
        st.progress(item.fraction, text=text)
        if item.error:
            st.error(f"{item.label}: {item.error}", icon=":material/error:")
    if snap.history:
        curve = pd.DataFrame(snap.history)
        st.plotly_chart(plots.learning_curves(curve, y="val_acc",
                                              title="Validation accuracy, live"),
                        key=f"live-{snap.job_id}")
    if job.running and job.may_cancel(session, ui.is_local_visitor()):
        st.button("Cancel", on_click=job.cancel, args=(session, ui.is_local_visitor()),
                  icon=":material/stop:", key="cancel",
                  help="Stops after the batch in flight; finished epochs stay stored.")
    elif job.running:
        st.caption("Started by another visitor: only they can cancel it.")
    else:
        outcome = {"done": st.success, "cancelled": st.warning, "failed": st.error}
        outcome.get(snap.state, st.info)(
            f"Job {snap.state}. Finished epochs are stored.")
        if st.session_state.pop("watch_job_running", False):
            st.rerun(scope="app")  # refresh the stored/partial table above
    st.session_state["watch_job_running"] = job.running


progress_panel()
