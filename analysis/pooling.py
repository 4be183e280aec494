"""Is a learned slice window better than the plain mean? `python -m analysis.pooling runs/screen/r1`.

Inside each fold, the window of slice positions [a, 31] (a in WINDOW_STARTS) whose mean gives the highest
subject AUC on the fold's *inner* subjects (the ones that chose the epoch; `inner.npz`) is chosen, and applied
to the fold's held-out subjects. The held-out figures of that pooling are compared with the plain mean by a
paired subject bootstrap. Nothing is chosen on out-of-fold figures.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from analysis.folds import NON, emit, fold_logits
from model.core.constants import SUBJECTS_PATH, default_data_dir
from model.core.prediction import subject_level
from model.training.crossval import calibrated_out_of_fold, load_everything, slice_positions
from model.training.floors import paired_difference

WINDOW_STARTS = (0, 8, 16, 22)


def window_auc(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray, positions: np.ndarray, start: int) -> float:
    keep = positions >= start
    _, y, p = subject_level(probs[keep], labels[keep], groups[keep])
    demented = y != NON
    return roc_auc_score(demented, 1 - p[:, NON]) if 0 < demented.sum() < len(y) else float("nan")


def choose_windows(run_dir: Path, labels, groups, positions, n_folds: int) -> dict[int, int]:
    """{fold: chosen window start}, each from that fold's inner subjects alone."""
    chosen = {}
    for k in range(n_folds):
        inner = np.load(run_dir / f"fold{k}" / "inner.npz")
        idx = inner["index"]
        probs = torch.softmax(torch.from_numpy(inner["logits"]).double(), 1).numpy()
        scores = {a: window_auc(probs, labels[idx], groups[idx], positions[idx], a) for a in WINDOW_STARTS}
        best = max(scores.values())
        chosen[k] = min(a for a, v in scores.items() if v == best)  # ties: the widest window
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.pooling", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished crossval --output-dir (fold*/oof.npz, inner.npz)")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here (default: print)")
    args = parser.parse_args(argv)
    plan = json.loads((args.run_dir / "plan.json").read_text())
    data, groups, splits = load_everything(args.data_dir, SUBJECTS_PATH)
    labels, positions = data.labels.numpy(), slice_positions(splits, data.ids)
    logits, fold = fold_logits(args.run_dir, len(labels))
    if np.isnan(logits).any():
        print("error: not every fold has finished", file=sys.stderr)
        return 2
    probs, _ = calibrated_out_of_fold(logits, labels, fold)
    chosen = choose_windows(args.run_dir, labels, groups, positions, plan["folds"])
    keep = np.array([positions[i] >= chosen[fold[i]] for i in range(len(labels))])
    ids, y, mean = subject_level(probs, labels, groups)
    ids_w, y_w, window = subject_level(probs[keep], labels[keep], groups[keep])
    assert list(ids) == list(ids_w)
    result = {"chosen_window_starts": chosen, "mean": float(roc_auc_score(y != NON, 1 - mean[:, NON])),
              "window": float(roc_auc_score(y != NON, 1 - window[:, NON])),
              "paired_window_minus_mean": paired_difference(y, window, mean, n_bootstrap=2000)}
    return emit(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
