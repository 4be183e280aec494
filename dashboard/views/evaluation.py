"""Evaluation page: new subjects (cross-validated) first, the published test split second."""
import streamlit as st

from dashboard import evaluation_views as views
from dashboard.common import shipped_baseline, shipped_crossval, shipped_metrics

st.title("Evaluation")
crossval, metrics = shipped_crossval(), shipped_metrics()
views.headline(crossval, metrics, shipped_baseline())
view = st.segmented_control("View", [views.NEW, views.PUBLISHED], default=views.NEW,
                            key="evaluation_view") or views.NEW
if view == views.NEW:
    views.new_subjects(crossval)
else:
    views.test_split(metrics)
