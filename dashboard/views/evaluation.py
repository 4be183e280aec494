"""Evaluation page: new subjects (cross-validated) first, the published test split second."""
import streamlit as st

from dashboard import evaluation_views as views
from dashboard.interrogation_views import choice_signature, view_choices
from dashboard.common import predictor_or_none
from dashboard.shell import shipped_baseline, shipped_config, shipped_crossval, shipped_metrics
from model.reports import documents as reports
from model.reports.stamp import reproducibility_stamp

st.title("Evaluation")
crossval, metrics = shipped_crossval(), shipped_metrics()
views.headline(crossval, metrics, shipped_baseline())
view = st.segmented_control("View", [views.NEW, views.PUBLISHED], default=views.NEW,
                            key="evaluation_view") or views.NEW

with st.expander("Export this view as a report"):
    st.caption("The figures and tables of this view, the class mix, referral share and confusion-matrix cell you "
               "chose below, their caveats, and a stamp to reproduce them (model checksum, data fingerprint, "
               "preprocessing, software versions, commit).")
    fmt = st.segmented_control("Format", ["PDF", "HTML"], default="PDF", key="evaluation_export_format") or "PDF"
    new = view == views.NEW
    level = "slice" if new and st.session_state.get("evaluation_level") == "per slice" else "subject"
    live = st.session_state.get("evaluation_live")  # the published view shows recomputed figures when there are
    key = "evaluation_new" if new else "evaluation_test"
    choices = view_choices(key)  # the class mix, referral and cell chosen in the view below
    wanted = (view, level, fmt, live is not None, choice_signature(key))
    if st.button("Build the report", key="evaluation_export_build"):
        with st.spinner("Drawing the figures…"):
            predictor, _ = predictor_or_none()
            st.session_state["evaluation_export_report"] = (wanted, reports.evaluation_report(
                "new" if new else "published", crossval=crossval, metrics=live or metrics,
                baseline=shipped_baseline(), stamp=reproducibility_stamp(predictor or shipped_config()),
                fmt=fmt.lower(), level=level, choices=choices))
    built = st.session_state.get("evaluation_export_report")
    if built and built[0] == wanted:  # a report of another view or format is not offered for this one
        name = f"evaluation_{'new_subjects' if new else 'published_split'}.{fmt.lower()}"
        st.download_button(f"Download report ({fmt})", built[1], name,
                           "application/pdf" if fmt == "PDF" else "text/html", key="evaluation_export_download",
                           on_click="ignore")

if view == views.NEW:
    views.new_subjects(crossval)
else:
    views.test_split(metrics)
