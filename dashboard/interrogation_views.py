"""The interrogation that both Evaluation views (and the user's own cohort) share: the slices behind a
confusion-matrix cell with their maps, mean maps of right and wrong slices, the stage distance, predictive values for
another class mix, referral of the least confident, and calibration of the published split. `evaluation_views`
draws the views and calls these sections; each takes the view's rows (`Rows`) and a widget-key prefix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.common import (
    cached_explanation,
    get_predictor,
    predictor_or_none,
    split_images,
)
from dashboard.shell import dataset_dir, read_json
from model.core.constants import CLASS_NAMES, DISPLAY_NAMES, NUM_CLASSES, STAGE_ORDER
from model.core.dataset import DatasetError
from model.qualify import interrogate
from model.qualify.explain import METHOD_NAMES, explain, overlay
from model.qualify.faithfulness import FAITHFULNESS_PATH, default_method

SHORT = {"Non_Demented": "No", "Very_Mild_Demented": "V.mild", "Mild_Demented": "Mild", "Moderate_Demented": "Mod"}
GALLERY_STEP = 12  # slices shown per "show more"
GALLERY_MAX = 48  # at most this many maps per cell: they all stay in common.cached_explanation's 64 entries
MAPS_CAP = 40  # default most slices per cell of the mean maps (a forward and backward pass each)
# Illustrative class mixes in label order (Mild, Moderate, No, Very mild): not figures from a study.
PRESETS = {"this dataset": None,
           "memory clinic (illustrative)": (0.20, 0.05, 0.40, 0.35),
           "population screening (illustrative)": (0.04, 0.01, 0.85, 0.10),
           "custom": None}
OUT_OF_FOLD_NOTE = ("The probabilities are out of fold (a network that never saw the brain), but the maps come "
                    "from the shipped network, which trained on these brains: a map shows where the shipped network "
                    "finds evidence for the stage, not what the fold's network looked at.")


def lazy_section(title: str, key: str):
    """A collapsed section whose content runs only when the user opens it (`section.open`): the Evaluation page
    draws its headline figures first, and the browser is not kept drawing charts nobody opened (issue 20 item 5)."""
    return st.expander(title, key=key, on_change="rerun")


@dataclass(frozen=True)
class Rows:
    """Predictions to interrogate: one row per slice or per subject.

    table: true_label, p_<class> per class, and id / split / subject where known; y (N,) label ids; probs (N, C)
    in label order; groups (N,) integer subject codes for the bootstrap, or None (each row its own).
    """
    table: pd.DataFrame
    unit: str  # "slices" or "subjects"
    y: np.ndarray
    probs: np.ndarray
    groups: np.ndarray | None = None


def rows_from(table: pd.DataFrame, unit: str, group_column: str | None = None) -> Rows:
    table = table.reset_index(drop=True)
    probs = table[[f"p_{name}" for name in CLASS_NAMES]].to_numpy(np.float64)
    groups = np.unique(table[group_column].to_numpy(), return_inverse=True)[1] if group_column else None
    return Rows(table, unit, table.true_label.map(CLASS_NAMES.index).to_numpy(), probs, groups)


def stage_format(c) -> str:
    return "Choose a stage" if c is None else DISPLAY_NAMES[c]


def probability_line(row) -> str:
    return " · ".join(f"{SHORT[CLASS_NAMES[c]]} {getattr(row, f'p_{CLASS_NAMES[c]}'):.2f}" for c in STAGE_ORDER)


@st.cache_data(max_entries=8, show_spinner="Bootstrapping the stage distances…")
def cached_ordinal(y: np.ndarray, pred: np.ndarray, groups: np.ndarray | None) -> dict:
    return interrogate.ordinal_scores(y, pred, groups=groups)


@st.cache_data(max_entries=8, show_spinner=False)
def cached_risk_coverage(y: np.ndarray, probs: np.ndarray) -> dict:
    return interrogate.risk_coverage(y, probs)


@st.cache_resource(show_spinner=False)
def id_index(path: str, split: str) -> dict[str, int]:
    """{slice id: row} of one decoded split, shared read-only."""
    return {name: i for i, name in enumerate(split_images(path, split).ids)}


def slice_image(path: str, split: str, name: str) -> np.ndarray:
    """uint8 (S, S) of one slice of the local dataset (KeyError when that copy lacks it)."""
    return split_images(path, split).images[id_index(path, split)[name], 0].numpy()


@st.cache_data(max_entries=16, show_spinner=False)
def mean_cam(path: str, items: tuple[tuple[str, str, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean slice (uint8 (S, S)) and mean Grad-CAM map ((S, S) in [0, 1]) over (split, id, target) items."""
    predictor, _ = predictor_or_none()
    images = np.stack([slice_image(path, split, name) for split, name, _ in items])
    layer = predictor.cam_layer
    maps = [explain(predictor, img, target=t, layer=layer).heatmap for img, (_, _, t) in zip(images, items)]
    return images.mean(0).round().astype(np.uint8), interrogate.mean_map(maps)


def local_maps_unavailable() -> str | None:
    """Why slices and maps cannot be drawn here, or None when the dataset and the model are both there."""
    if dataset_dir() is None:
        return "The slices and their maps can be shown where the dataset is available locally (set $ALZ_MRI_DATA)."
    predictor, error = predictor_or_none()
    return None if predictor is not None else f"The maps need the shipped model, which did not load: {error}"


def interrogate_rows(rows: Rows, slices: Rows, click, metrics: dict, key: str, note: str = "") -> None:
    """Every interrogation section for one view: `rows` at the level the panel counts, `slices` per slice."""
    cell_gallery(rows, click, key, slices=slices, note=note)
    mean_maps(slices, key, note=note)
    ordinal_section(rows, key)
    prevalence_section(rows, metrics, key)
    referral_section(rows, key)


def apply_click(click, key: str) -> None:
    """A new click on the confusion matrix sets the cell's two selectboxes (before they are drawn)."""
    if click is None:
        st.session_state[f"{key}_cell_click"] = None  # deselected: the same cell can be clicked again
    elif st.session_state.get(f"{key}_cell_click") != click:
        st.session_state[f"{key}_cell_click"] = click
        st.session_state[f"{key}_cell_true"], st.session_state[f"{key}_cell_pred"] = click


def show_more(key: str) -> None:
    st.session_state[f"{key}_cell_shown"] = st.session_state.get(f"{key}_cell_shown", GALLERY_STEP) + GALLERY_STEP


def cell_gallery(rows: Rows, click, key: str, *, slices: Rows, note: str = "", maps: bool = True) -> None:
    """The rows of one confusion-matrix cell, chosen by a click or two selectboxes, with their Grad-CAM maps (not
    with maps=False: a user's own files are not kept to draw them). The cell opened is kept in the session state
    (`{key}_cell_result`) for the report."""
    st.subheader("Look inside a cell")
    apply_click(click, key)
    left, right = st.columns(2)
    true = left.selectbox("True stage", [None, *STAGE_ORDER], format_func=stage_format, key=f"{key}_cell_true")
    pred = right.selectbox("Predicted stage", [None, *STAGE_ORDER], format_func=stage_format, key=f"{key}_cell_pred")
    if true is None or pred is None:
        st.session_state.pop(f"{key}_cell_result", None)
        st.caption("Click a cell of the confusion matrix above, or choose a true and a predicted stage, to see the "
                   f"{rows.unit} in it with their probabilities" + (", and saliency maps if you ask." if maps else "."))
        return
    index = interrogate.cell_indices(rows.y, rows.probs, true, pred)
    name = next((c for c in ("file", "subject", "id") if c in rows.table), None)
    st.session_state[f"{key}_cell_result"] = {
        "true": DISPLAY_NAMES[true], "predicted": DISPLAY_NAMES[pred], "count": int(len(index)), "unit": rows.unit,
        "items": [str(v) for v in rows.table.iloc[index][name]] if name else []}
    if st.session_state.get(f"{key}_cell_now") != (true, pred, rows.unit):  # another cell: back to one page
        st.session_state[f"{key}_cell_now"] = (true, pred, rows.unit)
        st.session_state[f"{key}_cell_shown"] = GALLERY_STEP
    st.markdown(f"**{len(index):,} {rows.unit}** truly {DISPLAY_NAMES[true]}, predicted {DISPLAY_NAMES[pred]}, "
                f"the surest first.")
    if not len(index):
        return
    cells = rows.table.iloc[index]
    columns = [c for c in ("file", "subject", "split", "id", "slices", "flags") if c in cells]
    view = cells[columns].assign(**{DISPLAY_NAMES[c]: cells[f"p_{CLASS_NAMES[c]}"].round(3) for c in STAGE_ORDER})
    st.dataframe(view, hide_index=True, key=f"{key}_cell_table", height=min(250, 38 + 35 * len(view)))
    if not maps:
        return
    missing = local_maps_unavailable()
    if missing:
        st.info(missing)
        return
    shown = index[:min(GALLERY_MAX, st.session_state[f"{key}_cell_shown"])]
    method = gallery_method(key)
    draw_gallery(gallery_items(rows, shown, pred, slices), pred, method)
    if len(shown) < min(GALLERY_MAX, len(index)):
        st.button(f"Show {min(GALLERY_STEP, len(index) - len(shown))} more of {len(index) - len(shown):,}",
                  key=f"{key}_cell_more", on_click=show_more, args=(key,))
    elif len(index) > len(shown):
        st.caption(f"The surest {len(shown)} of {len(index):,} are shown; the table above lists them all.")
    what = ("the subject, its mean probability of each stage, and the probability of the predicted stage on the "
            "slice shown, its slice most sure of that stage" if rows.unit == "subjects" else
            "the slice, then the probability of each stage")
    st.caption((f"{METHOD_NAMES[method]} for the predicted stage ({DISPLAY_NAMES[pred]}): where the network finds "
                "evidence for it. " if method else "") + f"Caption: {what}. " + note)


def gallery_method(key: str) -> str | None:
    """The maps drawn on a cell's slices: none (the default: a click answers at once), the method the held-out
    faithfulness table puts first, or Grad-CAM (fast, coarse). Returns the method's key or None."""
    first, _ = default_method(read_json(str(FAITHFULNESS_PATH)))
    options = [None, *dict.fromkeys([first, "gradcam"])]
    labels = {None: "none", first: f"{METHOD_NAMES[first]} (the most faithful here)",
              "gradcam": "Grad-CAM (fast, coarse" + (")" if first == "gradcam" else "; much of it falls off the brain)")}
    if first in ("integrated_gradients", "occlusion"):
        labels[first] = f"{METHOD_NAMES[first]} (the most faithful here; about a second a slice)"
    return st.segmented_control("Maps on these slices", options, default=None, format_func=labels.__getitem__,
                                key=f"{key}_cell_maps")


def gallery_items(rows: Rows, shown: np.ndarray, pred: int, slices: Rows) -> list[tuple[str, str, str]]:
    """(split, id, caption) per row shown; a subject is shown by its slice with the largest p(predicted)."""
    column = f"p_{CLASS_NAMES[pred]}"
    items = []
    for row in rows.table.iloc[shown].itertuples():
        if rows.unit == "subjects":
            own = slices.table[slices.table.subject == row.subject]
            best = own.loc[own[column].idxmax()]
            caption = (f"{row.subject}: {probability_line(row)} · this slice "
                       f"{SHORT[CLASS_NAMES[pred]]} {best[column]:.2f}")
            items.append((best.split, best.id, caption))
        else:
            items.append((getattr(row, "split", "test"), row.id, f"{row.id} · {probability_line(row)}"))
    return items


def draw_gallery(items: list[tuple[str, str, str]], target: int, method: str | None = "gradcam") -> None:
    """The slices of `items` (split, id, caption), each with its `method` map for `target` (None: no map)."""
    data = str(dataset_dir())
    images = []
    for split, name, _ in items:
        try:
            images.append(slice_image(data, split, name))
        except (DatasetError, OSError, KeyError) as exc:
            st.info(f"The slices cannot be shown from `{data}` ({type(exc).__name__}: {exc}): it is not the copy of "
                    "the dataset these predictions were made on, or a split is missing.")
            return
    layer = get_predictor().cam_layer
    shown = images
    if method:
        with st.spinner(f"Computing {METHOD_NAMES[method]} for {len(images)} slices…"):
            shown = [overlay(image, cached_explanation(image, target, layer, method).heatmap) for image in images]
    cols = st.columns(6)
    for n, (image, (_, _, caption)) in enumerate(zip(shown, items)):
        cols[n % 6].image(image, width="stretch", caption=caption)


def mean_maps(slices: Rows, key: str, note: str = "") -> None:
    """Per true stage, the mean Grad-CAM map of right and of wrong slices, behind a button."""
    st.subheader("Where the network looks, right and wrong")
    pred = slices.probs.argmax(1)
    missing = local_maps_unavailable()
    if missing:
        st.info(missing)
        return
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    cap = left.number_input("Slices per cell, at most", min_value=1, max_value=200, value=MAPS_CAP, step=5,
                            key=f"{key}_maps_cap")
    samples = interrogate.right_wrong_samples(slices.y, pred, cap=int(cap))
    signature = (len(slices.y), tuple(tuple(v.tolist()) for v in samples.values()))  # the very slices sampled
    stored = st.session_state.get(f"{key}_maps")
    if right.button(f"Compute the mean maps ({sum(map(len, samples.values())):,} Grad-CAM maps)",
                    key=f"{key}_maps_button"):
        try:
            stored = compute_mean_maps(slices, samples, pred) | {"signature": signature}
        except (DatasetError, OSError, KeyError) as exc:
            st.info(f"The slices cannot be read from `{dataset_dir()}` ({type(exc).__name__}: {exc}): it is not "
                    "the copy of the dataset these predictions were made on, or a split is missing.")
            return
        st.session_state[f"{key}_maps"] = stored
    if not stored or stored["signature"] != signature:
        st.caption("Each map costs a forward and a backward pass, so they are computed on request.")
        return
    cols = st.columns(2 * NUM_CLASSES)
    for n, (c, is_right) in enumerate((c, r) for c in STAGE_ORDER for r in (True, False)):
        total = int(((slices.y == c) & ((pred == c) == is_right)).sum())
        entry = stored.get((c, is_right))
        caption = f"{DISPLAY_NAMES[c]}, {'right' if is_right else 'wrong'} · " + (
            f"{entry[2]} of {total:,}" if entry else "none")
        if entry:
            cols[n].image(overlay(entry[0], entry[1]), width="stretch", caption=caption)
        else:
            cols[n].caption(caption)
    faith = read_json(str(FAITHFULNESS_PATH)) or {}
    off = faith.get("methods", {}).get("gradcam", {}).get("map_outside_brain", {}).get("mean")
    off = (f"on held-out slices {off:.0%} of its mass at {faith.get('layer')} lies off the brain" if off is not None
           else "part of its mass can lie off the brain")
    st.caption(f"Columns in pairs per true stage: the mean of up to {cap} slices (a seeded sample) staged "
               "right, then wrong, each slice's Grad-CAM for the stage it was given, over their mean slice. "
               f"Grad-CAM here because hundreds of maps must be cheap; it is coarse, and {off} (the Model card's "
               f"faithfulness table), so read these as where the network's {get_predictor().cam_layer} features "
               "respond, not as pixel evidence. " + note)


def compute_mean_maps(slices: Rows, samples: dict, pred: np.ndarray) -> dict:
    """{(true, right): (mean slice, mean map, slices used)} for the non-empty cells of `samples`."""
    data, out = str(dataset_dir()), {}
    bar = st.progress(0.0, text="Computing the mean maps…")
    table = slices.table
    try:
        for n, ((c, right), index) in enumerate(samples.items()):
            if len(index):
                items = tuple((getattr(r, "split", "test"), r.id, int(p))
                              for r, p in zip(table.iloc[index].itertuples(), pred[index]))
                out[c, right] = (*mean_cam(data, items), len(items))
            bar.progress((n + 1) / len(samples), text=f"{n + 1} of {len(samples)} cells")
    finally:
        bar.empty()
    return out


def ordinal_section(rows: Rows, key: str) -> None:
    """Quadratic-weighted kappa and the shares one and two or more stages away, with bootstrap intervals."""
    st.subheader("How far off: the stage order")
    scores = cached_ordinal(rows.y, rows.probs.argmax(1), rows.groups)
    ci = scores.get("ci95", {})
    by = "subjects" if scores.get("bootstrap", {}).get("unit") == "subject" or rows.unit == "subjects" else rows.unit
    left, right = st.columns([2, 3])
    with left:
        labels = (("quadratic_weighted_kappa", "Quadratic-weighted kappa"), ("exact", "Right stage"),
                  ("off_by_one", "One stage away"), ("two_or_more", "Two or more stages away"))
        for col, (name, label) in zip(st.columns(2) * 2, labels):
            value = f"{scores[name]:.3f}" if name == "quadratic_weighted_kappa" else f"{scores[name]:.1%}"
            lo, hi = ci.get(name, (float("nan"), float("nan")))
            col.metric(label, value, help=f"95% bootstrap interval over {by}: [{lo:.3f}, {hi:.3f}]",
                       delta=f"95%: [{lo:.2f}, {hi:.2f}]" if name == "quadratic_weighted_kappa" else
                       f"95%: [{lo:.0%}, {hi:.0%}]", delta_color="off", delta_arrow="off")
        st.caption(f"Stages in order: no, very mild, mild, moderate dementia. Kappa weighs a mistake by the square of "
                   f"its distance (1 is perfect agreement, 0 chance). Intervals: {scores['bootstrap']['resamples']:,} "
                   f"bootstrap resamples of {by}.")
    right.plotly_chart(charts.stage_distance(scores["distance"], unit=rows.unit), key=f"{key}_stage_distance")


def custom_mix(key: str) -> None:
    st.session_state[f"{key}_mix_preset"] = "custom"


def prevalence_section(rows: Rows, metrics: dict, key: str) -> None:
    """PPV and NPV per stage for an assumed class mix, next to this data's own."""
    st.subheader("In another clinic: predictive values for a class mix")
    own = np.bincount(rows.y, minlength=NUM_CLASSES) / len(rows.y)
    keys = [f"{key}_mix_{CLASS_NAMES[c]}" for c in range(NUM_CLASSES)]
    preset = st.selectbox("Assumed class mix", list(PRESETS), key=f"{key}_mix_preset")
    if preset != "custom" or any(k not in st.session_state for k in keys):
        for k, share in zip(keys, own if PRESETS.get(preset) is None else PRESETS[preset]):
            st.session_state[k] = round(100 * float(share), 1)
    cols = st.columns(NUM_CLASSES)
    for col, c in zip(cols, STAGE_ORDER):
        col.number_input(f"{DISPLAY_NAMES[c]} (%)", min_value=0.0, max_value=100.0, step=1.0, format="%.1f",
                         key=keys[c], on_change=custom_mix, args=(key,))
    shares = np.array([st.session_state[k] for k in keys], dtype=np.float64)
    if shares.sum() <= 0:
        st.error("The class mix needs at least one share above 0%.")
        return
    if abs(shares.sum() - 100) > 0.05:
        st.caption(f"The shares add up to {shares.sum():.1f}%; they are rescaled to 100%.")
    confusion = np.asarray(metrics["confusion_matrix"])
    # the boxes show each share to 0.1%; this data's own mix is used unrounded, so its PPV is its precision
    mix = None if preset == "this dataset" else shares
    clinic, here = interrogate.prevalence_ppv_npv(confusion, mix), interrogate.prevalence_ppv_npv(confusion)
    table = prevalence_table(clinic, here)
    st.dataframe(table, hide_index=True, key=f"{key}_mix_table")
    st.session_state[f"{key}_mix_result"] = {  # for the report: the mix chosen and what it gives
        "preset": preset if preset != "custom" else "custom (" + ", ".join(
            f"{DISPLAY_NAMES[c].lower()} {shares[c] / shares.sum():.1%}" for c in STAGE_ORDER) + ")",
        "unit": rows.unit, "table": (list(table.columns), table.astype(str).values.tolist())}
    st.caption("Memory-clinic and screening mixes are illustrative, not figures from a study. Each true stage is "
               f"taken to be called as it is in this data ({rows.unit}): sensitivity carries over, specificity "
               "against the rest is re-weighted by the rest's mix, and Bayes' rule gives the predictive values. "
               "A stage with few cases here (Moderate) carries their uncertainty into every row.")


def prevalence_table(clinic: dict, here: dict) -> pd.DataFrame:
    def pct(v, never="—"):
        return never if np.isnan(v) else f"{v:.1%}"

    return pd.DataFrame([{
        "stage": DISPLAY_NAMES[c], "assumed share": pct(clinic["prevalence"][c]),
        "sensitivity": pct(clinic["sensitivity"][c]), "specificity (this mix)": pct(clinic["specificity"][c]),
        "PPV (this mix)": pct(clinic["ppv"][c], "never called"), "NPV (this mix)": pct(clinic["npv"][c]),
        "PPV (this data)": pct(here["ppv"][c], "never called"), "NPV (this data)": pct(here["npv"][c]),
    } for c in STAGE_ORDER])


def referral_section(rows: Rows, key: str) -> None:
    """Refer the least confident X%: accuracy and balanced accuracy on the rest, and the risk-coverage curve."""
    st.subheader("Refer the least confident")
    refer = st.slider(f"Refer this share of the {rows.unit}, the least confident first", 0, 90, 20, step=5,
                      format="%d%%", key=f"{key}_refer")
    curve = cached_risk_coverage(rows.y, rows.probs)
    chosen = interrogate.referral(rows.y, rows.probs, refer / 100)
    every = interrogate.referral(rows.y, rows.probs, 0.0)
    st.session_state[f"{key}_refer_result"] = {  # for the report
        "share": int(refer), "threshold": float(chosen["threshold"]), "kept": int(chosen["kept"]),
        "of": int(len(rows.y)), "unit": rows.unit, "accuracy": float(chosen["accuracy"]),
        "balanced_accuracy": float(chosen["balanced_accuracy"])}
    left, right = st.columns([5, 4])
    left.plotly_chart(charts.risk_coverage(curve, chosen, unit=rows.unit), key=f"{key}_risk")
    with right:
        c1, c2 = st.columns(2)
        for col, name, label in ((c1, "accuracy", "Accuracy, kept"), (c2, "balanced_accuracy",
                                                                        "Balanced accuracy, kept")):
            col.metric(label, f"{chosen[name]:.1%}", delta=f"{100 * (chosen[name] - every[name]):+.1f} points vs all",
                       help=f"{every[name]:.1%} on all {len(rows.y):,} {rows.unit}")
        referred = ", ".join(f"{chosen['referred_by_class'][c]:,} {DISPLAY_NAMES[c].lower()}" for c in STAGE_ORDER)
        st.markdown(f"Keeps **{chosen['kept']:,}** of {len(rows.y):,} {rows.unit}: those whose largest probability "
                    f"is at least **{chosen['threshold']:.3f}**. Referred: {chosen['referred']:,} ({referred}).")
        st.caption("Confidence is the largest calibrated probability. Balanced accuracy averages recall over the "
                   "stages still present among the kept; where the least confident are mostly one stage, referring "
                   "them can raise accuracy while balanced accuracy falls.")


def published_calibration(rows: Rows, temperature: float | None, key: str) -> None:
    """Reliability of the published split's probabilities before and after the shipped temperature, in a section
    drawn when opened."""
    with lazy_section("Calibration on the published split", f"{key}_calibration") as section:
        if section.open:
            published_reliability(rows, temperature, key)


def published_reliability(rows: Rows, temperature: float | None, key: str) -> None:
    if not temperature:
        st.caption("No temperature is recorded with these predictions, so the probabilities before scaling cannot "
                   "be recovered.")
        return
    cal = interrogate.reliability_before_after(rows.probs, rows.y, temperature)
    left, right = st.columns([3, 2])
    left.plotly_chart(charts.reliability_figure(cal["reliability_before"], cal["reliability_after"],
                                                title="Reliability on the test split (marker size: slices in the bin)"),
                      key=f"{key}_reliability")
    after = cal["reliability_after"]
    gap = sum(r["n"] * (r["accuracy"] - r["confidence"]) for r in after) / max(1, sum(r["n"] for r in after))
    verdict = ("temperature scaling makes it worse here" if cal["ece_after"] > cal["ece_before"] else
               "temperature scaling improves it here too")
    lean = "under-confident (right more often than they say)" if gap > 0 else "over-confident"
    right.markdown(f"Expected calibration error per slice, **{cal['ece_before']:.3f}** before and "
                   f"**{cal['ece_after']:.3f}** after temperature scaling with T = {temperature:.3f}: {verdict}; "
                   f"after it, these probabilities run {lean} by {abs(gap):.1%} on average. The temperature is "
                   "meant for a brain the network has not seen, and the brains of this split are also in training.")
    right.caption("The probabilities before scaling are recovered from the shipped calibrated ones as "
                  "softmax(T · log p), exact up to their rounding to 6 decimals.")


def view_choices(key: str) -> dict:
    """What the user set in the view drawn under `key` (class mix, referral, opened cell), as the report states it
    (`model.reports.documents.choice_blocks`); empty where a section was not drawn."""
    parts = {"class_mix": f"{key}_mix_result", "referral": f"{key}_refer_result", "cell": f"{key}_cell_result"}
    return {name: st.session_state[k] for name, k in parts.items() if st.session_state.get(k)}


def choice_signature(key: str) -> str:
    """The widgets behind `view_choices` as they stand at the start of this run: a report built with other choices
    is not offered (on the Evaluation page the export is drawn before the view updates its choices)."""
    names = ["level", "mix_preset", "refer", "cell_true", "cell_pred", *(f"mix_{n}" for n in CLASS_NAMES)]
    return repr([st.session_state.get(f"{key}_{name}") for name in names])
