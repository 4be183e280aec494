"""The two views of the Evaluation page: new subjects (cross-validated) and the published test split.

Each view shows the same panel (headline figures, class imbalance, confusion matrix, ROC and PR
curves, per-class table with intervals) for its own question, and the same interrogation of its
predictions (`interrogate`): the slices behind a confusion-matrix cell with their maps, mean maps of
right and wrong slices, the stage distance, predictive values for another class mix, referral of the
least confident, and calibration; the new-subject view adds the baselines, clinical context and the
per-subject table.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.common import (
    cached_explanation,
    crossval_slices,
    crossval_subjects,
    get_predictor,
    predictor_or_none,
    read_csv,
    slice_positions,
    split_images,
    subject_table,
)
from dashboard.shell import crossval_describes_shipped_model, dataset_dir, read_json, shipped_baseline, shipped_config
from model.core.constants import CLASS_NAMES, DISPLAY_NAMES, NUM_CLASSES, PREDICTIONS_PATH, STAGE_ORDER
from model.core.dataset import DatasetError, class_summary
from model.core.network import default_cam_layer
from model.qualify import interrogate
from model.qualify.evaluate import run
from model.qualify.explain import METHOD_NAMES, explain, overlay
from model.qualify.faithfulness import FAITHFULNESS_PATH, default_method
from model.qualify.neighbours import distance_summary
from model.reports.card import confound_sentence
from model.reports.blocks import display
from model.reports.documents import baseline_rows, flag_rows, headline_rows, per_class_rows

NEW, PUBLISHED = "New subjects (cross-validated)", "Published test split (slice-level)"


def headline(crossval: dict | None, metrics: dict | None, baseline: dict | None) -> None:
    """The leakage, seen: the network and the lookup on a brain seen in training and on a new one."""
    rows = [{**r, "setting": r["setting"].replace("\n", "<br>")} for r in headline_rows(crossval, metrics, baseline)]
    if not rows:
        return
    left, right = st.columns([3, 2])
    left.plotly_chart(charts.leakage_headline(rows), key="evaluation_headline")
    with right:
        if crossval and metrics:
            net = crossval["network"]["subject"]
            c1, c2 = st.columns(2)
            c1.metric("New subjects", f"{net['balanced_accuracy']:.1%}", help="Balanced accuracy over the 200 "
                      "subjects, each predicted by a network that never saw any slice of that brain")
            c2.metric("Published test split", f"{metrics['balanced_accuracy']:.1%}",
                      help="Balanced accuracy over the test slices, most of which have near-copies in training")
        lookup = f" scores {baseline['test']['balanced_accuracy']:.0%} there" if baseline and "test" in baseline else ""
        st.markdown(
            "The published split is by slice, so every test brain also sits in training, and a lookup that "
            f"learns nothing{lookup}. **For a brain the model has never seen, read the "
            "new-subject figures**: the dataset's 6,400 slices were traced back to 200 OASIS-1 subjects and "
            "each was predicted by a network trained without it (5-fold cross-validation by subject).")


def per_class_table(metrics: dict, unit: str) -> pd.DataFrame:
    """The per-stage table, as the exported report has it (`model.reports.documents.per_class_rows`)."""
    columns, rows = per_class_rows(metrics, unit)
    return pd.DataFrame(rows, columns=columns)


def metric_panel(metrics: dict, counts: dict, unit: str, key: str) -> tuple[int, int] | None:
    """Headline figures, class imbalance, confusion matrix, ROC and PR curves and the per-class table.
    Returns the confusion-matrix cell clicked, (true, predicted) label ids, or None."""
    ci = metrics.get("ci95", {})
    cols = st.columns(5)
    for col, (name, label) in zip(cols, [("balanced_accuracy", "Balanced accuracy"), ("accuracy", "Accuracy"),
                                         ("any_dementia_auc", "Any-dementia AUC"), ("macro_f1", "Macro-F1")]):
        if name in metrics and not np.isfinite(metrics[name]):  # a small cohort: one side of the split absent
            col.metric(label, "undefined", help="Needs cases of more than one stage (for an AUC: demented and not)")
        elif name in metrics:
            col.metric(label, f"{metrics[name]:.1%}" if "accuracy" in name else f"{metrics[name]:.3f}",
                       help=f"95% bootstrap interval {ci[name][0]:.3f}–{ci[name][1]:.3f}" if name in ci else None)
    cols[4].metric("Calibration error", f"{metrics['ece']:.3f}", help=f"Expected calibration error over {unit}, "
                   "15 confidence bins")
    left, right = st.columns(2)
    left.plotly_chart(charts.class_balance(counts, title="Class imbalance", axis="share"), key=f"{key}_balance")
    with right:
        normalize = st.toggle("Row-normalised", key=f"{key}_normalize")
        event = st.plotly_chart(charts.clickable_confusion_matrix(metrics["confusion_matrix"], normalize=normalize,
                                                                  unit=unit),
                                key=f"{key}_confusion", on_select="rerun", selection_mode="points")
    left, right = st.columns(2)
    left.plotly_chart(charts.roc_curves(metrics), key=f"{key}_roc")
    right.plotly_chart(charts.pr_curves(metrics), key=f"{key}_pr")
    st.markdown(f"**Per stage** (95% intervals from a bootstrap over "
                f"{'subjects' if metrics.get('bootstrap', {}).get('unit') == 'subject' or unit == 'subjects' else unit};"
                " recall also with an exact binomial interval)")
    st.dataframe(per_class_table(metrics, unit), hide_index=True, key=f"{key}_table")
    return clicked_cell(event)


def clicked_cell(event) -> tuple[int, int] | None:
    """(true, predicted) label ids of the cell a click selected on `charts.clickable_confusion_matrix`."""
    points = event.get("selection", {}).get("points", []) if event else []
    data = [p.get("customdata") for p in points if len(p.get("customdata") or []) >= 2]
    return (int(data[0][0]), int(data[0][1])) if data else None


def new_subjects(crossval: dict | None) -> None:
    if crossval is None:
        st.warning("No cross-validated results are shipped (assets/crossval.json is missing). Run "
                   "`python -m model.training.crossval` to create them.")
        return
    plan = crossval.get("plan", {})
    recipe = plan.get("recipe", {})
    st.caption(f"{crossval['subjects']} subjects, {crossval['slices']:,} slices · {plan.get('folds')}-fold "
               f"cross-validation by subject (seed {plan.get('seed')}) · recipe at {recipe.get('image_size')} px, "
               f"{recipe.get('epochs')} epochs · temperature {crossval['calibration']['temperature']:.3f} fitted "
               "on out-of-fold logits")
    level = st.segmented_control("Count", ["per subject", "per slice"], default="per subject",
                                 key="evaluation_level") or "per subject"
    unit = "subjects" if level == "per subject" else "slices"
    table = subject_table()
    metrics = crossval["network"]["subject" if unit == "subjects" else "slice"]
    counts = {"subjects": metrics_counts(crossval["network"]["subject"]),
              "slices": metrics_counts(crossval["network"]["slice"])}
    click = metric_panel(metrics, counts, unit, "evaluation_new")
    st.caption("Moderate dementia is 2 subjects: whatever the network does on them, this data cannot validate "
               "that class. Subject-level figures average each subject's slice probabilities.")
    slices = crossval_slices()
    if slices is not None:
        slice_rows = rows_from(slices, "slices", "subject")
        rows = slice_rows if unit == "slices" else rows_from(crossval_subjects(), "subjects")
        interrogate_rows(rows, slice_rows, click, metrics, "evaluation_new", note=OUT_OF_FOLD_NOTE)

    st.subheader("Against baselines on the same folds")
    st.dataframe(baseline_table(crossval, "subject" if unit == "subjects" else "slice"), hide_index=True,
                 key="evaluation_baselines")
    st.caption("The lookup gives each slice the stage of the most similar slice of the other folds' subjects "
               "(raw pixels). The clinical baseline is a logistic regression on age, sex, eTIV and nWBV, fitted "
               "per fold on the subjects with an OASIS row (MMSE and CDR are left out: they define the stage).")

    cal = crossval["calibration"]
    with lazy_section(f"Calibration: expected calibration error {cal['ece_before']:.3f} before temperature "
                      f"scaling, {cal['ece_after']:.3f} after (out of fold, per slice)", "evaluation_new_calibration") as section:
        if section.open:
            calibration_panel(cal)

    subjects = crossval_subjects()
    if subjects is None:
        return
    if table is not None and "age" in table:  # a table made without the OASIS reference has no clinical rows
        with lazy_section("Clinical context: age and atrophy (nWBV) by stage, and where the mistakes fall",
                          "evaluation_new_clinical") as section:
            if section.open:
                clinical_panel(crossval, table, subjects)
    subject_browser(subjects)


def lazy_section(title: str, key: str):
    """A collapsed section whose content runs only when the user opens it (`section.open`): the Evaluation page
    draws its headline figures first, and the browser is not kept drawing charts nobody opened (issue 20 item 5)."""
    return st.expander(title, key=key, on_change="rerun")


def calibration_panel(cal: dict) -> None:
    left, right = st.columns([3, 2])
    left.plotly_chart(charts.reliability_diagram(cal["reliability_before"], cal["reliability_after"]),
                      key="evaluation_reliability")
    shipped = (f"the shipped network uses the one fitted on all of them, {cal['temperature']:.3f}, so the Classify "
               "page's probabilities are meant for a new brain." if crossval_describes_shipped_model() else
               f"the one fitted on all of them is {cal['temperature']:.3f}, but the shipped network was trained "
               "with another recipe or temperature and does not use it.")
    right.markdown(f"Out-of-fold expected calibration error, per slice, **{cal['ece_before']:.3f}** before and "
                   f"**{cal['ece_after']:.3f}** after temperature scaling. Each fold's temperature was fitted on "
                   f"the other folds ({', '.join(f'{t:.2f}' for t in cal['cross_fitted_temperatures'])}), so no "
                   f"slice calibrates itself; " + shipped)


def clinical_panel(crossval: dict, table, subjects) -> None:
    summary = class_summary(table)
    summary["stage"] = summary.stage.map(display)
    st.dataframe(summary, hide_index=True, key="evaluation_cohort")
    left, right = st.columns(2)
    left.plotly_chart(charts.age_by_class(table), key="evaluation_age")
    right.plotly_chart(charts.subject_scatter(subjects, "nwbv", "nWBV (normalised whole-brain volume)"),
                       key="evaluation_nwbv")
    st.plotly_chart(charts.subject_scatter(subjects, "age", "age"), key="evaluation_age_errors")
    st.caption("Age and atrophy (nWBV) differ by stage, so a network can score by reading them rather than "
               "disease; the clinical baseline above shows how far those alone go. Subjects without an OASIS "
               "row (28 with no reference slice, and the 2 Moderate ones, which cannot be told apart) are left "
               "out of these charts.")
    confounds = crossval.get("error_confounds")
    if confounds:
        st.markdown(confound_sentence(confounds))

def metrics_counts(metrics: dict) -> list[int]:
    return [metrics["per_class"][name]["support"] for name in CLASS_NAMES]


def baseline_table(crossval: dict, level: str) -> pd.DataFrame:
    """This network against the baselines, as the exported report has it (`model.reports.documents.baseline_rows`)."""
    columns, rows = baseline_rows(crossval, level)
    return pd.DataFrame(rows, columns=columns)


def subject_browser(subjects: pd.DataFrame) -> None:
    """The per-subject table, and one subject's slices with their out-of-fold predictions."""
    st.subheader("Every subject")
    view = pd.DataFrame({
        "subject": subjects.subject, "true stage": subjects.true_label.map(display),
        "age": subjects.get("age"), "sex": subjects.get("sex"),
        "predicted stage": subjects.prediction.map(display), "p(true stage)": subjects.p_true.round(3),
        "slices right": subjects.slices_right.map("{:.0%}".format), "fold": subjects.fold,
    })
    st.dataframe(view, hide_index=True, key="evaluation_subjects", height=300)
    st.caption("Sorted by the probability of the true stage: the surest mistakes first.")
    choice = st.selectbox("Open a subject's slices", [None, *subjects.subject], key="evaluation_subject",
                          format_func=lambda s: "Choose a subject" if s is None else
                          f"{s} · {display(subjects.set_index('subject').loc[s, 'true_label'])}")
    if choice is None:
        return
    data = dataset_dir()
    slices = crossval_slices()
    rows = slices[slices.subject == choice]
    if data is None:
        st.info("The slices can be shown where the dataset is available locally (set $ALZ_MRI_DATA).")
        st.dataframe(rows[["split", "id", "prediction", "correct"]], hide_index=True, key="evaluation_subject_rows")
        return
    order = slice_positions()
    rows = rows.assign(position=[order.get((s, i), -1) for s, i in zip(rows.split, rows.id)]).sort_values("position")
    try:
        images = {split: split_images(str(data), split) for split in set(rows.split)}
        index = {split: {name: i for i, name in enumerate(images[split].ids)} for split in images}
        missing = [i for s, i in zip(rows.split, rows.id) if i not in index[s]]
        if missing:
            raise KeyError(missing[0])
    except (DatasetError, OSError, KeyError) as exc:
        st.info(f"The slices cannot be shown from `{data}` ({type(exc).__name__}: {exc}): it is not the copy of the "
                "dataset the cross-validation ran on, or a split is missing.")
        st.dataframe(rows[["split", "id", "prediction", "correct"]], hide_index=True, key="evaluation_subject_rows")
        return
    cols = st.columns(8)
    for n, row in enumerate(rows.itertuples()):
        img = images[row.split].images[index[row.split][row.id], 0].numpy()
        p_true = getattr(row, f"p_{row.true_label}")
        cols[n % 8].image(img, width="stretch", caption=f"{row.position} · {row.split} · "
                          f"{'✓' if row.correct else '✗'} {p_true:.2f}")
    st.caption("Slice position in the subject's block · published split · right (✓) or wrong (✗) and the "
               "out-of-fold probability of the true stage.")


def test_split(metrics: dict | None) -> None:
    """The published test split, as shipped, or recomputed from the local dataset."""
    metrics = st.session_state.get("evaluation_live") or metrics
    data = dataset_dir()
    predictor, _ = predictor_or_none()
    if data and predictor is not None:
        with st.expander("Recompute from the local dataset"):
            st.caption(f"Predicts all test slices in `{data}` with the loaded model and recomputes every figure "
                       "(about half a minute on a laptop CPU). The shipped files are not changed.")
            if st.button("Recompute now", key="evaluation_recompute"):
                bar = st.progress(0.0, text="Classifying the test split…")
                try:
                    live, table = run(data, predictor=predictor,
                                      progress=lambda f: bar.progress(f, text=f"{f:.0%}"))
                except (DatasetError, ValueError, OSError) as exc:
                    st.error(f"Could not recompute from `{data}`: {exc}. The shipped results below are unchanged.")
                else:
                    st.session_state["evaluation_live"] = metrics = live
                    st.session_state["evaluation_live_table"] = table
                finally:
                    bar.empty()
    if metrics is None:
        st.error("No evaluation results are shipped (assets/metrics.json is missing). "
                 "Run `python -m model.evaluate` to create them.")
        return
    source = "recomputed just now" if st.session_state.get("evaluation_live") else "shipped with the model"
    st.caption(f"{metrics['n']:,} test slices · results {source} · model `{metrics.get('model_sha256', '')[:12]}`")
    with st.container(border=True):
        st.markdown("**Reading these numbers.** This split is by slice: every test slice has neighbouring slices "
                    "of the same brain in training, so these figures measure recognising a brain already seen, "
                    "not staging a new one. They stay here as a held-out check of the shipped network.")
        baseline = shipped_baseline()
        if baseline:
            test = baseline["test"]
            st.markdown(f"A lookup with no learning, which gives each test slice the stage of the most similar "
                        f"training slice (raw pixels), is right on **{test['accuracy']:.2%}** of it "
                        f"({test['errors']} error{'' if test['errors'] == 1 else 's'} in {test['n']:,}), against "
                        f"{metrics['accuracy']:.2%} for the network.")
        rows = metrics.get("by_train_distance")
        if rows:
            st.plotly_chart(charts.accuracy_by_train_distance(rows), key="evaluation_distance")
            st.caption(distance_summary(rows))
    counts = metrics.get("class_counts") or {}
    click = metric_panel(metrics, counts, "slices", "evaluation_test")
    table = st.session_state.get("evaluation_live_table")
    table = read_csv(str(PREDICTIONS_PATH)) if table is None else table
    if table is None:
        st.caption("The per-slice predictions (assets/test_predictions.csv) are not shipped, so they cannot be "
                   "interrogated further.")
        return
    rows = rows_from(table, "slices")
    interrogate_rows(rows, rows, click, metrics, "evaluation_test")
    published_calibration(rows, metrics.get("temperature") or (shipped_config() or {}).get("temperature"),
                          "evaluation_test")


# ---------------------------------------------------------------- interrogation, on both views
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
    layer = default_cam_layer(predictor.image_size)  # layer2 at 48 px: layer4 would be 2x2
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
    layer = default_cam_layer(get_predictor().image_size)
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
    st.caption(f"Columns in pairs per true stage: the mean of up to {cap} slices (a seeded sample) staged "
               "right, then wrong, each slice's Grad-CAM for the stage it was given, over their mean slice. "
               "Grad-CAM here because hundreds of maps must be cheap; it is coarse, and on held-out slices about half "
               "of its mass lies off the brain (the Model card's faithfulness table), so read these as where the "
               "network's layer-2 features respond, not as pixel evidence. " + note)


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
            col.metric(label, value, help=f"95% bootstrap interval over {by}: {lo:.3f}–{hi:.3f}",
                       delta=f"95%: {lo:.2f}–{hi:.2f}" if name == "quadratic_weighted_kappa" else
                       f"95%: {lo:.0%}–{hi:.0%}", delta_color="off", delta_arrow="off")
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
    clinic, here = interrogate.prevalence_ppv_npv(confusion, shares), interrogate.prevalence_ppv_npv(confusion)
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


# ---------------------------------------------------------------- the user's own cohort (Batch page)
def own_cohort(evaluation: dict, key: str) -> None:
    """The Evaluation views on a cohort the user brought (`model.serve.cohort.evaluate_cohort`): the metric panel
    per subject or per slice, the opened cell's files, stage distance, class mix, referral, calibration and the
    guard's flags."""
    flags = evaluation["flags"]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Labelled slices", f"{evaluation['labelled']:,}")
    c2.metric("Subjects", f"{evaluation['subjects']:,}", help="From the CSV's subject column, a folder inside a "
              "stage folder, or the grouping above; a file with none is a subject of its own")
    c3.metric("Without a true stage", f"{evaluation['unlabelled']:,}", help="Classified above, left out here")
    c4.metric("Flagged by the guard", f"{flags['flagged']:,}", help="Out of distribution or a near-copy of a "
              "training slice")
    if evaluation["unlabelled_files"]:
        n = evaluation["unlabelled"]
        with st.expander(f"{n:,} file{'s' if n != 1 else ''} without a true stage (left out)"):
            st.dataframe(pd.DataFrame({"file": evaluation["unlabelled_files"]}), hide_index=True,
                         key=f"{key}_unlabelled")
    near, ood = flags.get("near-copy of a training slice", 0), flags.get("out of distribution", 0)
    if near:
        st.warning(f"**{near:,} of {flags['n']:,} labelled slices are near-copies of training slices**: the model "
                   "has seen those brains, so the figures below measure recognition of seen brains, not how it "
                   "reads new ones (the published dataset's own slices are all like this). For an external "
                   "validation, use scans of people outside Falah/Alzheimer_MRI.", icon=":material/content_copy:")
    if ood:
        st.warning(f"**{ood:,} labelled slices are out of distribution** (unlike the training slices): the model's "
                   "answers on them are unreliable, and they pull the figures below toward chance.",
                   icon=":material/block:")
    for note in evaluation["notes"]:
        st.info(note)
    levels = ["per subject", "per slice"] if evaluation["subject"] else ["per slice"]
    level = st.segmented_control("Count", levels, default=levels[0], key=f"{key}_level") or levels[0]
    unit = "subjects" if level == "per subject" else "slices"
    metrics = evaluation["subject" if unit == "subjects" else "slice"]
    counts = {f"{k}s": metrics_counts(evaluation[k]) for k in ("subject", "slice") if evaluation.get(k)}
    click = metric_panel(metrics, counts, unit, key)
    slices = rows_from(pd.DataFrame(evaluation["rows"]), "slices", "subject")
    rows = slices if unit == "slices" else rows_from(pd.DataFrame(evaluation["subject_rows"]), "subjects")
    cell_gallery(rows, click, key, slices=slices, maps=False)
    ordinal_section(rows, key)
    prevalence_section(rows, metrics, key)
    referral_section(rows, key)
    st.subheader("Calibration")
    cal = metrics["calibration"]
    left, right = st.columns([3, 2])
    left.plotly_chart(charts.reliability_figure(cal.get("reliability_before", []), cal["reliability_after"],
                                                title=f"Reliability on your cohort ({unit})", unit=unit),
                      key=f"{key}_reliability")
    right.markdown(f"Expected calibration error over your {unit}: **{cal['ece_after']:.3f}**"
                   + (f" (before temperature scaling, {cal['ece_before']:.3f})" if "ece_before" in cal else "")
                   + ". With few cases per confidence bin this is a rough figure.")
    st.subheader("The guard's flags")
    st.dataframe(pd.DataFrame(flag_rows(flags), columns=["", "slices"]), hide_index=True, key=f"{key}_flags")
