"""Result records for one classified slice: what the JSON download and later
batch exports and PDF reports contain."""
from __future__ import annotations

import io
from datetime import datetime, timezone

import numpy as np
from PIL import Image

from model.core.constants import CLASS_NAMES
from model.core.inference import Prediction
from model.qualify.explain import Explanation


def result_record(filename: str, prediction: Prediction, *, model_sha256: str, temperature: float,
                  explanation: Explanation | None = None, cam_settings: dict | None = None,
                  true_label: int | None = None, assessment=None, scan=None) -> dict:
    """The JSON record of one result. assessment: model.qualify.trust.Assessment (uncertainty, flags, guard);
    scan: model.scans.scan_io.Scan (what kind of file it was and what was done to it)."""
    record = {
        "file": filename,
        "prediction": prediction.class_name,
        "confidence": round(prediction.confidence, 6),
        "probabilities": {n: round(p, 6) for n, p in zip(CLASS_NAMES, prediction.probabilities)},
        "calibration_temperature": round(temperature, 4),
        "model_sha256": model_sha256,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "intended_use": "research only; not for the diagnosis of any patient",
    }
    if true_label is not None:
        record["true_label"] = CLASS_NAMES[true_label]
    if assessment is not None:
        trust = {k: v for k, v in assessment.as_dict().items() if k in ("uncertainty", "flags", "reliable", "guard")}
        record.update(trust)
    if scan is not None:
        record["scan"] = {"kind": scan.kind, "slice": scan.slice_index + 1, "slices": scan.n_slices,
                          "steps": list(scan.steps), "header": dict(scan.header)}
    if explanation is not None:
        record["explanation"] = {**explanation.settings(), **(cam_settings or {})}
    return record


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W) or (H, W, 3) -> PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
