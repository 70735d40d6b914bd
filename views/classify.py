"""Classify: your own image through several networks side by side, with where they looked."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnncompare import classify as C
from cnncompare import gradcam, paths, plots, pretrained, ui, uploads
from cnncompare.compare import run_labels
from cnncompare.store import ResultsStore

COLUMNS_PER_ROW = 3
PREVIEW_SIDE = 240  # px, the uploaded image as shown
QUICK_EPOCHS = 5  # LeNet on the digits: about 95% test accuracy in a few seconds on a CPU
UPLOAD_MB = 5  # one photo. The server's own limit (.streamlit/config.toml) is 1 MB more:
# it counts the whole upload request, the form's envelope included, so a file of exactly
# this size must still fit under it.
SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
INVERT_CHOICES = {"Auto": None, "Invert": True, "Keep as is": False}

st.title("Classify")
st.markdown(
    "Upload an image, or pick a sample, and see what each network predicts, how sure it "
    "is, and where it looked (Grad-CAM on its last convolutional stage)."
)

# ------------------------------------------------------------------------------ image
left, right = st.columns(2)
# The browser refuses files over upload_mb itself; the server's limit leaves room for the
# request's envelope, so the two never disagree (a file of exactly upload_mb is accepted).
upload_mb = max(1, min(UPLOAD_MB, int(st.get_option("server.maxUploadSize")) - 1))
# No `type=`: Streamlit would check the file name's extension before this script runs and
# raise there (a name with a NUL byte, no extension or ".exe" gives a traceback the page
# cannot catch). The contents decide here, with one clear message for anything else.
upload = left.file_uploader(
    "Your image (drag and drop)", key="classify_upload", max_upload_size=upload_mb,
    help=f"PNG, JPEG, WebP, BMP or GIF (first frame), up to {upload_mb} MB.")
samples = sorted((p for p in paths.SAMPLES_DIR.glob("*") if p.suffix.lower() in SAMPLE_SUFFIXES),
                 key=lambda p: (not p.name.startswith("digit"), p.name))  # digits first
sample = right.selectbox("...or a sample", samples, format_func=lambda p: p.name,
                         key="classify_sample", disabled=upload is not None,
                         help="Digits from scikit-learn's set and its two sample photos.")
invert_label = right.radio(
    "Ink for digit models", list(INVERT_CHOICES), horizontal=True, key="classify_invert",
    help="Digit models were trained on light strokes on a dark background. Auto inverts a "
         "dark-on-light drawing; the other two override that.")

# ----------------------------------------------------------------------------- models
store = ResultsStore()
runs = store.runs(finished_only=True)
chosen: list[tuple[str, str]] = []  # ("run", run_id) or ("imagenet", name)
st.subheader("Networks")
if runs.empty:
    st.info("No trained network in the results store yet. Train a small LeNet on the "
            "bundled digits here (a few seconds), or more networks on the Train page.")
    if st.button("Train a quick LeNet on digits", key="classify_train_lenet",
                 icon=":material/bolt:"):
        from cnncompare import training

        bar = st.progress(0.0, text="Training LeNet on the digits...")

        def progress(event: dict) -> None:
            done = event.get("epoch", 0) - 1 + event.get("batch", 0) / max(
                1, event.get("batches", 0) or 1)
            bar.progress(min(1.0, max(0.0, done / QUICK_EPOCHS)),
                         text=f"Training LeNet on the digits: epoch {event.get('epoch', 0)} "
                              f"of {QUICK_EPOCHS}")

        try:
            result = training.train_or_load(
                training.TrainConfig(model="lenet", dataset="digits", epochs=QUICK_EPOCHS),
                progress=progress)
        except (ValueError, RuntimeError, OSError) as err:
            st.error(f"Training failed: {err}")
        else:
            bar.empty()
            st.toast(f"LeNet trained: test accuracy {result.test_acc:.1%}.")
            st.rerun()
else:
    runs = runs.assign(label=run_labels(runs).values + " · " + runs["dataset"].astype(str))
    for i, (dataset, group) in enumerate(runs.groupby("dataset", sort=True)):
        group = group.sort_values("test_acc", ascending=False)
        names = {r: f"{label} ({'?' if pd.isna(acc) else f'{acc:.1%}'})" for r, label, acc in
                 zip(group["run_id"], group["label"], group["test_acc"], strict=True)}
        picked = st.multiselect(
            f"Runs on {dataset}", list(names), default=list(names)[:3] if i == 0 else [],
            format_func=names.__getitem__, key=f"classify_runs_{dataset}",
            help="Test accuracy in brackets; the best runs first.")
        chosen += [("run", r) for r in picked]

torch_dir = pretrained.checkpoint_dir()
status = {n: pretrained.pretrained_status(n) for n in pretrained.IMAGENET_MODELS}
cached = [n for n, s in status.items() if s.cached]
with st.expander("ImageNet-pretrained networks (torchvision)", expanded=bool(cached)):
    if cached:
        picked = st.multiselect("With ImageNet weights", cached, key="classify_imagenet")
        chosen += [("imagenet", n) for n in picked]
    missing = [n for n in pretrained.IMAGENET_MODELS if n not in cached]
    if missing:
        st.info(f"Not in the torch cache (`{torch_dir}`): {', '.join(missing)}. Without "
                "internet access they cannot be fetched; the networks trained here work "
                "regardless.")
        want = st.selectbox("Fetch weights for", missing, key="classify_fetch_name")
        if st.button("Download", key="classify_fetch", icon=":material/download:"):
            with st.spinner(f"Downloading {want}..."):
                try:
                    ui.pretrained_classifier(want, str(torch_dir), download=True)
                except pretrained.WeightsUnavailable as err:
                    st.warning(f"{err}. This machine seems to be offline.")
                else:
                    st.rerun()

# ----------------------------------------------------------------------------- result


def decode_once(key: tuple, read) -> uploads.DecodedImage:
    """The image behind ``key``, decoded once per session: a rerun (another model, the ink
    switch) reuses it, and a refused file is not decoded again. ``read()`` gives its bytes."""
    held = st.session_state.get("classify_decoded")
    if held is None or held[0] != key:
        try:
            held = (key, uploads.decode_image(read(), max_bytes=upload_mb * 2**20))
        except uploads.ImageError as err:
            held = (key, err)
        except OSError as err:  # a sample that cannot be read
            held = (key, uploads.ImageError(f"The file cannot be read ({err.strerror or err})."))
        st.session_state["classify_decoded"] = held
    if isinstance(held[1], uploads.ImageError):
        raise held[1]
    return held[1]


if upload is not None:
    name = upload.name
    source = ("upload", upload.file_id, upload.size)
    read = upload.getvalue
elif sample is not None:
    name = sample.name
    source = ("sample", str(sample))
    read = sample.read_bytes
else:
    st.info("Upload an image or pick a sample.")
    st.stop()

shown_name = uploads.markdown_literal(name)  # a name is text, never Markdown
try:
    decoded = decode_once(source, read)
except uploads.ImageError as err:
    st.error(f"{shown_name} cannot be used: {err}", icon=":material/broken_image:")
    st.stop()

for warning in decoded.warnings:
    st.warning(warning, icon=":material/warning:")
# Shrunk here, not by st.image(width=...): Streamlit rounds a 60000x1 strip to 0 px high.
width, height = decoded.size
caption = f"{shown_name}: {decoded.format}, {width:,} x {height:,} pixels"
st.image(uploads.preview(decoded.image, PREVIEW_SIDE),
         caption=caption + "".join(f"; {note}" for note in decoded.notes))
if not chosen:
    st.info("Choose at least one network above.")
    st.stop()


def load(kind: str, key: str) -> C.Classifier:
    """A chosen network, from Streamlit's resource cache after the first time."""
    if kind == "imagenet":
        return ui.pretrained_classifier(key, str(torch_dir))
    row = runs.set_index("run_id").loc[key]
    return ui.run_classifier(key, str(store.home), str(row["updated_at"]), str(row["label"]))


predictions: list[C.Prediction] = []
with st.spinner("Classifying..."):
    for kind, key in chosen:
        try:
            clf = load(kind, key)
            predictions.append(C.predict(clf, decoded.image, k=5, key=source,
                                         invert=INVERT_CHOICES[invert_label]))
        except (ValueError, RuntimeError, OSError) as err:  # a damaged checkpoint, say
            st.error(f"{key if kind == 'imagenet' else 'Run ' + key} could not classify "
                     f"this image: {err}")

st.markdown(C.agreement(predictions))
for start in range(0, len(predictions), COLUMNS_PER_ROW):
    row = predictions[start:start + COLUMNS_PER_ROW]
    for offset, (col, pred) in enumerate(zip(st.columns(COLUMNS_PER_ROW), row, strict=False)):
        with col:
            st.subheader(pred.model, divider="gray")
            st.markdown(f"**{pred.top1}** · {pred.top1_prob:.1%}"
                        + (f" · trained on {pred.dataset}" if pred.dataset else "")
                        + (" · colours inverted" if pred.inverted else ""))
            st.plotly_chart(plots.topk_bars(pred.frame(), pred.arch),
                            key=f"bars-{start + offset}",
                            config={"displayModeBar": False})
            shown = C.enlarge(pred.shown)
            images = [shown]
            captions = ["input as the network sees it" + (" (inverted)" if pred.inverted
                                                          else "")]
            if pred.saliency is not None:
                images.insert(0, gradcam.overlay(shown, pred.saliency))
                captions.insert(0, f"Grad-CAM on {pred.cam_layer}")
            st.image(images, caption=captions, width=150)
            if pred.device == "cpu":
                timing = (f"Prediction: {pred.time_ms:.1f} ms (one forward pass at batch 1 "
                          f"on the CPU, intra-op threads: {pred.threads})")
            else:
                timing = (f"Prediction: {pred.time_ms:.1f} ms (one forward pass at batch 1 "
                          f"on {pred.device.upper()})")
            st.caption(timing)
