"""The never-seen answer: what a network that never saw a brain says of it.

A slice the guard calls a near-copy of a training slice is recognised, not read: the shipped network has seen that
brain. The subject-grouped cross-validation (`assets/crossval_predictions.csv`) holds, for each of the 200
training subjects, the calibrated prediction of the fold network that was trained without that subject. Shown
beside the shipped network's answer, it is the one to read: it is what the model does on a new brain.
"""
from __future__ import annotations

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


@lru_cache(maxsize=2)
def _table(path: str):
    """The out-of-fold table as a pandas DataFrame, read once. pandas is imported here, when a near-copy needs its
    never-seen answer: at the top it cost every `alzmri predict` 0.5 s (`python -X importtime`, 2026-12-02)."""
    import pandas as pd

    return pd.read_csv(path)


def never_seen(subject: str, slice_path: str | None = None,
               path: Path = CROSSVAL_PREDICTIONS_PATH) -> NeverSeen | None:
    """The cross-validated answer for `subject` (mean of its slices' out-of-fold probabilities, the subject rule) and,
    when `slice_path` is one of its slices (the dataset path, as the guard's nearest slices name it), that slice's.
    None when the table is missing or does not hold the subject."""
    if not Path(path).is_file():
        return None
    table = _table(str(path))
    rows = table[table.subject == subject]
    if rows.empty:
        return None
    one = rows[rows.id == slice_path] if slice_path else rows.iloc[:0]
    return NeverSeen(subject=subject, fold=int(rows.fold.iloc[0]), true_label=CLASS_NAMES.index(rows.true_label.iloc[0]),
                     probabilities=tuple(float(v) for v in rows[PROBABILITY_COLUMNS].mean().to_numpy()),
                     slice_path=slice_path if not one.empty else None,
                     slice_probabilities=tuple(float(v) for v in one[PROBABILITY_COLUMNS].iloc[0]) if not one.empty
                     else None)


@lru_cache(maxsize=1)
def shipped_recipe_crossvalidated(config_path: Path = MODEL_CONFIG_PATH, crossval_path: Path = CROSSVAL_PATH) -> bool:
    """Whether the shipped network was trained with the cross-validated recipe (and carries its temperature), so the
    never-seen answers are those of the shipped recipe rather than of an earlier one."""
    def read(path: Path) -> dict | None:
        return json.loads(Path(path).read_text()) if Path(path).is_file() else None
    return crossval_describes(read(config_path), read(crossval_path))
