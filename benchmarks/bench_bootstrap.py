"""The bootstrap behind every interval, against the same bootstrap computed with scikit-learn, in the same run.

    python -m benchmarks.bench_bootstrap [--resamples 200] [--rounds 3] [--out bootstrap.json]

Input: the shipped out-of-fold table (`assets/crossval_predictions.csv`, 6,400 slices of 200 subjects), resampled
by subject as a cohort evaluation does. "scikit-learn" is the loop as it was until 2026-12-03: every resample's
per-class and headline figures from `sklearn.metrics` (precision_recall_fscore_support, roc_auc_score per class,
balanced_accuracy_score, f1_score). "numpy" is `model.qualify.evaluate.bootstrap_intervals` as shipped (confusion
counts and a rank-based AUC, checked equal to scikit-learn's in tests/model/test_evaluate.py). Both are given the
same resamples (the same seed); the intervals must agree, and the ratio of seconds is the figure. Rounds alternate
between the two so that a shared machine's load falls on both alike; the best round of each is reported.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from model.core.constants import CLASS_NAMES, CROSSVAL_PREDICTIONS_PATH, NUM_CLASSES
from model.qualify import evaluate

LABELS = list(range(NUM_CLASSES))


def _per_class_sklearn(y, pred, probs) -> dict[str, np.ndarray]:
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=LABELS, zero_division=0)
    auc = np.array([skm.roc_auc_score(y == c, probs[:, c]) if 0 < (y == c).sum() < len(y) else np.nan
                    for c in LABELS])
    return {"precision": p, "recall": r, "f1": f, "support": s, "roc_auc": auc}


def _headlines_sklearn(y, pred, probs) -> dict[str, float]:
    y3, p3 = evaluate.merged_stages(y, probs)
    present = [c for c in range(3) if 0 < (y3 == c).sum() < len(y3)]
    non = CLASS_NAMES.index("Non_Demented")
    demented = y != non
    return {"accuracy": skm.accuracy_score(y, pred), "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
            "macro_f1": skm.f1_score(y, pred, labels=LABELS, average="macro", zero_division=0),
            "three_class_balanced_accuracy": skm.balanced_accuracy_score(y3, p3.argmax(1)),
            "three_class_auc": float(np.mean([skm.roc_auc_score(y3 == c, p3[:, c]) for c in present]))
            if present else np.nan,
            "any_dementia_auc": skm.roc_auc_score(demented, 1.0 - probs[:, non]) if 0 < demented.sum() < len(y)
            else np.nan}


def timed(fn, *args) -> tuple[float, dict]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def run(resamples: int, rounds: int) -> dict:
    table = pd.read_csv(CROSSVAL_PREDICTIONS_PATH)
    y = table.true_label.map(CLASS_NAMES.index).to_numpy()
    probs = table[[f"p_{c}" for c in CLASS_NAMES]].to_numpy(np.float64)
    groups = table.subject.to_numpy()
    args = (y, probs, resamples, 0, groups)
    seconds = {"scikit-learn": [], "numpy": []}
    shipped = (evaluate._per_class, evaluate._headlines)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(rounds):
            evaluate._per_class, evaluate._headlines = _per_class_sklearn, _headlines_sklearn
            try:
                t, old = timed(evaluate.bootstrap_intervals, *args)
            finally:
                evaluate._per_class, evaluate._headlines = shipped
            seconds["scikit-learn"].append(t)
            t, new = timed(evaluate.bootstrap_intervals, *args)
            seconds["numpy"].append(t)
    gap = max(float(np.nanmax(np.abs(np.array(old["headline"][k], float) - np.array(new["headline"][k], float))))
              for k in new["headline"])
    best = {k: min(v) for k, v in seconds.items()}
    return {"slices": int(len(y)), "subjects": int(len(set(groups))), "resamples": resamples, "rounds": rounds,
            "seconds": seconds, "best_seconds": best, "speed_up": best["scikit-learn"] / best["numpy"],
            "largest_interval_difference": gap}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resamples", type=int, default=200, help="subject resamples per bootstrap (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="timed bootstraps per method (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here (default: print only)")
    args = parser.parse_args(argv)
    result = run(args.resamples, args.rounds)
    print(f"{result['slices']} slices of {result['subjects']} subjects, {result['resamples']} subject resamples, "
          f"best of {result['rounds']}: scikit-learn {result['best_seconds']['scikit-learn']:.2f} s, numpy "
          f"{result['best_seconds']['numpy']:.2f} s -> {result['speed_up']:.1f}x; intervals differ by at most "
          f"{result['largest_interval_difference']:.1e}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
