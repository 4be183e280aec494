"""Build the out-of-distribution guard and near-copy flag (`model.qualify.trust`) from the dataset.

    alzmri-train data build-guard           # assets/trust_bank.safetensors and assets/trust.json (about 20 s)

Thresholds come from out-of-fold scores, by subject, of all 6,400 slices; the record says how often the guard
raises a false alarm, how it treats brains the network trained on and brains it never saw, and where the
network's test-time spread lies on slices of unseen subjects.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from model.core.assets import read_model_config
from model.core.inference import Predictor
from model.qualify.trust import (
    NEAR_COPY_QUANTILE,
    OOD_QUANTILE,
    TRUST_BANK_PATH,
    TRUST_PATH,
    TrustBank,
    uncertainty,
)
from model.training.data import shipped_split, slices_with_subjects


# ---------------------------------------------------------------------- building
def out_of_fold_scores(images, groups, train_mask, n_folds: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores (residual, histogram, nearest distance) of every slice from a bank fitted without its subject.

    images: uint8 (N, S, S) of all subjects; groups: (N,) subject ids; train_mask: (N,) slices a bank may be
    fitted on (the train split). Returns (scores (N, 3), fold (N,)). The guard does not use the network, so
    every subject can be scored this way, the network's own training subjects included.
    """
    names = np.array(sorted(set(groups.tolist())), dtype=object)
    fold_of = dict(zip(names[np.random.default_rng(seed).permutation(len(names))], np.arange(len(names)) % n_folds))
    fold = np.array([fold_of[g] for g in groups])
    scores = np.zeros((len(images), 3))
    for k in range(n_folds):
        fit = (fold != k) & train_mask
        n = int(fit.sum())
        bank = TrustBank.fit(images[fit], np.zeros(n, int), [""] * n, [""] * n)
        scores[fold == k] = np.stack(bank.scores(images[fold == k]), 1)
    return scores, fold


def thresholds_from(scores: np.ndarray) -> dict[str, float]:
    """Thresholds from out-of-fold scores (N, 3): see OOD_QUANTILE and NEAR_COPY_QUANTILE."""
    return {"residual": float(np.percentile(scores[:, 0], OOD_QUANTILE)),
            "histogram": float(np.percentile(scores[:, 1], OOD_QUANTILE)),
            "near_copy": float(np.percentile(scores[:, 2], NEAR_COPY_QUANTILE))}


def _flagged(scores: np.ndarray, t: dict[str, float]) -> np.ndarray:
    return (scores[:, 0] > t["residual"]) | (scores[:, 1] > t["histogram"])


def _build(data_dir, out: Path, record_path: Path, seed: int) -> dict:
    cfg = read_model_config()
    train, keys, groups = slices_with_subjects("train", data_dir)
    test, _, test_groups = slices_with_subjects("test", data_dir)
    keep, _ = shipped_split(train.labels.numpy(), groups, cfg.get("train_config", {}))
    images = np.concatenate([train.images[:, 0].numpy(), test.images[:, 0].numpy()])
    all_groups = np.concatenate([groups, test_groups])
    is_train = np.arange(len(images)) < len(train)
    scores, fold = out_of_fold_scores(images, all_groups, is_train, seed=seed)
    thresholds = thresholds_from(scores)
    # false alarms, cross-fitted: each fold's slices against thresholds from the other folds' out-of-fold scores
    alarms = np.zeros(len(images), bool)
    for k in np.unique(fold):
        alarms[fold == k] = _flagged(scores[fold == k], thresholds_from(scores[fold != k]))
    bank = TrustBank.fit(train.images[keep, 0].numpy(), train.labels.numpy()[keep], list(groups[keep]),
                         list(keys.path.iloc[keep]), thresholds=thresholds)
    trained_subjects = set(groups[keep])
    seen = np.flatnonzero(~is_train & np.isin(all_groups, list(trained_subjects)))  # test slices of trained brains
    seen_reports = bank.check(images[seen])
    unseen = np.flatnonzero(~np.isin(all_groups, list(trained_subjects)))
    unseen_reports = bank.check(images[unseen])
    record = {
        "built_with": {"weights_sha256": cfg["weights_sha256"], "bank_slices": int(len(keep)),
                       "bank_subjects": len(trained_subjects), "seed": seed,
                       "thresholds_from": "out-of-fold scores of all 6,400 slices, 5 folds by subject"},
        "false_alarms": {"cross_fitted": float(alarms.mean()),
                         "by_fold": [float(alarms[fold == k].mean()) for k in np.unique(fold)],
                         "subjects_with_any": int(len(set(all_groups[alarms]))), "subjects": len(set(all_groups))},
        "never_trained_subjects": {"subjects": int(len(set(all_groups[unseen]))), "slices": int(len(unseen)),
                                   "flagged": float(np.mean([r.out_of_distribution for r in unseen_reports])),
                                   "near_copy": float(np.mean([r.near_copy for r in unseen_reports]))},
        "seen_brains": {"slices": int(len(seen)),
                        "near_copy": float(np.mean([r.near_copy for r in seen_reports])),
                        "nearest_is_same_subject": float(np.mean([r.neighbours[0].subject == s for r, s
                                                                   in zip(seen_reports, all_groups[seen])])),
                        "flagged": float(np.mean([r.out_of_distribution for r in seen_reports]))},
    }
    # uncertainty on slices of subjects the network never trained on: where its thirds lie, and whether it
    # tells right answers from wrong ones
    predictor = Predictor.from_assets()
    spread, agreement = uncertainty(predictor, images[unseen])
    probs = predictor.probabilities(images[unseen]).numpy()
    wrong = probs.argmax(1) != np.concatenate([train.labels.numpy(), test.labels.numpy()])[unseen]
    bank.thresholds |= {"spread_low": float(np.percentile(spread, 100 / 3)),
                        "spread_high": float(np.percentile(spread, 200 / 3))}
    record["uncertainty_never_trained"] = {
        "slices": int(len(unseen)), "error_rate": float(wrong.mean()),
        "spread_percentiles_10_50_90": np.percentile(spread, [10, 50, 90]).round(4).tolist(),
        "auroc_error": {"spread": float(roc_auc_score(wrong, spread)),
                        "disagreement": float(roc_auc_score(wrong, 1 - agreement)),
                        "one_minus_probability": float(roc_auc_score(wrong, 1 - probs.max(1)))}}
    bank.save(out, record, record_path)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alzmri-train data build-guard", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="fit the guard on the dataset and write assets/trust_bank.safetensors")
    build.add_argument("--data-dir", type=Path, default=None, help="default: $ALZ_MRI_DATA or ../shared/data/alzheimer_mri")
    build.add_argument("--out", type=Path, default=TRUST_BANK_PATH, help="default: %(default)s")
    build.add_argument("--record", type=Path, default=TRUST_PATH, help="default: %(default)s")
    build.add_argument("--seed", type=int, default=0, help="halves of the never-seen subjects (default: 0)")
    args = parser.parse_args(argv)
    record = _build(args.data_dir, args.out, args.record, args.seed)
    json.dump({k: v for k, v in record.items() if k != "built_with"}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
