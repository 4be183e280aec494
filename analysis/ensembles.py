"""Do recipes (or a recipe and a floor) read different things? Ensembles of out-of-fold predictions on the same folds.

    python -m analysis.ensembles --table shipped=docs/runs/c1/ship_s0.csv --table r1=runs/screen/r1_pred.csv \
        --ensemble E1=shipped+r1 --ensemble E2=shipped+pca_by_position --out runs/ensembles.json

Every table is a cross-validation's per-slice out-of-fold table (`alzmri-train crossval --predictions-out`) on the same
folds. For each subject every member's prediction then comes from a network or floor that never saw it, so the mean
of the members' slice probabilities is itself an out-of-fold prediction. The floors (`lookup`, `pca`,
`pca_by_position`) are computed by the product's own code (`model.training.floors.floor_probabilities`) on those
folds and can be members too. Each ensemble is scored by subject (mean over a subject's slices) and compared, paired
over subjects, with the first table and with every floor. The rule that judges them is written in
docs/experiments.md before a run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.folds import add_common_args, emit, subject_figures
from model.core.constants import SUBJECTS_PATH
from model.core.prediction import subject_level
from model.training.crossval import load_everything, slice_positions
from model.training.floors import floor_probabilities, paired_difference, reference_subject_probs

def folds_of(path: Path, splits: list[str], ids) -> np.ndarray:
    """Each slice's outer fold, as a table records it, in this data's row order."""
    table = pd.read_csv(path).set_index(["split", "id"])
    return table.reindex(pd.MultiIndex.from_arrays([splits, list(ids)]))["fold"].to_numpy()


def parse_pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise SystemExit(f"error: {what} must be NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def score(members: dict[str, np.ndarray], ensembles: dict[str, list[str]], baseline: str, floors: list[str],
          labels: np.ndarray, groups: np.ndarray, n_bootstrap: int) -> dict:
    """Figures of every member and ensemble, and each ensemble's paired differences against `baseline` and each
    floor. members: name -> slice probabilities (N, C) in one row order; ensembles: name -> member names."""
    def by_subject(p):
        return subject_level(p, labels, groups)[1:]

    y, _ = by_subject(members[baseline])
    out = {"members": {name: subject_figures(y, by_subject(p)[1]) for name, p in members.items()}, "ensembles": {}}
    for name, parts in ensembles.items():
        mean = np.mean([members[m] for m in parts], axis=0)
        subject_probs = by_subject(mean)[1]
        out["ensembles"][name] = {
            "members": parts, **subject_figures(y, subject_probs),
            "paired": {other: paired_difference(y, subject_probs, by_subject(members[other])[1],
                                                n_bootstrap=n_bootstrap)
                       for other in [baseline, *floors]}}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.ensembles", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="append", default=[], required=True,
                        help="NAME=PATH of an out-of-fold table; the first is the baseline (repeatable)")
    parser.add_argument("--ensemble", action="append", default=[], required=True,
                        help="NAME=A+B[+C] of tables or floors (lookup, pca, pca_by_position) (repeatable)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    tables = parse_pairs(args.table, "--table")
    ensembles = {k: v.split("+") for k, v in parse_pairs(args.ensemble, "--ensemble").items()}

    data, groups, splits = load_everything(args.data_dir, SUBJECTS_PATH)
    labels = data.labels.numpy()
    baseline = next(iter(tables))
    fold = folds_of(Path(tables[baseline]), splits, data.ids)
    for name, path in tables.items():
        if not np.array_equal(folds_of(Path(path), splits, data.ids), fold):
            raise SystemExit(f"error: {name} ran on other folds than {baseline}; its ensemble would not be out of fold")
    members = {name: reference_subject_probs(Path(path), splits, data.ids, groups) for name, path in tables.items()}
    floors = floor_probabilities(data, labels, fold, slice_positions(splits, data.ids))
    members.update(floors)
    unknown = sorted({m for parts in ensembles.values() for m in parts} - set(members))
    if unknown:
        raise SystemExit(f"error: unknown members {unknown}; known: {sorted(members)}")
    return emit(score(members, ensembles, baseline, list(floors), labels, groups, args.bootstrap), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
