"""Should this answer be trusted? Out-of-distribution guard, near-copy flag, nearest training slices, uncertainty.

Every slice the network learned from is an atlas-registered OASIS-1 axial slice: a brain in the same place,
on black, with one range of grey levels. So "is this like the training data?" is asked in pixel space,
where that regularity lives, not in the network's features (on this network a penultimate-layer kNN or
Mahalanobis score missed most noise, flat, rotated and inverted images at a 1% false-alarm rate, while the
pixel checks below missed none: docs/experiments.md, 2026-11-30).

The `TrustBank` (assets/trust_bank.safetensors, checked against the SHA-256 in assets/trust.json) holds:

* a principal-component basis of the training slices at 32x32 (mean (P,), components (K, P));
* the K coefficients of each training slice, with its subject, stage and dataset path;
* the training slices' mean grey-level histogram (32 bins);
* thresholds from out-of-fold scores of all 200 subjects (the basis refitted without each fifth of them;
  the guard does not use the network, so subjects it trained on serve as well as the others).

For each input slice it reports:

* **out of distribution** when its residual outside the basis (a slice unlike any atlas-registered brain)
  or its grey-level histogram's distance from the training histogram is above the 99.5th percentile of
  slices of subjects the basis was fitted without, when it is flat, or when the file was a colour picture;
* **near-copy** when its nearest training slice is closer than 99% of slices of unseen subjects are to
  theirs: the answer is then recognition of a brain seen in training, not a reading of a new one;
* its nearest training slices (subject, stage, distance).

`uncertainty` is the spread of the calibrated probabilities over test-time variants (mirror, one-pixel
shifts, +-5% brightness): how much the answer moves under changes that should not matter.

Built by `alzmri-train data build-guard` (`model.training.build_guard`; needs the dataset and assets/subjects.csv).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.core.assets import load_checked_arrays, save_checked_arrays
from model.core.constants import ASSETS_DIR, CLASS_NAMES, DISPLAY_NAMES
from model.core.prediction import Prediction
from model.core.resize import resize

TRUST_BANK_PATH = ASSETS_DIR / "trust_bank.safetensors"
TRUST_PATH = ASSETS_DIR / "trust.json"
SIGNATURE_SIZE = 32  # slices are compared at 32x32: enough to tell brains apart, small enough to ship
N_COMPONENTS = 128
HIST_BINS = 32
OOD_QUANTILE = 99.5  # thresholds: this percentile of unseen subjects' out-of-fold scores
NEAR_COPY_QUANTILE = 1.0  # near-copy: closer than all but this percent of unseen subjects' slices
FLAT_STD = 2.0  # grey levels: a slice this uniform holds no anatomy
COLOUR_LIMIT = 0.08  # Scan.colour above this is a colour picture, not an MRI slice


class TrustBankError(RuntimeError):
    """The shipped trust bank is missing, altered or not this project's."""


@dataclass(frozen=True)
class Neighbour:
    """One training slice close to the input: its subject, stage, dataset path and distance (grey levels RMS)."""

    subject: str
    label: int
    path: str
    distance: float

    @property
    def stage(self) -> str:
        return DISPLAY_NAMES[self.label]


@dataclass(frozen=True)
class TrustReport:
    """What the guard found for one slice. residual and distance in grey levels (0-255) RMS per pixel."""

    residual: float
    histogram: float
    out_of_distribution: bool
    reasons: tuple[str, ...]
    near_copy: bool
    neighbours: tuple[Neighbour, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {"out_of_distribution": self.out_of_distribution, "reasons": list(self.reasons),
                "near_copy": self.near_copy, "residual": round(self.residual, 3), "histogram": round(self.histogram, 4),
                "nearest_training_slices": [{"subject": n.subject, "stage": CLASS_NAMES[n.label], "path": n.path,
                                             "distance": round(n.distance, 3)} for n in self.neighbours]}


def signatures(images) -> np.ndarray:
    """uint8 slices (N, S, S) or (N, 1, S, S) -> float32 (N, 32*32) in [0, 1], area-downsampled."""
    x = np.asarray(images, dtype=np.float32) / 255.0
    x = x.reshape(-1, *x.shape[-2:])  # (N, S, S)
    return resize(x, SIGNATURE_SIZE, "area").reshape(len(x), -1)


def histograms(images) -> np.ndarray:
    """uint8 slices -> (N, 32) grey-level histograms, each summing to 1."""
    flat = np.asarray(images, dtype=np.uint8).reshape(len(images), -1) // (256 // HIST_BINS)
    counts = np.stack([np.bincount(row, minlength=HIST_BINS) for row in flat]).astype(np.float64)
    return counts / counts.sum(1, keepdims=True)


class TrustBank:
    """The fitted guard: basis, training coefficients, histogram and thresholds (see the module docstring)."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, coefficients: np.ndarray, hist_mean: np.ndarray,
                 subjects: list[str], labels: np.ndarray, paths: list[str], thresholds: dict[str, float]):
        self.mean = mean.astype(np.float32)  # (P,)
        self.components = components.astype(np.float32)  # (K, P), orthonormal rows
        self.coefficients = np.ascontiguousarray(coefficients, dtype=np.float32)  # (N, K)
        self._coefficients64 = self.coefficients.astype(np.float64)  # (N, K), converted once for `nearest`
        self._squared_norms = (self._coefficients64 ** 2).sum(1)  # (N,)
        self.hist_mean = hist_mean.astype(np.float64)  # (32,)
        self.subjects, self.paths = list(subjects), list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)  # (N,)
        self.thresholds = dict(thresholds)  # residual, histogram, near_copy

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, images, labels, subjects, paths, n_components: int = N_COMPONENTS,
            thresholds: dict[str, float] | None = None) -> "TrustBank":
        """Basis, coefficients and histogram from training slices: uint8 (N, S, S), labels (N,), subject ids
        and dataset paths (N,). Thresholds come from slices of other subjects (`thresholds_from`)."""
        x = signatures(images)
        mean = x.mean(0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        return cls(mean, vt[:n_components], (x - mean) @ vt[:n_components].T, histograms(images).mean(0),
                   subjects, labels, paths, thresholds=thresholds or {})

    # ------------------------------------------------------------------ scoring
    def project(self, images) -> tuple[np.ndarray, np.ndarray]:
        """(coefficients (N, K), residual (N,) in grey levels RMS per pixel)."""
        z = signatures(images) - self.mean
        coef = z @ self.components.T
        resid = z - coef @ self.components
        return coef, np.sqrt((resid ** 2).mean(1)) * 255.0

    def nearest(self, coef: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Indices (N, k) of the closest training slices in the basis, and distances (N, k) in grey levels RMS."""
        coef = np.asarray(coef, dtype=np.float64).reshape(-1, self.coefficients.shape[1])
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, in float64 so that near-equal distances keep their order
        squared = (coef ** 2).sum(1)[:, None] + self._squared_norms[None] - 2.0 * coef @ self._coefficients64.T
        k = min(k, squared.shape[1])
        index = np.argpartition(squared, k - 1, axis=1)[:, :k] if k < squared.shape[1] else \
            np.broadcast_to(np.arange(k), squared.shape).copy()
        order = np.take_along_axis(squared, index, 1).argsort(1, kind="stable")
        index = np.take_along_axis(index, order, 1)
        distance = np.sqrt(np.clip(np.take_along_axis(squared, index, 1), 0.0, None))
        return index, (distance * 255.0 / SIGNATURE_SIZE).astype(np.float32)

    def scores(self, images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(residual, histogram L1 distance, distance to the nearest training slice), each (N,)."""
        coef, residual = self.project(images)
        _, distance = self.nearest(coef)
        return residual, np.abs(histograms(images) - self.hist_mean).sum(1), distance[:, 0]

    def check(self, images, colour: list[float] | None = None, k: int = 3) -> list[TrustReport]:
        """One TrustReport per uint8 slice (N, S, S); colour: each file's `Scan.colour`, when known."""
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim == 2:
            images = images[None]
        coef, residual = self.project(images)
        index, distance = self.nearest(coef, k)
        histogram = np.abs(histograms(images) - self.hist_mean).sum(1)
        t = self.thresholds
        reports = []
        for i, image in enumerate(images):
            reasons = []
            if float(image.std()) < FLAT_STD:
                reasons.append("the image is flat: it holds no anatomy")
            if colour is not None and colour[i] > COLOUR_LIMIT:
                reasons.append("it is a colour picture; MRI slices are grey")
            if residual[i] > t["residual"]:
                reasons.append(f"its shape is unlike every training slice (residual {residual[i]:.1f} against a "
                               f"limit of {t['residual']:.1f}): not an atlas-aligned axial brain slice like the "
                               "training data, or another orientation, body part or kind of picture")
            if histogram[i] > t["histogram"]:
                reasons.append(f"its grey levels are unlike the training slices' (histogram distance "
                               f"{histogram[i]:.2f} against a limit of {t['histogram']:.2f}): another contrast, "
                               "windowing or exposure")
            neighbours = tuple(Neighbour(self.subjects[j], int(self.labels[j]), self.paths[j], float(d))
                               for j, d in zip(index[i], distance[i]))
            reports.append(TrustReport(float(residual[i]), float(histogram[i]), bool(reasons), tuple(reasons),
                                       bool(distance[i, 0] < t["near_copy"]) and not reasons, neighbours))
        return reports

    # ------------------------------------------------------------------ files
    def save(self, path: Path = TRUST_BANK_PATH, record: dict | None = None, record_path: Path = TRUST_PATH) -> str:
        """Write the arrays (float16 coefficients) and trust.json with their SHA-256; returns the hash."""
        arrays = {"mean": self.mean, "components": self.components.astype(np.float16),
                  "coefficients": self.coefficients.astype(np.float16),
                  "hist_mean": self.hist_mean.astype(np.float32), "labels": self.labels.astype(np.int8)}
        return save_checked_arrays(arrays, path, record_path, "bank_sha256", {
            "signature_size": SIGNATURE_SIZE, "n_components": int(self.components.shape[0]),
            "thresholds": self.thresholds, "subjects": self.subjects, "paths": self.paths, **(record or {})})

    @classmethod
    def load(cls, path: Path = TRUST_BANK_PATH, record_path: Path = TRUST_PATH) -> "TrustBank":
        """The shipped bank, refused unless its bytes hash to the SHA-256 recorded beside it."""
        arrays, meta = load_checked_arrays(path, record_path, "bank_sha256", TrustBankError,
                                           "alzmri-train data build-guard")
        return cls(arrays["mean"], arrays["components"], arrays["coefficients"], arrays["hist_mean"],
                   meta["subjects"], arrays["labels"], meta["paths"], meta["thresholds"])


# ---------------------------------------------------------------------- uncertainty
def tta_views(image: np.ndarray) -> np.ndarray:
    """uint8 (S, S) -> (8, S, S): itself, mirrored, shifted one pixel four ways, 5% darker and brighter.
    Changes that should not move a stage: the hemispheres are near mirror images and the dataset's slices
    vary this much in position and exposure."""
    img = np.asarray(image, dtype=np.uint8)
    shifted = []
    for axis, step in ((0, 1), (0, -1), (1, 1), (1, -1)):
        s = np.roll(img, step, axis=axis)
        edge = (0 if step > 0 else -1)
        if axis == 0:
            s[edge, :] = 0
        else:
            s[:, edge] = 0
        shifted.append(s)
    scaled = [np.clip(img.astype(np.float32) * f, 0, 255).round().astype(np.uint8) for f in (0.95, 1.05)]
    return np.stack([img, img[:, ::-1], *shifted, *scaled])


def uncertainty(predictor, images) -> tuple[np.ndarray, np.ndarray]:
    """Spread of the calibrated probabilities over `tta_views`.

    images: uint8 (N, S, S). Returns (spread (N,): the standard deviation, over the 8 views, of the probability
    of the class predicted on the original; agreement (N,): the share of views predicting that class).
    """
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim == 2:
        images = images[None]
    views = np.concatenate([tta_views(im) for im in images])  # (N*8, S, S)
    probs = np.asarray(predictor.probabilities(views)).reshape(len(images), 8, -1)
    label = probs[:, 0].argmax(1)
    p_label = probs[np.arange(len(images)), :, label]  # (N, 8)
    agreement = (probs.argmax(2) == label[:, None]).mean(1)
    return p_label.std(1), agreement


def spread_level(spread: float, thresholds: dict[str, float]) -> str:
    """'low', 'typical' or 'high': against the thirds of the spread on slices of subjects never trained on."""
    return "low" if spread < thresholds["spread_low"] else "high" if spread > thresholds["spread_high"] else "typical"


def spread_sentence(spread: float, agreement: float, thresholds: dict[str, float],
                    auroc_error: float | None = None) -> str:
    """How to read the spread, in one sentence; with `auroc_error` (how well the spread told wrong answers from
    right ones on slices of subjects never trained on: trust.json's "uncertainty_never_trained"), a second saying
    how much that is worth."""
    out = (f"Under a mirror image, one-pixel shifts and ±5% brightness the probability of this stage moves by "
           f"±{spread:.1%} ({spread_level(spread, thresholds)} for a new subject's slice), and {agreement:.0%} of "
           "those 8 variants give the same stage. A high spread means the answer hangs on details that should "
           "not matter.")
    if auroc_error is None:
        return out
    return out + (f" On slices of subjects the network never trained on, a high spread {error_worth(auroc_error)} "
                  f"(AUROC {auroc_error:.2f}; 0.5 is chance).")


def error_worth(auroc_error: float) -> str:
    """What an AUROC at telling wrong answers from right ones is worth, in words (the page and the model card)."""
    return ("does not mark wrong answers" if auroc_error < 0.55 else
            "marks wrong answers only weakly" if auroc_error < 0.7 else "marks wrong answers")


# ---------------------------------------------------------------------- one call for the app, CLI and API
@dataclass(frozen=True)
class Assessment:
    """A prediction with what qualifies it: uncertainty, and the guard's report (None without a bank)."""

    prediction: "Prediction"
    spread: float
    agreement: float
    trust: TrustReport | None
    spread_thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def reliable(self) -> bool:
        """False when the input is out of distribution or a near-copy of a training slice."""
        return self.trust is None or not (self.trust.out_of_distribution or self.trust.near_copy)

    def flags(self) -> list[str]:
        """Short flags for a table: 'out of distribution', 'near-copy of a training slice', 'no guard'."""
        if self.trust is None:
            return ["no guard"]
        return (["out of distribution"] if self.trust.out_of_distribution else []) + \
               (["near-copy of a training slice"] if self.trust.near_copy else [])

    def as_dict(self) -> dict:
        out = {**self.prediction.as_dict(), "uncertainty": {"spread": round(self.spread, 4),
                                                            "agreement": round(self.agreement, 4)},
               "flags": self.flags(), "reliable": self.reliable}
        if self.spread_thresholds:
            out["uncertainty"]["level"] = spread_level(self.spread, self.spread_thresholds)
        if self.trust is not None:
            out["guard"] = self.trust.as_dict()
        return out


def assess(predictor, images, bank: TrustBank | None = None, colour: list[float] | None = None,
           k: int = 3) -> list[Assessment]:
    """Predict uint8 slices (N, S, S) with uncertainty and, given a bank, the guard's report for each."""
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim == 2:
        images = images[None]
    probs = np.asarray(predictor.probabilities(images))  # (N, C): a tensor from a Predictor, an array from an engine
    spread, agreement = uncertainty(predictor, images)
    reports = bank.check(images, colour, k) if bank is not None else [None] * len(images)
    thresholds = {key: v for key, v in (bank.thresholds if bank else {}).items() if key.startswith("spread")}
    return [Assessment(Prediction(tuple(float(p) for p in row), int(row.argmax())), float(s), float(a), r, thresholds)
            for row, s, a, r in zip(probs, spread, agreement, reports)]
