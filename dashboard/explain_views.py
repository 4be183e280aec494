"""The explanation controls and their checks on the Classify page: which method (the held-out faithfulness table
picks the first one shown), whether its map beats a random map and an edge map (deletion and insertion), how much
of it lies outside the brain, and whether it survives the randomisation check."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.common import cached_explanation, cached_faithfulness, cached_randomisation, explain_others_ahead
from dashboard.shell import read_json
from model.core.constants import DISPLAY_NAMES, NUM_CLASSES
from model.core.network import CAM_LAYERS, CAM_STRIDE
from model.qualify.explain import COLORMAPS, LAYER_METHODS, METHOD_NAMES, METHOD_NOTES, METHODS, overlay
from model.qualify.faithfulness import FAITHFULNESS_PATH, default_method, randomisation_verdict

SLOW = ("integrated_gradients", "occlusion")
LAYER_LABELS = {layer: f"{layer} · 1/{CAM_STRIDE[layer]}" for layer in CAM_LAYERS.values()}  # short: fit the column


def first_method() -> tuple[str, str]:
    """(the method shown first, one line saying why), from the shipped held-out faithfulness table."""
    return default_method(read_json(str(FAITHFULNESS_PATH)))


def explanation(image, prediction, predictor):
    """The controls, then the map (with a spinner for the slow methods). Returns (Explanation, opacity, colormap)."""
    c0, c1, c2, c3, c4 = st.columns([3, 3, 3, 2, 2])
    default, why = first_method()
    method = c0.selectbox("Explanation", list(METHODS), index=list(METHODS).index(default),
                          format_func=METHOD_NAMES.__getitem__, key="classify_method", help=why)
    target = c1.selectbox("Explain class", ["predicted", *range(NUM_CLASSES)], key="classify_target",
                          format_func=lambda t: "The predicted stage" if t == "predicted" else DISPLAY_NAMES[t])
    layers = list(CAM_LAYERS.values())
    layer = c2.selectbox("Layer", layers, key="classify_layer",
                         index=layers.index(predictor.cam_layer),
                         format_func=LAYER_LABELS.__getitem__, disabled=method not in LAYER_METHODS,
                         help="; ".join(CAM_LAYERS) if method in LAYER_METHODS else
                         f"{METHOD_NAMES[method]} reads no layer")
    alpha = c3.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05, key="classify_alpha")
    colormap = c4.selectbox("Colormap", COLORMAPS, key="classify_colormap")
    st.caption(why)
    label = prediction.label if target == "predicted" else target
    if method in SLOW:
        with st.spinner(f"Computing {METHOD_NAMES[method]} (a few seconds on a CPU)…"):
            result = cached_explanation(image, label, layer, method)
    else:
        result = cached_explanation(image, label, layer, method)
    explain_others_ahead(image, label, layer, method)  # the other classes' maps, while the user reads this one
    return result, alpha, colormap


def checks(image, result, *, alpha: float | None = None, colormap: str | None = None):
    """Faithfulness scores beside the trivial baselines, the share of the map outside the brain, and the
    randomisation check behind a button, its map drawn with the opacity and colormap of the map above (by default
    those chosen in `explanation`'s controls), so both read on one scale. Returns (the Faithfulness, the
    randomisation correlation or None) for the result record."""
    alpha = st.session_state.get("classify_alpha", 0.45) if alpha is None else alpha
    colormap = st.session_state.get("classify_colormap", COLORMAPS[0]) if colormap is None else colormap
    f = cached_faithfulness(image, result.heatmap, result.target)
    st.markdown(f"**Is this map faithful?** {METHOD_NOTES[result.method]}")
    rows = (f.map, f.random, f.edges)
    table = pd.DataFrame({"map": ["this map", "random map", "edge map (Sobel)"],
                          "deletion (lower is better)": [s.deletion for s in rows],
                          "insertion (higher is better)": [s.insertion for s in rows],
                          "outside the brain": [s.outside_brain for s in rows]})
    left, right = st.columns([3, 2])
    left.dataframe(table.round(3), hide_index=True, key="classify_faithfulness", column_config={
        "outside the brain": st.column_config.NumberColumn(format="percent", help="share of the map's mass on the "
                                                           "black background around the head")})
    right.metric("Map outside the brain", f"{f.map.outside_brain:.0%}",
                  help="Share of the map's mass on the black background around the head (a brain mask of the "
                       "slice: its non-black pixels, holes filled). Evidence there is not evidence in the brain.")
    random, edges = f.beats("random"), f.beats("edges")
    verdict = ("beats both a random map and an edge map" if random and edges else
               "beats a random map but not an edge map" if random else
               "beats an edge map but not a random map" if edges else "beats neither a random map nor an edge map")
    right.caption(f"Blacking out the map's most salient pixels first, the probability of "
                  f"'{DISPLAY_NAMES[result.target]}' falls with an area of {f.map.deletion:.3f}; putting them back "
                  f"first into a black slice raises it with an area of {f.map.insertion:.3f}. On this slice the map "
                  f"{verdict} (beating one means a lower deletion and a higher insertion area), and "
                  f"{f.map.outside_brain:.0%} of it lies outside the brain. One slice decides little: the model "
                  "card gives the scores over held-out subjects.")
    if st.button("Run the randomisation check", key="classify_randomise",
                 help="Recompute this map with layer4 and the classifier re-initialised at random"):
        st.session_state["classify_randomised"] = True
    rho = None
    if st.session_state.get("classify_randomised"):
        with st.spinner("Recomputing the map on a randomised network…"):
            randomised, rho = cached_randomisation(image, result.target, result.layer, result.method)
        c1, c2 = st.columns([1, 3])
        c1.image(overlay(image, randomised, alpha=alpha, colormap=colormap), width="stretch")
        c1.caption(f"The same method, last blocks randomised ({colormap}, opacity {alpha:.2f}, as the map above)")
        c2.metric("Rank correlation with the real map", f"{rho:.2f}")
        c2.markdown(randomisation_verdict(rho))
        c2.caption("Near 0: the map depends on what the network learned, as it should. Near 1: it would look the "
                   "same for a network that learned nothing, so it shows the image, not the model (Adebayo et al. "
                   "2018).")
    return f, rho
