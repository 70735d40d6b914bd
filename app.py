"""cnncompare's web app: `streamlit run app.py`. Page config and navigation only."""

import streamlit as st

st.set_page_config(page_title="cnncompare", page_icon=":material/compare:", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/home:", default=True),
]

st.navigation(PAGES).run()
