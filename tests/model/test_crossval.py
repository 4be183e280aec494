"""Subject-grouped cross-validation end to end on a tiny synthetic set."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from model.training import crossval, floors
from model.core.constants import CLASS_NAMES
from model.core.dataset import SliceSet
from model.training.data import grouped_split
from model.training.train import TrainConfig


def tiny_set(n_per_class=(4, 2, 6, 4), slices=3, size=32, seed=0):
    """Subjects whose slices share a class-dependent brightness, so a network can learn something."""
    rng = np.random.default_rng(seed)
    images, labels, groups = [], [], []
    for label, n in enumerate(n_per_class):
        for s in range(n):
            base = rng.integers(0, 60, (size, size)) + 40 * label
            for _ in range(slices):
                images.append(np.clip(base + rng.integers(0, 10, (size, size)), 0, 255))
                labels.append(label)
                groups.append(f"{label}-{s}")
    images = torch.tensor(np.stack(images), dtype=torch.uint8).unsqueeze(1)
    data = SliceSet(images, torch.tensor(labels), tuple(f"img{i}" for i in range(len(labels))))
    return data, np.array(groups, dtype=object)


def recipe(**kw):
    return TrainConfig(**{"image_size": 32, "epochs": 1, "batch_size": 8, "amp": "off", "optimizer": "adamw",
                          "lr": 1e-3, "eval_batch_size": 16, "threads": 1, **kw})


def test_folds_keep_subjects_whole_and_stratify():
    data, groups = tiny_set()
    fold = crossval.folds_by_subject(data.labels.numpy(), groups, 2, seed=0)
    assert set(fold) == {0, 1}
    for g in set(groups):
        assert len(set(fold[groups == g])) == 1  # a subject never straddles folds
    for label in range(4):  # each class's subjects spread over both folds
        assert len(set(fold[data.labels.numpy() == label])) == 2


def test_grouped_split_keeps_subjects_whole_and_a_rare_class_in_training():
    labels = np.array([1, 1, 1, 2, 2, 2, 2, 2, 2, 0])
    groups = np.array(["m1", "m1", "m2", "a", "b", "c", "d", "e", "f", "solo"], dtype=object)
    keep, held = grouped_split(labels, groups, 0.2, seed=0)
    assert set(groups[held]).isdisjoint(groups[keep])
    assert {"m1", "m2", "solo"} <= set(groups[keep])  # round(0.2 * 2) = 0; a class's last subject never goes
    assert len(set(groups[held])) == 1  # round(0.2 * 6) = 1 of the six class-2 subjects
    keep, held = grouped_split(labels, groups, 0.9, seed=0)
    assert "solo" in set(groups[keep]) and len({"m1", "m2"} & set(groups[keep])) == 1


def test_cross_validate_predicts_every_slice_once_and_resumes(tmp_path, monkeypatch):
    data, groups = tiny_set()
    fold, logits, infos = crossval.cross_validate(data, groups, recipe(), 2, 0, 0.3, tmp_path)
    assert np.isfinite(logits).all() and logits.shape == (len(data), 4)
    assert sorted(i["fold"] for i in infos) == [0, 1]
    assert sum(i["held_slices"] for i in infos) == len(data)
    assert all((tmp_path / f"fold{k}" / "oof.npz").is_file() for k in (0, 1))

    def no_training(*a, **k):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr("model.training.train.main", no_training)
    _, again, _ = crossval.cross_validate(data, groups, recipe(), 2, 0, 0.3, tmp_path)
    assert np.array_equal(again, logits)
    with pytest.raises(ValueError, match="another plan"):
        crossval.cross_validate(data, groups, recipe(), 3, 0, 0.3, tmp_path)


def test_out_of_fold_figures_for_network_lookup_and_clinical_baseline():
    data, groups = tiny_set()
    labels = data.labels.numpy()
    fold = crossval.folds_by_subject(labels, groups, 2, seed=0)
    logits = np.eye(4)[labels] * 3.0 + np.random.default_rng(0).normal(0, 1, (len(labels), 4))
    ids = sorted(set(groups))
    table = pd.DataFrame({"subject": ids, "label": [CLASS_NAMES[int(g[0])] for g in ids],
                          "age": np.linspace(60, 90, len(ids)), "sex": ["F", "M"] * (len(ids) // 2),
                          "etiv": 1400.0, "nwbv": np.linspace(0.8, 0.65, len(ids))})
    table.loc[table.label == "Moderate_Demented", ["age", "etiv", "nwbv"]] = np.nan  # no clinical row
    result, predictions = crossval.evaluate_out_of_fold(data, groups, ["train"] * len(data), fold, logits, table, 20)
    assert len(predictions) == len(data) and set(predictions.fold) == {0, 1}
    net = result["network"]
    assert net["subject"]["n"] == len(ids) and net["slice"]["n"] == len(data)
    assert net["slice"]["bootstrap"]["unit"] == "subject"
    assert net["subject"]["any_dementia_auc"] > 0.9  # the logits favour the true class
    assert len(result["calibration"]["cross_fitted_temperatures"]) == 2
    assert result["clinical"]["subjects"] == len(ids) - 2  # the Moderate subjects have no clinical row
    assert result["network_on_clinical_subjects"]["subject"]["n"] == len(ids) - 2
    # the lookup's reference is the other fold: a subject is never its own neighbour
    lookup = floors.lookup_probabilities(data.images, labels, fold)
    assert lookup.sum(1).tolist() == [1.0] * len(labels)


def test_calibration_is_cross_fitted():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 400)
    guess = np.where(rng.random(400) < 0.7, labels, rng.integers(0, 4, 400))  # right ~78% of the time
    logits = np.eye(4)[guess] * 10.0 + rng.normal(0, 1, (400, 4))  # ... at ~100% confidence
    fold = np.arange(400) % 2
    probs, temps = crossval.calibrated_out_of_fold(logits, labels, fold)
    assert len(temps) == 2 and all(t > 1 for t in temps)
    assert np.allclose(probs.sum(1), 1)
    # fold 0's probabilities use the temperature fitted on fold 1 alone
    expected = torch.softmax(torch.from_numpy(logits[fold == 0]) / temps[0], 1).numpy()
    assert np.allclose(probs[fold == 0], expected)


def test_set_temperature_only_for_the_cross_validated_recipe(tmp_path):
    import dataclasses
    import json

    from model.core.checkpoint import export_weights
    from model.core.network import build_model

    cfg = recipe(val_by_subject=True, val_fraction=0.1, output_dir="runs/x", export_dir=str(tmp_path))
    export_weights(build_model(), tmp_path, cfg=dataclasses.asdict(cfg), temperature=0.7, data_fingerprint={},
                   selected={"epoch": 1}, half=False)
    folds = {k: v for k, v in dataclasses.asdict(recipe()).items() if k not in crossval.train_resume_free()}
    crossval.set_temperature(tmp_path / "model_config.json", 1.8, {"folds": 5, "seed": 0, "recipe": folds})
    config = json.loads((tmp_path / "model_config.json").read_text())
    assert config["temperature"] == 1.8 and config["temperature_source"]["method"] == "crossval out-of-fold"
    with pytest.raises(ValueError, match="image_size: 32 vs 64"):
        crossval.set_temperature(tmp_path / "model_config.json", 1.8, {"recipe": {**folds, "image_size": 64}})


def test_floors_and_paired_differences_in_the_out_of_fold_figures():
    data, groups = tiny_set()
    labels = data.labels.numpy()
    fold = crossval.folds_by_subject(labels, groups, 2, seed=0)
    logits = np.eye(4)[labels] * 3.0
    reference = np.full((len(labels), 4), 0.25)
    result, _ = crossval.evaluate_out_of_fold(data, groups, ["train"] * len(data), fold, logits, None, 20,
                                              positions=np.tile(np.arange(3), len(labels) // 3),
                                              reference=reference)
    assert {"lookup", "pca", "pca_by_position", "reference"} <= set(result["paired"])
    assert result["paired"]["reference"]["auc_difference"] == pytest.approx(0.5)  # perfect vs coin
    metrics = crossval.tracking_metrics(result)
    assert metrics["network_subject_any_dementia_auc"] == 1.0 and "paired_pca_auc_lo" in metrics


def test_training_by_subject_samples_and_selects_on_inner_subject_auc(tmp_path):
    data, groups = tiny_set(n_per_class=(4, 2, 6, 4), slices=6)
    cfg = recipe(epochs=2, slices_per_subject=2, select_on="subject_auc", mixup=0.2, ordinal=0.5, dropout=0.2,
                 mri_augment=True, augment=True)
    fold, logits, infos = crossval.cross_validate(data, groups, cfg, 2, 0, 0.3, tmp_path)
    assert np.isfinite(logits).all()
    log = pd.read_csv(tmp_path / "fold0" / "log.csv")
    assert {"val_subject_auc", "val_subject_bacc"} <= set(log.columns)
    inner = np.load(tmp_path / "fold0" / "inner.npz")
    assert len(inner["index"]) == len(inner["logits"]) > 0
    assert set(groups[inner["index"]]).isdisjoint(groups[fold == 0])  # inner subjects come from training folds


def test_a_recipe_with_select_last_keeps_every_fold_at_its_last_epoch(tmp_path):
    """A fixed epoch count: no fold picks an early epoch on its few inner subjects."""
    data, groups = tiny_set(n_per_class=(4, 2, 6, 4), slices=4)
    _, _, infos = crossval.cross_validate(data, groups, recipe(epochs=3, select="last"), 2, 0, 0.3, tmp_path / "last")
    assert [i["selected_epoch"] for i in infos] == [3, 3]
    assert all((tmp_path / "last" / f"fold{k}" / "inner.npz").is_file() for k in (0, 1))
    assert json.loads((tmp_path / "last" / "plan.json").read_text())["recipe"]["select"] == "last"
    assert "select" not in crossval.plan_recipe(recipe())  # plans of runs that selected are written as before
