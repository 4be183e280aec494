"""The two views of the Evaluation page: new subjects (cross-validated) and the published test split.

Each view shows the same panel (headline figures, class imbalance, confusion matrix, ROC and PR
curves, per-class table with intervals) for its own question; the new-subject view adds the
baselines, calibration, clinical context and the per-subject table.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.common import (
    crossval_slices,
    crossval_subjects,
    dataset_dir,
    predictor_or_none,
    crossval_describes_shipped_model,
    shipped_baseline,
    slice_positions,
    split_images,
    subject_table,
)
from model.card import confound_sentence
from model.constants import CLASS_NAMES, DISPLAY_NAMES, STAGE_ORDER

NEW, PUBLISHED = "New subjects (cross-validated)", "Published test split (slice-level)"
METHODS = {"network": "This network", "lookup": "Raw-pixel lookup (no learning)",
           "clinical": "Clinical baseline (age, sex, eTIV, nWBV)",
           "network_on_clinical_subjects": "This network, same subjects as the clinical baseline"}


def display(name: str) -> str:
    return DISPLAY_NAMES[CLASS_NAMES.index(name)]


def headline(crossval: dict | None, metrics: dict | None, baseline: dict | None) -> None:
    """The leakage, seen: the network and the lookup on a brain seen in training and on a new one."""
    rows = []
    if metrics and baseline and "test" in baseline:
        rows.append({"setting": "published test split<br>(slices of seen brains)",
                     "network": metrics["balanced_accuracy"], "lookup": baseline["test"]["balanced_accuracy"]})
    if crossval:
        for level, text in (("slice", "new subjects,<br>per slice"), ("subject", "new subjects,<br>per subject")):
            rows.append({"setting": text, "network": crossval["network"][level]["balanced_accuracy"],
                         "lookup": crossval["lookup"][level]["balanced_accuracy"]})
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


def _interval(entry: dict, key: str) -> str:
    lo, hi = entry.get("ci95", {}).get(key, (float("nan"), float("nan")))
    return f"{entry[key]:.3f} ({lo:.3f}–{hi:.3f})"


def per_class_table(metrics: dict, unit: str) -> pd.DataFrame:
    return pd.DataFrame([{
        "stage": display(name),
        f"recalled ({unit})": entry.get("recalled", ""),
        "recall, exact 95%": "{:.0%}–{:.0%}".format(*entry["recall_exact_ci95"]),
        "precision": _interval(entry, "precision"), "recall": _interval(entry, "recall"),
        "F1": _interval(entry, "f1"), "ROC AUC": _interval(entry, "roc_auc"),
        "PR AUC": f"{entry.get('pr_auc', float('nan')):.3f}",
    } for name, entry in ((CLASS_NAMES[i], metrics["per_class"][CLASS_NAMES[i]]) for i in STAGE_ORDER)])


def metric_panel(metrics: dict, counts: dict, unit: str, key: str) -> None:
    """Headline figures, class imbalance, confusion matrix, ROC and PR curves and the per-class table."""
    ci = metrics.get("ci95", {})
    cols = st.columns(5)
    for col, (name, label) in zip(cols, [("balanced_accuracy", "Balanced accuracy"), ("accuracy", "Accuracy"),
                                         ("any_dementia_auc", "Any-dementia AUC"), ("macro_f1", "Macro-F1")]):
        if name in metrics:
            col.metric(label, f"{metrics[name]:.1%}" if "accuracy" in name else f"{metrics[name]:.3f}",
                       help=f"95% bootstrap interval {ci[name][0]:.3f}–{ci[name][1]:.3f}" if name in ci else None)
    cols[4].metric("Calibration error", f"{metrics['ece']:.3f}", help=f"Expected calibration error over {unit}, "
                   "15 confidence bins")
    left, right = st.columns(2)
    left.plotly_chart(charts.class_balance(counts, title="Class imbalance", axis="share"), key=f"{key}_balance")
    with right:
        normalize = st.toggle("Row-normalised", key=f"{key}_normalize")
        st.plotly_chart(charts.confusion_matrix(metrics["confusion_matrix"], normalize=normalize, unit=unit),
                        key=f"{key}_confusion")
    left, right = st.columns(2)
    left.plotly_chart(charts.roc_curves(metrics), key=f"{key}_roc")
    right.plotly_chart(charts.pr_curves(metrics), key=f"{key}_pr")
    st.markdown(f"**Per stage** (95% intervals from a bootstrap over "
                f"{'subjects' if metrics.get('bootstrap', {}).get('unit') == 'subject' or unit == 'subjects' else unit};"
                " recall also with an exact binomial interval)")
    st.dataframe(per_class_table(metrics, unit), hide_index=True, key=f"{key}_table")


def new_subjects(crossval: dict | None) -> None:
    if crossval is None:
        st.warning("No cross-validated results are shipped (assets/crossval.json is missing). Run "
                   "`python -m model.crossval` to create them.")
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
    metric_panel(metrics, counts, unit, "evaluation_new")
    st.caption("Moderate dementia is 2 subjects: whatever the network does on them, this data cannot validate "
               "that class. Subject-level figures average each subject's slice probabilities.")

    st.subheader("Against baselines on the same folds")
    st.dataframe(baseline_table(crossval, "subject" if unit == "subjects" else "slice"), hide_index=True,
                 key="evaluation_baselines")
    st.caption("The lookup gives each slice the stage of the most similar slice of the other folds' subjects "
               "(raw pixels). The clinical baseline is a logistic regression on age, sex, eTIV and nWBV, fitted "
               "per fold on the subjects with an OASIS row (MMSE and CDR are left out: they define the stage).")

    st.subheader("Calibration")
    cal = crossval["calibration"]
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

    subjects = crossval_subjects()
    if subjects is None:
        return
    st.subheader("Clinical context")
    if table is not None and "age" in table:  # a table made without the OASIS reference has no clinical rows
        from model.subjects import class_summary

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
    subject_browser(subjects)


def metrics_counts(metrics: dict) -> list[int]:
    return [metrics["per_class"][name]["support"] for name in CLASS_NAMES]


def baseline_table(crossval: dict, level: str) -> pd.DataFrame:
    rows = []
    for key, label in METHODS.items():
        entry = crossval.get(key, {}).get(level)
        if entry is None:
            continue
        ci = entry.get("ci95", {})

        def cell(name):
            value = entry.get(name)
            if value is None or value != value:
                return ""
            return f"{value:.3f}" + (f" ({ci[name][0]:.3f}–{ci[name][1]:.3f})" if name in ci else "")

        rows.append({"method": label, "n": entry["n"], "any-dementia AUC": cell("any_dementia_auc"),
                     "balanced accuracy": cell("balanced_accuracy"),
                     "3-stage balanced accuracy": cell("three_class_balanced_accuracy"),
                     **{f"{display(n)} recalled": entry["per_class"][n]["recalled"]
                        for n in (CLASS_NAMES[i] for i in STAGE_ORDER)}})
    return pd.DataFrame(rows)


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
    from model.data import DatasetError

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
    from model.neighbours import distance_summary

    metrics = st.session_state.get("evaluation_live") or metrics
    data = dataset_dir()
    predictor, _ = predictor_or_none()
    if data and predictor is not None:
        with st.expander("Recompute from the local dataset"):
            st.caption(f"Predicts all test slices in `{data}` with the loaded model and recomputes every figure "
                       "(about half a minute on a laptop CPU). The shipped files are not changed.")
            if st.button("Recompute now", key="evaluation_recompute"):
                from model.data import DatasetError
                from model.evaluate import run

                bar = st.progress(0.0, text="Classifying the test split…")
                try:
                    live, _ = run(data, predictor=predictor, progress=lambda f: bar.progress(f, text=f"{f:.0%}"))
                except (DatasetError, ValueError, OSError) as exc:
                    st.error(f"Could not recompute from `{data}`: {exc}. The shipped results below are unchanged.")
                else:
                    st.session_state["evaluation_live"] = metrics = live
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
    metric_panel(metrics, counts, "slices", "evaluation_test")

