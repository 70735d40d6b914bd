"""Train: pick models, a dataset and a preset; train what is not stored yet."""

import time

import pandas as pd
import streamlit as st

from cnncompare import list_models, plots, ui
from cnncompare.data import dataset_info, list_datasets
from cnncompare.devices import DEVICE_CHOICES
from cnncompare.formatting import duration
from cnncompare.store import ResultsStore
from cnncompare.train_config import OPTIMIZERS, PRESETS, plan_runs, run_status

st.title("Train")
st.caption(
    "Train several networks on the same data with the same settings. Finished runs are "
    "stored under a hash of their configuration and never trained twice; an interrupted "
    "run resumes from its last finished epoch."
)

manager = ui.job_manager()
store = ResultsStore()
session = ui.session_key()

models = st.multiselect("Models", list_models(), default=["lenet", "alexnet", "resnet18"])
c1, c2, c3 = st.columns(3)
dataset = c1.selectbox("Dataset", list_datasets(), format_func=lambda n: dataset_info(n).title,
                       help="digits is bundled with scikit-learn and works offline.")
info = dataset_info(dataset)
c1.caption(info.description)
data_root, download = None, False
if info.needs_root:
    data_root = c1.text_input("Data root", placeholder="/path/to/datasets",
                              help="A folder that holds the dataset (for an image folder: "
                                   "one subfolder per class).") or None
    download = c1.checkbox("Download if missing", help="Needs internet access.")
preset = c2.radio("Preset", list(PRESETS), format_func=PRESETS.get)
epochs = c2.number_input("Epochs", 1, 200, 10)
device = c2.selectbox("Device", DEVICE_CHOICES, help="auto: CUDA, then Apple MPS, then CPU")
batch_size = c3.number_input("Batch size", 1, 4096, 32,
                             help="Small sets like digits need enough steps: 32 gives 45 "
                                  "steps an epoch on its 1,437 training images.")
lr = c3.number_input("Learning rate", 1e-5, 1.0, 1e-3, format="%.5f")
optimizer = c3.selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index("adam"))
seed = c3.number_input("Seed", 0, 2**31 - 1, 0)
with st.expander("Split sizes"):
    s1, s2 = st.columns(2)
    train_size = s1.number_input("Train images (0: the dataset's default)", 0, 10**6, 0)
    test_size = s2.number_input("Test images (0: the dataset's default)", 0, 10**6, 0)

try:
    configs = plan_runs(models, preset=preset, dataset=dataset, epochs=int(epochs),
                        batch_size=int(batch_size), lr=float(lr), optimizer=optimizer,
                        seed=int(seed), train_size=int(train_size) or None,
                        test_size=int(test_size) or None)
    status = run_status(configs, store, data_root)
except (ValueError, FileNotFoundError) as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

st.subheader("Runs")
st.dataframe(status, hide_index=True, column_config={
    "model": "Model",
    "state": st.column_config.TextColumn("Stored?", help="stored: finished; partial: resumes "
                                         "from its last finished epoch; new: not trained yet"),
    "epochs_done": st.column_config.NumberColumn("Epochs done"),
    "epochs": st.column_config.NumberColumn("Epochs"),
    "test_acc": st.column_config.ProgressColumn("Test accuracy", min_value=0.0, max_value=1.0,
                                                format="percent"),
    "run_id": st.column_config.TextColumn("Run id", help="hash of the configuration"),
})
missing = [c for c, state in zip(configs, status["state"], strict=True) if state != "stored"]
active = manager.active()
label = f"Train {len(missing)} run{'s' * (len(missing) != 1)}" if missing else "All stored"
if st.button(label, type="primary", disabled=not missing or active is not None,
             icon=":material/play_arrow:", key="train"):
    try:
        job = manager.start(missing, [c.model for c in missing], owner=session, device=device,
                            data_root=data_root, download=download)
        st.session_state["watch_job"] = job.job_id
        active = job
    except (ValueError, RuntimeError) as exc:
        st.error(str(exc), icon=":material/error:")
if not missing:
    st.success("Every chosen run is stored: open **Compare** to see them side by side.",
               icon=":material/check_circle:")
    st.page_link("views/compare.py", label="Compare", icon=":material/compare_arrows:")

job = active or manager.get(st.session_state.get("watch_job", ""))


@st.fragment(run_every=1.0 if job is not None and job.running else None)
def progress_panel() -> None:
    if job is None:
        return
    snap = job.snapshot()
    st.subheader("Progress")
    left = f" · about {duration(snap.seconds_left)} left" if snap.seconds_left else ""
    st.progress(snap.fraction, text=f"{snap.fraction:.0%} of the job{left}")
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
        st.plotly_chart(plots.learning_curves(curve, y="test_acc", title="Test accuracy, live"),
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
