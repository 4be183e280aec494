"""The never-seen answer: what a network that never saw a brain says of it.

A slice the guard calls a near-copy of a training slice is recognised, not read: the shipped network has seen that
brain. The subject-grouped cross-validation (`assets/crossval_predictions.csv`) holds, for each of the 200
training subjects, the calibrated prediction of the fold network that was trained without that subject. Shown
beside the shipped network's answer, it is the one to read: it is what the model does on a new brain.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from model.core.constants import (CLASS_NAMES, CROSSVAL_PATH, CROSSVAL_PREDICTIONS_PATH, DISPLAY_NAMES,
                                  MODEL_CONFIG_PATH)
from model.core.recipe import crossval_describes

PROBABILITY_COLUMNS = [f"p_{name}" for name in CLASS_NAMES]


@dataclass(frozen=True)
class NeverSeen:
    """The out-of-fold answer for one training subject. probabilities: (C,) in label order, calibrated (cross-fitted
    temperature). slice_probabilities: the same for one of its slices (the nearest training slice), or None."""

    subject: str
    fold: int
    true_label: int
    probabilities: tuple[float, ...]
    slice_path: str | None = None
    slice_probabilities: tuple[float, ...] | None = None

    @property
    def label(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def display_name(self) -> str:
        return DISPLAY_NAMES[self.label]

    @property
    def slice_label(self) -> int | None:
        return None if self.slice_probabilities is None else int(np.argmax(self.slice_probabilities))


@dataclass(frozen=True)
class _Rows:
    """One subject's rows of the out-of-fold table. ids: its slices' dataset paths; probabilities: (n, C)."""

    fold: int
    true_label: int
    ids: tuple[str, ...]
    probabilities: np.ndarray


@lru_cache(maxsize=2)
def _table(path: str) -> dict[str, _Rows]:
    """The out-of-fold table by subject, read once with the csv module: pandas cost every `alzmri predict` of a
    near-copy 0.5-0.7 s of import (cProfile, 2026-12-03) for a 6,400-row lookup."""
    by_subject: dict[str, list[dict]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            by_subject.setdefault(row["subject"], []).append(row)
    return {subject: _Rows(fold=int(rows[0]["fold"]), true_label=CLASS_NAMES.index(rows[0]["true_label"]),
                           ids=tuple(r["id"] for r in rows),
                           probabilities=np.array([[float(r[c]) for c in PROBABILITY_COLUMNS] for r in rows]))
            for subject, rows in by_subject.items()}


def never_seen(subject: str, slice_path: str | None = None,
               path: Path = CROSSVAL_PREDICTIONS_PATH) -> NeverSeen | None:
    """The cross-validated answer for `subject` (mean of its slices' out-of-fold probabilities, the subject rule) and,
    when `slice_path` is one of its slices (the dataset path, as the guard's nearest slices name it), that slice's.
    None when the table is missing or does not hold the subject."""
    if not Path(path).is_file():
        return None
    rows = _table(str(path)).get(subject)
    if rows is None:
        return None
    at = rows.ids.index(slice_path) if slice_path in rows.ids else None
    return NeverSeen(subject=subject, fold=rows.fold, true_label=rows.true_label,
                     probabilities=tuple(float(v) for v in rows.probabilities.mean(axis=0)),
                     slice_path=slice_path if at is not None else None,
                     slice_probabilities=tuple(float(v) for v in rows.probabilities[at]) if at is not None else None)


@lru_cache(maxsize=1)
def shipped_recipe_crossvalidated(config_path: Path = MODEL_CONFIG_PATH, crossval_path: Path = CROSSVAL_PATH) -> bool:
    """Whether the shipped network was trained with the cross-validated recipe (and carries its temperature), so the
    never-seen answers are those of the shipped recipe rather than of an earlier one."""
    def read(path: Path) -> dict | None:
        return json.loads(Path(path).read_text()) if Path(path).is_file() else None
    return crossval_describes(read(config_path), read(crossval_path))
