"""The Batch page's "Evaluate on your cohort": true stages in (class-named folders or a CSV), the Evaluation
views on the user's own scans (`evaluation_views.own_cohort`), and the evaluation as a PDF or HTML report."""
from __future__ import annotations

import hashlib

import streamlit as st

from dashboard import evaluation_views as views
from dashboard.interrogation_views import choice_signature, view_choices
from dashboard.common import predictor_or_none
from dashboard.shell import plain, shipped_config
from model.core.constants import COHORT_BOOTSTRAP
from model.reports import documents as reports
from model.reports.record import Result
from model.reports.stamp import reproducibility_stamp
from model.serve.batch import stage_folder
from model.serve.cohort import TruthError, evaluate_cohort, truth_from_csv, truth_from_folders

FOLDERS, CSV = "class-named folders", "a CSV of file, stage, subject"
KEY = "batch_cohort"


def _has_stage_folders(names: list[str]) -> bool:
    return any(stage_folder(part) for n in names for part in n.split("/")[:-1])


def cohort_section(results: list, group_by: str) -> None:
    """Read the true stages, evaluate on request, and draw the evaluation with its export."""
    st.header("Evaluate on your cohort")
    st.caption("With the true stage of each file, every figure of the Evaluation page is computed on your own "
               "scans: your external validation of a research model. It tells how the model does on these scans; "
               "the model is not for diagnosing patients.")
    names = [r.file for r in results if isinstance(r, Result)]
    sources = [FOLDERS, CSV]
    source = st.segmented_control("True stages from", sources, key=f"{KEY}_source",
                                  default=FOLDERS if _has_stage_folders(names) else None)
    if source is None:
        st.caption("Put each stage's scans in a folder named after it (Mild_Demented/, Moderate_Demented/, "
                   "Non_Demented/, Very_Mild_Demented/; a folder inside is the subject) in the zip, or give a CSV "
                   "with the columns file, stage and optionally subject.")
        return
    truth_bytes = b""
    if source == CSV:
        upload = st.file_uploader("True stages (CSV: file, stage, optional subject)", type=["csv"],
                                  key=f"{KEY}_csv")
        if upload is None:
            return
        truth_bytes = upload.getvalue()
    try:
        truth = truth_from_folders(names) if source == FOLDERS else truth_from_csv(truth_bytes, names)
    except TruthError as exc:
        st.error(plain(str(exc)))  # names stay names, not Markdown
        return
    signature = (tuple(names), source, hashlib.sha256(truth_bytes).hexdigest(), group_by)
    stored = st.session_state.get(KEY)
    if st.button(f"Evaluate on {len(truth.labels):,} labelled file{'s' if len(truth.labels) != 1 else ''}",
                 type="primary", key=f"{KEY}_run"):
        with st.spinner(f"Computing the figures and {COHORT_BOOTSTRAP} bootstrap resamples…"):
            try:
                stored = (signature, evaluate_cohort(results, truth, group_by=group_by, n_bootstrap=COHORT_BOOTSTRAP))
            except TruthError as exc:
                st.error(plain(str(exc)))  # names stay names, not Markdown
                return
        st.session_state[KEY] = stored
    if not stored or stored[0] != signature:
        st.caption(f"{len(truth.labels):,} of {len(names):,} classified files have a true stage "
                   f"(from {truth.source}); the rest are left out of the evaluation and counted.")
        return
    evaluation = stored[1]
    views.own_cohort(evaluation, KEY)
    export(evaluation)


def export(evaluation: dict) -> None:
    """The evaluation, with the choices made above, as a PDF or HTML report."""
    st.subheader("Export the evaluation")
    fmt = st.segmented_control("Format", ["PDF", "HTML"], default="PDF", key=f"{KEY}_format") or "PDF"
    choices = view_choices(KEY)
    wanted = (id(evaluation), fmt, choice_signature(KEY))
    if st.button("Build the report", key=f"{KEY}_build"):
        with st.spinner("Drawing the figures…"):
            predictor, _ = predictor_or_none()
            st.session_state[f"{KEY}_report"] = (wanted, reports.cohort_report(
                evaluation, stamp=reproducibility_stamp(predictor or shipped_config()), fmt=fmt.lower(),
                choices=choices))
    built = st.session_state.get(f"{KEY}_report")
    if built and built[0] == wanted:
        st.download_button(f"Download the evaluation ({fmt})", built[1], f"cohort_evaluation.{fmt.lower()}",
                           "application/pdf" if fmt == "PDF" else "text/html", key=f"{KEY}_download",
                           on_click="ignore")
    else:
        st.caption("The report states the figures above with their intervals, the guard's flags, the class mix, "
                   "referral share and cell chosen above, and how to reproduce them.")
