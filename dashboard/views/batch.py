"""Batch page: many scans at once (uploads, zip archives, or a configured server folder); a sortable table
with predictions, uncertainty and flags, a chart of the stages, a CSV, subjects, any row opened on the
Classify page, and, given true stages, the Evaluation views on the user's own cohort."""
import json
import os

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.cohort_views import cohort_section
from dashboard.common import predictor_or_none, trust_bank_or_none
from dashboard.shell import plain
from model.core.constants import BATCH_DIR_ENV_VAR
from model.reports.record import Result
from model.scans.scan_io import SCAN_SUFFIXES, ScanError
from model.serve.batch import GROUPINGS, expand_uploads, server_files, subject_table
from model.serve.pipeline import classify

st.title("Batch")
st.caption("Many slices or volumes at once: each gets a stage, calibrated probabilities, an uncertainty and "
           "the guard's flags. Volumes are read at their middle slice. Nothing is written to disk.")
predictor, error = predictor_or_none()
if predictor is None:
    st.error(f"The model could not be loaded, so nothing can be classified: {error}")
    st.stop()
bank, bank_error = trust_bank_or_none()
if bank is None:
    st.warning(f"Without the out-of-distribution guard no input is checked: {plain(bank_error)}")

server = os.environ.get(BATCH_DIR_ENV_VAR)
sources = ["Upload files"] + ([f"Server folder (${BATCH_DIR_ENV_VAR})"] if server else [])
source = st.segmented_control("Source", sources, default=sources[0], key="batch_source") or sources[0]
failed = []
if source == "Upload files":
    uploads = st.file_uploader(f"Scans ({', '.join(SCAN_SUFFIXES)}), or zip archives of them",
                               accept_multiple_files=True, key="batch_upload")  # no `type=`: see the Classify page
    files, failed = expand_uploads([(f.name, f.getvalue()) for f in uploads or []])
else:
    folder = st.text_input("Folder inside the batch folder (empty: all of it)", "", key="batch_folder")
    try:
        files, failed = server_files(server, folder)
    except (ScanError, OSError) as exc:
        st.error(plain(exc))
        files = []
group_by = st.radio("Group files into subjects by", GROUPINGS, index=GROUPINGS.index("folder"), horizontal=True,
                    key="batch_group",
                    help="folder: files in one folder (or one folder of a zip) are one subject; name prefix: the "
                         "part of the name before the last '_' or '-' (OAS1_0001_s12.png -> OAS1_0001)")
if not files and not failed:
    st.info("Add scans above: images, DICOM, NIfTI, Analyze pairs, or zip archives of them.")
    st.stop()
if st.button(f"Classify {len(files)} file{'s' if len(files) != 1 else ''}", type="primary", key="batch_run"):
    bar = st.progress(0.0, text="Reading and classifying…")
    results = classify(files, predictor=predictor, bank=bank,
                       progress=lambda done, total: bar.progress(done / total, text=f"Reading and classifying… {done / total:.0%}"))
    bar.empty()
    st.session_state["batch_result"] = results + failed
results = st.session_state.get("batch_result")
if not results:
    st.stop()

table = pd.DataFrame([r.row() for r in results])  # the CSV's rows (model.reports.record.ROW_COLUMNS)
ok = [r for r in results if isinstance(r, Result)]
c1, c2, c3 = st.columns(3)
c1.metric("Scans classified", len(ok))
c2.metric("Flagged", sum(not r.reliable for r in ok), help="Out of distribution, or a near-copy of a training slice")
c3.metric("Could not be read", len(results) - len(ok))
st.caption("Click a column header to sort. Select a row to open that scan on the Classify page with its overlay.")
shown = ["file", "display_name", "flags", "spread", *(c for c in table.columns if c.startswith("p_")), "agreement",
         "kind", "slice", "n_slices", "reasons", "nearest_subject", "error"]
selection = st.dataframe(table, hide_index=True, column_order=shown, on_select="rerun", selection_mode="single-row",
                         key="batch_table")
picked = selection.selection.rows if selection else []
if picked and isinstance(results[picked[0]], Result):
    if st.button(f"Open {plain(results[picked[0]].file)} on the Classify page", key="batch_open"):
        st.session_state["classify_from_batch"] = results[picked[0]]
        st.session_state["classify_open_batch"] = True
        st.switch_page("views/classify.py")
if ok:
    st.plotly_chart(charts.predicted_counts(ok), key="batch_counts")
    if group_by != "none":
        st.subheader("Subjects")
        st.caption("A subject's stage is the arg-max of its slices' mean calibrated probabilities, as the "
                   "subject-level cross-validation scored it.")
        st.dataframe(pd.DataFrame(subject_table(ok, group_by)), hide_index=True, key="batch_subjects")
st.download_button("Download the table (CSV)", table.to_csv(index=False), "batch_predictions.csv", "text/csv",
                   key="batch_download")
st.download_button("Download the results (JSON)", json.dumps([r.record() for r in results], indent=1),
                   "batch_predictions.json", "application/json", key="batch_download_json")
if ok:
    cohort_section(results, group_by)
