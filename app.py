"""cnncompare's web app: `streamlit run app.py`. Page config, language and navigation only."""

import streamlit as st

from cnncompare import ui
from cnncompare.i18n import t
from cnncompare.store import StoreError

st.set_page_config(page_title="cnncompare", page_icon=":material/compare:", layout="wide")
ui.apply_language(sync_url=True)  # before any page: ?lang=, the session's choice, the browser

PAGES = [
    st.Page("views/overview.py", title=t("Overview"), icon=":material/home:", default=True),
    st.Page("views/architectures.py", title=t("Architectures"),
            icon=":material/account_tree:"),
    st.Page("views/conv_arithmetic.py", title=t("Convolution arithmetic"),
            icon=":material/grid_on:"),
    st.Page("views/profile_bench.py", title=t("Profile & Benchmark"), icon=":material/speed:"),
    st.Page("views/train.py", title=t("Train"), icon=":material/model_training:"),
    st.Page("views/compare.py", title=t("Compare"), icon=":material/compare_arrows:"),
    st.Page("views/classify.py", title=t("Classify"), icon=":material/image_search:"),
]

page = st.navigation(PAGES)
ui.language_picker()
try:
    page.run()
except StoreError as exc:  # a full disk, a read-only home, a damaged database: one message
    st.error(str(exc), icon=":material/database:")
