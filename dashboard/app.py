"""Router of the research dashboard: `streamlit run dashboard/app.py`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `model` and `dashboard` importable

import streamlit as st  # noqa: E402

from dashboard.common import render_sidebar  # noqa: E402

st.set_page_config(page_title="Alzheimer MRI staging · research dashboard", page_icon="🧠", layout="wide")
pages = [
    st.Page("pages/classify.py", title="Classify a scan", icon=":material/upload_file:", default=True),
    st.Page("pages/evaluation.py", title="Evaluation", icon=":material/monitoring:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
]
navigation = st.navigation(pages)
render_sidebar()
navigation.run()
