"""analysis.repeated_cv: figures per repeat, their mean, and a paired interval from one resample of subjects."""
import numpy as np
import pytest

from analysis.repeated_cv import compare, figures, source_folds
from model.qualify.evaluate import balanced_accuracy, binary_auc


def repeat(seed: int, better: float, n: int = 120) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    truth = np.eye(4)[labels]
    noise = rng.random((n, 4))
    a = (1 - better) * noise + better * truth  # recipe a leans toward the truth
    b = noise
    return {"subjects": [f"s{i}" for i in range(n)], "labels": labels, "a": a / a.sum(1, keepdims=True),
            "b": b / b.sum(1, keepdims=True)}


def test_point_figures_are_each_repeats_own_and_the_mean_is_their_mean():
    repeats = [repeat(0, 0.6), repeat(1, 0.6), repeat(2, 0.0)]
    out = compare(repeats, n_bootstrap=200, subsets={"all": [0, 1, 2], "new": [1, 2]})
    for r, row in zip(repeats, out["per_repeat"]):
        demented = r["labels"] != 2
        assert row["a_auc"] == pytest.approx(binary_auc(demented, 1 - r["a"][:, 2]))
        assert row["b_bacc"] == pytest.approx(balanced_accuracy(r["labels"], r["b"].argmax(1)))
    diffs = [row["bacc_difference"] for row in out["per_repeat"]]
    assert out["all"]["bacc_difference"] == pytest.approx(np.mean(diffs))
    assert out["new"]["bacc_difference"] == pytest.approx(np.mean(diffs[1:]))
    low, high = out["all"]["bacc_difference_ci95"]
    assert 0 < low < out["all"]["bacc_difference"] < high  # a real gain: the interval excludes 0
    assert out["per_repeat"][2]["auc_difference"] == 0  # identical recipes in repeat 2


def test_no_gain_gives_an_interval_around_zero():
    r = repeat(3, 0.0)
    out = compare([r, repeat(4, 0.0)], n_bootstrap=200, subsets={"all": [0, 1]})
    assert out["all"]["auc_difference"] == 0 and out["all"]["auc_difference_ci95"] == [0, 0]


def test_subjects_missing_from_a_repeat_are_left_out_of_it_only():
    full, part = repeat(5, 0.5), repeat(6, 0.5, n=60)
    out = compare([full, part], n_bootstrap=50, subsets={"all": [0, 1]})
    assert [row["subjects"] for row in out["per_repeat"]] == [120, 60]


def test_figures_need_both_answers_of_the_any_dementia_question():
    labels = np.array([2, 2, 2])
    assert figures(labels, np.full((3, 4), 0.25), np.ones(3, int)) is None


def test_the_folds_of_a_source_come_from_its_table_or_its_fold_files(tmp_path):
    import json

    import pandas as pd

    splits, ids = ["train", "train", "test", "test"], ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    table = pd.DataFrame({"split": ["test", "train", "train"], "id": ["c.jpg", "b.jpg", "a.jpg"], "fold": [1, 0, 2]})
    table.to_csv(tmp_path / "run.csv", index=False)
    assert source_folds(tmp_path / "run.csv", 4, splits, ids).tolist() == [2, 0, 1, -1]  # d.jpg: not covered
    run = tmp_path / "run"
    (run / "fold1").mkdir(parents=True)
    (run / "plan.json").write_text(json.dumps({"folds": 2}))
    np.savez(run / "fold1" / "oof.npz", index=np.array([3, 0]), logits=np.zeros((2, 4)))
    assert source_folds(run, 4, splits, ids).tolist() == [1, -1, -1, 1]  # fold 0 not finished
