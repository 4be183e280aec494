"""Recipes compared on the folds they share, when one ran on some folds only (e.g. a costly input size).

    python -m analysis.partial_folds --run r4=runs/screen/r4 --run r5=runs/screen/r5 --folds 0 1 \
        [--reference assets/crossval_predictions.csv] [--out runs/screen/r5_vs_r4.json]

Every run is scored on the same slices (those of `--folds`, the subjects held out there) from its raw out-of-fold
logits in the same way: each fold's temperature fitted on the other listed folds' logits (`calibrated_out_of_fold`:
no slice calibrates itself), a subject's probabilities the mean of its slices'. The first run is the baseline;
every other is compared with it, paired over the subjects (`paired_difference`). `--reference` adds a finished
run's per-slice table (e.g. the shipped recipe's) restricted to the same subjects; its probabilities were calibrated
over all of its folds, so it is shown beside the others, not compared. The rule that judges the figures is written
in docs/experiments.md before the run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from analysis.ensembles import parse_pairs
from analysis.folds import NON, add_common_args, emit, fold_logits, subject_figures
from model.core.constants import SUBJECTS_PATH
from model.core.prediction import subject_level
from model.training.crossval import calibrated_out_of_fold, load_everything
from model.training.floors import paired_difference, reference_subject_probs


def compare(logits: dict[str, np.ndarray], fold: np.ndarray, labels: np.ndarray, groups: np.ndarray,
            n_bootstrap: int = 2000) -> dict:
    """logits: run name -> (N, C) out-of-fold logits on the slices where fold >= 0 (NaN elsewhere allowed).
    Figures of each run on those slices' subjects, per fold and pooled, and each run minus the first, paired."""
    keep = fold >= 0
    by_run = {}
    for name, z in logits.items():
        if np.isnan(z[keep]).any():
            raise ValueError(f"{name} has no out-of-fold logits for some slices of folds {sorted(set(fold[keep]))}")
        probs, temps = calibrated_out_of_fold(z[keep], labels[keep], fold[keep])
        by_run[name] = (probs, temps)
    baseline = next(iter(logits))
    out = {"folds": sorted(int(k) for k in set(fold[keep])), "runs": {}, "paired": {}}
    for name, (probs, temps) in by_run.items():
        ids, y, subject = subject_level(probs, labels[keep], groups[keep])
        per_fold = {}
        for k in out["folds"]:
            in_k = fold[keep] == k
            _, yk, pk = subject_level(probs[in_k], labels[keep][in_k], groups[keep][in_k])
            per_fold[k] = subject_figures(yk, pk)["auc"] if 0 < (yk != NON).sum() < len(yk) else None
        out["runs"][name] = {"subjects": int(len(ids)), **subject_figures(y, subject), "auc_per_fold": per_fold,
                             "temperatures": [float(t) for t in temps]}
        if name != baseline:
            _, _, base = subject_level(by_run[baseline][0], labels[keep], groups[keep])
            out["paired"][f"{name} - {baseline}"] = paired_difference(y, subject, base, n_bootstrap=n_bootstrap)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.partial_folds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", default=[], required=True,
                        help="NAME=DIR of a crossval --output-dir; the first is the baseline (repeatable)")
    parser.add_argument("--folds", type=int, nargs="+", required=True, help="the outer folds every run has")
    parser.add_argument("--reference", type=Path, default=None,
                        help="a finished run's per-slice out-of-fold table, shown on the same subjects")
    add_common_args(parser)
    args = parser.parse_args(argv)
    runs = parse_pairs(args.run, "--run")
    data, groups, splits = load_everything(args.data_dir, SUBJECTS_PATH)
    labels = data.labels.numpy()
    logits, folds = {}, []
    for name, run_dir in runs.items():
        logits[name], fold = fold_logits(Path(run_dir), len(labels), args.folds)
        folds.append(fold)
    if any(not np.array_equal(f, folds[0]) for f in folds):
        raise SystemExit("error: the runs hold different slices in these folds (other fold seeds, or unfinished)")
    result = compare(logits, folds[0], labels, groups, args.bootstrap)
    if args.reference is not None:
        keep = folds[0] >= 0
        subjects = sorted(set(groups[keep]))
        probs = reference_subject_probs(args.reference, splits, data.ids, groups)
        ids, y, subject = subject_level(probs[keep], labels[keep], groups[keep])
        assert list(ids) == subjects
        result["reference"] = {"table": str(args.reference), **subject_figures(y, subject)}
    return emit(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
