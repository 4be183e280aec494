"""Evaluate the classifier on the test split: `python -m model.evaluate --help`.

Writes a metrics file (JSON) and a per-image predictions table (CSV). Every
figure is computed from calibrated probabilities, by scikit-learn or, for the
ones a bootstrap recomputes a thousand times (confusion-count figures, ROC AUC),
by numpy code that the tests check against scikit-learn; per-class figures get
95% percentile-bootstrap intervals over test images. Each test
slice is also matched to its nearest train slice in raw pixels, so accuracy can
be read by how far a slice is from anything the model was trained on.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import beta, rankdata
from sklearn import metrics as skm

from model.core.calibration import expected_calibration_error, reliability
from model.core.assets import ModelLoadError
from model.core.constants import (
    CLASS_NAMES,
    DISPLAY_NAMES,
    METRICS_PATH,
    MODEL_CONFIG_PATH,
    NUM_CLASSES,
    PREDICTIONS_PATH,
    WEIGHTS_PATH,
    default_data_dir,
)
from model.core.dataset import DatasetError, fingerprint, load_split
from model.core.inference import Predictor
from model.core.prediction import subject_level
from model.qualify.interrogate import quadratic_weighted_kappa, reliability_before_after
from model.qualify.neighbours import by_train_distance, distance_bin_label, nearest_train_slices

LABELS = list(range(NUM_CLASSES))


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> list[float]:
    """Exact binomial interval; unlike the bootstrap it stays honest at 15 of 15."""
    if trials == 0:
        return [float("nan"), float("nan")]
    a = (1 - level) / 2
    lo = beta.ppf(a, successes, trials - successes + 1) if successes > 0 else 0.0
    hi = beta.ppf(1 - a, successes + 1, trials - successes) if successes < trials else 1.0
    return [float(lo), float(hi)]


def recalled_counts(y: np.ndarray, pred: np.ndarray) -> dict[str, str]:
    """'right/support' per class in label order, e.g. {"Moderate_Demented": "5/5", ...}."""
    y, pred = np.asarray(y), np.asarray(pred)
    return {name: f"{int(((pred == c) & (y == c)).sum())}/{int((y == c).sum())}" for c, name in enumerate(CLASS_NAMES)}


def predicted_counts(pred: np.ndarray) -> dict[str, int]:
    """How many slices were predicted as each class, in label order."""
    pred = np.asarray(pred)
    return {name: int((pred == c).sum()) for c, name in enumerate(CLASS_NAMES)}


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of a binary split (Mann-Whitney U with mid-ranks for ties): equal to scikit-learn's
    `roc_auc_score` (tests/model/test_evaluate.py checks it on tied and untied scores) at a fraction of the cost
    per call, which matters inside a bootstrap. NaN when one side is empty."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((rankdata(score)[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _counts(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 (0 where undefined, as scikit-learn's zero_division=0) and support,
    from the confusion counts over all C classes. (C,) arrays each."""
    counts = np.bincount(np.asarray(y) * NUM_CLASSES + np.asarray(pred),
                         minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)
    tp, support, predicted = np.diag(counts).astype(float), counts.sum(1), counts.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _per_class(y: np.ndarray, pred: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """`_counts` plus each class's one-vs-rest ROC AUC (NaN for a class absent or alone). (C,) arrays each."""
    auc = np.array([binary_auc(np.asarray(y) == c, probs[:, c]) for c in LABELS])
    return {**_counts(y, pred), "roc_auc": auc}


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in y (scikit-learn's `balanced_accuracy_score`)."""
    present = np.unique(y)
    return float(np.mean([(pred[y == c] == c).mean() for c in present]))


def merged_stages(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 3-stage view (CDR 0, 0.5, >= 1): Mild and Moderate merged. Returns labels (N,) in 0..2 and
    probabilities (N, 3), ordered No, Very mild, Mild or worse."""
    mild, moderate, non, very_mild = (CLASS_NAMES.index(n) for n in
                                      ("Mild_Demented", "Moderate_Demented", "Non_Demented", "Very_Mild_Demented"))
    merged = np.stack([probs[:, non], probs[:, very_mild], probs[:, mild] + probs[:, moderate]], axis=1)
    to3 = np.zeros(NUM_CLASSES, dtype=int)
    to3[[non, very_mild, mild, moderate]] = [0, 1, 2, 2]
    return to3[np.asarray(y, dtype=int)], merged


def _headlines(y: np.ndarray, pred: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The summary figures that get an interval: accuracy, balanced accuracy, macro-F1, the 3-stage balanced
    accuracy and macro ROC AUC, and the any-dementia ROC AUC (score 1 - p(No dementia))."""
    y3, p3 = merged_stages(y, probs)
    present = [c for c in range(3) if 0 < (y3 == c).sum() < len(y3)]
    non = CLASS_NAMES.index("Non_Demented")
    demented = y != non
    return {
        "accuracy": float((y == pred).mean()),
        "balanced_accuracy": balanced_accuracy(y, pred),
        "macro_f1": float(_counts(y, pred)["f1"].mean()),
        "three_class_balanced_accuracy": balanced_accuracy(y3, p3.argmax(1)),
        "three_class_auc": float(np.mean([binary_auc(y3 == c, p3[:, c]) for c in present])) if present else np.nan,
        "any_dementia_auc": binary_auc(demented, 1.0 - probs[:, non]),
    }


def bootstrap_intervals(y: np.ndarray, probs: np.ndarray, n: int = 1000, seed: int = 0,
                        groups: np.ndarray | None = None) -> dict:
    """95% percentile intervals of per-class precision, recall, F1 and ROC AUC, and of the headlines.

    A per-class figure that a resample leaves undefined (its class absent, or never predicted for precision)
    is left out of that figure's percentiles rather than counted as 0.

    groups: (N,) cluster of each row (its subject): a resample draws whole clusters, so slices of one brain
    are never counted as independent evidence. None: every row is its own cluster.
    """
    rng = np.random.default_rng(seed)
    pred = probs.argmax(1)
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")  # resamples lack a class
    if groups is None:
        members = [np.array([i]) for i in range(len(y))]
    else:
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    draws = {k: [] for k in ("precision", "recall", "f1", "roc_auc")}
    heads: dict[str, list] = {}
    for _ in range(n):
        pick = rng.integers(0, len(members), len(members))
        idx = np.concatenate([members[i] for i in pick])
        per = _per_class(y[idx], pred[idx], probs[idx])
        # A class can be missing from a resample (2 Moderate subjects of 200: about 13% of subject resamples).
        # Its recall and F1 are then undefined, not 0, and so is a precision with nothing predicted as it.
        absent = per["support"] == 0
        per["recall"] = np.where(absent, np.nan, per["recall"])
        per["f1"] = np.where(absent, np.nan, per["f1"])
        per["precision"] = np.where(np.bincount(pred[idx], minlength=NUM_CLASSES) == 0, np.nan, per["precision"])
        for k in draws:
            draws[k].append(per[k])
        heads_now = _headlines(y[idx], pred[idx], probs[idx])
        heads_now["macro_f1"] = float(np.nanmean(per["f1"]))  # over the classes the resample holds
        for k, v in heads_now.items():
            heads.setdefault(k, []).append(v)
    out = {k: np.nanpercentile(np.stack(v), [2.5, 97.5], axis=0).T.tolist() for k, v in draws.items()}
    out["headline"] = {k: np.nanpercentile(v, [2.5, 97.5]).tolist() for k, v in heads.items()}
    return out


def compute_metrics(y: np.ndarray, probs: np.ndarray, *, n_bootstrap: int = 1000, seed: int = 0,
                    groups: np.ndarray | None = None) -> dict:
    """All evaluation figures for labels y (N,) and probabilities (N, C): the one place that turns
    predictions into metrics. groups: (N,) subject of each row, so the bootstrap resamples subjects."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)  # float32 softmax rows can miss 1 by ~1e-7
    pred = probs.argmax(1)
    per = _per_class(y, pred, probs)
    ci = bootstrap_intervals(y, probs, n_bootstrap, seed, groups) if n_bootstrap else None
    recalled, predicted = recalled_counts(y, pred), predicted_counts(pred)
    per_class = {}
    for c, name in enumerate(CLASS_NAMES):
        positive = y == c
        entry = {k: (float(per[k][c]) if k != "support" else int(per[k][c])) for k in per}
        if 0 < positive.sum() < len(y):
            fpr, tpr, _ = skm.roc_curve(positive, probs[:, c])
            prec, rec, _ = skm.precision_recall_curve(positive, probs[:, c])
            entry["pr_auc"] = float(skm.average_precision_score(positive, probs[:, c]))
            entry["roc_curve"] = {"fpr": fpr.round(5).tolist(), "tpr": tpr.round(5).tolist()}
            entry["pr_curve"] = {"precision": prec.round(5).tolist(), "recall": rec.round(5).tolist()}
        entry["recall_exact_ci95"] = clopper_pearson(int(((pred == c) & positive).sum()), int(positive.sum()))
        entry["recalled"], entry["predicted"] = recalled[name], predicted[name]
        if ci:
            entry["ci95"] = {k: ci[k][c] for k in ("precision", "recall", "f1", "roc_auc")}
        per_class[name] = entry
    result = {
        "n": int(len(y)),
        **{k: float(v) for k, v in _headlines(y, pred, probs).items()},
        "weighted_f1": float(skm.f1_score(y, pred, labels=LABELS, average="weighted", zero_division=0)),
        "macro_roc_auc": float(np.nanmean(per["roc_auc"])),
        "macro_pr_auc": float(np.mean([v.get("pr_auc", np.nan) for v in per_class.values()])),
        "ece": expected_calibration_error(probs, y),
        "log_loss": float(skm.log_loss(y, probs, labels=LABELS)),
        "quadratic_weighted_kappa": quadratic_weighted_kappa(y, pred),
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=LABELS).tolist(),
        "confusion_matrix_labels": list(CLASS_NAMES),
        "per_class": per_class,
    }
    if ci:
        result["ci95"] = ci["headline"]
        result["bootstrap"] = {"resamples": n_bootstrap, "seed": seed, "method": "percentile",
                               "unit": "subject" if groups is not None else "row"}
    return result


GUARD_FLAGS = ("out of distribution", "near-copy of a training slice", "no guard")  # Result.flags, as written
LOW_AGREEMENT = 0.75  # fewer than 6 of the 8 test-time variants give the slice's stage: "low agreement"


def undefined_notes(metrics: dict, unit: str) -> list[str]:
    """Plain sentences for the figures a small cohort leaves undefined (a stage absent, only one stage present),
    so a page or report says so instead of showing nan."""
    notes = []
    absent = [DISPLAY_NAMES[c] for c in range(NUM_CLASSES) if metrics["per_class"][CLASS_NAMES[c]]["support"] == 0]
    if absent:
        notes.append(f"No {unit} of {', '.join(a.lower() for a in absent)} in this cohort: recall and ROC AUC of "
                     f"{'that stage are' if len(absent) == 1 else 'those stages are'} undefined, and the macro "
                     "figures average over the stages present.")
    only = [c for c in range(NUM_CLASSES) if metrics["per_class"][CLASS_NAMES[c]]["support"] == metrics["n"]]
    if only:
        notes.append(f"Every {unit[:-1]} is {DISPLAY_NAMES[only[0]].lower()}: no ROC or PR curve can be drawn, "
                     "since a curve needs cases on both sides.")
    elif not np.isfinite(metrics.get("any_dementia_auc", np.nan)):
        notes.append(f"The any-dementia AUC is undefined: the {unit} are all demented or all not.")
    return notes


def flag_summary(y, pred, flags: list[list[str]], agreement) -> dict:
    """How many slices the guard flagged, by flag, and the accuracy on flagged and unflagged slices.

    flags: each slice's `Result.flags`; agreement (N,): each slice's share of test-time variants giving its stage.
    "flagged" counts a slice out of distribution or a near-copy of a training slice (`Result.reliable` false).
    """
    y, pred, agreement = np.asarray(y), np.asarray(pred), np.asarray(agreement, dtype=np.float64)
    correct = y == pred
    flagged = np.array([any(f in ("out of distribution", "near-copy of a training slice") for f in fs)
                        for fs in flags], dtype=bool)
    low = agreement < LOW_AGREEMENT

    def accuracy(mask):
        return float(correct[mask].mean()) if mask.any() else None

    return {"n": int(len(y)), **{f: sum(f in fs for fs in flags) for f in GUARD_FLAGS},
            "low agreement": int(low.sum()), "low_agreement_below": LOW_AGREEMENT, "flagged": int(flagged.sum()),
            "accuracy_flagged": accuracy(flagged), "accuracy_unflagged": accuracy(~flagged),
            "accuracy_low_agreement": accuracy(low)}


def cohort_metrics(y, probs, subjects, flags: list[list[str]], *, agreement, temperature: float | None = None,
                   n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """External validation on a labelled cohort: the figures of `compute_metrics` per slice and per subject.

    y (N,) true label ids; probs (N, C) calibrated probabilities; subjects (N,) subject of each slice (a slice
    alone is its own subject); flags: each slice's guard flags (`Result.flags`); agreement (N,) in [0, 1];
    temperature: the calibration temperature the probabilities were made with (for the reliability before it).

    Returns {"slice": metrics, "subject": metrics or None (when no subject has two slices), "flags":
    `flag_summary`, "notes": sentences on undefined figures, "subjects": how many}. Each metrics dict also has
    "calibration" (`reliability_before_after`, or after only without a temperature). The slice-level bootstrap
    resamples whole subjects when there are any, so one brain's slices are not counted as independent.
    """
    with warnings.catch_warnings():  # a stage absent from a small cohort leaves some percentiles all-nan
        warnings.simplefilter("ignore", RuntimeWarning)
        return _cohort_metrics(np.array(y), np.array(probs, dtype=np.float64), np.asarray(subjects), flags,
                               agreement, temperature, n_bootstrap, seed)


def _cohort_metrics(y, probs, subjects, flags, agreement, temperature, n_bootstrap, seed) -> dict:
    ids, inverse = np.unique(subjects, return_inverse=True)
    grouped = len(ids) < len(y)
    levels = {"slice": compute_metrics(y, probs, n_bootstrap=n_bootstrap, seed=seed,
                                       groups=inverse if grouped else None), "subject": None}
    level_data = {"slice": (y, probs)}
    if grouped:
        _, labels, mean = subject_level(probs, y, inverse)
        labels = np.array(labels)  # writable: torch (the calibration bins) refuses read-only arrays
        levels["subject"] = compute_metrics(labels, mean, n_bootstrap=n_bootstrap, seed=seed)
        level_data["subject"] = (labels, mean)
        levels["subject"]["slices_per_subject"] = np.bincount(inverse).tolist()
    notes = []
    for level, (labels, p) in level_data.items():
        if temperature:
            levels[level]["calibration"] = reliability_before_after(p, labels, temperature)
        else:
            levels[level]["calibration"] = {"reliability_after": reliability(p, np.array(labels)),
                                            "ece_after": levels[level]["ece"]}
        notes += undefined_notes(levels[level], "slices" if level == "slice" else "subjects")
    return {**levels, "flags": flag_summary(y, probs.argmax(1), flags, agreement),
            "notes": list(dict.fromkeys(notes)), "subjects": int(len(ids)), "temperature": temperature}


def predictions_table(ids, y, probs, nearest: dict | None = None) -> pd.DataFrame:
    """One row per test slice: id, true label, calibrated probabilities, prediction, correct, and, when
    `nearest` is given, the nearest train slice's RMS distance and label."""
    frame = pd.DataFrame({"id": list(ids), "true_label": [CLASS_NAMES[v] for v in y]})
    for c, name in enumerate(CLASS_NAMES):
        frame[f"p_{name}"] = np.round(probs[:, c], 6)
    frame["prediction"] = [CLASS_NAMES[v] for v in probs.argmax(1)]
    frame["correct"] = frame["prediction"] == frame["true_label"]
    if nearest is not None:
        frame["nearest_train_rms"] = np.round(nearest["distance"], 2)
        frame["nearest_train_label"] = [CLASS_NAMES[v] for v in nearest["label"]]
    return frame


def subject_predictions(predictions: pd.DataFrame, subjects: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per subject from the per-slice out-of-fold table (`evaluate_out_of_fold`): true stage, slices,
    mean probabilities, predicted stage, p_true (the probability of the true stage) and correct, joined with
    the subject table's clinical columns when given. Sorted by p_true, the surest mistakes first."""
    columns = [f"p_{name}" for name in CLASS_NAMES]
    grouped = predictions.groupby("subject", sort=True)
    ids, labels, mean = subject_level(predictions[columns].to_numpy(), predictions.true_label.to_numpy(),
                                      predictions.subject.to_numpy())
    out = pd.DataFrame(mean, index=pd.Index(ids, name="subject"), columns=columns)
    out.insert(0, "true_label", labels)
    out.insert(1, "slices", grouped.size())
    out.insert(2, "fold", grouped.fold.first())
    out["prediction"] = [CLASS_NAMES[i] for i in out[columns].to_numpy().argmax(1)]
    truth = out.true_label.map(CLASS_NAMES.index).to_numpy()
    out["p_true"] = out[columns].to_numpy()[np.arange(len(out)), truth]
    out["correct"] = out.prediction == out.true_label
    out["slices_right"] = grouped.correct.mean()
    if subjects is not None:
        keep = [c for c in ("age", "sex", "educ", "etiv", "nwbv", "mmse", "cdr", "candidates") if c in subjects]
        out = out.join(subjects.set_index("subject")[keep])
    return out.sort_values("p_true").reset_index()


def run(data_dir=None, weights=WEIGHTS_PATH, config=MODEL_CONFIG_PATH, device="auto", n_bootstrap=1000,
        progress=None, predictor=None) -> tuple[dict, pd.DataFrame]:
    """Predict the whole test split and compute every figure.

    `progress(fraction)` is called as it goes; pass an already loaded `predictor`
    to reuse it (the dashboard does), else one is loaded from `weights`.
    """
    t0 = time.perf_counter()
    predictor = predictor or Predictor.from_assets(weights, config, device=device)
    test = load_split("test", data_dir)
    batch = 128
    chunks = []
    for start in range(0, len(test), batch):
        chunks.append(predictor.probabilities(test.images[start:start + batch], batch))
        if progress:
            progress(min(1.0, (start + batch) / len(test)) * 0.8)
    probs = np.concatenate([c.numpy() for c in chunks]).astype(np.float64)
    y = test.labels.numpy()
    metrics = compute_metrics(y, probs, n_bootstrap=n_bootstrap)
    if progress:
        progress(0.9)
    train = load_split("train", data_dir)
    nearest = nearest_train_slices(train, test)
    metrics["by_train_distance"] = by_train_distance(y, probs.argmax(1), nearest["distance"], nearest["label"])
    if progress:
        progress(1.0)
    metrics["model_sha256"] = predictor.sha256
    metrics["data_sha256"] = fingerprint(data_dir)
    metrics["class_counts"] = {"train": train.class_counts(), "test": test.class_counts()}
    metrics["temperature"] = predictor.temperature
    metrics["image_size"] = predictor.image_size
    metrics["train_config"] = predictor.config.get("train_config", {})  # the recipe that made these weights
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    return metrics, predictions_table(test.ids, y, probs, nearest)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="default: %(default)s")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH, help="default: %(default)s")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG_PATH, help="default: %(default)s")
    parser.add_argument("--metrics-out", type=Path, default=METRICS_PATH, help="default: %(default)s")
    parser.add_argument("--predictions-out", type=Path, default=PREDICTIONS_PATH, help="default: %(default)s")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% intervals (default: 1000)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        metrics, table = run(args.data_dir, args.weights, args.config, args.device, args.bootstrap)
    except (DatasetError, ModelLoadError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        for out in (args.metrics_out, args.predictions_out):
            out.parent.mkdir(parents=True, exist_ok=True)
        args.metrics_out.write_text(json.dumps(metrics, indent=1) + "\n")
        table.to_csv(args.predictions_out, index=False)
    except OSError as exc:
        print(f"error: cannot write the results: {exc}", file=sys.stderr)
        return 2
    per = metrics["per_class"]
    print(f"accuracy {metrics['accuracy']:.4f}  balanced {metrics['balanced_accuracy']:.4f}  "
          f"macro-F1 {metrics['macro_f1']:.4f}  ECE {metrics['ece']:.4f}  QWK {metrics['quadratic_weighted_kappa']:.4f}"
          f"  ({metrics['seconds']:.1f} s)")
    for name, entry in per.items():
        print(f"  {name:20s} P {entry['precision']:.3f}  R {entry['recall']:.3f}  F1 {entry['f1']:.3f}  "
              f"AUC {entry['roc_auc']:.4f}  n={entry['support']}")
    print("by distance to the nearest train slice (RMS grey levels): model accuracy | lookup accuracy")
    for row in metrics["by_train_distance"]:
        span = distance_bin_label(row)
        figures = (f"{row['accuracy']:.4f} ({row['errors']} errors) | {row['lookup_accuracy']:.4f}"
                   if row["n"] else "-")
        print(f"  {span:>8}  n={row['n']:<5d} {figures}")
    print(f"wrote {args.metrics_out} and {args.predictions_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
