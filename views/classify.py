"""Classify: your own image, a sample or a digit you draw through several networks side by
side: what they answer, how typical the image is for each, where they looked, and what
their stages make of it."""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from cnncompare import classify as C
from cnncompare import feature_maps, gradcam, paths, plots, pretrained, typicality, ui, uploads
from cnncompare.compare import run_labels
from cnncompare.i18n import N_, t
from cnncompare.store import ResultsStore

COLUMNS_PER_ROW = 3
PREVIEW_SIDE = 240  # px, the uploaded image as shown
QUICK_EPOCHS = 5  # LeNet on the digits: about 95% test accuracy in a few seconds on a CPU
UPLOAD_MB = 5  # one photo. The server's own limit (.streamlit/config.toml) is 1 MB more:
# it counts the whole upload request, the form's envelope included, so a file of exactly
# this size must still fit under it.
SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
INVERT_CHOICES = {"Auto": None, "Invert": True, "Keep as is": False}
INVERT_LABELS = {"Auto": N_("Auto"), "Invert": N_("Invert"), "Keep as is": N_("Keep as is")}
SOURCES = {"image": N_("An upload or a sample"), "draw": N_("A digit I draw")}
CANVAS_SIDE = 280  # px, the drawing area (10 x MNIST's 28 px)
STROKE = 22  # px, about a pen stroke of an MNIST digit at that scale

st.title(t("Classify"))
st.markdown(t(
    "Upload an image, pick a sample or draw a digit, and see what each network predicts, "
    "how sure it is, whether the image is like anything it was trained on, and where it "
    "looked (Grad-CAM on its last convolutional stage)."
))

# ------------------------------------------------------------------------------ image
source_kind = st.radio(t("What to classify"), list(SOURCES), format_func=lambda k: t(SOURCES[k]),
                       horizontal=True, key="classify_source")
left, right = st.columns(2)
# The browser refuses files over upload_mb itself; the server's limit leaves room for the
# request's envelope, so the two never disagree (a file of exactly upload_mb is accepted).
upload_mb = max(1, min(UPLOAD_MB, int(st.get_option("server.maxUploadSize")) - 1))
upload = sample = drawing = None
if source_kind == "image":
    # No `type=`: Streamlit would check the file name's extension before this script runs
    # and raise there (a name with a NUL byte, no extension or ".exe" gives a traceback the
    # page cannot catch). The contents decide here, with one clear message for anything.
    upload = left.file_uploader(
        t("Your image (drag and drop)"), key="classify_upload", max_upload_size=upload_mb,
        help=t("PNG, JPEG, WebP, BMP or GIF (first frame), up to {mb} MB.", mb=upload_mb))
    samples = sorted(
        (p for p in paths.SAMPLES_DIR.glob("*") if p.suffix.lower() in SAMPLE_SUFFIXES),
        key=lambda p: (not p.name.startswith("digit"), p.name))  # digits first
    sample = right.selectbox(t("...or a sample"), samples, format_func=lambda p: p.name,
                             key="classify_sample", disabled=upload is not None,
                             help=t("Digits from scikit-learn's set and its two sample "
                                    "photos."))
else:
    with left:
        st.caption(t("Your digit: white ink on black, like the training digits."))
        drawing = st_canvas(
            stroke_width=STROKE, stroke_color="#ffffff", background_color="#000000",
            height=CANVAS_SIDE, width=CANVAS_SIDE, drawing_mode="freedraw",
            update_streamlit=True, return_image_data=True, key="classify_canvas")
    right.markdown(t(
        "Draw one digit with the mouse or a finger, large and centred, as on a sheet of "
        "squared paper. The networks answer as soon as you lift the pen; the bin in the "
        "canvas's toolbar starts again."))
invert_label = right.radio(
    t("Ink for digit models"), list(INVERT_CHOICES), horizontal=True, key="classify_invert",
    format_func=lambda k: t(INVERT_LABELS[k]),
    help=t("Digit models were trained on light strokes on a dark background. Auto inverts a "
           "dark-on-light drawing; the other two override that."))

# ----------------------------------------------------------------------------- models
store = ResultsStore()
runs = store.runs(finished_only=True)
chosen: list[tuple[str, str]] = []  # ("run", run_id) or ("imagenet", name)
st.subheader(t("Networks"))
if runs.empty:
    st.info(t("No trained network in the results store yet. Train a small LeNet on the "
              "bundled digits here (a few seconds), or more networks on the Train page."))
    if st.button(t("Train a quick LeNet on digits"), key="classify_train_lenet",
                 icon=":material/bolt:"):
        from cnncompare import training

        bar = st.progress(0.0, text=t("Training LeNet on the digits..."))

        def progress(event: dict) -> None:
            done = event.get("epoch", 0) - 1 + event.get("batch", 0) / max(
                1, event.get("batches", 0) or 1)
            bar.progress(min(1.0, max(0.0, done / QUICK_EPOCHS)),
                         text=t("Training LeNet on the digits: epoch {epoch} of {epochs}",
                                epoch=event.get("epoch", 0), epochs=QUICK_EPOCHS))

        try:
            result = training.train_or_load(
                training.TrainConfig(model="lenet", dataset="digits", epochs=QUICK_EPOCHS),
                progress=progress)
        except (ValueError, RuntimeError, OSError) as err:
            st.error(t("Training failed: {error}", error=ui.error_text(err)))
        else:
            bar.empty()
            st.toast(t("LeNet trained: test accuracy {acc}.", acc=f"{result.test_acc:.1%}"))
            st.rerun()
else:
    runs = runs.assign(label=run_labels(runs).values + " · " + runs["dataset"].astype(str))
    for i, (dataset, group) in enumerate(runs.groupby("dataset", sort=True)):
        group = group.sort_values("test_acc", ascending=False)
        names = {r: f"{label} ({'?' if pd.isna(acc) else f'{acc:.1%}'})" for r, label, acc in
                 zip(group["run_id"], group["label"], group["test_acc"], strict=True)}
        picked = st.multiselect(
            t("Runs on {dataset}", dataset=dataset), list(names),
            default=list(names)[:3] if i == 0 else [],
            format_func=names.__getitem__, key=f"classify_runs_{dataset}",
            help=t("Test accuracy in brackets; the best runs first."))
        chosen += [("run", r) for r in picked]

torch_dir = pretrained.checkpoint_dir()
status = {n: pretrained.pretrained_status(n) for n in pretrained.IMAGENET_MODELS}
cached = [n for n, s in status.items() if s.cached]
with st.expander(t("ImageNet-pretrained networks (torchvision)"), expanded=bool(cached)):
    if cached:
        picked = st.multiselect(t("With ImageNet weights"), cached, key="classify_imagenet")
        chosen += [("imagenet", n) for n in picked]
    missing = [n for n in pretrained.IMAGENET_MODELS if n not in cached]
    if missing:
        st.info(t("Not in the torch cache (`{folder}`): {names}. Without internet access they "
                  "cannot be fetched; the networks trained here work regardless.",
                  folder=torch_dir, names=", ".join(missing)))
        want = st.selectbox(t("Fetch weights for"), missing, key="classify_fetch_name")
        if st.button(t("Download"), key="classify_fetch", icon=":material/download:"):
            with st.spinner(t("Downloading {name}...", name=want)):
                try:
                    ui.pretrained_classifier(want, str(torch_dir), download=True)
                except pretrained.WeightsUnavailable as err:
                    st.warning(t("{error}. This machine seems to be offline.",
                                 error=ui.error_text(err)))
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
            held = (key, uploads.ImageError(N_("The file cannot be read ({error}).",
                                               error=str(err.strerror or err))))
        st.session_state["classify_decoded"] = held
    if isinstance(held[1], uploads.ImageError):
        raise held[1]
    return held[1]


if drawing is not None:
    strokes = (drawing.json_data or {}).get("objects") or []
    png = drawing.image_bytes if strokes else None
    if not png:
        st.info(t("Draw a digit in the black square: it is classified as soon as you lift "
                  "the pen."))
        st.stop()
    name = t("your drawing")
    source = ("drawing", hashlib.sha256(png).hexdigest())

    def read(png: bytes = png) -> bytes:
        return png
elif upload is not None:
    name = upload.name
    source = ("upload", upload.file_id, upload.size)
    read = upload.getvalue
elif sample is not None:
    name = sample.name
    source = ("sample", str(sample))
    read = sample.read_bytes
else:
    st.info(t("Upload an image or pick a sample."))
    st.stop()

shown_name = uploads.markdown_literal(name)  # a name is text, never Markdown
try:
    decoded = decode_once(source, read)
except uploads.ImageError as err:
    st.error(t("{name} cannot be used: {error}", name=shown_name, error=ui.error_text(err)),
             icon=":material/broken_image:")
    st.stop()

for warning in decoded.warnings:
    st.warning(t(warning), icon=":material/warning:")
# Shrunk here, not by st.image(width=...): Streamlit rounds a 60000x1 strip to 0 px high.
if drawing is None:  # a drawing is on the canvas already
    width, height = decoded.size
    caption = t("{name}: {format}, {width} x {height} pixels", name=shown_name,
                format=decoded.format, width=f"{width:,}", height=f"{height:,}")
    st.image(uploads.preview(decoded.image, PREVIEW_SIDE),
             caption=caption + "".join(f"; {t(note)}" for note in decoded.notes))
if not chosen:
    st.info(t("Choose at least one network above."))
    st.stop()
# A drawing is cropped to its strokes, so that a small digit fills the frame as digits do.
image = decoded.image if drawing is None else C.crop_to_ink(decoded.image)


def load(kind: str, key: str) -> C.Classifier:
    """A chosen network, from Streamlit's resource cache after the first time."""
    if kind == "imagenet":
        return ui.pretrained_classifier(key, str(torch_dir))
    row = runs.set_index("run_id").loc[key]
    return ui.run_classifier(key, str(store.home), str(row["updated_at"]), str(row["label"]))


predictions: list[C.Prediction] = []
classifiers: list[C.Classifier] = []
with st.spinner(t("Classifying...")):
    for kind, key in chosen:
        try:
            clf = load(kind, key)
            predictions.append(C.predict(clf, image, k=5, key=source,
                                         invert=INVERT_CHOICES[invert_label]))
            classifiers.append(clf)
        except (ValueError, RuntimeError, OSError) as err:  # a damaged checkpoint, say
            if kind == "imagenet":
                st.error(t("{name} could not classify this image: {error}", name=key,
                           error=ui.error_text(err)))
            else:
                st.error(t("Run {run} could not classify this image: {error}", run=key,
                           error=ui.error_text(err)))


def show_typicality(pred: C.Prediction, clf: C.Classifier) -> None:
    """How typical the image is for this network, in words, or why that cannot be said."""
    typ = pred.typicality
    if typ is None:
        st.caption(t(clf.calibration_note) if clf.calibration_note else
                   t("How typical this image is cannot be said for this network."))
        return
    verdict, *evidence = typ.sentences(pred.arch or pred.model)
    if typ.verdict == typicality.UNLIKE_VERDICT:
        st.warning(verdict, icon=":material/help:")
    elif typ.verdict == typicality.UNUSUAL_VERDICT:
        st.info(verdict, icon=":material/help:")
    else:
        st.caption(verdict)
    st.caption(" ".join([*evidence, t(
        "Typicality: {share}, the share of its {split} images that look at least as unusual "
        "on the less favourable of the two measures.", share=f"{typ.typicality:.0%}",
        split=t(typicality.SPLIT_WORDS.get(typ.split, typ.split)))]))


st.markdown(C.agreement(predictions))
for start in range(0, len(predictions), COLUMNS_PER_ROW):
    row = predictions[start:start + COLUMNS_PER_ROW]
    for offset, (col, pred) in enumerate(zip(st.columns(COLUMNS_PER_ROW), row, strict=False)):
        with col:
            st.subheader(pred.model, divider="gray")
            answer = [f"**{pred.top1}**", f"{pred.top1_prob:.1%}"]
            if pred.dataset:
                answer.append(t("trained on {dataset}", dataset=pred.dataset))
            if pred.inverted:
                answer.append(t("colours inverted"))
            st.markdown(" · ".join(answer))
            show_typicality(pred, classifiers[start + offset])
            st.plotly_chart(plots.topk_bars(pred.frame(), pred.arch),
                            key=f"bars-{start + offset}",
                            config={"displayModeBar": False})
            shown = C.enlarge(pred.shown)
            images = [shown]
            captions = [t("input as the network sees it (inverted)") if pred.inverted
                        else t("input as the network sees it")]
            if pred.saliency is not None:
                images.insert(0, gradcam.overlay(shown, pred.saliency))
                captions.insert(0, t("Grad-CAM on {layer}", layer=pred.cam_layer))
            st.image(images, caption=captions, width=150)
            if pred.device == "cpu":
                timing = t("Prediction: {ms} ms (one forward pass at batch 1 on the CPU, "
                           "intra-op threads: {threads})", ms=f"{pred.time_ms:.1f}",
                           threads=pred.threads)
            else:
                timing = t("Prediction: {ms} ms (one forward pass at batch 1 on {device})",
                           ms=f"{pred.time_ms:.1f}", device=pred.device.upper())
            st.caption(timing)

# ----------------------------------------------------------------------- feature maps
if not predictions:
    st.stop()
st.subheader(t("Feature maps"))
if not st.toggle(t("Show what each stage of the networks makes of this image"),
                 key="classify_fmaps",
                 help=t("The output of every stage (the last map at each size), its most "
                        "active channels first.")):
    st.stop()
top = st.slider(t("Channels per stage (the most active, by mean activation)"), 1, 16, 6,
                key="classify_fmaps_top")
st.caption(t("Each tile is one channel; one colour scale per stage, from its smallest value "
             "(or zero) in dark blue to its largest in red."))
for start in range(0, len(classifiers), COLUMNS_PER_ROW):
    row = list(zip(classifiers, predictions, strict=True))[start:start + COLUMNS_PER_ROW]
    for col, (clf, pred) in zip(st.columns(COLUMNS_PER_ROW), row, strict=False):
        with col:
            st.markdown(f"**{pred.model}**")
            prep, stages = C.feature_maps_for(clf, image, top=top,
                                              invert=INVERT_CHOICES[invert_label])
            side = prep.shown.size[0]
            st.image(C.enlarge(prep.shown, 112), width=112,
                     caption=t("input as the network sees it, {side} x {side} px",
                               side=side))
            for stage in stages:
                picked = ", ".join(str(c) for c in stage.channels)
                st.image(feature_maps.tile(stage), width=220,
                         caption=t("{stage} (channels {channels})", stage=stage.label,
                                   channels=picked))
