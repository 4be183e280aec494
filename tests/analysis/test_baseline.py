import json

import numpy as np
import pytest
import torch

from analysis.baseline import main


def test_refit_reference_is_all_of_train(data_dir, monkeypatch):
    import model.core.dataset as data
    from analysis.baseline import run

    real = data.load_split
    monkeypatch.setattr(data, "load_split", lambda split, d=None, **kw: real(split, d, limit=120))
    result = run(data_dir, val_fraction=0.0)
    assert "val" not in result and result["test"]["n"] == 120 and "120 slices" in result["reference"]


def test_cli_writes_val_and_test_figures(tmp_path, data_dir, monkeypatch):
    import model.core.dataset as data

    real = data.load_split
    monkeypatch.setattr(data, "load_split", lambda split, d=None, **kw: real(split, d, limit=200))
    out = tmp_path / "baseline.json"
    config = tmp_path / "model_config.json"
    config.write_text(json.dumps({"train_config": {"val_fraction": 0.1, "seed": 0}}))
    assert main(["--data-dir", str(data_dir), "--config", str(config), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert 18 <= result["val"]["n"] <= 24 and result["test"]["n"] == 200
    assert 0.0 <= result["test"]["accuracy"] <= 1.0 and set(result["test"]["recall"]) >= {"Moderate_Demented"}


def test_shipped_baseline_is_reproduced_from_the_shared_data(data_dir):
    """The lookup figure quoted in the README and the app is recomputed, not trusted (about 10 s)."""
    from analysis.baseline import run
    from model.core.constants import BASELINE_PATH, MODEL_CONFIG_PATH

    shipped = json.loads(BASELINE_PATH.read_text())
    tc = json.loads(MODEL_CONFIG_PATH.read_text())["train_config"]  # the reference is what the network trained on
    result = run(data_dir, tc["val_fraction"], tc["seed"], tc.get("val_by_subject", False))
    assert result["reference"] == shipped["reference"]
    assert result["test"]["n"] == shipped["test"]["n"] == 1280
    assert result["test"]["errors"] == shipped["test"]["errors"]
    assert result["test"]["accuracy"] == pytest.approx(shipped["test"]["accuracy"])
    assert result["test"]["recall"] == pytest.approx(shipped["test"]["recall"])


def test_lookup_score_labels_each_slice_like_its_nearest_reference_slice():
    from analysis.baseline import lookup_score
    from model.qualify.evaluate import recalled_counts
    from model.core.dataset import SliceSet

    grey = torch.tensor([0, 60, 120, 180, 240], dtype=torch.uint8)
    reference = SliceSet(grey[:, None, None, None].expand(5, 1, 4, 4).contiguous(), torch.tensor([0, 1, 2, 3, 3]),
                         tuple(f"r{i}" for i in range(5)))
    values = torch.tensor([5, 65, 70, 230], dtype=torch.uint8)  # nearest: 0, 60, 60 (label 1: wrong), 240
    query = SliceSet(values[:, None, None, None].expand(4, 1, 4, 4).contiguous(), torch.tensor([0, 1, 2, 3]),
                     ("q0", "q1", "q2", "q3"))
    result = lookup_score(reference, query)
    assert result["errors"] == 1 and result["accuracy"] == pytest.approx(3 / 4)
    assert result["recalled"] == {"Mild_Demented": "1/1", "Moderate_Demented": "1/1", "Non_Demented": "0/1",
                                  "Very_Mild_Demented": "1/1"}
    assert recalled_counts(np.array([1, 1]), np.array([1, 2]))["Moderate_Demented"] == "1/2"
