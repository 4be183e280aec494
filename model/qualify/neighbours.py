"""Nearest slices in raw pixels: the product's one measure of "has the model seen this brain?".

`nearest_neighbours` finds each query slice's closest reference slices (Euclidean distance
on the uint8 pixels); `model.qualify.evaluate` uses it to read accuracy by distance to the nearest
training slice, training uses it for the validation buffer and the neighbour blend, and the
cross-validation for its lookup baseline. The research analyses that measured how much of a
slice-level score is memorisation live in `analysis/` and import this module.
"""
from __future__ import annotations

import numpy as np
import torch


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
