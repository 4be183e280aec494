"""What a prediction is, without PyTorch: one slice's calibrated probabilities, and the subject-stage rule.

    Prediction((0.1, 0.0, 0.7, 0.2), 2).display_name    # "No dementia"
    subject_prediction([p1, p2, p3])                    # the mean of their probabilities, and its arg-max

`model.core.inference.Predictor` (PyTorch) and `model.core.runtimes.EnginePredictor` (an exported network, no
PyTorch) both return these, and `model.reports.record` renders them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.core.constants import CLASS_NAMES, DISPLAY_NAMES


@dataclass(frozen=True)
class Prediction:
    """One slice's result: calibrated probabilities in label order, and the arg-max."""

    probabilities: tuple[float, ...]
    label: int

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]

    @property
    def display_name(self) -> str:
        return DISPLAY_NAMES[self.label]

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def as_dict(self) -> dict:
        return {"prediction": self.class_name, "label": self.label,
                "probabilities": dict(zip(CLASS_NAMES, self.probabilities))}


def subject_level(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    """The subject-stage rule, in one place: a subject's probabilities are the mean of its slices' calibrated
    probabilities, and its stage their arg-max. The subject-level cross-validation scores it, and the Classify
    page's subject panel, the Batch page's subjects and the Evaluation page's subject table show it.

    probs (N, C), labels (N,), groups (N,) subject ids -> (subject ids (S,) sorted, labels (S,) (each subject's
    first), mean probabilities (S, C)).
    """
    import pandas as pd  # here, not at the top: 0.5-1.1 s of every `alzmri predict` that stages no subject

    frame = pd.DataFrame(probs, columns=range(probs.shape[1]))
    frame["subject"], frame["label"] = groups, labels
    grouped = frame.groupby("subject", sort=True)
    mean = grouped[list(range(probs.shape[1]))].mean()
    return mean.index.to_numpy(), grouped.label.first().to_numpy(), mean.to_numpy()


def subject_prediction(predictions: list[Prediction]) -> Prediction:
    """One subject's stage from several of its slices (`subject_level`)."""
    if not predictions:
        raise ValueError("a subject-level prediction needs at least one slice")
    n = len(predictions)
    _, _, mean = subject_level(np.array([p.probabilities for p in predictions]), np.zeros(n), np.zeros(n))
    return Prediction(tuple(float(p) for p in mean[0]), int(mean[0].argmax()))
