"""The floors every recipe must beat, scored on the network's own folds, and the figures that compare them.

A floor is a method with no deep learning whose out-of-fold probabilities come from the same outer folds as the
network's (`model.training.crossval`): the raw-pixel lookup (each slice gets the stage of its nearest slice in the
other folds), PCA(50) + logistic regression on 64 px slices, one PCA(20) + logistic regression per slice position, and
a clinical logistic regression on age, sex, eTIV and nWBV (never MMSE or CDR, which define the stage). Every floor is
compared with the network by subject, paired over the same subjects (`paired_difference`); `add_floors` brings a
figures file written before a floor existed up to date from its own out-of-fold table.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model.core.constants import CLASS_NAMES, NUM_CLASSES
from model.core.dataset import SliceSet
from model.core.prediction import subject_level
from model.core.recipe import FLOOR_NAMES
from model.qualify.evaluate import balanced_accuracy, binary_auc, compute_metrics
from model.qualify.neighbours import nearest_neighbours

CLINICAL_FEATURES = ("age", "sex", "etiv", "nwbv")  # never MMSE or CDR: they define the label


def lookup_probabilities(images: torch.Tensor, labels: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """One-hot (N, C) of the label of each slice's nearest slice (raw pixels) among the other folds' slices."""
    out = np.zeros((len(labels), NUM_CLASSES))
    for k in np.unique(fold):
        held, ref = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        index, _ = nearest_neighbours(images[ref], images[held], k=1)
        out[held, labels[ref][index[:, 0]]] = 1.0
    return out


def clinical_probabilities(subjects: pd.DataFrame, subject_fold: pd.Series) -> pd.DataFrame:
    """Out-of-fold class probabilities per subject from a logistic regression on CLINICAL_FEATURES.

    subjects: the subject table (index subject; columns label and the features); subjects without a clinical
    row are left out. Returns a frame indexed by subject with one column per class.
    """
    known = subjects.dropna(subset=["age", "etiv", "nwbv", "sex"]).copy()
    x = known[list(CLINICAL_FEATURES)].assign(sex=(known.sex == "F").astype(float)).to_numpy(float)
    y = known.label.map(CLASS_NAMES.index).to_numpy()
    probs = logistic_out_of_fold(x, y, subject_fold.loc[known.index].to_numpy())
    return pd.DataFrame(probs, index=known.index, columns=list(CLASS_NAMES))


def logistic_out_of_fold(x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Class probabilities (S, C) of a standardised, class-balanced logistic regression, each fold's rows
    predicted by a model fitted on the other folds' rows (a stage absent from those gets 0)."""
    out = np.zeros((len(y), len(CLASS_NAMES)))
    for k in np.unique(folds):
        fit, held = folds != k, folds == k
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
        model.fit(x[fit], y[fit])
        out[np.ix_(np.flatnonzero(held), model.classes_)] = model.predict_proba(x[held])
    return out


def pca_probabilities(images: torch.Tensor, labels: np.ndarray, fold: np.ndarray, *, size: int = 64,
                      components: int = 50, positions: np.ndarray | None = None,
                      fit_on: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Out-of-fold class probabilities (N, C) of a linear floor: slices downsampled to `size` px, PCA to
    `components`, standardised, then a class-balanced logistic regression, fitted on the other folds' slices.

    positions: (N,) slice position within its subject's stack (0..31, `assets/subjects.csv`); given, one
    model is fitted per position (the per-position floor). A floor that the network must beat by subject.
    fit_on: {fold: mask (N,)} of the slices fold k's model may be fitted on (default: every other fold's slices),
    e.g. a subset of the training subjects (`analysis.learning_curve`).
    """
    x = torch.nn.functional.interpolate(images.float() / 255.0, size=(size, size), mode="bilinear",
                                        antialias=True, align_corners=False).flatten(1).numpy()
    out = np.zeros((len(labels), NUM_CLASSES))
    strata = np.zeros(len(labels), int) if positions is None else np.asarray(positions)
    for k in np.unique(fold):
        for p in np.unique(strata):
            fit = (fold != k) if fit_on is None else fit_on[k]
            train, held = fit & (strata == p), (fold == k) & (strata == p)
            if not held.any():
                continue
            model = make_pipeline(PCA(n_components=min(components, int(train.sum()) - 1), random_state=0),
                                  StandardScaler(),
                                  LogisticRegression(max_iter=3000, class_weight="balanced"))
            model.fit(x[train], labels[train])
            out[np.ix_(np.flatnonzero(held), model.classes_)] = model.predict_proba(x[held])
    return out


def paired_difference(labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, n_bootstrap: int = 2000,
                      seed: int = 0) -> dict:
    """Method a minus method b on the same subjects: any-dementia AUC and balanced accuracy, each with a 95%
    interval from one shared bootstrap over subjects (the pairing removes the subjects' own difficulty).

    labels (S,), probs_a and probs_b (S, C), row i the same subject in all three.
    """
    non = CLASS_NAMES.index("Non_Demented")
    demented = labels != non

    def figures(idx):
        d = demented[idx]
        if d.all() or not d.any():
            return None
        return np.array([binary_auc(d, 1 - probs_a[idx, non]) - binary_auc(d, 1 - probs_b[idx, non]),
                         balanced_accuracy(labels[idx], probs_a[idx].argmax(1))
                         - balanced_accuracy(labels[idx], probs_b[idx].argmax(1))])

    point = figures(np.arange(len(labels)))
    rng = np.random.default_rng(seed)
    draws = [f for f in (figures(rng.integers(0, len(labels), len(labels))) for _ in range(n_bootstrap))
             if f is not None]
    low, high = np.percentile(np.array(draws), [2.5, 97.5], axis=0)
    return {"subjects": int(len(labels)),
            "auc_difference": float(point[0]), "auc_difference_ci95": [float(low[0]), float(high[0])],
            "bacc_difference": float(point[1]), "bacc_difference_ci95": [float(low[1]), float(high[1])]}


def reference_subject_probs(path: Path, splits: list[str], ids, groups: np.ndarray) -> np.ndarray:
    """Slice probabilities (N, C) of an earlier run's out-of-fold table (`--compare-to`), in this data's row
    order, matched by (split, id); raises if a slice is missing (the run covered other data)."""
    table = pd.read_csv(path).set_index(["split", "id"])
    keys = pd.MultiIndex.from_arrays([splits, list(ids)])
    missing = keys.difference(table.index)
    if len(missing):
        raise ValueError(f"{path} lacks {len(missing)} of these slices (e.g. {missing[0]}): another data set")
    return table.loc[keys, [f"p_{c}" for c in CLASS_NAMES]].to_numpy(float)


def reference_folds(path: Path, splits: list[str], ids) -> np.ndarray:
    """The outer fold (N,) of every slice of an out-of-fold table, in this data's row order; -1 where the table
    lacks the slice."""
    table = pd.read_csv(path).set_index(["split", "id"])
    return table["fold"].reindex(pd.MultiIndex.from_arrays([splits, list(ids)])).fillna(-1).to_numpy(int)


def level_figures(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_bootstrap: int) -> dict:
    """{"slice": figures over slices (bootstrap by subject), "subject": figures over subject means}."""
    _, subject_labels, subject_probs = subject_level(probs, labels, groups)
    return {"slice": compute_metrics(labels, probs, n_bootstrap=n_bootstrap, groups=groups),
            "subject": compute_metrics(subject_labels, subject_probs, n_bootstrap=n_bootstrap)}


def summary_row(name: str, level: dict) -> dict:
    """The headline figures of one method at one level, with their 95% intervals."""
    ci = level.get("ci95", {})
    row = {"method": name, "n": level["n"]}
    for key in ("any_dementia_auc", "balanced_accuracy", "three_class_balanced_accuracy", "three_class_auc",
                "accuracy", "macro_f1", "ece"):
        row[key] = level.get(key)
        if key in ci:
            row[f"{key}_ci95"] = ci[key]
    row["recalled"] = {name: e["recalled"] for name, e in level["per_class"].items()}
    return row


FLOORS = (*FLOOR_NAMES, "clinical")  # every floor, in the order tables show them (names: model.core.recipe)


def floor_probabilities(data: SliceSet, labels: np.ndarray, fold: np.ndarray,
                        positions: np.ndarray | None, names=("lookup", "pca", "pca_by_position")
                        ) -> dict[str, np.ndarray]:
    """Out-of-fold slice probabilities (N, C) of the pixel floors `names` on these folds (the per-position
    floor only when the positions are known)."""
    make = {"lookup": lambda: lookup_probabilities(data.images, labels, fold),
            "pca": lambda: pca_probabilities(data.images, labels, fold, components=50),
            "pca_by_position": lambda: pca_probabilities(data.images, labels, fold, components=20,
                                                         positions=positions)}
    return {name: make[name]() for name in names if name != "pca_by_position" or positions is not None}


def floor_figures(data: SliceSet, groups: np.ndarray, fold: np.ndarray, probs: np.ndarray,
                  subject_table: pd.DataFrame | None, n_bootstrap: int, positions: np.ndarray | None = None,
                  reference: np.ndarray | None = None) -> dict:
    """Every floor's figures on these folds, and the network's paired difference from each, by subject.

    probs: the network's calibrated out-of-fold slice probabilities (N, C). Returns {floor: level figures, ...,
    "clinical": ..., "network_on_clinical_subjects": ..., "paired": {floor: network - floor}}; the clinical entries
    only with a subject table that has the clinical columns."""
    labels = data.labels.numpy()
    floors = floor_probabilities(data, labels, fold, positions)
    if reference is not None:
        floors["reference"] = reference
    result = {name: without_curves(level_figures(p, labels, groups, n_bootstrap)) for name, p in floors.items()}
    ids, subject_labels, subject_probs = subject_level(probs, labels, groups)
    result["paired"] = {name: paired_difference(subject_labels, subject_probs, subject_level(p, labels, groups)[2],
                                                n_bootstrap=max(n_bootstrap, 200))
                        for name, p in floors.items()}
    if subject_table is not None and "age" in subject_table.columns:
        table = subject_table.set_index("subject")
        subject_fold = pd.Series(fold, index=groups).groupby(level=0).first()
        clinical = clinical_probabilities(table, subject_fold)
        y = clinical.index.map(table.label).map(CLASS_NAMES.index).to_numpy()
        on_same = np.isin(ids, clinical.index)
        result["clinical"] = {"subject": compute_metrics(y, clinical.to_numpy(), n_bootstrap=n_bootstrap),
                              "features": list(CLINICAL_FEATURES), "subjects": int(len(clinical))}
        result["network_on_clinical_subjects"] = {
            "subject": compute_metrics(subject_labels[on_same], subject_probs[on_same], n_bootstrap=n_bootstrap)}
        result["paired"]["clinical"] = paired_difference(
            subject_labels[on_same], subject_probs[on_same], clinical.loc[ids[on_same]].to_numpy(),
            n_bootstrap=max(n_bootstrap, 200))
    return result


def without_curves(figures: dict) -> dict:
    """Level figures without the per-class ROC and PR curves: only the network's are drawn, and a floor's
    continuous probabilities give curves of thousands of points per class."""
    for level in figures.values():
        for entry in level.get("per_class", {}).values():
            entry.pop("roc_curve", None)
            entry.pop("pr_curve", None)
    return figures


def add_floors(figures_path: Path, predictions_path: Path, data: SliceSet, groups: np.ndarray, splits: list[str],
               subject_table: pd.DataFrame | None, n_bootstrap: int, positions: np.ndarray | None) -> dict:
    """Bring a shipped figures file (`--out`) up to date with today's floors: score every floor on the folds of
    its out-of-fold table (`--predictions-out`), with the network's paired difference from each, and rewrite the
    file with them (the network's own figures, calibration and plan are kept as they are)."""
    result = json.loads(Path(figures_path).read_text())
    fold = reference_folds(predictions_path, splits, data.ids)
    if (fold < 0).any():
        raise ValueError(f"{predictions_path} lacks {int((fold < 0).sum())} of these slices: another data set")
    probs = reference_subject_probs(predictions_path, splits, data.ids, groups)
    result.update(floor_figures(data, groups, fold, probs, subject_table, n_bootstrap, positions))
    result["summary"] = summary(result)
    Path(figures_path).write_text(json.dumps(result, indent=1) + "\n")
    return result


def summary(result: dict) -> dict:
    """The headline rows of every method at both levels (`summary_row`)."""
    return {level: [summary_row(name, result[name][level]) for name in
                    ("network", *FLOORS, "reference", "network_on_clinical_subjects")
                    if level in result.get(name, {})] for level in ("slice", "subject")}


def error_confounds(subjects: pd.DataFrame, columns=("age", "nwbv")) -> dict:
    """Do the network's subject-level mistakes follow age or atrophy? For each clinical column: the mean in
    subjects staged right and wrong, and the ROC AUC of the column at telling the wrong ones apart (0.5: no
    relation), over all subjects with a value and within each true stage."""
    def summary(rows: pd.DataFrame, column: str) -> dict:
        known = rows[rows[column].notna()]
        wrong = ~known.correct.astype(bool)
        out = {"subjects": int(len(known)), "wrong": int(wrong.sum()),
               "mean_right": float(known.loc[~wrong, column].mean()) if (~wrong).any() else None,
               "mean_wrong": float(known.loc[wrong, column].mean()) if wrong.any() else None}
        out["auc_wrong"] = float(roc_auc_score(wrong, known[column])) if 0 < wrong.sum() < len(known) else None
        return out

    return {column: {"all": summary(subjects, column),
                     **{name: summary(subjects[subjects.true_label == name], column) for name in CLASS_NAMES}}
            for column in columns if column in subjects}
