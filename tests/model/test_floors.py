"""The floors every recipe must beat, and the paired figures that compare a network with them, on tiny data."""
import json

import numpy as np
import pandas as pd
import pytest

from model.core.constants import CLASS_NAMES
from model.training import crossval, floors
from tests.model.test_crossval import tiny_set


def test_error_confounds_say_whether_mistakes_follow_age():
    subjects = pd.DataFrame({"true_label": ["Non_Demented"] * 6, "correct": [True, True, True, False, False, True],
                             "age": [60, 62, 64, 90, 88, 66], "nwbv": [0.8] * 6})
    out = floors.error_confounds(subjects)
    assert out["age"]["all"]["auc_wrong"] == 1.0 and out["age"]["all"]["mean_wrong"] == 89.0
    assert out["nwbv"]["all"]["auc_wrong"] == 0.5  # a constant column says nothing
    assert out["age"]["Mild_Demented"]["subjects"] == 0 and out["age"]["Mild_Demented"]["auc_wrong"] is None


def test_pca_floor_learns_out_of_fold_and_per_position():
    data, groups = tiny_set(n_per_class=(6, 4, 6, 6), slices=4)
    labels = data.labels.numpy()
    fold = crossval.folds_by_subject(labels, groups, 2, seed=0)
    probs = floors.pca_probabilities(data.images, labels, fold, size=16, components=5)
    assert np.allclose(probs.sum(1), 1) and (probs.argmax(1) == labels).mean() > 0.5  # chance: 0.27
    positions = np.tile(np.arange(4), len(labels) // 4)
    by_position = floors.pca_probabilities(data.images, labels, fold, size=16, components=3, positions=positions)
    assert np.allclose(by_position.sum(1), 1) and not np.allclose(by_position, probs)


def test_floor_probabilities_computes_the_floors_asked_for():
    data, groups = tiny_set(n_per_class=(15, 15, 15, 15), slices=4)
    labels = data.labels.numpy()
    fold = crossval.folds_by_subject(labels, groups, 2, seed=0)
    positions = np.tile(np.arange(4), len(labels) // 4)
    only = floors.floor_probabilities(data, labels, fold, positions, names=("lookup",))
    every = floors.floor_probabilities(data, labels, fold, positions)
    assert list(only) == ["lookup"] and list(every) == ["lookup", "pca", "pca_by_position"]
    assert np.array_equal(only["lookup"], every["lookup"])
    assert list(floors.floor_probabilities(data, labels, fold, None)) == ["lookup", "pca"]  # no positions


def test_add_floors_brings_an_old_figures_file_up_to_date_and_keeps_the_network(tmp_path):
    data, groups = tiny_set(n_per_class=(15, 15, 15, 15), slices=4)
    labels = data.labels.numpy()
    fold = crossval.folds_by_subject(labels, groups, 2, seed=0)
    probs = np.full((len(labels), 4), 0.1) + 0.6 * np.eye(4)[labels]
    splits = ["train"] * len(labels)
    table = pd.DataFrame({"split": splits, "id": data.ids, "fold": fold})
    for c, name in enumerate(CLASS_NAMES):
        table[f"p_{name}"] = probs[:, c]
    table.sample(frac=1, random_state=0).to_csv(tmp_path / "pred.csv", index=False)  # rows in another order
    network = floors.level_figures(probs, labels, groups, 20)
    old = {"network": network, "plan": {"folds": 2}, "calibration": {"temperature": 1.5}}
    (tmp_path / "cv.json").write_text(json.dumps(old))
    positions = np.tile(np.arange(4), len(labels) // 4)
    result = floors.add_floors(tmp_path / "cv.json", tmp_path / "pred.csv", data, groups, splits, None, 20,
                                 positions)
    saved = json.loads((tmp_path / "cv.json").read_text())
    assert saved["plan"] == {"folds": 2} and saved["calibration"] == {"temperature": 1.5}
    assert saved["network"] == json.loads(json.dumps(network))  # untouched
    assert {"lookup", "pca", "pca_by_position"} <= set(saved) and set(saved["paired"]) == set(floors.FLOORS) - {"clinical"}
    assert [r["method"] for r in saved["summary"]["subject"]] == ["network", "lookup", "pca", "pca_by_position"]
    assert "roc_curve" not in saved["pca"]["slice"]["per_class"]["Mild_Demented"]  # only the network's are drawn
    assert "roc_curve" in saved["network"]["slice"]["per_class"]["Mild_Demented"]
    _, y, subject_probs = floors.subject_level(probs, labels, groups)
    floor = floors.pca_probabilities(data.images, labels, fold, components=50)
    direct = floors.paired_difference(y, subject_probs, floors.subject_level(floor, labels, groups)[2],
                                        n_bootstrap=200)
    assert result["paired"]["pca"] == direct  # the same pairing as a cross-validation's own
    with pytest.raises(ValueError, match="another data set"):
        table.iloc[:10].to_csv(tmp_path / "short.csv", index=False)
        floors.add_floors(tmp_path / "cv.json", tmp_path / "short.csv", data, groups, splits, None, 20, positions)


def test_paired_difference_separates_a_better_method_and_not_an_equal_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 120)
    good = np.eye(4)[labels] * 0.7 + 0.075
    noise = rng.dirichlet(np.ones(4), 120)
    better = floors.paired_difference(labels, good, noise, n_bootstrap=300)
    assert better["auc_difference"] > 0.3 and better["auc_difference_ci95"][0] > 0
    assert better["bacc_difference_ci95"][0] > 0
    same = floors.paired_difference(labels, noise, noise, n_bootstrap=100)
    assert same["auc_difference"] == 0 and same["auc_difference_ci95"] == [0.0, 0.0]
