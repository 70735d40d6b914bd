"""Streamlit helpers shared by the pages: cached loaders and small widgets.

Only pages import this module. Logic stays in the rest of the package; these functions
wrap it in Streamlit's caches so that a rerun is instant.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st


@st.cache_data(show_spinner=False)
def zoo_table() -> pd.DataFrame:
    from cnncompare.cli import zoo_frame

    return zoo_frame()


@st.cache_data(show_spinner=False)
def device_summary() -> dict[str, str]:
    import torch

    from cnncompare.devices import device_name, resolve_device

    dev = resolve_device("auto")
    return {"device": dev.type, "name": device_name(dev), "torch": torch.__version__}


def csv_download(frame: pd.DataFrame, filename: str, label: str = "Download CSV",
                 key: str | None = None) -> None:
    """A download button holding exactly ``frame`` as CSV."""
    st.download_button(label, frame.to_csv(index=False).encode(), file_name=filename,
                       mime="text/csv", key=key or f"dl-{filename}", icon=":material/download:")
