"""Model card page, rendered from the files in assets/."""
import streamlit as st

from dashboard import charts
from dashboard.common import shipped_baseline, shipped_config, shipped_metrics, training_log
from model.card import model_card_markdown

st.title("Model card")
config = shipped_config()
if config is None:
    st.error("No model is shipped (assets/model_config.json is missing): train one with "
             "`python -m model.train --export-dir assets`.")
    st.stop()
st.markdown(model_card_markdown(config, shipped_metrics(), shipped_baseline()))
history = training_log()
if history:
    st.plotly_chart(charts.training_curves(history), key="card_history")
with st.expander("Full training configuration"):
    st.json(config.get("train_config", {}))
