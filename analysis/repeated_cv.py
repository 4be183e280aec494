"""Two recipes compared over repeated cross-validation: the same fold seeds, paired over subjects (C1, issue 18).

    python -m analysis.repeated_cv \
        --a r5=docs/runs/r5,docs/runs/c1/r5_s1,docs/runs/c1/r5_s2 \
        --b shipped=docs/runs/c1/ship_s0.csv,docs/runs/c1/ship_s1,docs/runs/c1/ship_s2 \
        --new 1 2 [--floor pca pca_by_position] [--partial] [--out c1.json]

Repeat i pairs the i-th source of --a with the i-th of --b (the same fold seed). A source is a cross-validation
folder (`fold<k>/oof.npz` logits: each fold's temperature fitted on the other folds', as `model.training.crossval`
does) or a per-slice out-of-fold table (`p_<class>` columns, as `--predictions-out` writes; used as it is). A subject
is the mean of its slices' probabilities. Per repeat: any-dementia AUC and 4-stage balanced accuracy of each recipe;
then the mean over the repeats, and a minus b with a 95% interval from a paired bootstrap over subjects in which one
resample of subjects is applied to every repeat and the figures are averaged over the repeats. `--new` names the
repeats (0-based) that are also summarised alone. Without `--partial` every source must cover every slice; with it,
a repeat counts only the subjects both of its sources have finished, and the output says "partial".
`--floor NAME` also compares a with a pixel floor (lookup, pca, pca_by_position), computed by the product's own code
(`model.training.floors.floor_probabilities`) on each repeat's folds as a's source assigns them, the same way.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from analysis.folds import NON, add_common_args, emit, fold_logits
from model.core.prediction import subject_level
from model.qualify.evaluate import balanced_accuracy, binary_auc
from model.core.recipe import FLOOR_NAMES
from model.training.crossval import calibrated_out_of_fold, load_everything, slice_positions
from model.training.floors import floor_probabilities, reference_folds, reference_subject_probs

PIXEL_FLOORS = tuple(FLOOR_NAMES)  # the floors scored on slices (the clinical one needs the subject table)


def parse_recipe(text: str) -> tuple[str, list[Path]]:
    name, _, sources = text.partition("=")
    if not name or not sources:
        raise argparse.ArgumentTypeError(f"expected NAME=SOURCE,SOURCE,..., got {text!r}")
    return name, [Path(s) for s in sources.split(",")]


def slice_probabilities(source: Path, labels: np.ndarray, splits: list[str], ids, groups: np.ndarray
                        ) -> np.ndarray:
    """Calibrated out-of-fold slice probabilities (N, C) of one source; NaN rows for slices it has not covered."""
    if source.suffix == ".csv":
        return reference_subject_probs(source, splits, ids, groups)
    logits, fold = fold_logits(source, len(labels))
    probs = np.full(logits.shape, np.nan)
    done = fold >= 0
    if done.any():
        probs[done] = calibrated_out_of_fold(logits[done], labels[done], fold[done])[0]
    return probs


def source_folds(source: Path, n_slices: int, splits: list[str], ids) -> np.ndarray:
    """The outer fold (N,) of every slice in a source, -1 where it has not covered the slice."""
    if source.suffix == ".csv":
        return reference_folds(source, splits, ids)
    return fold_logits(source, n_slices)[1]


def subject_table(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict[str, tuple[int, np.ndarray]]:
    """{subject: (label, mean probabilities)} over the slices the source covered."""
    done = ~np.isnan(probs).any(1)
    ids, subject_labels, mean = subject_level(probs[done], labels[done], groups[done])
    return {s: (int(y), p) for s, y, p in zip(ids, subject_labels, mean)}


def figures(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """(AUC, balanced accuracy) of subjects repeated by `weights` (a bootstrap's counts), or None without both
    classes of the any-dementia question."""
    index = np.repeat(np.arange(len(labels)), weights)
    demented = labels[index] != NON
    if demented.all() or not demented.any():
        return None
    return np.array([binary_auc(demented, 1 - probs[index, NON]), balanced_accuracy(labels[index],
                                                                                    probs[index].argmax(1))])


def compare(repeats: list[dict], n_bootstrap: int, subsets: dict[str, list[int]], seed: int = 0) -> dict:
    """repeats: per repeat {"subjects", "labels", "a", "b"} (row i the same subject). Point figures per repeat and
    their means; a - b averaged over the repeats of each subset, with the shared-resample bootstrap interval."""
    universe = sorted(set().union(*(r["subjects"] for r in repeats)))
    position = [{s: i for i, s in enumerate(r["subjects"])} for r in repeats]
    rows = [np.array([pos.get(s, -1) for s in universe]) for pos in position]  # universe -> repeat row, or -1

    def differences(counts: np.ndarray) -> np.ndarray | None:
        out = []
        for r, row in zip(repeats, rows):
            weights = np.zeros(len(r["subjects"]), int)
            np.add.at(weights, row[row >= 0], counts[row >= 0])
            fa, fb = figures(r["labels"], r["a"], weights), figures(r["labels"], r["b"], weights)
            if fa is None or fb is None:
                return None
            out.append(np.concatenate([fa, fb, fa - fb]))
        return np.array(out)  # (repeats, 6): a AUC, a bacc, b AUC, b bacc, AUC diff, bacc diff

    point = differences(np.ones(len(universe), int))
    rng = np.random.default_rng(seed)
    draws = [d for d in (differences(np.bincount(rng.integers(0, len(universe), len(universe)),
                                                 minlength=len(universe))) for _ in range(n_bootstrap))
             if d is not None]
    draws = np.array(draws)  # (B, repeats, 6)
    result = {"per_repeat": [{"subjects": len(r["subjects"]), "a_auc": p[0], "a_bacc": p[1], "b_auc": p[2],
                              "b_bacc": p[3], "auc_difference": p[4], "bacc_difference": p[5]}
                             for r, p in zip(repeats, point.tolist())], "resamples": int(len(draws))}
    for name, which in subsets.items():
        mean_point, mean_draws = point[which].mean(0), draws[:, which].mean(1)
        low, high = np.percentile(mean_draws, [2.5, 97.5], axis=0)
        result[name] = {"repeats": which, "a_auc": mean_point[0], "a_bacc": mean_point[1], "b_auc": mean_point[2],
                        "b_bacc": mean_point[3],
                        "auc_difference": mean_point[4], "auc_difference_ci95": [low[4], high[4]],
                        "bacc_difference": mean_point[5], "bacc_difference_ci95": [low[5], high[5]]}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=parse_recipe, required=True, help="NAME=SOURCE,SOURCE,... (one per fold seed)")
    parser.add_argument("--b", type=parse_recipe, required=True, help="the baseline, the same way")
    parser.add_argument("--new", type=int, nargs="*", default=[], help="repeats also summarised alone (0-based)")
    parser.add_argument("--floor", nargs="*", default=[], choices=PIXEL_FLOORS,
                        help="also compare a with these floors on a's folds (default: none)")
    parser.add_argument("--partial", action="store_true",
                        help="count the subjects both sources of a repeat have finished (default: all are needed)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    (name_a, sources_a), (name_b, sources_b) = args.a, args.b
    if len(sources_a) != len(sources_b):
        parser.error("--a and --b need one source per repeat each, as many for both")
    data, groups, splits = load_everything(args.data_dir)
    labels = data.labels.numpy()
    positions = slice_positions(splits, data.ids) if "pca_by_position" in args.floor else None
    if "pca_by_position" in args.floor and positions is None:
        parser.error("--floor pca_by_position needs the slice positions of assets/subjects.csv")
    repeats, coverage, floor_repeats = [], [], {name: [] for name in args.floor}
    for source_a, source_b in zip(sources_a, sources_b):
        a = subject_table(slice_probabilities(source_a, labels, splits, data.ids, groups), labels, groups)
        b = subject_table(slice_probabilities(source_b, labels, splits, data.ids, groups), labels, groups)
        both = sorted(set(a) & set(b))
        coverage.append(len(both))
        if not args.partial and len(both) < len(set(groups)):
            parser.exit(2, f"error: {source_a} and {source_b} cover {len(both)} of {len(set(groups))} subjects; "
                           "finish their folds or pass --partial\n")
        if not both:
            continue
        repeats.append({"subjects": both, "labels": np.array([a[s][0] for s in both]),
                        "a": np.array([a[s][1] for s in both]), "b": np.array([b[s][1] for s in both])})
        if args.floor:
            fold = source_folds(source_a, len(labels), splits, data.ids)
            if (fold < 0).any():
                parser.exit(2, f"error: a floor is fitted on every fold of {source_a}; finish its folds first\n")
            for name, probs in floor_probabilities(data, labels, fold, positions, names=args.floor).items():
                floor = subject_table(probs, labels, groups)
                floor_repeats[name].append({**repeats[-1], "b": np.array([floor[s][1] for s in both])})
    subsets = {"all_repeats": list(range(len(repeats)))}
    new = [i for i in args.new if i < len(repeats)]
    if new:
        subsets["new_repeats"] = new
    result = compare(repeats, args.bootstrap, subsets)
    if args.floor:
        result["floors"] = {name: compare(rows, args.bootstrap, subsets) for name, rows in floor_repeats.items()}
    return emit({"a": name_a, "b": name_b, "sources_a": [str(s) for s in sources_a],
                 "sources_b": [str(s) for s in sources_b], "subjects_per_repeat": coverage,
                 "partial": bool(args.partial and min(coverage) < len(set(groups))), **result}, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
