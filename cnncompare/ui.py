"""Streamlit helpers shared by the pages: cached loaders and small widgets.

Only pages import this module. Logic stays in the rest of the package; these functions
wrap it in Streamlit's caches so that a rerun is instant.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from cnncompare import i18n
from cnncompare.i18n import N_, t

# --- Language ------------------------------------------------------------------------------

LANGUAGE_KEY = "lang"
"""The session-state key holding the session's language."""


def apply_language(sync_url: bool = False) -> str:
    """Choose this script run's language and make it current (:func:`i18n.set_language`).

    An explicit ``?lang=`` the app speaks wins, then the session's earlier choice, then the
    browser's preferred language (``st.context.locale``), English otherwise. ``app.py``
    calls it first on every run (with ``sync_url``: the URL then says ``?lang=``, so a
    link keeps the language); a fragment reruns without ``app.py`` and calls it itself.
    """
    query = st.query_params.get(LANGUAGE_KEY)
    if query is not None and query.strip().lower() in i18n.SUPPORTED:
        lang = query.strip().lower()
    elif st.session_state.get(LANGUAGE_KEY) in i18n.SUPPORTED:
        lang = st.session_state[LANGUAGE_KEY]
    else:
        lang = i18n.choose_language(None, st.context.locale)
    st.session_state[LANGUAGE_KEY] = lang
    i18n.set_language(lang)
    if sync_url and st.query_params.get(LANGUAGE_KEY) != lang:
        st.query_params[LANGUAGE_KEY] = lang
    return lang


def _language_chosen() -> None:
    chosen = st.session_state.get("ui-language")
    if chosen in i18n.SUPPORTED:
        st.session_state[LANGUAGE_KEY] = chosen
        st.query_params[LANGUAGE_KEY] = chosen


def language_picker() -> None:
    """The sidebar's language control; a choice goes into the URL (``?lang=zh``)."""
    st.session_state["ui-language"] = i18n.get_language()
    st.sidebar.segmented_control(
        t("Language"), i18n.SUPPORTED, format_func=i18n.LANGUAGE_NAMES.get,
        key="ui-language", on_change=_language_chosen,
        help=t("The page's language; the link in the address bar keeps it."))


def error_text(error: BaseException | str) -> str:
    """An error for people, in the current language: a message raised as a marked
    :class:`~cnncompare.i18n.Text` (``ValueError(N_("...", n=3))``) or equal to a
    catalogue entry is translated; any other message is shown as it is."""
    message = error.args[0] if isinstance(error, BaseException) and error.args else error
    return t(message) if isinstance(message, str) else str(error)


@st.cache_data(show_spinner=False)
def zoo_table() -> pd.DataFrame:
    """``registry.zoo_frame``: one row per model at its canonical configuration."""
    from cnncompare.registry import zoo_frame  # imported on first use: it loads torch

    return zoo_frame()


@st.cache_resource(show_spinner=False, max_entries=4)
def zoo_costs(home: str):
    """``profiling.BackgroundCosts`` of every model at its canonical preset, one per server
    and results home: the Overview reads the counts as they arrive, from disk after the
    first time."""
    from cnncompare import profiling  # imported on first use: it loads torch
    from cnncompare.registry import list_models, preset_config

    return profiling.BackgroundCosts((preset_config(n, "canonical") for n in list_models()),
                                     then=prefetch_for_pages)


PREFETCHED = ("lenet", "alexnet", "vgg11", "resnet18")
"""The networks the Architectures and Profile & Benchmark pages open with (small preset)."""


def prefetch_for_pages() -> None:
    """Make the next pages' first visit fast, in the background after the Overview's count:
    plotly's first figure (about 2 s of imports and templates), and the full analyses of
    the networks those pages open with, into the disk cache."""
    from cnncompare import plots, profiling
    from cnncompare.jobs import wait_while_training
    from cnncompare.registry import preset_config

    plots.cost_bars(profiling.profile_models(["lenet"], preset="small")).to_json()
    for name in PREFETCHED:
        wait_while_training()  # a job started meanwhile keeps the CPU and the GIL
        profiling.analyze(preset_config(name, "small"))


@st.cache_data(show_spinner=False)
def device_summary() -> dict[str, str]:
    return _device_info()


def _device_info() -> dict[str, str]:
    import torch

    from cnncompare.devices import device_name, resolve_device

    dev = resolve_device("auto")
    return {"device": dev.type, "name": device_name(dev), "torch": torch.__version__}


@st.cache_resource(show_spinner=False)
def overview_basics():
    """A :class:`~cnncompare.background.Background` giving ``(device_summary, zoo table)``,
    one per server: torch is imported in its thread, so the Overview draws before it."""
    from cnncompare.background import Background

    def load() -> tuple[dict[str, str], pd.DataFrame]:
        from cnncompare.registry import zoo_frame  # torch: in this thread, not the page's

        return _device_info(), zoo_frame()

    return Background(load, name="cnncompare-overview")


COMMON_LABELS = {
    "model": N_("Model"),
    "family": N_("Family"),
    "year": N_("Year"),
    "paper": N_("Paper"),
    "paper_url": N_("Link"),
    "input": N_("Input"),
    "num_classes": N_("Classes"),
    "key_idea": N_("Key idea"),
    "width": N_("Width"),
    "layer": N_("Layer"),
    "type": N_("Type"),
    "share": N_("Share of MACs"),
    "batch_size": N_("Batch size"),
    "device": N_("Device"),
    "dtype": N_("Dtype"),
    "dataset": N_("Dataset"),
    "seed": N_("Seed"),
    "epochs": N_("Epochs"),
}
"""English labels of the columns many tables share (for the CSV's translated header)."""


def column_labels() -> dict[str, str]:
    """Every column's English label the pages know: :data:`COMMON_LABELS` and the cost
    columns; the CSV's translated header row translates them."""
    with i18n.use_language(i18n.SOURCE):
        costs = {column: config["label"] for column, config in cost_columns().items()}
    return {**COMMON_LABELS, **costs}


def csv_download(frame: pd.DataFrame, filename: str, label: str | None = None,
                 key: str | None = None) -> None:
    """A download button holding exactly ``frame`` as CSV, its column names in English (they
    are data). In another language a checkbox beside it adds a translated header row."""
    key = key or f"dl-{filename}"
    header_row = False
    if i18n.get_language() != i18n.SOURCE:
        header_row = st.checkbox(t("Translated header row"), key=f"{key}-header",
                                 help=t("Adds a second header line in this language under "
                                        "the English column names, which stay as they are."))
    data = i18n.csv_bytes(frame, labels=column_labels(), header_row=header_row)
    st.download_button(label or t("Download CSV"), data, file_name=filename,
                       mime="text/csv", key=key, icon=":material/download:")


# --- Architectures and Profile & Benchmark pages ------------------------------------------

CONFIG_CHOICES = {
    "small": N_("Small (each model's own, trains on a CPU)"),
    "canonical": N_("Canonical (each model's paper size, e.g. 3x224x224)"),
    "custom": N_("Custom (the same input for every model)"),
}


def config_picker(key: str, default: str = "small") -> tuple[str | None, dict]:
    """Choose a configuration; returns ``(preset, overrides)`` for ``registry.config_for``.

    ``small`` and ``canonical`` use each model's own preset; ``custom`` asks for an input
    size, channels, classes and width shared by every model.
    """
    choice = st.radio(t("Configuration"), list(CONFIG_CHOICES),
                      index=list(CONFIG_CHOICES).index(default),
                      format_func=lambda c: t(CONFIG_CHOICES[c]), key=f"{key}-config",
                      horizontal=True)
    if choice != "custom":
        return choice, {}
    c1, c2, c3, c4 = st.columns(4)
    config = {
        "input_size": int(c1.number_input(t("Input size (px)"), 1, 1024, 32,
                                          key=f"{key}-size")),
        "in_channels": int(c2.number_input(t("Channels"), 1, 16, 3, key=f"{key}-channels")),
        "num_classes": int(c3.number_input(t("Classes"), 1, 100_000, 10,
                                           key=f"{key}-classes")),
        "width": float(c4.number_input(t("Width"), 0.0625, 4.0, 0.25, step=0.0625,
                                       key=f"{key}-width")),
    }
    return None, config


@st.cache_data(show_spinner=False)
def _cost_table(names: tuple[str, ...], preset: str | None, config: dict) -> pd.DataFrame:
    from cnncompare import profiling

    return profiling.profile_models(list(names), preset=preset, **config)


def cost_table(names: tuple[str, ...], preset: str | None, config: dict) -> pd.DataFrame:
    """``profiling.profile_models``: one row of parameters, MACs, FLOPs and memory per model."""
    with st.spinner(t("Profiling (cached on disk after the first time)...")):
        return _cost_table(names, preset, config)


@st.cache_data(show_spinner=False)
def _layer_table(name: str, preset: str | None, config: dict) -> pd.DataFrame:
    from cnncompare import profiling
    from cnncompare.registry import config_for

    return profiling.analyze(config_for(name, preset, **config)).layer_table()


def layer_table(name: str, preset: str | None, config: dict) -> pd.DataFrame:
    """The layer table of one model (shapes, shape arithmetic, parameters, MACs)."""
    with st.spinner(t("Building the layer table...")):
        return _layer_table(name, preset, config)


@st.cache_data(show_spinner=False)
def cost_summary(name: str, preset: str | None, config: dict) -> dict:
    """Totals for one model (``profiling.cost_summary``) plus its resolved configuration."""
    from cnncompare import profiling
    from cnncompare.registry import config_for

    cfg = config_for(name, preset, **config)
    return dict(profiling.cost_summary(cfg), label=cfg.label(), stem=cfg.stem)


COST_CHARTS = ("bars", "bubble", "modules")
"""The Profile page's cost charts: :func:`cost_chart`'s kinds."""


def cost_chart(kind: str, names: tuple[str, ...], preset: str | None, config: dict,
               depth: int = 1):
    """One cost chart of the Profile page, built once per configuration, language and
    server (:func:`_cost_chart`)."""
    return _cost_chart(kind, names, preset, config, depth, i18n.get_language())


@st.cache_resource(show_spinner=False, max_entries=48)
def _cost_chart(kind: str, names: tuple[str, ...], preset: str | None, config: dict,
                depth: int, lang: str):
    """One cost chart of the Profile page, in ``lang`` (the current language).

    ``bars``: ``plots.cost_bars``; ``bubble``: MACs against parameters, bubble area the
    activations; ``modules``: MACs per module at ``depth``. Building a plotly figure takes
    0.1-0.2 s, every visit of the page; the figure is only read when drawn, so the one
    object is shared (``cache_resource``, not a copy).
    """
    from cnncompare import plots

    if kind == "bars":
        return plots.cost_bars(cost_table(names, preset, config))
    if kind == "bubble":
        return plots.macs_params_bubble(cost_table(names, preset, config), size="activation_mb",
                                        title=t("Bubble area: activations per image"))
    if kind == "modules":
        return plots.module_breakdown(module_table(names, preset, config, depth))
    raise ValueError(f"kind must be one of {', '.join(COST_CHARTS)}, got {kind!r}")


@st.cache_data(show_spinner=False)
def module_table(names: tuple[str, ...], preset: str | None, config: dict,
                 depth: int = 1) -> pd.DataFrame:
    """MACs and parameters per module for every model (``model`` column first)."""
    from cnncompare import profiling
    from cnncompare.registry import config_for

    frames = []
    for name in names:
        frame = profiling.analyze(config_for(name, preset, **config)).by_module(depth)
        frame.insert(0, "model", name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@st.cache_data(show_spinner=False)
def skipped_table(names: tuple[str, ...], preset: str | None, config: dict) -> pd.DataFrame:
    """The operators fvcore did not count, per model."""
    from cnncompare import profiling
    from cnncompare.registry import config_for

    frames = []
    for name in names:
        frame = profiling.analyze(config_for(name, preset, **config)).skipped()
        frame.insert(0, "model", name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def cost_columns(compact: bool = False) -> dict[str, Any]:
    """``st.dataframe`` column configs for every cost column, as every page shows them.

    One label, unit and help text per column: parameters, MACs, FLOPs, training FLOPs,
    parameter, activation and layer-output memory, the operators fvcore skipped, the
    measured latency, throughput and peak memory, and the estimated memory. Counts are
    written in full (``1,819,065,856``), or with ``compact`` as ``1.8B``. Pass it (merged
    with a page's own columns) as ``column_config``; columns a table lacks are ignored.
    """
    from cnncompare.cost_notes import ACTIVATION_NOTE

    count = "compact" if compact else "localized"
    number = st.column_config.NumberColumn
    return {
        "params": number(t("Parameters"), format=count,
                         help=t("Parameters (weights and biases), counted from the built "
                                "model.")),
        "trainable_params": number(t("Trainable parameters"), format=count),
        "macs": number(t("MACs"), format=count,
                       help=t("Multiply-accumulates per image, forward pass (fvcore: one "
                              "multiply-add counts 1).")),
        "flops": number(t("FLOPs"), format=count,
                        help=t("Floating-point operations per image, forward pass (torch "
                               "FlopCounterMode: one multiply-add counts 2).")),
        "train_flops": number(t("Train FLOPs"), format=count,
                              help=t("Forward and backward FLOPs of one training step, per "
                                     "image (torch FlopCounterMode, a grouped convolution's "
                                     "weight gradient counted once).")),
        "param_mb": number(t("Params (MB)"), format="%.2f",
                           help=t("Parameter memory in float32, decimal megabytes.")),
        "activation_mb": number(t("Activations (MB)"), format="%.2f", help=t(ACTIVATION_NOTE)),
        "output_mb": number(t("Output (MB)"), format="%.3f",
                            help=t("This layer's output for one image (batch 1, float32). The "
                                   "activation total leaves out in-place layers, which "
                                   "overwrite their input.")),
        "skipped_ops": st.column_config.TextColumn(
            t("Not counted by fvcore"),
            help=t("Operators that ran but have no MAC formula in fvcore, with their call "
                   "count.")),
        "median_ms": number(t("Latency (ms)"), format="%.2f",
                            help=t("Median time of one step, measured on this machine.")),
        "p10_ms": number(t("p10 (ms)"), format="%.2f",
                         help=t("10th percentile of the step times, measured on this "
                                "machine.")),
        "p90_ms": number(t("p90 (ms)"), format="%.2f",
                         help=t("90th percentile of the step times, measured on this "
                                "machine.")),
        "spread": number(t("Spread"), format="percent",
                         help=t("(p90 - p10) / median of the step times. Timing repeats until "
                                "this is small or the time budget is spent; above 25% the "
                                "row is marked noisy.")),
        "noisy": st.column_config.CheckboxColumn(
            t("Noisy"), help=t("The step times spread too much for the median to mean much: "
                               "the machine was busy.")),
        "batch_anomaly": st.column_config.CheckboxColumn(
            t("Faster than a smaller batch"),
            help=t("This batch's step took less time than a smaller batch's: one of the two "
                   "timings was disturbed.")),
        "note": st.column_config.TextColumn(t("Note"), width="large"),
        "latency_ms": number(t("Latency (ms)"), format="%.2f",
                             help=t("Median time of one inference at batch 1, measured on "
                                    "this machine.")),
        "throughput": number(t("Images/s"), format="%.0f",
                             help=t("Images per second at the measured median latency.")),
        "peak_mem_mb": number(t("Peak memory (MB)"), format="%.1f",
                              help=t("Peak memory measured during one step on this machine.")),
        "est_mem_mb": number(t("Estimated memory (MB)"), format="%.1f",
                             help=t("Parameters (three copies when training) plus batch x the "
                                    "activation estimate, which assumes float32 and leaves "
                                    "out in-place layers.")),
    }


def run_benchmark(names: tuple[str, ...], batch_sizes: tuple[int, ...], settings,
                  preset: str | None, config: dict, *, reuse: bool = True) -> pd.DataFrame:
    """Run ``benchmark.benchmark_models`` under a progress bar; rows land in the disk cache.

    Stopping the app (or changing a widget) interrupts the run at the next progress
    update; the rows finished by then stay cached.
    """
    from cnncompare import benchmark

    bar = st.progress(0.0, text=t("Starting the benchmark..."))

    def progress(fraction: float, message: str) -> None:
        bar.progress(fraction, text=t(message))  # benchmark's messages: marked English

    frame = benchmark.benchmark_models(list(names), list(batch_sizes), settings, preset=preset,
                                       progress=progress, cache=reuse, **config)
    bar.empty()
    return frame


def cached_benchmark(names: tuple[str, ...], batch_sizes: tuple[int, ...], settings,
                     preset: str | None, config: dict) -> pd.DataFrame:
    """The rows of this benchmark already on disk (nothing is measured): instant."""
    from cnncompare import benchmark

    return benchmark.benchmark_models(list(names), list(batch_sizes), settings, preset=preset,
                                      only_cached=True, **config)


@st.cache_resource(show_spinner=False, max_entries=16)
def run_classifier(run_id: str, home: str, updated_at: str, label: str):
    """A stored run as a ``classify.Classifier``, loaded once per server.

    ``home`` and ``updated_at`` are part of the key: another results home, or a run
    trained further, loads afresh.
    """
    from cnncompare import classify, store  # torch: imported when a page first classifies

    return classify.from_run(store.ResultsStore(home), run_id, label=label)


@st.cache_resource(show_spinner=False, max_entries=6)
def pretrained_classifier(name: str, torch_dir: str, download: bool = False):
    """torchvision's ``name`` with ImageNet weights from the torch cache ``torch_dir``.

    Raises ``pretrained.WeightsUnavailable`` (never cached) when they are not there.
    """
    from cnncompare import pretrained  # torch: imported when a page first classifies

    return pretrained.load_pretrained(name, download=download)


def session_key() -> str:
    """A random id for this browser session (kept in its session state): who started a job."""
    if "cnncompare_session" not in st.session_state:
        import uuid

        st.session_state["cnncompare_session"] = uuid.uuid4().hex
    return st.session_state["cnncompare_session"]


def is_local_visitor() -> bool:
    """Whether this visitor is at the server's own machine (Streamlit gives no IP then)."""
    return st.context.ip_address is None


@st.cache_resource(show_spinner=False)
def job_manager():
    """The server's one :class:`~cnncompare.jobs.JobManager`: shared by every session, so a
    reloaded page finds the training it started."""
    from cnncompare.jobs import JobManager

    return JobManager()


def _runs_stamp(run_ids: tuple[str, ...], runs: pd.DataFrame) -> str:
    """Changes whenever one of the runs changes, or the results home does."""
    from cnncompare import paths

    rows = runs[runs["run_id"].isin(run_ids)][["run_id", "updated_at"]]
    return f"{paths.home()}|" + "|".join(map(str, rows.itertuples(index=False)))


@st.cache_data(show_spinner=False, max_entries=32)
def _results_table(run_ids: tuple[str, ...], stamp: str) -> pd.DataFrame:
    from cnncompare.compare import results_table
    from cnncompare.store import ResultsStore

    return results_table(ResultsStore(), run_ids, bench="cached")


def results_table(run_ids: tuple[str, ...], runs: pd.DataFrame) -> pd.DataFrame:
    """The Compare page's table for ``run_ids`` (cached until one of them changes in
    ``runs``, the store's listing the page already holds)."""
    with st.spinner(t("Profiling the chosen runs...")):
        return _results_table(tuple(run_ids), _runs_stamp(tuple(run_ids), runs))


def measure_speed(run_ids: tuple[str, ...], progress=None) -> None:
    """Benchmark the runs' networks (batch 1) into the on-disk cache, then refresh."""
    from cnncompare.compare import results_table as table
    from cnncompare.store import ResultsStore

    table(ResultsStore(), run_ids, bench="measure", progress=progress)
    _results_table.clear()
