"""The shipped weights reproduce the shipped metrics on the shared test split."""
import json

import numpy as np
import pandas as pd
import pytest

from model.core.constants import CONFIG_FILES_PRESENT, METRICS_PATH, MODEL_CONFIG_PATH, PREDICTIONS_PATH
from model.core.assets import sha256_file

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CONFIG_FILES_PRESENT(), reason="no shipped model")]


@pytest.fixture(scope="module")
def live(data_dir):
    from model.qualify.evaluate import run

    return run(data_dir, n_bootstrap=0)


def test_weights_match_recorded_checksum_and_config():
    config = json.loads(MODEL_CONFIG_PATH.read_text())
    weights = MODEL_CONFIG_PATH.parent / config["weights_file"]
    assert sha256_file(weights) == config["weights_sha256"]


@pytest.mark.data
def test_shipped_metrics_are_reproduced(live):
    shipped = json.loads(METRICS_PATH.read_text())
    metrics, _ = live
    assert shipped["model_sha256"] == metrics["model_sha256"]
    assert shipped["data_sha256"] == metrics["data_sha256"]
    assert shipped["train_config"] == json.loads(MODEL_CONFIG_PATH.read_text())["train_config"]
    # Another CPU's kernels may round differently; at most one borderline slice may flip.
    assert abs(metrics["accuracy"] - shipped["accuracy"]) <= 1 / metrics["n"] + 1e-12
    for key in ("balanced_accuracy", "macro_f1", "weighted_f1", "quadratic_weighted_kappa"):
        assert metrics[key] == pytest.approx(shipped[key], abs=0.01), key
    diff = np.abs(np.array(metrics["confusion_matrix"]) - np.array(shipped["confusion_matrix"])).sum()
    assert diff <= 2  # one slice moving between two cells
    for name, entry in shipped["per_class"].items():
        assert metrics["per_class"][name]["roc_auc"] == pytest.approx(entry["roc_auc"], abs=1e-4)
    assert metrics["ece"] == pytest.approx(shipped["ece"], abs=1e-3)


@pytest.mark.data
def test_shipped_predictions_table_matches(live):
    _, table = live
    shipped = pd.read_csv(PREDICTIONS_PATH)
    assert list(shipped["id"]) == list(table["id"])
    assert (shipped["prediction"] != table["prediction"]).sum() <= 1
    probs = [c for c in shipped.columns if c.startswith("p_")]
    np.testing.assert_allclose(shipped[probs].to_numpy(), table[probs].to_numpy(), atol=1e-4)
