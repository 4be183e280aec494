"""F1: does age and sex beside the image model stage a new subject better than either alone? (issue 18)

    python -m analysis.fusion --image shipped=docs/runs/c1/ship_s0.csv --image r5=docs/runs/r5 \
        [--out docs/runs/fusion.json]

An image source is a cross-validation's per-slice out-of-fold table or its folder (as `analysis.repeated_cv` reads
them). A subject's image probabilities are the mean of its calibrated slice probabilities. On the subjects with age
and sex (`assets/subject_table.csv`), per outer fold of the source: a class-balanced logistic regression on the four
image log-probabilities plus age and sex (F1), and one on age and sex alone, each fitted on the other folds' subjects
and scored on the held-out fold. F1 is compared, paired over the same subjects, with the image model alone and with
age and sex alone (`model.training.floors.paired_difference`). The rule is in docs/experiments.md (2026-12-03).
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from analysis.folds import add_common_args, emit, subject_figures
from analysis.repeated_cv import parse_recipe, slice_probabilities, source_folds
from model.core.constants import SUBJECT_TABLE_PATH
from model.core.prediction import subject_level
from model.training.crossval import load_everything
from model.training.floors import logistic_out_of_fold, paired_difference

PARTS = ("age", "sex")  # what a user may give with a scan; never MMSE or CDR, which define the stage


def fuse(image: np.ndarray, clinical: np.ndarray, y: np.ndarray, folds: np.ndarray, n_bootstrap: int) -> dict:
    """image (S, C) subject probabilities, clinical (S, 2) age and sex (1 = female), y (S,), folds (S,): F1 and
    its two parts, each one's figures, and F1 minus each part, paired."""
    features = np.log(np.clip(image, 1e-6, 1))
    fused = logistic_out_of_fold(np.hstack([features, clinical]), y, folds)
    alone = logistic_out_of_fold(clinical, y, folds)
    return {"subjects": int(len(y)),
            "figures": {"fusion": subject_figures(y, fused), "image": subject_figures(y, image),
                        "age_sex": subject_figures(y, alone)},
            "fusion_minus_image": paired_difference(y, fused, image, n_bootstrap=n_bootstrap),
            "fusion_minus_age_sex": paired_difference(y, fused, alone, n_bootstrap=n_bootstrap)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.fusion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=parse_recipe, action="append", required=True,
                        help="NAME=SOURCE: an image model's out-of-fold table or cross-validation folder (repeatable)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    data, groups, splits = load_everything(args.data_dir)
    labels = data.labels.numpy()
    table = pd.read_csv(SUBJECT_TABLE_PATH).set_index("subject").dropna(subset=list(PARTS))
    result = {"rule": "docs/experiments.md, 2026-12-03 (sixth session)", "features": list(PARTS), "models": {}}
    for name, sources in args.image:
        source = sources[0]
        probs = slice_probabilities(source, labels, splits, data.ids, groups)
        fold = source_folds(source, len(labels), splits, data.ids)
        if np.isnan(probs).any() or (fold < 0).any():
            parser.exit(2, f"error: {source} does not cover every slice; finish its folds first\n")
        ids, y, image = subject_level(probs, labels, groups)
        subject_fold = pd.Series(fold, index=groups).groupby(level=0).first()
        keep = np.isin(ids, table.index)
        clinical = np.column_stack([table.loc[ids[keep], "age"].to_numpy(float),
                                    (table.loc[ids[keep], "sex"] == "F").to_numpy(float)])
        result["models"][name] = {"source": str(source), **fuse(image[keep], clinical, y[keep],
                                                                 subject_fold.loc[ids[keep]].to_numpy(),
                                                                 args.bootstrap)}
    return emit(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
