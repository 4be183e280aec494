"""A nearest-neighbour lookup on raw pixels: how much of the score is memorisation?

`python -m model.baseline` labels each validation and test slice with the label
of the closest training slice (Euclidean distance on the 128x128 uint8 pixels,
no learning at all) and writes the figures to assets/baseline.json.

The dataset has several slices per subject and no subject ids, so neighbouring
slices of one brain sit in train and in test. If a lookup with no model scores
as well as the network, slice-level accuracy measures how well a method finds
the same brain again, not how well it recognises dementia in a new patient.
The reference set is the network's own training set (train minus the seeded
validation split), so the two are compared on equal terms.
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
        idx, dist = nearest_neighbours(reference.images, split.images)
        idx, dist = idx[:, 0], dist[:, 0]
        pred = reference.labels.numpy()[idx]
        out[name] = score(split.labels.numpy(), pred)
        out[name]["nearest_rms_distance_quartiles"] = [round(float(q), 2) for q in np.quantile(dist, [0.25, 0.5, 0.75])]
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
        val_fraction, seed = train_config.get("val_fraction", val_fraction), train_config.get("seed", seed)
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
