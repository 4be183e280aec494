"""Questions to put to a set of predictions, beyond the headline figures.

Every function takes labels and probabilities in label order (`model.core.constants.CLASS_NAMES`: label id ==
column) and returns plain numbers, so the Evaluation page, a notebook or a test can ask the same question:

* `ordinal_scores`: how far off the wrong stages are (quadratic-weighted kappa in `STAGE_ORDER`, the share
  one stage away and two or more away), with bootstrap intervals by subject;
* `prevalence_ppv_npv`: what a positive or negative call would mean in a clinic with another class mix;
* `risk_coverage` / `referral`: accuracy on what is left after referring the least confident cases;
* `cell_indices`: the rows of one confusion-matrix cell, surest first;
* `reliability_before_after`: reliability and ECE of calibrated probabilities and of the same probabilities
  with the temperature taken back out (`uncalibrate`), reusing `model.core.calibration`;
* `right_wrong_samples` / `mean_map`: a capped, deterministic sample of right and wrong slices per stage, and
  the mean of their saliency maps.

No Streamlit here; the dashboard draws what these return.
"""
from __future__ import annotations

import numpy as np

from model.core.calibration import expected_calibration_error, reliability
from model.core.constants import NUM_CLASSES, STAGE_ORDER

RANK = np.empty(NUM_CLASSES, dtype=int)
RANK[list(STAGE_ORDER)] = np.arange(NUM_CLASSES)  # label id -> place from healthy (0) to most severe (3)
DISTANCES = tuple(range(-(NUM_CLASSES - 1), NUM_CLASSES))  # predicted minus true stage, -3..3


# ---------------------------------------------------------------- ordinal
def stage_confusion(y, pred) -> np.ndarray:
    """Counts (K, K) with rows the true and columns the predicted place in STAGE_ORDER (0 = no dementia)."""
    t, p = RANK[np.asarray(y, dtype=int)], RANK[np.asarray(pred, dtype=int)]
    return np.bincount(t * NUM_CLASSES + p, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)


_OFFSET = np.subtract.outer(np.arange(NUM_CLASSES), np.arange(NUM_CLASSES))  # true minus predicted place (K, K)


def _ordinal_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Kappa and distance shares from stage-ordered confusion counts (..., K, K); leading axes are kept."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=(-2, -1))
    weights = _OFFSET.astype(np.float64) ** 2  # quadratic disagreement weight
    expected = counts.sum(-1)[..., :, None] * counts.sum(-2)[..., None, :] / np.maximum(n, 1)[..., None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = 1 - (weights * counts).sum(axis=(-2, -1)) / (weights * expected).sum(axis=(-2, -1))
        away = np.abs(_OFFSET)
        share = {name: (counts * mask).sum(axis=(-2, -1)) / n
                 for name, mask in (("exact", away == 0), ("off_by_one", away == 1), ("two_or_more", away >= 2))}
    return {"quadratic_weighted_kappa": kappa, **share}


def quadratic_weighted_kappa(y, pred) -> float:
    """Cohen's kappa with quadratic weights on the stage order: 1 agreement, 0 chance, below 0 worse.
    y, pred: (N,) label ids. The same figure as `compute_metrics`' quadratic_weighted_kappa."""
    return float(_ordinal_from_counts(stage_confusion(y, pred))["quadratic_weighted_kappa"])


def _group_members(groups, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(inverse (N,) cluster index of each row, number of clusters); every row is its own when groups is None."""
    if groups is None:
        return np.arange(n), n
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    return inverse, int(inverse.max()) + 1 if n else 0


def ordinal_scores(y, pred, *, groups=None, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """How far from the true stage the predictions fall.

    y, pred: (N,) label ids; groups: (N,) subject of each row, so the bootstrap draws whole subjects (None: each
    row is its own). Returns {"n", "quadratic_weighted_kappa", "exact", "off_by_one", "two_or_more" (shares of
    N in [0, 1]), "distance": {predicted - true stage (-3..3): count}, "ci95": {figure: [lo, hi]} (95% percentile
    bootstrap; absent when n_bootstrap is 0), "bootstrap": {"resamples", "unit"}}.
    """
    y, pred = np.asarray(y, dtype=int), np.asarray(pred, dtype=int)
    counts = stage_confusion(y, pred)
    out = {"n": len(y), **{k: float(v) for k, v in _ordinal_from_counts(counts).items()}}
    out["distance"] = {d: int(np.trace(counts, offset=d)) for d in DISTANCES}  # column - row = predicted - true
    if not n_bootstrap or not len(y):
        return out
    inverse, n_groups = _group_members(groups, len(y))
    cell = RANK[y] * NUM_CLASSES + RANK[pred]
    per_group = np.zeros((n_groups, NUM_CLASSES ** 2))
    np.add.at(per_group, (inverse, cell), 1)  # (G, K*K): one confusion matrix per cluster
    rng = np.random.default_rng(seed)
    draws = np.stack([np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
                      for _ in range(n_bootstrap)])  # (B, G) times each cluster is drawn
    boot = _ordinal_from_counts((draws @ per_group).reshape(n_bootstrap, NUM_CLASSES, NUM_CLASSES))
    out["ci95"] = {k: np.nanpercentile(v, [2.5, 97.5]).tolist() for k, v in boot.items()}
    out["bootstrap"] = {"resamples": n_bootstrap, "seed": seed, "unit": "row" if groups is None else "subject"}
    return out


# ---------------------------------------------------------------- prevalence
def bayes_ppv_npv(sensitivity, specificity, prevalence) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative predictive values (C,) from sensitivity, specificity and prevalence (C,) in [0, 1]
    by Bayes' rule. A value with an empty denominator (never called positive, or never negative) is nan."""
    se, sp, pi = (np.asarray(v, dtype=np.float64) for v in (sensitivity, specificity, prevalence))
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = se * pi / (se * pi + (1 - sp) * (1 - pi))
        npv = sp * (1 - pi) / (sp * (1 - pi) + (1 - se) * pi)
    return ppv, npv


def prevalence_ppv_npv(confusion, prevalence=None) -> dict[str, np.ndarray]:
    """One-vs-rest sensitivity, specificity, PPV and NPV per class (C,) for a clinic's class mix.

    confusion: (C, C) counts in label order, rows true. prevalence: (C,) assumed shares of the classes, summing to
    1 (rescaled if not); None is the confusion matrix's own mix, which gives back its precision as PPV.
    The rows of the confusion matrix, P(predicted | true), are taken to carry over to the clinic (label shift):
    sensitivity is unchanged, but the specificity of one class against the rest is re-weighted by the mix of the
    rest, before Bayes' rule turns both into predictive values. Returns {"prevalence", "sensitivity",
    "specificity", "ppv", "npv"}, each (C,).
    """
    m = np.asarray(confusion, dtype=np.float64)
    support = m.sum(1)
    pi = support / support.sum() if prevalence is None else np.asarray(prevalence, dtype=np.float64)
    if pi.shape != support.shape or (pi < 0).any() or pi.sum() <= 0:
        raise ValueError(f"prevalence must be {len(support)} non-negative shares with a positive sum, got {pi}")
    pi = pi / pi.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = m / support[:, None]  # (C, C) P(predicted j | true i)
    sens = np.diag(rates).copy()
    spec = np.empty_like(sens)
    for c in range(len(sens)):
        rest = np.arange(len(sens)) != c
        w = pi[rest] * (support[rest] > 0)  # a class with no rows cannot say how it would be called
        spec[c] = np.nansum(w * (1 - rates[rest, c])) / w.sum() if w.sum() > 0 else np.nan
    ppv, npv = bayes_ppv_npv(sens, spec, pi)
    return {"prevalence": pi, "sensitivity": sens, "specificity": spec, "ppv": ppv, "npv": npv}


# ---------------------------------------------------------------- referral
def _balanced(correct_by_class: np.ndarray, support_by_class: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present: (..., C) counts -> (...); every row must hold some class."""
    present = support_by_class > 0
    recall = np.where(present, correct_by_class / np.where(present, support_by_class, 1), 0.0)
    return recall.sum(-1) / present.sum(-1)


def risk_coverage(y, probs) -> dict[str, np.ndarray]:
    """Accuracy on the k most confident rows, for every k: the risk-coverage curve.

    y: (N,) label ids; probs: (N, C) rows summing to 1. Rows are ranked by confidence (the largest probability),
    ties in input order. Returns arrays of length N, index k-1 for keeping k rows: "coverage" (k / N),
    "confidence" (the k-th row's, the threshold at that coverage), "accuracy" and "balanced_accuracy" (mean recall
    over the classes the kept rows hold, as scikit-learn's), and "order" (N,) the ranking itself.
    """
    y, probs = np.asarray(y, dtype=int), np.asarray(probs, dtype=np.float64)
    conf, pred = probs.max(1), probs.argmax(1)
    order = np.argsort(-conf, kind="stable")
    hit = (pred == y)[order]
    onehot = np.eye(probs.shape[1], dtype=np.float64)[y[order]]  # (N, C)
    support = onehot.cumsum(0)
    correct = (onehot * hit[:, None]).cumsum(0)
    k = np.arange(1, len(y) + 1)
    return {"coverage": k / max(len(y), 1), "confidence": conf[order], "accuracy": hit.cumsum() / k,
            "balanced_accuracy": _balanced(correct, support), "order": order}


def referral(y, probs, refer: float) -> dict:
    """Refer the least confident share `refer` in [0, 1) of the rows; figures on the rows kept.

    Returns {"refer", "kept", "referred", "threshold" (lowest confidence kept), "accuracy", "balanced_accuracy",
    "referred_by_class" (C,) counts of the referred rows' true classes}. The number kept is round((1 - refer) N),
    at least 1.
    """
    if not 0 <= refer < 1:
        raise ValueError(f"the share to refer must be in [0, 1), got {refer}")
    curve = risk_coverage(y, probs)
    n = len(curve["order"])
    kept = min(n, max(1, round(float((1 - refer) * n))))
    referred = curve["order"][kept:]
    return {"refer": refer, "kept": kept, "referred": n - kept, "threshold": float(curve["confidence"][kept - 1]),
            "accuracy": float(curve["accuracy"][kept - 1]),
            "balanced_accuracy": float(curve["balanced_accuracy"][kept - 1]),
            "referred_by_class": np.bincount(np.asarray(y, dtype=int)[referred],
                                             minlength=np.asarray(probs).shape[1])}


# ---------------------------------------------------------------- cells and maps
def cell_indices(y, probs, true: int, predicted: int) -> np.ndarray:
    """Row indices (K,) of the confusion-matrix cell (true, predicted) in label ids, the surest first (largest
    probability of the predicted class; ties in input order). probs: (N, C)."""
    y, probs = np.asarray(y, dtype=int), np.asarray(probs, dtype=np.float64)
    rows = np.flatnonzero((y == true) & (probs.argmax(1) == predicted))
    return rows[np.argsort(-probs[rows, predicted], kind="stable")]


def right_wrong_samples(y, pred, *, cap: int = 40, seed: int = 0) -> dict[tuple[int, bool], np.ndarray]:
    """For each true class and right (True) or wrong (False): up to `cap` row indices, a seeded sample without
    replacement when there are more, sorted. y, pred: (N,) label ids. Every (class, right) key is present."""
    y, pred = np.asarray(y, dtype=int), np.asarray(pred, dtype=int)
    rng = np.random.default_rng(seed)
    out = {}
    for c in range(NUM_CLASSES):
        for right in (True, False):
            rows = np.flatnonzero((y == c) & ((pred == y) == right))
            out[c, right] = np.sort(rng.choice(rows, cap, replace=False)) if len(rows) > cap else rows
    return out


def mean_map(maps) -> np.ndarray:
    """The pixel-wise mean (H, W) of saliency maps (K, H, W) in [0, 1]; raises on an empty set."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or not len(maps):
        raise ValueError(f"need (K, H, W) maps with K >= 1, got shape {maps.shape}")
    return maps.mean(0)


# ---------------------------------------------------------------- calibration
def uncalibrate(probs, temperature) -> np.ndarray:
    """The probabilities before temperature scaling, softmax(T * log p), from calibrated ones p = softmax(z / T).

    probs: (N, C) rows summing to 1; temperature: a scalar or (N,) per row (a fold's own). Exact up to the
    rounding of the stored probabilities, since log p = z / T - logsumexp(z / T) and the shift cancels.
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    t = np.asarray(temperature, dtype=np.float64)
    if (t <= 0).any():
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = np.log(p) * (t[:, None] if t.ndim else t)
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def reliability_before_after(probs, labels, temperature) -> dict:
    """Reliability rows and ECE of calibrated probabilities (N, C) and of the same with the temperature taken
    out (see `uncalibrate`), in the shape `model.training.crossval` writes: {"temperature", "reliability_before",
    "reliability_after", "ece_before", "ece_after"}. labels: (N,) label ids."""
    labels = np.array(labels, dtype=np.int64)  # a writable copy: torch refuses read-only arrays
    before = uncalibrate(probs, temperature)
    after = np.array(probs, dtype=np.float64)
    after = after / after.sum(1, keepdims=True)
    return {"temperature": np.asarray(temperature).tolist(),
            "reliability_before": reliability(before, labels), "reliability_after": reliability(after, labels),
            "ece_before": expected_calibration_error(before, labels),
            "ece_after": expected_calibration_error(after, labels)}
