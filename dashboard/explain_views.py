"""The explanation controls and their checks on the Classify page: which method, and whether its map beats
a random map and an edge map (deletion and insertion), and survives the randomisation check."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.common import cached_explanation, cached_faithfulness, cached_randomisation
from model.core.constants import DISPLAY_NAMES, NUM_CLASSES
from model.core.network import CAM_LAYERS, default_cam_layer
from model.qualify.explain import COLORMAPS, LAYER_METHODS, METHOD_NAMES, METHOD_NOTES, METHODS

SLOW = ("integrated_gradients", "occlusion")


def explanation(image, prediction, image_size: int):
    """The controls, then the map (with a spinner for the slow methods). Returns (Explanation, opacity, colormap)."""
    c0, c1, c2, c3, c4 = st.columns([3, 3, 3, 2, 2])
    method = c0.selectbox("Explanation", list(METHODS), format_func=METHOD_NAMES.__getitem__, key="classify_method")
    target = c1.selectbox("Explain class", ["predicted", *range(NUM_CLASSES)], key="classify_target",
                          format_func=lambda t: "The predicted stage" if t == "predicted" else DISPLAY_NAMES[t])
    layer_label = c2.selectbox("Layer", list(CAM_LAYERS), key="classify_layer",
                               index=list(CAM_LAYERS.values()).index(default_cam_layer(image_size)),
                               disabled=method not in LAYER_METHODS,
                               help=None if method in LAYER_METHODS else f"{METHOD_NAMES[method]} reads no layer")
    alpha = c3.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05, key="classify_alpha")
    colormap = c4.selectbox("Colormap", COLORMAPS, key="classify_colormap")
    label = prediction.label if target == "predicted" else target
    if method in SLOW:
        with st.spinner(f"Computing {METHOD_NAMES[method]} (a few seconds on a CPU)…"):
            result = cached_explanation(image, label, CAM_LAYERS[layer_label], method)
    else:
        result = cached_explanation(image, label, CAM_LAYERS[layer_label], method)
    return result, alpha, colormap


def checks(image, result):
    """Faithfulness scores beside the trivial baselines, and the randomisation check behind a button.
    Returns (the Faithfulness, the randomisation correlation or None) for the result record."""
    f = cached_faithfulness(image, result.heatmap, result.target)
    st.markdown(f"**Is this map faithful?** {METHOD_NOTES[result.method]}")
    table = pd.DataFrame({"map": ["this map", "random map", "edge map (Sobel)"],
                          "deletion (lower is better)": [f.map.deletion, f.random.deletion, f.edges.deletion],
                          "insertion (higher is better)": [f.map.insertion, f.random.insertion, f.edges.insertion]})
    left, right = st.columns([3, 2])
    left.dataframe(table.round(3), hide_index=True, key="classify_faithfulness")
    random, edges = f.beats("random"), f.beats("edges")
    verdict = ("beats both a random map and an edge map" if random and edges else
               "beats a random map but not an edge map" if random else
               "beats an edge map but not a random map" if edges else "beats neither a random map nor an edge map")
    right.caption(f"Blacking out the map's most salient pixels first, the probability of "
                  f"'{DISPLAY_NAMES[result.target]}' falls with an area of {f.map.deletion:.3f}; putting them back "
                  f"first into a black slice raises it with an area of {f.map.insertion:.3f}. On this slice the map "
                  f"{verdict} (beating one means a lower deletion and a higher insertion area). One slice decides "
                  "little: the model card gives the scores over held-out subjects.")
    if st.button("Run the randomisation check", key="classify_randomise",
                 help="Recompute this map with layer4 and the classifier re-initialised at random"):
        st.session_state["classify_randomised"] = True
    rho = None
    if st.session_state.get("classify_randomised"):
        with st.spinner("Recomputing the map on a randomised network…"):
            randomised, rho = cached_randomisation(image, result.target, result.layer, result.method)
        c1, c2 = st.columns([1, 3])
        c1.image(randomised, clamp=True, width="stretch")
        c1.caption("The same method, last blocks randomised")
        c2.metric("Rank correlation with the real map", f"{rho:.2f}")
        c2.caption("Near 0: the map depends on what the network learned, as it should. Near 1: it would look the "
                   "same for a network that learned nothing, so it shows the image, not the model (Adebayo et al. "
                   "2018).")
    return f, rho
