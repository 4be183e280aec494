"""A nearest-neighbour lookup on raw pixels: how much of the score is memorisation?

`python -m model.baseline` labels each validation and test slice with the label
of the closest training slice (Euclidean distance on the 128x128 uint8 pixels,
no learning at all) and writes the figures to assets/baseline.json.

The dataset has several slices per subject and no subject ids, so neighbouring
slices of one brain sit in train and in test. If a lookup with no model scores
as well as the network, slice-level accuracy measures how well a method finds
the same brain again, not how well it recognises dementia in a new patient.
The reference set is the network's own training set (train minus the seeded
validation split), so the two are compared on equal terms. `by_train_distance`
and `distance_summary` break a model's accuracy down by that same distance
(`model.evaluate` reports them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from model.constants import BASELINE_PATH, CLASS_NAMES, MODEL_CONFIG_PATH, default_data_dir


def nearest_neighbours(reference: torch.Tensor, query: torch.Tensor, k: int = 1, *, exclude_self: bool = False,
                       same_label: tuple[torch.Tensor, torch.Tensor] | None = None,
                       chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k closest reference images for each query image, and their distances.

    reference: uint8 (N, 1, H, W); query: uint8 (M, 1, H, W).
    exclude_self: query is reference (same order); an image is not its own neighbour.
    same_label: (reference labels (N,), query labels (M,)) to search only within a query's class.
    Returns (index (M, k) int64, distance (M, k) float32 as root-mean-square grey levels per pixel),
    closest first.
    """
    if reference.shape[1:] != query.shape[1:]:
        raise ValueError(f"reference {tuple(reference.shape[1:])} and query {tuple(query.shape[1:])} differ in shape")
    ref = reference.flatten(1).float()  # (N, P)
    pixels = ref.shape[1]
    index, dist = [], []
    for start in range(0, len(query), chunk):
        d = torch.cdist(query[start:start + chunk].flatten(1).float(), ref)  # (m, N)
        if exclude_self:
            rows = torch.arange(d.shape[0])
            d[rows, rows + start] = float("inf")
        if same_label is not None:
            ref_labels, query_labels = same_label
            d[query_labels[start:start + chunk, None] != ref_labels[None, :]] = float("inf")
        value, idx = d.topk(k, dim=1, largest=False)
        index.append(idx)
        dist.append(value / pixels ** 0.5)
    return torch.cat(index).numpy(), torch.cat(dist).numpy()


def nearest_train_slices(reference, split) -> dict[str, np.ndarray]:
    """Each slice of `split`'s nearest slice in `reference` (SliceSets): {"distance": (N,) RMS, "label": (N,)}."""
    index, distance = nearest_neighbours(reference.images, split.images, k=1)
    return {"distance": distance[:, 0], "label": reference.labels.numpy()[index[:, 0]]}


def score(y: np.ndarray, pred: np.ndarray) -> dict:
    from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

    labels = list(range(len(CLASS_NAMES)))
    recall = recall_score(y, pred, labels=labels, average=None, zero_division=0)
    return {
        "n": len(y),
        "accuracy": float((y == pred).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "recall": {name: float(r) for name, r in zip(CLASS_NAMES, recall)},
        "errors": int((y != pred).sum()),
    }


def recalled_counts(y: np.ndarray, pred: np.ndarray) -> dict[str, str]:
    """'right/support' per class in label order, e.g. {"Moderate_Demented": "5/5", ...}."""
    y, pred = np.asarray(y), np.asarray(pred)
    return {name: f"{int(((pred == c) & (y == c)).sum())}/{int((y == c).sum())}" for c, name in enumerate(CLASS_NAMES)}


def predicted_counts(pred: np.ndarray) -> dict[str, int]:
    """How many slices were predicted as each class, in label order."""
    pred = np.asarray(pred)
    return {name: int((pred == c).sum()) for c, name in enumerate(CLASS_NAMES)}


def lookup_score(reference, split) -> dict:
    """`score` of the 1-NN lookup on `split` with `reference` as its memory (SliceSets), plus "recalled"
    (`recalled_counts`): how much of a split a method gets right by finding the same brain again."""
    y, pred = split.labels.numpy(), nearest_train_slices(reference, split)["label"]
    return {**score(y, pred), "recalled": recalled_counts(y, pred)}


# Bin edges for the distance from a test slice to its nearest train slice, in root-mean-square grey levels
# (0-255) per pixel. On this dataset most test slices have a neighbouring slice of the same brain in train at
# 11-15; round numbers above that separate near-copies from slices with nothing close in train.
DISTANCE_EDGES = (15.0, 20.0, 25.0)


def by_train_distance(y: np.ndarray, pred: np.ndarray, distance: np.ndarray, lookup: np.ndarray,
                      edges: tuple[float, ...] = DISTANCE_EDGES) -> list[dict]:
    """Accuracy of the model and of the nearest-train-slice lookup, in bins of distance to that slice.

    y, pred, lookup: (N,) labels; distance: (N,) RMS grey levels. The last bin is open (`to` is None).
    """
    bounds = (0.0, *edges, None)
    rows = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        inside = (distance >= lo) & (distance < hi if hi is not None else True)
        n = int(inside.sum())
        rows.append({"from": lo, "to": hi, "n": n, "errors": int((pred[inside] != y[inside]).sum()),
                     "accuracy": float((pred[inside] == y[inside]).mean()) if n else None,
                     "lookup_accuracy": float((lookup[inside] == y[inside]).mean()) if n else None})
    return rows


def distance_bin_label(row: dict) -> str:
    """'0–15' or '≥ 25' for a `by_train_distance` row."""
    return f"{row['from']:g}–{row['to']:g}" if row["to"] is not None else f"≥ {row['from']:g}"


def distance_summary(rows: list[dict]) -> str:
    """One plain sentence on where the model's errors sit, from `by_train_distance` rows."""
    n, errors = sum(r["n"] for r in rows), sum(r["errors"] for r in rows)
    if errors == 0:
        return f"The model is right on all {n:,} test slices, near to a training slice or not."
    first = next(i for i, r in enumerate(rows) if r["errors"])
    if first == 0:
        return (f"The model makes {errors} error{'s' if errors != 1 else ''} in {n:,} test slices, some of them on "
                "slices with a near-copy in the training data.")
    near = sum(r["n"] for r in rows[:first])
    far_n = sum(r["n"] for r in rows[first:])
    return (f"The model is right on all {near:,} test slices that have a training slice closer than "
            f"{rows[first]['from']:g} grey levels RMS. "
            + (f"All {errors} of its errors are" if errors > 1 else "Its one error is") +
            f" among the {far_n:,} slices farther than that from every training slice, where it is right on "
            f"{1 - errors / far_n:.1%}. Even those may come from brains seen in training, so that is still an upper "
            "bound for a new patient.")


def run(data_dir=None, val_fraction: float = 0.1, seed: int = 0) -> dict:
    """1-NN figures on the test split (and the validation split, if any), with the network's train slices as reference.

    val_fraction 0 is a model refitted on all of train: every train slice is then a reference.
    """
    from model.data import fingerprint, load_split, stratified_split

    t0 = time.perf_counter()
    train = load_split("train", data_dir)
    splits = {}
    if val_fraction > 0:
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
    parser = argparse.ArgumentParser(prog="python -m model.baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="default: %(default)s")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG_PATH,
                        help="model_config.json whose validation split to reproduce (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=BASELINE_PATH, help="default: %(default)s")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from model.data import DatasetError

    val_fraction, seed = 0.1, 0
    if args.config.is_file():
        train_config = json.loads(args.config.read_text()).get("train_config", {})
        val_fraction = train_config.get("val_fraction", val_fraction)
        seed = train_config.get("split_seed")
        seed = train_config.get("seed", 0) if seed is None else seed
    try:
        result = run(args.data_dir, val_fraction, seed)
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
