"""Classify page: one slice in; stage, probabilities and Grad-CAM out."""
import json

import numpy as np
import streamlit as st

from dashboard import charts
from dashboard.common import (
    cached_explanation,
    cached_prediction,
    dataset_dir,
    plain,
    predictor_or_none,
    subject_panel,
    test_split,
)
from model.constants import DISPLAY_NAMES, NUM_CLASSES
from model.explain import COLORMAPS, overlay
from model.network import CAM_LAYERS, default_cam_layer
from model.report import png_bytes, result_record
from model.scan_io import IMAGE_TYPES, MAX_UPLOAD_BYTES, ScanError, read_scan

st.title("Classify a scan")
st.caption("2D axial T1-weighted brain MRI slices, like those of the training data: one slice, or several of "
           "one subject for a subject-level result. A research output, not a diagnosis.")
predictor, error = predictor_or_none()
if predictor is None:
    st.error(f"The model could not be loaded, so nothing can be classified: {error}")
    st.stop()

data = dataset_dir()
sources = ["Upload a scan", "Test-split example"] if data else ["Upload a scan"]
source = st.segmented_control("Source", sources, default=sources[0], key="classify_source") or sources[0]
true_label, subject, names = None, None, []
if source == "Upload a scan":
    files = st.file_uploader(f"Axial MRI slices ({', '.join(t.upper() for t in IMAGE_TYPES)}, up to "
                             f"{MAX_UPLOAD_BYTES // 2**20} MB each): one slice, or several slices of one subject",
                             type=list(IMAGE_TYPES), accept_multiple_files=True, key="classify_upload")
    if not files:
        st.info("Drop a slice above, or several slices of one subject" + (", or pick a test-split example."
                                                                          if data else "."))
        st.stop()
    slices, names = [], []
    for file in files:
        try:
            slices.append(read_scan(file.getvalue(), file.name))
            names.append(file.name)
        except ScanError as exc:
            st.error(f"This file cannot be classified. {plain(exc)}")
    if not slices:
        st.stop()
    if len(slices) > 1:
        pick, subject = subject_panel(slices, names, predictor)
        image, name = slices[pick], names[pick]
    else:
        image, name = slices[0], names[0]
else:
    split = test_split(str(data))
    c1, c2 = st.columns(2)
    true_label = c1.selectbox("True stage", range(NUM_CLASSES), format_func=DISPLAY_NAMES.__getitem__,
                              key="classify_example_stage")
    rows = np.flatnonzero(split.labels.numpy() == true_label)
    pick = c2.number_input(f"Example (1–{len(rows)})", 1, len(rows), 1, key="classify_example_number")
    image = split.images[rows[pick - 1], 0].numpy()
    name = split.ids[rows[pick - 1]]

prediction = cached_prediction(image)
layer_names = list(CAM_LAYERS)
c1, c2, c3, c4 = st.columns([3, 3, 2, 2])
target = c1.selectbox("Explain class", [None, *range(NUM_CLASSES)], key="classify_target",
                      format_func=lambda t: f"Predicted ({prediction.display_name})" if t is None
                      else DISPLAY_NAMES[t])
layer_label = c2.selectbox("Layer", layer_names, key="classify_layer",
                           index=list(CAM_LAYERS.values()).index(default_cam_layer(predictor.image_size)))
alpha = c3.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05, key="classify_alpha")
colormap = c4.selectbox("Colormap", COLORMAPS, key="classify_colormap")
explanation = cached_explanation(image, prediction.label if target is None else target, CAM_LAYERS[layer_label])
blended = overlay(image, explanation.heatmap, alpha=alpha, colormap=colormap)

left, middle, right = st.columns([2, 2, 3])
left.image(image, caption=f"{name}" + (f" · true stage: {DISPLAY_NAMES[true_label]}" if true_label is not None else ""),
           width="stretch", clamp=True)
middle.image(blended, caption=f"Grad-CAM for '{DISPLAY_NAMES[explanation.target]}' at {explanation.layer}",
             width="stretch")
with right:
    st.metric("Predicted stage", prediction.display_name)
    st.caption(f"Calibrated probability {prediction.confidence:.1%}"
               + (f" · true stage {DISPLAY_NAMES[true_label]}" if true_label is not None else ""))
    st.plotly_chart(charts.probability_bars(prediction.probabilities), width="stretch",
                    key="classify_probs")
if explanation.raw_max <= 0:
    st.info("Grad-CAM found no positive evidence for this class at this layer: the map is empty.")

record = result_record(name, prediction, model_sha256=predictor.sha256, temperature=predictor.temperature,
                       explanation=explanation, cam_settings={"opacity": alpha, "colormap": colormap},
                       true_label=true_label)
if subject is not None:  # several slices of one subject: the download carries the subject's result too
    record["subject"] = {"files": names, **subject.as_dict(), "aggregation": "mean of calibrated probabilities"}
stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
d1, d2, _ = st.columns([2, 2, 3])
d1.download_button("Download overlay (PNG)", png_bytes(blended), f"{stem}_gradcam.png", "image/png",
                   key="classify_download_png", width="stretch")
d2.download_button("Download result (JSON)", json.dumps(record, indent=2), f"{stem}_result.json",
                   "application/json", key="classify_download_json", width="stretch")
st.caption("Grad-CAM highlights where the network found evidence for the chosen class, at the coarse scale of "
           "the chosen layer. It is not a lesion map.")
