"""How the pixel floors' new-subject AUC grows with the number of training subjects: is data the limit?

    python -m analysis.learning_curve [--fractions 0.25 0.5 0.75 1] [--repeats 5] [--out learning_curve.json]

The same 5 outer folds as every cross-validation (`folds_by_subject`, seed 0). For each fraction f, each fold's
model is fitted on a random f of that fold's training subjects (stratified by stage, every slice of a chosen
subject; `--repeats` draws for f < 1) and predicts the fold's held-out subjects, all of them, so every point is
scored on the same 200 subjects: subject any-dementia AUC (mean of slice probabilities) and 4-stage balanced
accuracy, pooled over the folds. The floors are those of `model.training.crossval`, fitted the same way:
PCA(50) + logistic regression on 64 px slices, and one PCA(20) + logistic regression per slice position
(`pca_probabilities` itself, told which slices each fold may fit on). Nothing
here is chosen from the figures; it answers one question for issue 18's closing note: how the floors' figures move
with the number of brains they learn from (at f = 1, about 160 subjects a fold, they are the shipped floors).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from analysis.folds import NON, emit, subject_figures
from model.core.constants import NUM_CLASSES, SUBJECTS_PATH, default_data_dir
from model.core.prediction import subject_level
from model.training.crossval import folds_by_subject, load_everything, slice_positions
from model.training.floors import pca_probabilities

FLOORS = {"pca": (50, False), "pca_by_position": (20, True)}  # name -> (components, one model per position)


def chosen_subjects(groups: np.ndarray, labels: np.ndarray, train: np.ndarray, fraction: float,
                    rng: np.random.Generator) -> np.ndarray:
    """A mask (N,) of the slices of a random `fraction` of the training subjects, drawn within each stage."""
    subjects = np.unique(groups[train])
    stage = {s: labels[groups == s][0] for s in subjects}
    keep = []
    for c in range(NUM_CLASSES):
        of_stage = np.array([s for s in subjects if stage[s] == c])
        if len(of_stage):
            n = max(1, int(round(fraction * len(of_stage))))
            keep += list(rng.choice(of_stage, size=n, replace=False))
    return train & np.isin(groups, keep)


def floor_out_of_fold(images, labels: np.ndarray, groups: np.ndarray, fold: np.ndarray, positions: np.ndarray,
                      components: int, by_position: bool, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Out-of-fold slice probabilities (N, C) of the floor (`pca_probabilities`), each fold fitted on `fraction` of
    its training subjects."""
    fit_on = {k: chosen_subjects(groups, labels, fold != k, fraction, rng) for k in np.unique(fold)}
    return pca_probabilities(images, labels, fold, components=components,
                             positions=positions if by_position else None, fit_on=fit_on)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=default_data_dir(), help="default: %(default)s")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0],
                        help="shares of each fold's training subjects (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="draws per fraction below 1 (default: %(default)s)")
    parser.add_argument("--folds", type=int, default=5, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="the folds' seed, as every run's (default: %(default)s)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here (default: print)")
    args = parser.parse_args(argv)
    data, groups, splits = load_everything(args.data_dir, SUBJECTS_PATH)
    labels = data.labels.numpy()
    fold = folds_by_subject(labels, groups, args.folds, args.seed)
    positions = slice_positions(splits, data.ids, SUBJECTS_PATH)
    train_subjects = [len(np.unique(groups[fold != k])) for k in range(args.folds)]
    result = {"folds": args.folds, "seed": args.seed, "subjects_scored": int(len(np.unique(groups))),
              "training_subjects_per_fold_at_1": train_subjects, "curves": {}}
    for name, (components, by_position) in FLOORS.items():
        rows = []
        for fraction in args.fractions:
            draws = 1 if fraction >= 1 else args.repeats
            figures, started = [], time.perf_counter()
            for r in range(draws):
                rng = np.random.default_rng(1000 * r + int(fraction * 100))
                probs = floor_out_of_fold(data.images, labels, groups, fold, positions, components, by_position, fraction, rng)
                _, subject_labels, subject_probs = subject_level(probs, labels, groups)
                figures.append(subject_figures(subject_labels, subject_probs))
            auc = [f["auc"] for f in figures]
            bacc = [f["balanced_accuracy"] for f in figures]
            rows.append({"fraction": fraction, "training_subjects_per_fold": round(fraction * np.mean(train_subjects)),
                         "draws": draws, "auc_mean": float(np.mean(auc)), "auc_sd": float(np.std(auc)),
                         "auc_draws": auc, "balanced_accuracy_mean": float(np.mean(bacc)),
                         "seconds": round(time.perf_counter() - started, 1)})
            print(f"{name} f={fraction:.2f}: AUC {np.mean(auc):.3f} (sd {np.std(auc):.3f}), "
                  f"balanced accuracy {np.mean(bacc):.3f}", flush=True)
        result["curves"][name] = rows
    assert NON == 2  # the any-dementia score is 1 - p(Non_Demented), as everywhere
    return emit(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
