"""cnncompare's web app: `streamlit run app.py`. Page config and navigation only."""

import streamlit as st

st.set_page_config(page_title="cnncompare", page_icon=":material/compare:", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page("views/architectures.py", title="Architectures", icon=":material/account_tree:"),
    st.Page("views/conv_arithmetic.py", title="Convolution arithmetic",
            icon=":material/grid_on:"),
    st.Page("views/profile_bench.py", title="Profile & Benchmark", icon=":material/speed:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("views/classify.py", title="Classify", icon=":material/image_search:"),
]

st.navigation(PAGES).run()
