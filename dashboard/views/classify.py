"""Classify page: a slice (image, DICOM, NIfTI or Analyze) in; stage, probabilities, uncertainty, the guard's
verdict, the nearest training slices and Grad-CAM out."""
import json
from datetime import datetime, timezone

import numpy as np
import streamlit as st

from dashboard.shell import dataset_dir, plain
from model.core.constants import DISPLAY_NAMES, NUM_CLASSES
from model.scans.scan_io import ACCEPTED, MAX_UPLOAD_BYTES, SCAN_SUFFIXES

st.title("Classify a scan")
st.caption("2D axial T1-weighted brain MRI slices like those of the training data (OASIS-1), as images, DICOM, "
           "NIfTI or Analyze: one slice, a volume to pick a slice from, or several slices of one subject. "
           "A research output, not a diagnosis.")
data = dataset_dir()
handoff = st.session_state.get("classify_from_batch")
sources = ["Upload a scan"] + (["Test-split example"] if data else []) + (["From the batch"] if handoff else [])
if st.session_state.pop("classify_open_batch", False):
    st.session_state["classify_source"] = "From the batch"
if st.session_state.get("classify_source") not in sources:
    st.session_state.pop("classify_source", None)  # e.g. "From the batch" after the batch result was replaced
source = st.segmented_control("Source", sources, key="classify_source",
                              default=None if "classify_source" in st.session_state else sources[0]) or sources[0]
true_label, subject, subject_name = None, None, None
if source == "Upload a scan":
    files = st.file_uploader(f"Slices or volumes ({', '.join(SCAN_SUFFIXES)}; images up to "
                             f"{MAX_UPLOAD_BYTES // 2**20} MB): one scan, an Analyze .hdr with its .img, the files "
                             "of one DICOM series, or several slices of one subject",
                             accept_multiple_files=True, key="classify_upload")
    # No `type=`: Streamlit's own suffix check raises before this script runs (a NUL byte in a crafted file name
    # breaks the uploader for the session); model.scans.scan_io checks every file against its allow-list instead, and
    # says why a file is refused.
    if not files:
        st.info(f"Drop a scan above. Readable: {ACCEPTED}." + (" Or pick a test-split example." if data else ""))
        st.stop()

# A scan is on its way. The model's modules (torch and what imports it: 3-4 s in a cold process) are imported from
# here on, not at the top, so the page above is usable while the warm-up thread started by app.py loads them.
from dashboard import charts, explain_views  # noqa: E402
from dashboard.common import (  # noqa: E402
    classified,
    classified_slice,
    mixed_subjects_warning,
    scans_table,
    staged_volume,
    volume_subject_panel,
    predictor_or_none,
    subject_panel,
    test_split,
)
from dashboard.trust_views import nearest_slices, scan_details, uncertainty_caption, verdict  # noqa: E402
from model.qualify.explain import LAYER_METHODS, METHOD_NAMES, brain_mask, outside_share, overlay  # noqa: E402
from model.reports.record import Result, SubjectResult, page_record, png_bytes  # noqa: E402

predictor, error = predictor_or_none()
if predictor is None:
    st.error(f"The model could not be loaded, so nothing can be classified: {error}")
    st.stop()

if source == "Upload a scan":
    uploads = tuple((f.name, f.getvalue()) for f in files)
    results = classified(uploads)  # model.serve.pipeline: group -> open -> assess, one result per scan
    one_volume = (len(results) == 1 and isinstance(results[0], Result) and results[0].n_slices >= 32
                  and results[0].kind.startswith(("NIfTI", "Analyze")))
    if one_volume and st.toggle("Stage the whole volume as a subject (the 32 slices that match the training "
                                "slices' positions)", key="classify_volume_as_subject"):
        staged = staged_volume(uploads)
        if not isinstance(staged, SubjectResult):
            st.error(f"This volume cannot be staged as a subject. {plain(staged.error.message)}")
        else:
            shown = volume_subject_panel(staged)
            if st.session_state.get("classify_volume_0") is None:
                st.session_state["classify_volume_0"] = shown  # open the slice below at the slab's surest one
            st.caption("Below: one slice of the slab, to explain; pick another with the slider.")
    picked = st.session_state.get("classify_volume_0")
    if len(results) == 1 and picked is not None:  # one volume, read at the slice picked below
        results = classified(uploads, picked)
    for r in results:
        if not isinstance(r, Result):
            st.error(f"This file cannot be classified. {plain(r.error.message)}")
    scans = [r for r in results if isinstance(r, Result)]
    if not scans:
        st.stop()
    volumes = [r for r in scans if r.n_slices > 1]
    if len(scans) == 1 and volumes:
        st.slider(f"Axial slice of {plain(scans[0].file)} ({scans[0].n_slices} in the volume)", 1, scans[0].n_slices,
                  scans[0].slice, key="classify_volume_0")
    if len(scans) > 1:
        if volumes:
            st.caption("Volumes among several files are read at their middle slice; upload one alone to pick "
                       "a slice, or use the Batch page.")
        together = st.radio(f"These {len(scans)} scans are", ["separate scans", "slices of one subject"],
                            horizontal=True, key="classify_together",
                            help="Slices of one subject are staged together, as the mean of their calibrated "
                                 "probabilities (the rule the new-subject figures are for). Nothing is averaged "
                                 "unless you say the slices are one subject.")
        if together == "slices of one subject":
            subject_id = st.text_input("Subject id (goes into the downloads)", key="classify_subject_id",
                                       max_chars=64)
            mixed_subjects_warning(scans)
            pick, subject = subject_panel(scans)
            subject_name = subject_id.strip() or None
        else:
            pick = st.selectbox("Scan to show", range(len(scans)), key="classify_scan_pick",
                                format_func=lambda i: scans[i].file)  # options are plain text: no escaping
            scans_table(scans)
        result = scans[pick]
    else:
        result = scans[0]
elif source == "From the batch":
    result = handoff
    st.caption(f"Opened from the Batch page: {plain(result.file)}")
else:
    split = test_split(str(data))
    c1, c2 = st.columns(2)
    true_label = c1.selectbox("True stage", range(NUM_CLASSES), format_func=DISPLAY_NAMES.__getitem__,
                              key="classify_example_stage")
    rows = np.flatnonzero(split.labels.numpy() == true_label)
    pick = c2.number_input(f"Example (1–{len(rows)})", 1, len(rows), 1, key="classify_example_number")
    image = split.images[rows[pick - 1], 0].numpy()
    result = classified_slice(image, split.ids[rows[pick - 1]])

scan, assessment, name = result.scan, result.assessment, result.file
if scan is not None:  # a slice read from a file (not a decoded test-split example)
    image = scan.image
verdict(assessment)


@st.fragment
def answer(image, result, scan, name, assessment, true_label, scans, subject, subject_name):
    """The stage, its map and the map's checks, and the downloads. A fragment: changing the explained class,
    the method, the layer, the opacity or the colormap reruns this part alone, not the page with its guard and
    nearest slices (issue 20: a control's answer within half a second)."""
    prediction = assessment.prediction
    explanation, alpha, colormap = explain_views.explanation(image, prediction, predictor)
    blended = overlay(image, explanation.heatmap, alpha=alpha, colormap=colormap)

    left, middle, right = st.columns([2, 2, 3])
    left.image(image, width="stretch", clamp=True)
    left.caption(plain(name))
    where = f" at {explanation.layer}" if explanation.method in LAYER_METHODS else ""
    middle.image(blended, caption=f"{METHOD_NAMES[explanation.method]} for "
                 f"'{DISPLAY_NAMES[explanation.target]}'{where} · "
                 f"{outside_share(explanation.heatmap, brain_mask(image)):.0%} of it outside the brain",
                 width="stretch")
    with right:
        trust = assessment.trust
        note = (" (unreliable)" if trust and trust.out_of_distribution else
                " (a seen brain)" if trust and trust.near_copy else "")
        st.metric("Predicted stage" + note, prediction.display_name)
        st.caption(f"Calibrated probability {prediction.confidence:.1%}"
                   + (f" · true stage {DISPLAY_NAMES[true_label]}" if true_label is not None else ""))
        uncertainty_caption(assessment)
        st.plotly_chart(charts.probability_bars(prediction.probabilities), width="stretch", key="classify_probs")
    checked = None
    if explanation.raw_max <= 0:
        st.info(f"{METHOD_NAMES[explanation.method]} found no positive evidence for this class: the map is "
                "empty.")
    else:
        checked = explain_views.checks(image, explanation)
    record = page_record(result, explanation=explanation, cam_settings={"opacity": alpha, "colormap": colormap},
                         checks=checked, true_label=true_label,
                         subject=(scans, subject) if subject is not None else None, subject_id=subject_name,
                         created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0] or "scan"
    d1, d2, d3 = st.columns([2, 2, 3])
    d1.download_button("Download overlay (PNG)", png_bytes(blended), f"{stem}_{explanation.method}.png",
                       "image/png", key="classify_download_png", width="stretch")
    d2.download_button("Download result (JSON)", json.dumps(record, indent=2), f"{stem}_result.json",
                       "application/json", key="classify_download_json", width="stretch")
    def report_pdf() -> bytes:
        # the PDF writer (fpdf2, fontTools, matplotlib: 0.9 s of imports) loads on the first click, not with the page
        from model.reports.documents import scan_report_pdf
        from model.reports.stamp import reproducibility_stamp

        return scan_report_pdf(record, image, blended, reproducibility_stamp(
            predictor, method={**explanation.settings(), "opacity": alpha, "colormap": colormap}, scan=scan))

    d3.download_button(  # built only when clicked
        "Download report (PDF)", report_pdf,
        f"{stem}_report.pdf", "application/pdf", key="classify_download_pdf", width="stretch")
    st.caption("A saliency map highlights where the network found evidence for the chosen class. It is not a "
               "lesion map.")


answer(image, result, scan, name, assessment, true_label, scans if subject is not None else None, subject,
       subject_name)
nearest_slices(assessment)
if scan is not None:
    scan_details(scan)

