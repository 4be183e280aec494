"""Does a figure describe the shipped network? The facts about training recipes that runtime needs.

The cross-validation (`model.training.crossval`) measures a *recipe* on new subjects; its figures and its
temperature describe the shipped network only when that network was trained with the same recipe and carries
that temperature. The app, the API and the model card all ask `crossval_describes`; `recipe_differences`
says what differs when it does not.
"""
from __future__ import annotations

# Training options that do not change what is trained (where output goes, threads, device): a resumed run
# may change them, and two recipes that differ only in them are the same recipe.
RESUME_FREE = {"resume", "threads", "device", "output_dir", "export_dir", "export_half", "eval_batch_size", "data_dir",
               "select", "temperature"}
# Options that differ between the cross-validation's folds and the shipped network's run without making its
# figures another recipe's: how the validation split was drawn, the seed, the slice limit.
RECIPE_FREE = RESUME_FREE | {"val_fraction", "val_by_subject", "select", "temperature", "seed", "split_seed", "limit"}
# `temperature_source.method` of a model given the cross-validation's out-of-fold temperature
TEMPERATURE_FROM_CROSSVAL = "crossval out-of-fold"


def recipe_differences(trained: dict, folds: dict) -> list[str]:
    """What differs between a network's training config and the cross-validated recipe ('option: a vs b'),
    leaving out where output went, the validation split and the seed: [] when the figures apply to it."""
    return [f"{k}: {trained.get(k)} vs {folds[k]}" for k in sorted(folds)
            if k not in RECIPE_FREE and trained.get(k) != folds[k]]


def temperature_from_crossval(config: dict) -> bool:
    """Whether a model config's temperature was fitted on the cross-validation's out-of-fold logits."""
    return (config or {}).get("temperature_source", {}).get("method") == TEMPERATURE_FROM_CROSSVAL


def crossval_describes(config: dict | None, crossval: dict | None) -> bool:
    """Whether the cross-validation's new-subject figures are this network's: trained with the cross-validated
    recipe and carrying its out-of-fold temperature (`alzmri-train crossval --calibrate` sets both, checked)."""
    if not config or not crossval:
        return False
    same = not recipe_differences(config.get("train_config", {}), crossval.get("plan", {}).get("recipe", {}))
    temperature = crossval.get("calibration", {}).get("temperature")
    return same and temperature_from_crossval(config) and (temperature is None or config.get("temperature") == temperature)


# The pixel floors every cross-validation scores on the network's own folds (`model.training.floors`), named once
FLOOR_NAMES = {"lookup": "raw-pixel lookup (no learning)",
               "pca": "PCA(50) + logistic regression on 64 px pixels",
               "pca_by_position": "PCA(20) + logistic regression per slice position"}


def floors_of(crossval: dict | None) -> list[dict]:
    """The floors a cross-validation scored, by subject, highest AUC first, each with the network's paired
    difference from it: [{"key", "name", "n", "any_dementia_auc", "balanced_accuracy" (each with "<key>_ci95"),
    "auc_difference", "auc_difference_ci95", "bacc_difference", "bacc_difference_ci95"}]. A difference is None
    where the figures file has no pairing (one from before the floors were paired)."""
    rows = []
    for key, name in FLOOR_NAMES.items():
        entry = (crossval or {}).get(key, {}).get("subject")
        if not entry:
            continue
        ci, paired = entry.get("ci95", {}), (crossval.get("paired") or {}).get(key, {})
        rows.append({"key": key, "name": name, "n": entry.get("n"),
                     **{k: entry.get(k) for k in ("any_dementia_auc", "balanced_accuracy")},
                     **{f"{k}_ci95": ci.get(k) for k in ("any_dementia_auc", "balanced_accuracy")},
                     **{k: paired.get(k) for k in ("auc_difference", "auc_difference_ci95", "bacc_difference",
                                                   "bacc_difference_ci95")}})
    return sorted(rows, key=lambda r: -(r["any_dementia_auc"] or 0))
