"""Evaluation page: the shipped test-split results, or a live recomputation."""
import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.common import dataset_dir, predictor_or_none, shipped_baseline, shipped_metrics
from model.neighbours import distance_summary
from model.constants import CLASS_NAMES, DISPLAY_NAMES, STAGE_ORDER

st.title("Evaluation on the test split")
metrics = st.session_state.get("evaluation_live") or shipped_metrics()
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
    st.stop()
source = "recomputed just now" if st.session_state.get("evaluation_live") else "shipped with the model"
st.caption(f"{metrics['n']:,} test slices · results {source} · model `{metrics.get('model_sha256', '')[:12]}`")

ci = metrics.get("ci95", {})
cols = st.columns(5)
for col, (key, label) in zip(cols, [("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"),
                                    ("macro_f1", "Macro-F1")]):
    col.metric(label, f"{metrics[key]:.2%}" if key != "macro_f1" else f"{metrics[key]:.4f}",
               help=f"95% bootstrap interval {ci[key][0]:.4f}–{ci[key][1]:.4f}" if key in ci else None)
cols[3].metric("Quadratic kappa", f"{metrics['quadratic_weighted_kappa']:.4f}", help="Agreement on the ordinal stage")
cols[4].metric("Calibration error", f"{metrics['ece']:.4f}", help="Expected calibration error, 15 bins")

with st.container(border=True):
    st.markdown("**Reading these numbers.** The classes are very unequal: about half the slices show no dementia "
                "and only about 1% moderate dementia (15 test slices). Accuracy is dominated by the large classes, "
                "so look at per-class recall, balanced accuracy and macro-F1, and at the width of the intervals for "
                "the rare class. **Caveat:** the dataset has several slices per subject and no subject ids, so "
                "slices of one person can be in both train and test; these figures overstate accuracy on new "
                "patients.")
    baseline = shipped_baseline()
    if baseline:
        test = baseline["test"]
        st.markdown(f"**How large that effect is.** A lookup with no learning at all, which gives each test slice the "
                    f"label of the most similar training slice (raw pixels), is right on **{test['accuracy']:.2%}** of "
                    f"the test split ({test['errors']} error{'' if test['errors'] == 1 else 's'} in {test['n']:,}; balanced accuracy "
                    f"{test['balanced_accuracy']:.2%}), against {metrics['accuracy']:.2%} for the network. "
                    "Near-copies of most test slices sit in the training data, so a high score here shows that a "
                    "method finds the same brain again, not that it recognises dementia in a new patient.")
    rows = metrics.get("by_train_distance")
    if rows:
        st.plotly_chart(charts.accuracy_by_train_distance(rows), key="evaluation_distance")
        st.caption(distance_summary(rows))

counts = metrics.get("class_counts")
left, right = st.columns(2)
if counts:
    left.plotly_chart(charts.class_balance(counts), key="evaluation_balance")
    left.dataframe(pd.DataFrame({
        split: [f"{values[i]:,} ({values[i] / sum(values):.1%})" for i in STAGE_ORDER] for split, values in counts.items()
    }, index=[DISPLAY_NAMES[i] for i in STAGE_ORDER]), key="evaluation_counts")
with right:
    normalize = st.toggle("Row-normalised", key="evaluation_normalize")
    st.plotly_chart(charts.confusion_matrix(metrics["confusion_matrix"], normalize=normalize),
                    key="evaluation_confusion")
left, right = st.columns(2)
left.plotly_chart(charts.roc_curves(metrics), key="evaluation_roc")
right.plotly_chart(charts.pr_curves(metrics), key="evaluation_pr")


def interval(entry, key):
    lo, hi = entry.get("ci95", {}).get(key, (float("nan"), float("nan")))
    return f"{entry[key]:.3f} ({lo:.3f}–{hi:.3f})"


table = pd.DataFrame([{
    "class": DISPLAY_NAMES[CLASS_NAMES.index(name)],
    "precision": interval(e, "precision"), "recall": interval(e, "recall"), "F1": interval(e, "f1"),
    "ROC AUC": interval(e, "roc_auc"), "PR AUC": f"{e.get('pr_auc', float('nan')):.3f}", "support": e["support"],
} for name, e in metrics["per_class"].items()])
st.subheader("Per-class figures (95% bootstrap intervals)")
st.dataframe(table, hide_index=True, key="evaluation_table")
