"""Overview: what the app is for, the zoo, the device and the results home."""

import streamlit as st

from cnncompare import paths, ui
from cnncompare.cost_notes import MACS_VS_FLOPS
from cnncompare.i18n import t, tn
from cnncompare.store import ResultsStore

st.title("cnncompare")
st.markdown(t(
    "Compare the classic convolutional networks side by side: their architecture layer "
    "by layer, what they cost to run, and how well they learn on the same data. "
    "Everything runs on your own machine, offline by default, and exports as CSV."
))

# The device and the zoo need torch (2-3 s to import on a fresh server): loaded in a
# background thread while this page draws; the fragments below fill them in.
basics = ui.overview_basics()
home = str(paths.home())
runs = ResultsStore().runs()
c1, c2, c3 = st.columns(3)


def counts_done() -> bool:
    """Whether the zoo is loaded and all its MACs and FLOPs are counted (polling stops)."""
    return basics.done() and ui.zoo_costs(home).done()  # torch is loaded once basics is


@st.fragment(run_every=None if counts_done() else 0.5)
def device_panel() -> None:
    """The device in use, once torch has loaded."""
    ui.apply_language()  # a fragment's rerun does not run app.py
    loaded = basics.result()
    if loaded is None:
        st.metric(t("Device in use"), "…")
        st.caption(ui.error_text(basics.error) if basics.error
                   else t("PyTorch is loading (once after the server starts)."))
        return
    dev = loaded[0]
    name = dev["name"]
    device_name = t(name)  # the CPU's name says its thread count in words
    st.metric(t("Device in use"), dev["device"].upper(), help=device_name)
    st.caption(f"{device_name} · torch {dev['torch']}")


with c1:
    device_panel()
c2.metric(t("Stored runs"), len(runs),
          help=t("Trained runs in the results home; each is keyed by a hash of its "
                 "configuration."))
c2.caption(t("`{home}` (set `CNNCOMPARE_HOME` to move it)", home=paths.home()))
finished = runs[runs["status"] == "finished"]
c3.metric(t("Finished runs"), len(finished),
          help=t("Each reports the test accuracy at its epoch of best validation accuracy; "
                 "Compare shows them grouped over seeds, with 95% intervals."))
if len(finished):
    c3.caption(tn("{n} model on {datasets}", "{n} models on {datasets}",
                  finished["model"].nunique(),
                  datasets=", ".join(sorted(finished["dataset"].unique()))))

st.subheader(t("Where to go"))
links = st.columns(5)
links[0].page_link("views/architectures.py", label=t("Architectures"),
                   icon=":material/account_tree:",
                   help=t("Layer by layer, with the shape arithmetic"))
links[1].page_link("views/profile_bench.py", label=t("Profile & Benchmark"),
                   icon=":material/speed:", help=t("Parameters, MACs, FLOPs, memory, latency"))
links[2].page_link("views/train.py", label=t("Train"), icon=":material/model_training:",
                   help=t("Train several networks on the same data"))
links[3].page_link("views/compare.py", label=t("Compare"), icon=":material/compare_arrows:",
                   help=t("Curves, accuracy against cost, CSV"))
links[4].page_link("views/classify.py", label=t("Classify"), icon=":material/image_search:",
                   help=t("Your own image through every trained network"))

st.subheader(t("The zoo"))
COLUMNS = {
    "model": t("Model"),
    "family": t("Family"),
    "year": st.column_config.NumberColumn(t("Year"), format="%d"),
    "paper": t("Paper"),
    "paper_url": st.column_config.LinkColumn(t("Link"), display_text=t("paper")),
    **ui.cost_columns(),
    "input": st.column_config.TextColumn(t("Canonical input"),
                                         help=t("channels x height x width")),
    "num_classes": st.column_config.NumberColumn(t("Classes")),
    "key_idea": t("Key idea"),
}


@st.fragment(run_every=None if counts_done() else 0.5)
def zoo_panel() -> None:
    """The zoo table, once torch has loaded; its MACs and FLOPs fill in as the background
    count delivers them."""
    ui.apply_language()  # a fragment's rerun does not run app.py
    loaded = basics.result()
    if loaded is None:
        if basics.error:
            st.error(ui.error_text(basics.error), icon=":material/error:")
        else:
            st.caption(t("Loading the zoo: PyTorch starts once after the server starts, a "
                         "few seconds."))
            st.session_state["zoo-counting"] = True
        return
    zoo = loaded[1]
    costs = ui.zoo_costs(home)
    counted = costs.results()
    table = zoo.copy()
    table.insert(6, "macs", [counted.get(n, {}).get("macs") for n in table["model"]])
    table.insert(7, "flops", [counted.get(n, {}).get("flops") for n in table["model"]])
    if costs.done():
        n, total = len(counted), len(table)
        if n == total:
            counted_text = t("MACs and FLOPs counted for all {n} networks at their canonical "
                             "input, per image.", n=n)
        else:
            counted_text = t("MACs and FLOPs counted for {n} of {total} networks at their "
                             "canonical input, per image.", n=n, total=total)
        st.caption(f"{counted_text} {t(MACS_VS_FLOPS)}")
        for name, error in costs.errors().items():
            st.warning(f"{name}: {ui.error_text(error)}", icon=":material/warning:")
    else:
        done, n = len(counted), len(table)
        st.caption(t("Counting MACs and FLOPs at the canonical input: {done} of {n} networks "
                     "so far (once; kept on disk after).", done=done, n=n))
        if costs.paused():
            st.caption(t("The count waits while a training job runs, so that the training "
                         "keeps the whole CPU."))
    shown = table.copy()
    shown["key_idea"] = [t(idea) for idea in shown["key_idea"]]
    st.dataframe(shown, hide_index=True, height="content", column_config=COLUMNS,
                 key="zoo-table")
    ui.csv_download(table, "cnncompare-zoo.csv")
    if costs.done() and st.session_state.pop("zoo-counting", False):
        st.rerun()  # once, so that this fragment stops polling
    st.session_state["zoo-counting"] = not costs.done()


zoo_panel()
