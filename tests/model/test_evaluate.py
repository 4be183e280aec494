import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from model.qualify.neighbours import by_train_distance, distance_summary
from model.qualify.evaluate import compute_metrics, predictions_table


def synthetic(n=400, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=n, p=[0.14, 0.02, 0.5, 0.34])
    y[:4] = [0, 1, 2, 3]  # every class present
    logits = rng.normal(size=(n, 4)) * noise
    logits[np.arange(n), y] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


def test_metrics_agree_with_sklearn_and_carry_curves():
    y, probs = synthetic()
    m = compute_metrics(y, probs, n_bootstrap=50)
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert np.array(m["confusion_matrix"]).sum() == len(y)
    for c, entry in enumerate(m["per_class"].values()):
        assert entry["roc_auc"] == pytest.approx(skm.roc_auc_score(y == c, probs[:, c]))
        assert entry["support"] == int((y == c).sum())
        fpr, tpr = entry["roc_curve"]["fpr"], entry["roc_curve"]["tpr"]
        assert fpr[0] == 0 and tpr[-1] == 1 and len(fpr) == len(tpr)
        lo, hi = entry["ci95"]["recall"]
        assert lo <= entry["recall"] <= hi
    assert 0 <= m["ece"] <= 1 and -1 <= m["quadratic_weighted_kappa"] <= 1


def test_perfect_predictions():
    y = np.array([0, 1, 2, 3] * 5)
    probs = np.eye(4)[y] * 0.96 + 0.01
    m = compute_metrics(y, probs, n_bootstrap=20)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["quadratic_weighted_kappa"] == 1.0
    assert all(e["roc_auc"] == 1.0 for e in m["per_class"].values())


def test_kappa_penalises_distant_stages_more():
    y = np.array([2] * 10 + [3] * 10 + [0] * 10 + [1] * 10)  # stages in order: Non, VeryMild, Mild, Moderate
    near, far = y.copy(), y.copy()
    near[:3] = 3  # Non called Very mild
    far[:3] = 1  # Non called Moderate
    k_near = compute_metrics(y, np.eye(4)[near], n_bootstrap=0)["quadratic_weighted_kappa"]
    k_far = compute_metrics(y, np.eye(4)[far], n_bootstrap=0)["quadratic_weighted_kappa"]
    assert k_far < k_near < 1


def test_predictions_table_columns():
    y, probs = synthetic(10)
    table = predictions_table([f"id{i}" for i in range(10)], y, probs)
    assert list(table.columns[:2]) == ["id", "true_label"] and table.columns[-1] == "correct"
    assert np.allclose(table.filter(like="p_").sum(axis=1), 1, atol=1e-5)


def test_exact_recall_interval_is_honest_for_a_perfect_small_class():
    from model.qualify.evaluate import clopper_pearson

    lo, hi = clopper_pearson(15, 15)
    assert hi == 1.0 and lo == pytest.approx(0.782, abs=1e-3)  # 0.025 ** (1 / 15)
    y = np.array([1] * 15 + [2] * 30)
    m = compute_metrics(y, np.eye(4)[y] * 0.96 + 0.01, n_bootstrap=0)
    assert m["per_class"]["Moderate_Demented"]["recall_exact_ci95"][0] == pytest.approx(lo)


def test_cli_writes_both_files_and_reports_bad_weights(tiny_assets, data_dir, tmp_path, capsys):
    import json

    from model.qualify.evaluate import main

    model_args = ["--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
                  "--config", str(tiny_assets / "model_config.json"), "--data-dir", str(data_dir)]
    metrics_out, table_out = tmp_path / "new" / "metrics.json", tmp_path / "other" / "predictions.csv"
    assert main([*model_args, "--bootstrap", "5", "--device", "cpu", "--metrics-out", str(metrics_out),
                 "--predictions-out", str(table_out)]) == 0
    metrics = json.loads(metrics_out.read_text())
    assert metrics["n"] == 1280 and metrics["train_config"] == {"image_size": 64}
    assert sum(r["n"] for r in metrics["by_train_distance"]) == 1280
    table = table_out.read_text().splitlines()
    assert len(table) == 1281 and table[0].endswith("correct,nearest_train_rms,nearest_train_label")
    assert "accuracy" in capsys.readouterr().out
    assert main(["--weights", str(tmp_path / "missing.safetensors"), "--config",
                 str(tiny_assets / "model_config.json")]) == 2
    assert "weights file not found" in capsys.readouterr().err


def test_accuracy_by_distance_to_the_nearest_train_slice():
    y = np.array([0, 1, 2, 3, 2, 2])
    pred = np.array([0, 1, 2, 3, 3, 2])
    lookup = np.array([0, 1, 2, 3, 2, 1])
    distance = np.array([3.0, 14.9, 15.0, 19.0, 24.0, 40.0])
    rows = by_train_distance(y, pred, distance, lookup, edges=(15.0, 20.0, 25.0))
    assert [(r["from"], r["to"], r["n"], r["errors"]) for r in rows] == [
        (0.0, 15.0, 2, 0), (15.0, 20.0, 2, 0), (20.0, 25.0, 1, 1), (25.0, None, 1, 0)]
    assert rows[2]["accuracy"] == 0.0 and rows[3]["lookup_accuracy"] == 0.0
    assert "right on all 4 test slices that have a training slice closer than 20" in distance_summary(rows)
    assert "Its one error is among the 2 slices" in distance_summary(rows)
    empty = by_train_distance(y[:1], pred[:1], distance[:1], lookup[:1], edges=(15.0,))
    assert empty[1] == {"from": 15.0, "to": None, "n": 0, "errors": 0, "accuracy": None, "lookup_accuracy": None}
    assert distance_summary(empty) == "The model is right on all 1 test slices, near to a training slice or not."


def test_a_class_missing_from_a_subject_resample_is_undefined_not_zero():
    from model.qualify.evaluate import compute_metrics

    # 200 subjects, 2 of them Moderate, every one staged right: about 13% of resamples hold no Moderate subject.
    y = np.array([1, 1] + [0] * 28 + [2] * 100 + [3] * 70)
    probs = np.eye(4)[y] * 0.9 + 0.025
    m = compute_metrics(y, probs, n_bootstrap=300, seed=0)
    assert m["per_class"]["Moderate_Demented"]["ci95"]["recall"] == [1.0, 1.0]
    assert m["per_class"]["Moderate_Demented"]["ci95"]["f1"] == [1.0, 1.0]
    assert m["ci95"]["macro_f1"] == [1.0, 1.0]


def test_slices_of_one_subject_are_resampled_together():
    from model.qualify.evaluate import bootstrap_intervals

    # 4 subjects of 50 identical slices each: a slice bootstrap would make the interval far too narrow
    y = np.repeat([0, 2, 0, 2], 50)
    wrong = np.repeat([True, False, False, False], 50)
    probs = np.eye(4)[np.where(wrong, 3, y)]
    by_slice = bootstrap_intervals(y, probs, n=300, seed=0)["headline"]["accuracy"]
    by_subject = bootstrap_intervals(y, probs, n=300, seed=0, groups=np.repeat(list("abcd"), 50))["headline"]["accuracy"]
    assert by_subject[1] - by_subject[0] > 2 * (by_slice[1] - by_slice[0])
    assert by_subject[0] <= 0.5 and by_subject[1] == 1.0


def test_the_bootstrap_figures_equal_scikit_learns_on_resamples_with_ties_and_absent_classes():
    """_per_class, _headlines and binary_auc (numpy, for the bootstrap's speed) against scikit-learn on random
    resamples: some lack a class, some never predict one, and the scores are rounded so that ties occur."""
    from model.qualify.evaluate import LABELS, _headlines, _per_class, binary_auc, merged_stages

    rng = np.random.default_rng(3)
    for trial in range(60):
        n = int(rng.integers(6, 80))
        weights = rng.dirichlet(np.ones(4) * (0.3 if trial % 3 == 0 else 2.0))
        y = rng.choice(4, n, p=weights)
        probs = np.round(rng.dirichlet(np.ones(4), n), 1 if trial % 2 else 6) + 1e-9
        probs /= probs.sum(1, keepdims=True)
        pred = probs.argmax(1)
        per = _per_class(y, pred, probs)
        p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=LABELS, zero_division=0)
        assert np.allclose(per["precision"], p, atol=1e-12) and np.allclose(per["recall"], r, atol=1e-12)
        assert np.allclose(per["f1"], f, atol=1e-12) and np.array_equal(per["support"], s)
        for c in LABELS:
            expected = skm.roc_auc_score(y == c, probs[:, c]) if 0 < (y == c).sum() < n else np.nan
            assert np.isclose(per["roc_auc"][c], expected, atol=1e-12, equal_nan=True)
        heads = _headlines(y, pred, probs)
        y3, p3 = merged_stages(y, probs)
        assert np.isclose(heads["accuracy"], skm.accuracy_score(y, pred), atol=1e-12)
        with warnings.catch_warnings():  # scikit-learn warns when a predicted class is absent from y
            warnings.simplefilter("ignore")
            assert np.isclose(heads["balanced_accuracy"], skm.balanced_accuracy_score(y, pred), atol=1e-12)
            assert np.isclose(heads["three_class_balanced_accuracy"], skm.balanced_accuracy_score(y3, p3.argmax(1)),
                              atol=1e-12)
        assert np.isclose(heads["macro_f1"], skm.f1_score(y, pred, labels=LABELS, average="macro", zero_division=0),
                          atol=1e-12)
        demented = y != 2
        expected = skm.roc_auc_score(demented, 1 - probs[:, 2]) if 0 < demented.sum() < n else np.nan
        assert np.isclose(heads["any_dementia_auc"], expected, atol=1e-12, equal_nan=True)
    assert np.isnan(binary_auc(np.ones(3, bool), np.arange(3.0)))
    assert binary_auc(np.array([True, False, True, False]), np.array([0.5, 0.5, 0.9, 0.1])) == 0.875
