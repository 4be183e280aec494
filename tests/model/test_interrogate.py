"""model.qualify.interrogate: known answers, agreement with scikit-learn, and the shipped files reproduced."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from model.qualify import interrogate as it
from model.core.calibration import expected_calibration_error
from model.core.constants import CLASS_NAMES, CROSSVAL_PATH, CROSSVAL_PREDICTIONS_PATH, METRICS_PATH, PREDICTIONS_PATH
from model.qualify.evaluate import compute_metrics

MILD, MODERATE, NON, VERY_MILD = range(4)  # label ids; stage order is NON, VERY_MILD, MILD, MODERATE


def synthetic(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += 1.5
    return y, np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


# ---------------------------------------------------------------- ordinal
def test_distances_follow_the_stage_order_not_the_label_ids():
    # true stages no, very mild, mild, moderate; predicted one stage too severe, right, right... in label ids
    y = np.array([NON, VERY_MILD, MILD, MODERATE])
    pred = np.array([VERY_MILD, VERY_MILD, MODERATE, MODERATE])
    s = it.ordinal_scores(y, pred, n_bootstrap=0)
    assert s["distance"] == {-3: 0, -2: 0, -1: 0, 0: 2, 1: 2, 2: 0, 3: 0}
    assert (s["exact"], s["off_by_one"], s["two_or_more"]) == (0.5, 0.5, 0.0)
    far = it.ordinal_scores(np.array([NON, MODERATE]), np.array([MODERATE, NON]), n_bootstrap=0)
    assert far["distance"][3] == 1 and far["distance"][-3] == 1 and far["two_or_more"] == 1.0


def test_kappa_by_hand_and_against_sklearn_and_compute_metrics():
    # ranks true [0, 0, 1, 1], predicted [0, 1, 1, 1]: sum(wO) = 1, sum(wE) = 2, kappa = 1 - 1/2
    assert it.quadratic_weighted_kappa([NON, NON, VERY_MILD, VERY_MILD],
                                       [NON, VERY_MILD, VERY_MILD, VERY_MILD]) == pytest.approx(0.5)
    y, probs = synthetic()
    pred = probs.argmax(1)
    rank = it.RANK
    expected = skm.cohen_kappa_score(rank[y], rank[pred], weights="quadratic", labels=[0, 1, 2, 3])
    assert it.quadratic_weighted_kappa(y, pred) == pytest.approx(expected, abs=1e-12)
    assert it.ordinal_scores(y, pred, n_bootstrap=0)["quadratic_weighted_kappa"] == pytest.approx(
        compute_metrics(y, probs, n_bootstrap=0)["quadratic_weighted_kappa"], abs=1e-12)


def test_a_mistake_three_stages_away_costs_more_than_one_stage_away():
    y = np.array([NON] * 6 + [VERY_MILD] * 6 + [MILD] * 6 + [MODERATE] * 6)
    near, far = y.copy(), y.copy()
    near[0], far[0] = VERY_MILD, MODERATE  # the same accuracy, one mistake each
    assert it.quadratic_weighted_kappa(y, near) > it.quadratic_weighted_kappa(y, far)


def test_bootstrap_draws_whole_subjects():
    y, probs = synthetic(120)
    pred = probs.argmax(1)
    alone = it.ordinal_scores(y, pred, n_bootstrap=200, seed=3)
    # each row copied 10 times as one subject: resampling subjects gives the same figures as resampling rows
    grouped = it.ordinal_scores(np.repeat(y, 10), np.repeat(pred, 10), groups=np.repeat(np.arange(120), 10),
                                n_bootstrap=200, seed=3)
    assert grouped["bootstrap"]["unit"] == "subject" and alone["bootstrap"]["unit"] == "row"
    for key in ("quadratic_weighted_kappa", "exact", "off_by_one", "two_or_more"):
        assert grouped["ci95"][key] == pytest.approx(alone["ci95"][key], abs=1e-12)
        lo, hi = alone["ci95"][key]
        assert lo <= alone[key] <= hi
    # treating the 1,200 copies as independent slices would give a far narrower, wrong interval
    naive = it.ordinal_scores(np.repeat(y, 10), np.repeat(pred, 10), n_bootstrap=200, seed=3)["ci95"]["exact"]
    assert naive[1] - naive[0] < 0.5 * (grouped["ci95"]["exact"][1] - grouped["ci95"]["exact"][0])


# ---------------------------------------------------------------- prevalence
def test_bayes_by_hand():
    ppv, npv = it.bayes_ppv_npv([0.9], [0.8], [0.1])
    assert ppv[0] == pytest.approx(0.09 / (0.09 + 0.18)) and npv[0] == pytest.approx(0.72 / 0.73)


def test_own_mix_gives_back_precision_and_npv():
    y, probs = synthetic()
    pred = probs.argmax(1)
    confusion = skm.confusion_matrix(y, pred, labels=range(4))
    out = it.prevalence_ppv_npv(confusion)
    assert out["ppv"] == pytest.approx(skm.precision_score(y, pred, average=None, labels=range(4)))
    assert out["sensitivity"] == pytest.approx(skm.recall_score(y, pred, average=None, labels=range(4)))
    for c in range(4):
        tn, fp, fn, _ = skm.confusion_matrix(y == c, pred == c).ravel()
        assert out["npv"][c] == pytest.approx(tn / (tn + fn)) and out["specificity"][c] == pytest.approx(tn / (tn + fp))


def test_another_mix_is_what_that_clinic_would_measure():
    """Under label shift (each stage called as here) the predicted PPV/NPV equal the ones counted in a clinic
    with that mix."""
    rates = np.array([[.6, .1, .1, .2], [.3, .5, .1, .1], [.05, .0, .8, .15], [.2, .0, .3, .5]])
    here = np.array([100, 20, 400, 280])[:, None] * rates
    clinic_support = np.array([40, 10, 850, 100])
    clinic = clinic_support[:, None] * rates
    out = it.prevalence_ppv_npv(here, clinic_support * 7)  # shares need not sum to 1
    counted = it.prevalence_ppv_npv(clinic)
    assert out["prevalence"] == pytest.approx(clinic_support / clinic_support.sum())
    for key in ("sensitivity", "specificity", "ppv", "npv"):
        assert out[key] == pytest.approx(counted[key])
    assert out["ppv"][MILD] < it.prevalence_ppv_npv(here)["ppv"][MILD]  # rarer mild dementia: a call is weaker


def test_never_called_is_nan_and_bad_mixes_raise():
    confusion = np.array([[5, 0, 0, 0], [0, 0, 0, 2], [0, 0, 9, 1], [0, 0, 1, 6]])
    assert np.isnan(it.prevalence_ppv_npv(confusion)["ppv"][MODERATE])
    for bad in ([0, 0, 0, 0], [0.5, 0.5, -0.1, 0.1], [1, 0, 0]):
        with pytest.raises(ValueError, match="prevalence"):
            it.prevalence_ppv_npv(confusion, bad)


# ---------------------------------------------------------------- referral
def test_risk_coverage_by_hand():
    probs = np.array([[.9, .1, 0, 0], [.2, .8, 0, 0], [.3, 0, .7, 0], [0, 0, .4, .6]])
    y = np.array([0, 0, 2, 3])  # right, wrong, right, right in confidence order
    curve = it.risk_coverage(y, probs)
    assert curve["order"].tolist() == [0, 1, 2, 3]
    assert curve["accuracy"] == pytest.approx([1, 0.5, 2 / 3, 0.75])
    assert curve["coverage"] == pytest.approx([0.25, 0.5, 0.75, 1])
    assert curve["confidence"] == pytest.approx([.9, .8, .7, .6])
    half = it.referral(y, probs, 0.5)
    assert (half["kept"], half["referred"], half["threshold"], half["accuracy"]) == (2, 2, 0.8, 0.5)
    assert half["referred_by_class"].tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="refer"):
        it.referral(y, probs, 1.0)


@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn, on the one most confident row
def test_balanced_accuracy_on_the_kept_matches_sklearn():
    y, probs = synthetic(200, seed=1)
    curve = it.risk_coverage(y, probs)
    for k in (1, 7, 50, 133, 200):
        kept = curve["order"][:k]
        assert curve["balanced_accuracy"][k - 1] == pytest.approx(
            skm.balanced_accuracy_score(y[kept], probs[kept].argmax(1)))
        assert curve["accuracy"][k - 1] == pytest.approx(skm.accuracy_score(y[kept], probs[kept].argmax(1)))
    assert it.referral(y, probs, 0.0)["accuracy"] == pytest.approx(skm.accuracy_score(y, probs.argmax(1)))
    assert np.all(np.diff(curve["confidence"]) <= 0)


# ---------------------------------------------------------------- cells and maps
def test_cell_indices_are_the_cell_surest_first():
    probs = np.array([[.5, .5, 0, 0], [.1, .9, 0, 0], [.3, .7, 0, 0], [.8, .2, 0, 0], [.2, .8, 0, 0]])
    y = np.array([0, 0, 0, 0, 1])
    assert it.cell_indices(y, probs, 0, 1).tolist() == [1, 2]  # row 0 ties to argmax 0, row 4 is true 1
    assert it.cell_indices(y, probs, 0, 0).tolist() == [3, 0]
    assert it.cell_indices(y, probs, 3, 3).tolist() == []


def test_right_wrong_samples_are_capped_seeded_and_correct():
    y, probs = synthetic(400)
    pred = probs.argmax(1)
    a, b = it.right_wrong_samples(y, pred, cap=10, seed=5), it.right_wrong_samples(y, pred, cap=10, seed=5)
    assert set(a) == {(c, r) for c in range(4) for r in (True, False)}
    for (c, right), rows in a.items():
        assert len(rows) == min(10, int(((y == c) & ((pred == y) == right)).sum()))
        assert np.all(y[rows] == c) and np.all((pred[rows] == c) == right)
        assert rows.tolist() == b[c, right].tolist() == sorted(rows.tolist())


def test_mean_map():
    maps = np.stack([np.zeros((2, 2)), np.ones((2, 2))])
    assert it.mean_map(maps) == pytest.approx(np.full((2, 2), 0.5))
    with pytest.raises(ValueError):
        it.mean_map(np.zeros((0, 2, 2)))


# ---------------------------------------------------------------- calibration
def test_uncalibrate_recovers_the_softmax_of_the_logits():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 4)) * 3
    t = np.where(np.arange(50) < 25, 2.5, 4.0)  # a temperature per row, as per fold
    softmax = lambda a: np.exp(a - a.max(1, keepdims=True)) / np.exp(a - a.max(1, keepdims=True)).sum(1, keepdims=True)
    assert it.uncalibrate(softmax(z / t[:, None]), t) == pytest.approx(softmax(z), abs=1e-10)
    assert it.uncalibrate(softmax(z / 3), 3.0) == pytest.approx(softmax(z), abs=1e-10)
    with pytest.raises(ValueError, match="temperature"):
        it.uncalibrate(softmax(z), 0.0)


def test_reliability_before_after_reuses_the_calibration_module():
    y, probs = synthetic()
    out = it.reliability_before_after(probs, y, 2.0)
    assert out["ece_after"] == pytest.approx(expected_calibration_error(probs, y))
    assert out["ece_before"] == pytest.approx(expected_calibration_error(it.uncalibrate(probs, 2.0), y))
    assert sum(r["n"] for r in out["reliability_before"]) == sum(r["n"] for r in out["reliability_after"]) == len(y)


# ---------------------------------------------------------------- the shipped files, reproduced
def shipped(path):
    if not path.is_file():
        pytest.skip(f"{path.name} is not shipped")
    return pd.read_csv(path)


def test_recovers_the_crossval_reliability_before_scaling_from_the_calibrated_file():
    slices = shipped(CROSSVAL_PREDICTIONS_PATH)
    cal = json.loads(CROSSVAL_PATH.read_text())["calibration"]
    probs = slices[[f"p_{n}" for n in CLASS_NAMES]].to_numpy()
    y = slices.true_label.map(CLASS_NAMES.index).to_numpy()
    temps = np.asarray(cal["cross_fitted_temperatures"])[slices.fold.to_numpy()]  # each fold's own temperature
    out = it.reliability_before_after(probs, y, temps)
    assert out["ece_before"] == pytest.approx(cal["ece_before"], abs=1e-6)
    assert out["ece_after"] == pytest.approx(cal["ece_after"], abs=1e-6)
    for mine, theirs in zip(out["reliability_before"], cal["reliability_before"], strict=True):
        assert mine["n"] == theirs["n"] and mine["confidence"] == pytest.approx(theirs["confidence"], abs=1e-5)


def test_kappa_matches_the_shipped_metrics():
    crossval = json.loads(CROSSVAL_PATH.read_text())["network"]
    slices = shipped(CROSSVAL_PREDICTIONS_PATH)
    y = slices.true_label.map(CLASS_NAMES.index).to_numpy()
    pred = slices.prediction.map(CLASS_NAMES.index).to_numpy()
    assert it.quadratic_weighted_kappa(y, pred) == pytest.approx(crossval["slice"]["quadratic_weighted_kappa"])
    test = shipped(PREDICTIONS_PATH)
    assert it.quadratic_weighted_kappa(test.true_label.map(CLASS_NAMES.index), test.prediction.map(
        CLASS_NAMES.index)) == pytest.approx(json.loads(METRICS_PATH.read_text())["quadratic_weighted_kappa"])
