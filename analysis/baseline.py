"""A nearest-neighbour lookup on raw pixels: how much of the score is memorisation?

`python -m analysis.baseline` labels each validation and test slice with the label
of the closest training slice (Euclidean distance on the 128x128 uint8 pixels,
no learning at all) and writes the figures to assets/baseline.json.

The dataset has several slices per subject and no subject ids, so neighbouring
slices of one brain sit in train and in test. If a lookup with no model scores
as well as the network, slice-level accuracy measures how well a method finds
the same brain again, not how well it recognises dementia in a new patient.
The reference set is the network's own training set (train minus the seeded
validation split), so the two are compared on equal terms. `model.qualify.neighbours`
breaks a model's accuracy down by that same distance (`model.qualify.evaluate` reports it).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from model.core.constants import BASELINE_PATH, CLASS_NAMES, MODEL_CONFIG_PATH, default_data_dir
from model.qualify.evaluate import recalled_counts
from model.qualify.neighbours import nearest_train_slices


def score(y: np.ndarray, pred: np.ndarray) -> dict:
    """Headline figures of hard predictions (N,), by `model.qualify.evaluate.compute_metrics` on their one-hot rows."""
    from model.qualify.evaluate import compute_metrics

    y, pred = np.asarray(y), np.asarray(pred)
    m = compute_metrics(y, np.eye(len(CLASS_NAMES))[pred], n_bootstrap=0)
    return {"n": len(y), "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
            "macro_f1": m["macro_f1"], "recall": {name: e["recall"] for name, e in m["per_class"].items()},
            "errors": int((y != pred).sum())}


def lookup_score(reference, split) -> dict:
    """`score` of the 1-NN lookup on `split` with `reference` as its memory (SliceSets), plus "recalled"
    (`recalled_counts`): how much of a split a method gets right by finding the same brain again."""
    y, pred = split.labels.numpy(), nearest_train_slices(reference, split)["label"]
    return {**score(y, pred), "recalled": recalled_counts(y, pred)}


def run(data_dir=None, val_fraction: float = 0.1, seed: int = 0, val_by_subject: bool = False) -> dict:
    """1-NN figures on the test split (and the validation split, if any), with the network's train slices as reference.

    val_fraction 0 is a model refitted on all of train: every train slice is then a reference.
    """
    from model.core.dataset import fingerprint, load_split
    from model.training.data import stratified_split

    t0 = time.perf_counter()
    train = load_split("train", data_dir)
    splits = {}
    if val_fraction > 0 and val_by_subject:  # the network's own split: whole subjects held out
        from model.training.train import TrainConfig, load_data

        reference, splits["val"] = load_data(TrainConfig(data_dir=str(data_dir or default_data_dir()), seed=seed,
                                                         val_fraction=val_fraction, val_by_subject=True))
        described = f"train minus the {val_fraction:.0%} of subjects held out for validation (seed {seed})"
    elif val_fraction > 0:
        keep, held = stratified_split(train.labels, val_fraction, seed)
        reference, splits["val"] = train.subset(keep), train.subset(held)
        described = f"train minus the seeded {val_fraction:.0%} validation split (seed {seed})"
    else:
        reference, described = train, "all of train (the network was refitted on all of it)"
    splits["test"] = load_split("test", data_dir)
    out = {"method": "1-nearest neighbour, Euclidean distance on raw 128x128 pixels",
           "reference": f"{described}, {len(reference)} slices"}
    for name, split in splits.items():
        nearest = nearest_train_slices(reference, split)
        out[name] = score(split.labels.numpy(), nearest["label"])
        out[name]["nearest_rms_distance_quartiles"] = [round(float(q), 2)
                                                       for q in np.quantile(nearest["distance"], [0.25, 0.5, 0.75])]
    out["data_sha256"] = fingerprint(data_dir)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis.baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="default: %(default)s")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG_PATH,
                        help="model_config.json whose validation split to reproduce (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=BASELINE_PATH, help="default: %(default)s")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from model.core.dataset import DatasetError

    val_fraction, seed, by_subject = 0.1, 0, False
    if args.config.is_file():
        train_config = json.loads(args.config.read_text()).get("train_config", {})
        val_fraction = train_config.get("val_fraction", val_fraction)
        by_subject = train_config.get("val_by_subject", False)
        seed = train_config.get("split_seed")
        seed = train_config.get("seed", 0) if seed is None else seed
    try:
        result = run(args.data_dir, val_fraction, seed, by_subject)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name in ("val", "test"):
        if name not in result:
            continue
        r = result[name]
        print(f"{name}: accuracy {r['accuracy']:.4f}  balanced {r['balanced_accuracy']:.4f}  "
              f"macro-F1 {r['macro_f1']:.4f}  errors {r['errors']}/{r['n']}")
    print(f"wrote {args.out} ({result['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
