"""What the analyses of cross-validation runs share: a run's out-of-fold logits, subject figures, and the output.

A run is a `crossval --output-dir`: `plan.json` and, for each finished fold k, `fold<k>/oof.npz` (the held-out
slices' indices into `model.training.crossval.load_everything`'s order, and their logits).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from model.core.constants import CLASS_NAMES, default_data_dir

NON = CLASS_NAMES.index("Non_Demented")


def fold_logits(run_dir: Path, n_slices: int, folds=None) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C), fold (N,)) of a run: NaN logits and fold -1 for slices of folds not asked for or not
    finished. folds: which outer folds to read (default: every fold of the run's plan)."""
    if folds is None:
        folds = range(json.loads((Path(run_dir) / "plan.json").read_text())["folds"])
    logits, fold = np.full((n_slices, len(CLASS_NAMES)), np.nan), np.full(n_slices, -1)
    for k in folds:
        path = Path(run_dir) / f"fold{k}" / "oof.npz"
        if path.is_file():
            saved = np.load(path)
            logits[saved["index"]], fold[saved["index"]] = saved["logits"], k
    return logits, fold


def subject_figures(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Any-dementia AUC and 4-stage balanced accuracy of subject-level probabilities (S, C)."""
    return {"auc": float(roc_auc_score(labels != NON, 1 - probs[:, NON])),
            "balanced_accuracy": float(balanced_accuracy_score(labels, probs.argmax(1)))}


def emit(result: dict, out: Path | None) -> int:
    """Print the figures as JSON and write them to `out` when given; the exit status of a finished analysis."""
    text = json.dumps(result, indent=1)
    if out:
        Path(out).write_text(text + "\n")
    print(text)
    return 0


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The flags every fold analysis takes: where the data is, how many subject resamples, where the JSON goes."""
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="default: %(default)s")
    parser.add_argument("--bootstrap", type=int, default=2000, help="subject resamples (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here (default: print)")
