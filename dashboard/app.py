"""Router of the research dashboard: `streamlit run dashboard/app.py` (after `pip install -e .`)."""
import streamlit as st

from dashboard.shell import WARMUP, model_status, render_sidebar, start_warmup

st.set_page_config(page_title="Alzheimer MRI staging · research dashboard", page_icon="🧠", layout="wide")
# Not a `pages/` folder: Streamlit would also auto-discover that one, and a bookmarked /evaluation would then
# run the page alone, without this router, its sidebar and the research-use notice.
pages = [
    st.Page("views/classify.py", title="Classify a scan", icon=":material/upload_file:", default=True),
    st.Page("views/batch.py", title="Batch", icon=":material/table_view:"),
    st.Page("views/evaluation.py", title="Evaluation", icon=":material/monitoring:"),
    st.Page("views/model_card.py", title="Model card", icon=":material/description:"),
]
navigation = st.navigation(pages)
start_warmup()  # the model loads on a thread while this first page is drawn from light modules
status = render_sidebar()
navigation.run()
if status is not None and WARMUP.device:  # the page may have waited for the model: say where it runs now
    status.caption(model_status())
