"""The two views of the Evaluation page: new subjects (cross-validated) and the published test split.

Each view shows the same panel (headline figures, class imbalance, confusion matrix, ROC and PR
curves, per-class table with intervals) for its own question, and the same interrogation of its
predictions (`interrogation_views`): the slices behind a confusion-matrix cell with their maps, mean maps of
right and wrong slices, the stage distance, predictive values for another class mix, referral of the
least confident, and calibration; the new-subject view adds the baselines, clinical context and the
per-subject table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.common import (
    crossval_slices,
    crossval_subjects,
    predictor_or_none,
    read_csv,
    slice_positions,
    split_images,
    subject_table,
)
from dashboard.interrogation_views import (OUT_OF_FOLD_NOTE, cell_gallery, interrogate_rows, lazy_section,
                                           ordinal_section, prevalence_section, published_calibration,
                                           referral_section, rows_from)
from dashboard.shell import crossval_describes_shipped_model, dataset_dir, shipped_baseline, shipped_config
from model.core.constants import CLASS_NAMES, PREDICTIONS_PATH
from model.core.dataset import DatasetError, class_summary
from model.qualify.evaluate import run
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
                       help=f"95% bootstrap interval [{ci[name][0]:.3f}, {ci[name][1]:.3f}]" if name in ci else None)
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
               "(raw pixels). The two PCA floors are linear models on downsampled pixels (one for all slices, or "
               "one per slice position), fitted per fold. The clinical baseline is a logistic regression on age, "
               "sex, eTIV and nWBV, fitted per fold on the subjects with an OASIS row (MMSE and CDR are left out: "
               "they define the stage). The column after the AUC is this network's AUC minus the method's on the same "
               "subjects, with a paired 95% bootstrap interval: a floor is beaten only where the interval is "
               "above 0.")

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
