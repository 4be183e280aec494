"""Model card page, rendered from the files in assets/."""
import streamlit as st

from dashboard import charts
from dashboard.common import training_log
from dashboard.shell import read_json, shipped_baseline, shipped_config, shipped_crossval, shipped_metrics
from model.core.constants import GUARD_RATES_PATH, SELECTION_LOG_PATH
from model.qualify.faithfulness import FAITHFULNESS_PATH
from model.qualify.trust import TRUST_PATH
from model.reports.card import model_card_markdown

st.title("Model card")
config = shipped_config()
if config is None:
    st.error("No model is shipped (assets/model_config.json is missing): train one with "
             "`python -m model.training.train --export-dir assets`.")
    st.stop()
st.markdown(model_card_markdown(config, shipped_metrics(), shipped_baseline(), shipped_crossval(),
                                read_json(str(TRUST_PATH)), read_json(str(GUARD_RATES_PATH)),
                                read_json(str(FAITHFULNESS_PATH))))
history = training_log()
if history:
    held = "subjects held out whole" if config.get("train_config", {}).get("val_by_subject") else "held-out slices"
    st.plotly_chart(charts.training_curves(history, title=f"Training history of the shipped network "
                                                         f"(validation: {held})"), key="card_history")
selection = training_log(str(SELECTION_LOG_PATH))
if selection:
    st.markdown("**Validation run.** The same recipe on 90% of train, validated each epoch on the held-out 10%: "
                "this run chose the epoch count and the calibration temperature of the shipped model.")
    st.plotly_chart(charts.training_curves(selection, title="Training history of the validation run"),
                    key="card_selection")
with st.expander("Full training configuration"):
    st.json(config.get("train_config", {}))
