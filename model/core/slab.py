"""A volume staged as a subject: find the slab of 32 axial slices that the training slices came from.

Every training subject is 32 consecutive axial slices of an atlas-registered OASIS-1 volume, at the same
32 positions. `SlabTemplate` holds the mean training slice at each position (32 x 64 x 64, built by
`python -m model.training.build_slab_template`, SHA-256 checked like the weights). `locate_slab` slides the template
along a volume's axial slices and scores each start by the RMS residual after a linear grey-level fit per
slice, the registration `model.subjects` recovers the subjects with, and returns the best start, its score
and how it compares with the training subjects' own slabs. `model.serve.pipeline.stage_volume` then stages the
32 slices as a subject (`model.core.prediction.subject_level`, the rule the new-subject figures are for).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.core.assets import load_checked_arrays, save_checked_arrays
from model.core.constants import ASSETS_DIR
from model.core.resize import resize

SLAB_TEMPLATE_PATH = ASSETS_DIR / "slab_template.safetensors"
SLAB_RECORD_PATH = ASSETS_DIR / "slab_template.json"
SLAB_SLICES = 32  # consecutive axial slices per training subject
STEP_WEIGHT = 0.5  # weight of the largest neighbour-to-neighbour step inside a slab in its score
TEMPLATE_SIZE = 64  # px a side of the template: enough for the brain's outline and ventricles, 4x cheaper


class SlabError(ValueError):
    """A volume that cannot be staged as a subject, or a missing or altered template, in plain words."""


def downsample(slices: np.ndarray, size: int = TEMPLATE_SIZE) -> np.ndarray:
    """uint8 or float (N, S, S) -> float64 (N, size * size), area-averaged."""
    x = np.asarray(slices, dtype=np.float32)
    return resize(x, size, "area").reshape(len(x), -1).astype(np.float64)


def fitted_rms_rows(template: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Row-wise RMS of what a linear grey-level fit p * image + q leaves of the template: (N, P), (N, P) -> (N,).

    In the template's grey levels, so a blank or flat slice, which explains nothing, scores the template's
    whole spread rather than zero; a matching slice of any brightness or contrast scores near zero.
    """
    a = template - template.mean(1, keepdims=True)
    b = images - images.mean(1, keepdims=True)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    corr = (a * b).sum(1) / np.maximum(na * nb, 1e-12)
    return np.sqrt(na ** 2 * np.clip(1.0 - corr ** 2, 0.0, None) / a.shape[1])


@dataclass(frozen=True)
class SlabMatch:
    """Where a volume's training-like slab lies. start: index of its lowest slice; score: mean fitted RMS
    of the 32 slices against the template (grey levels at 64 px); scores: the score of every start (Z - 31,);
    typical: the training subjects' 99th-percentile score; aligned: score <= typical."""

    start: int
    score: float
    scores: tuple[float, ...]
    typical: float
    aligned: bool

    @property
    def stop(self) -> int:
        return self.start + SLAB_SLICES


class SlabTemplate:
    """The mean training slice at each of the 32 positions, (32, 64 * 64) float64, and the 99th percentile of
    the training subjects' own slab scores."""

    def __init__(self, means: np.ndarray, typical: float):
        self.means, self.typical = np.asarray(means, dtype=np.float64), float(typical)

    def scores(self, slices: np.ndarray) -> np.ndarray:
        """Score of every start: slices uint8 (Z, S, S) with Z >= 32 -> (Z - 31,).

        The mean fitted RMS of the 32 slices against the template's 32 positions, plus half the largest
        step between two neighbouring slices inside the slab: a training slab is 32 consecutive slices of one
        brain, so a slab that takes in a blank slice or a slice of something else pays for the break. In a
        real volume every step is small and the template decides alone.
        """
        flat = downsample(slices)
        n = len(flat) - SLAB_SLICES + 1
        if n < 1:
            raise SlabError(f"the volume has {len(flat)} axial slices; staging a subject needs the "
                            f"{SLAB_SLICES} consecutive slices the training subjects had (classify single slices instead)")
        fit = np.zeros(n)
        for p in range(SLAB_SLICES):  # template position p against slice start + p for every start at once
            fit += fitted_rms_rows(np.repeat(self.means[p:p + 1], n, 0), flat[p:p + n])
        steps = np.maximum(fitted_rms_rows(flat[:-1], flat[1:]), fitted_rms_rows(flat[1:], flat[:-1]))  # (Z-1,)
        worst = np.lib.stride_tricks.sliding_window_view(steps, SLAB_SLICES - 1).max(1)  # (n,)
        return fit / SLAB_SLICES + STEP_WEIGHT * worst

    def locate(self, slices: np.ndarray) -> SlabMatch:
        scores = self.scores(slices)
        start = int(scores.argmin())
        return SlabMatch(start, float(scores[start]), tuple(float(s) for s in scores), self.typical,
                         bool(scores[start] <= self.typical))

    # ------------------------------------------------------------------ files
    def save(self, path: Path = SLAB_TEMPLATE_PATH, record_path: Path = SLAB_RECORD_PATH,
             record: dict | None = None) -> str:
        return save_checked_arrays({"means": self.means.astype(np.float32)}, path, record_path, "template_sha256",
                                   {"slices": SLAB_SLICES, "size": TEMPLATE_SIZE, "typical_score": self.typical,
                                    **(record or {})})

    @classmethod
    def load(cls, path: Path = SLAB_TEMPLATE_PATH, record_path: Path = SLAB_RECORD_PATH) -> "SlabTemplate":
        """The shipped template, refused unless its bytes hash to the SHA-256 recorded beside it."""
        arrays, meta = load_checked_arrays(path, record_path, "template_sha256", SlabError,
                                           "alzmri-train data build-slab-template")
        return cls(arrays["means"], meta["typical_score"])
