"""Overview: what the app is for, the zoo, the device and the results home."""

import streamlit as st

from cnncompare import paths, ui

st.title("cnncompare")
st.markdown(
    "Compare the classic convolutional networks side by side: their architecture layer "
    "by layer, what they cost to run, and how well they learn on the same data."
)

dev = ui.device_summary()
c1, c2 = st.columns(2)
c1.metric("Device in use", dev["device"].upper(), help=dev["name"])
c1.caption(f"{dev['name']} · torch {dev['torch']}")
c2.metric("Results home", paths.home().name)
c2.caption(f"`{paths.home()}` (set `CNNCOMPARE_HOME` to move it)")

st.subheader("The zoo")
zoo = ui.zoo_table()
st.dataframe(
    zoo,
    hide_index=True,
    column_config={
        "model": "Model",
        "family": "Family",
        "year": st.column_config.NumberColumn("Year", format="%d"),
        "paper": "Paper",
        "paper_url": st.column_config.LinkColumn("Link", display_text="paper"),
        "params": st.column_config.NumberColumn(
            "Parameters", help="At the canonical input, counted from the built model",
            format="localized"),
        "input": st.column_config.TextColumn("Canonical input", help="channels x height x width"),
        "num_classes": st.column_config.NumberColumn("Classes"),
        "key_idea": "Key idea",
    },
)
ui.csv_download(zoo, "cnncompare-zoo.csv")
