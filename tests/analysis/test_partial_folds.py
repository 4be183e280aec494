"""Recipes compared on the folds they share (analysis.partial_folds, analysis.folds)."""
import json

import numpy as np
import pytest

from analysis import partial_folds
from analysis.folds import fold_logits
from model.core.constants import CLASS_NAMES

NON, MILD = CLASS_NAMES.index("Non_Demented"), CLASS_NAMES.index("Mild_Demented")


def cohort(subjects=40, per=8, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"s{i}" for i in range(subjects)], per)
    labels = np.repeat([NON, MILD] * (subjects // 2), per)
    fold = np.repeat(np.arange(subjects) % 3, per)  # three folds of whole subjects
    return rng, groups, labels, fold


def logits_for(rng, labels, signal):
    z = rng.normal(0, 1, (len(labels), 4))
    z[:, MILD] += np.where(labels == MILD, signal, -signal)
    return z


def test_fold_logits_reads_only_the_folds_asked_for(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"folds": 3}))
    for k, index in enumerate([np.array([0, 3]), np.array([1, 4]), np.array([2])]):
        (tmp_path / f"fold{k}").mkdir()
        np.savez(tmp_path / f"fold{k}" / "oof.npz", index=index, logits=np.full((len(index), 4), float(k)))
    logits, fold = fold_logits(tmp_path, 5, [0, 2])
    assert list(fold) == [0, -1, 2, 0, -1]
    assert np.isnan(logits[[1, 4]]).all() and logits[3, 0] == 0.0 and logits[2, 0] == 2.0
    _, every = fold_logits(tmp_path, 5)  # default: every fold of the plan
    assert list(every) == [0, 1, 2, 0, 1]


def test_a_better_run_on_shared_folds_is_paired_above_and_an_equal_one_is_not():
    rng, groups, labels, fold = cohort()
    strong, weak = logits_for(rng, labels, 1.5), logits_for(rng, labels, 0.1)
    shared = np.where(fold < 2, fold, -1)  # the third fold was not run by every recipe
    weak[fold == 2] = np.nan
    result = partial_folds.compare({"weak": weak, "strong": strong, "same": weak.copy()}, shared, labels, groups,
                                   n_bootstrap=300)
    assert result["folds"] == [0, 1]
    assert result["runs"]["weak"]["subjects"] == 27  # the subjects of folds 0 and 1 only
    assert set(result["runs"]["strong"]["auc_per_fold"]) == {0, 1}
    better = result["paired"]["strong - weak"]
    assert better["auc_difference"] > 0.2 and better["auc_difference_ci95"][0] > 0
    same = result["paired"]["same - weak"]
    assert same["auc_difference"] == 0 and same["auc_difference_ci95"] == [0, 0]
    assert len(result["runs"]["weak"]["temperatures"]) == 2  # one per fold, each fitted on the other


def test_a_run_missing_a_shared_fold_is_refused():
    rng, groups, labels, fold = cohort()
    partial = logits_for(rng, labels, 1.0)
    partial[fold == 1] = np.nan
    with pytest.raises(ValueError, match="b has no out-of-fold logits"):
        partial_folds.compare({"a": logits_for(rng, labels, 1.0), "b": partial}, np.where(fold < 2, fold, -1),
                              labels, groups, n_bootstrap=50)
