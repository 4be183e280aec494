"""One result, one shape: the schema every output of a classified scan follows.

`Result` is declared once, here. The API's response models are these classes (so /docs shows them), the CLI's
CSV and JSON, the Batch page's table and download, the Classify page's JSON download and its PDF report are all
`Result.record()` (nested, for JSON) or `Result.row()` (flat, for CSV): the same field names, units and rounding
everywhere, and `schema_version` in every record. docs/usage.md lists the fields.

Units and rounding: probabilities and confidence in [0, 1] to 6 decimals; spread (a probability's standard
deviation) to 4; agreement (a share of 8 variants) to 4; the calibration temperature to 4; guard distances in
grey levels (0-255) RMS, to 3 (histogram distance to 4). Slices are counted from 1.
"""
from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field, PrivateAttr

from model.core.constants import CLASS_NAMES, DISPLAY_NAMES
from model.core.prediction import Prediction, subject_prediction

SCHEMA_VERSION = "1"
PROBABILITY_DECIMALS = 6
SPREAD_DECIMALS = 4  # spread and agreement
TEMPERATURE_DECIMALS = 4
INTENDED_USE = "research only; not for the diagnosis of any patient"
ROW_COLUMNS = ("schema_version", "file", "files", "kind", "slice", "n_slices", "prediction", "display_name",
               "label", "confidence", *(f"p_{n}" for n in CLASS_NAMES), "spread", "agreement", "uncertainty_level",
               "flags", "reliable", "reasons", "nearest_subject", "never_seen_prediction", "never_seen_confidence",
               "model_sha256", "calibration_temperature", "error_code", "error")




class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable: unreadable_scan, too_large, unsupported_type, ...")
    message: str = Field(description="what went wrong and what to do, in plain words")


class NearestSlice(BaseModel):
    subject: str = Field(description="recovered OASIS subject of the training slice")
    stage: str = Field(description="its class name")
    path: str = Field(description="its path in the dataset")
    distance: float = Field(description="grey levels RMS at 32x32; one brain's slices sit about 5-12 apart")


class Guard(BaseModel):
    out_of_distribution: bool = Field(description="unlike the training slices: the answer is unreliable")
    reasons: list[str] = Field(description="why it was flagged, one sentence each")
    near_copy: bool = Field(description="a near-copy of a training slice: recognition of a seen brain")
    residual: float = Field(description="grey levels RMS outside the training slices' basis")
    histogram: float = Field(description="L1 distance of the grey-level histogram from the training slices'")
    nearest_training_slices: list[NearestSlice]


class NeverSeenAnswer(BaseModel):
    """For a near-copy of a training slice: what the cross-validation's network that never saw that subject said of
    it. This is the answer to read; the shipped network trained on that brain."""

    subject: str = Field(description="the recognised training subject")
    fold: int = Field(description="the cross-validation fold (1-5) whose network was trained without it")
    prediction: str = Field(description="class name of the subject's stage from all 32 of its slices")
    display_name: str = Field(description="that stage in words")
    confidence: float = Field(description="its mean calibrated probability")
    probabilities: dict[str, float] = Field(description="the subject's mean out-of-fold calibrated probabilities")
    true_stage: str = Field(description="the subject's true stage (class name) in the dataset")
    slice_prediction: str | None = Field(description="class name of the out-of-fold stage of the nearest training "
                                                     "slice alone; null when the table lacks it")
    shipped_recipe: bool = Field(description="true when the cross-validated recipe is the shipped network's; false "
                                             "when the answer comes from an earlier recipe's cross-validation")

    @classmethod
    def of(cls, answer, *, shipped_recipe: bool) -> NeverSeenAnswer:
        """From a model.qualify.unseen.NeverSeen."""
        return cls(subject=answer.subject, fold=answer.fold + 1, prediction=CLASS_NAMES[answer.label],
                   display_name=answer.display_name,
                   confidence=round(max(answer.probabilities), PROBABILITY_DECIMALS),
                   probabilities={n: round(v, PROBABILITY_DECIMALS) for n, v in zip(CLASS_NAMES, answer.probabilities)},
                   true_stage=CLASS_NAMES[answer.true_label],
                   slice_prediction=None if answer.slice_label is None else CLASS_NAMES[answer.slice_label],
                   shipped_recipe=shipped_recipe)


class Uncertainty(BaseModel):
    spread: float = Field(description="standard deviation of the predicted stage's probability over 8 "
                                      "test-time variants (mirror, one-pixel shifts, +-5% brightness)")
    agreement: float = Field(description="share of those variants giving the same stage")
    level: Literal["low", "typical", "high"] | None = Field(
        description="against the thirds of the spread on new subjects' slices; null without the guard")


class ResultBase(BaseModel):
    schema_version: str = Field(SCHEMA_VERSION, description="version of this schema (docs/usage.md)")
    file: str = Field(description="the scan's name: its (first) file as given, in reading order")
    files: list[str] = Field(description="every file of this scan (an Analyze pair, a DICOM series)")

    def record(self) -> dict:
        """The JSON record of this result (nested, as the API answers it)."""
        return self.model_dump(mode="json")

    def row(self) -> dict:
        """The flat CSV row: `ROW_COLUMNS`, lists joined by '; ' (files by ' + '), '' where empty."""
        out = dict.fromkeys(ROW_COLUMNS, "") | {"schema_version": self.schema_version, "file": self.file,
                                                 "files": " + ".join(self.files)}
        if isinstance(self, Failed):
            return out | {"error_code": self.error.code, "error": self.error.message}
        u = self.uncertainty
        return out | {
            "kind": self.kind, "slice": self.slice, "n_slices": self.n_slices, "prediction": self.prediction,
            "display_name": self.display_name, "label": self.label, "confidence": self.confidence,
            **{f"p_{n}": self.probabilities[n] for n in CLASS_NAMES},
            "spread": u.spread, "agreement": u.agreement, "uncertainty_level": u.level or "",
            "flags": "; ".join(self.flags), "reliable": self.reliable,
            "reasons": "; ".join(self.guard.reasons) if self.guard else "",
            "nearest_subject": self.nearest_subject(),
            "never_seen_prediction": self.never_seen.prediction if self.never_seen else "",
            "never_seen_confidence": self.never_seen.confidence if self.never_seen else "",
            "model_sha256": self.model_sha256,
            "calibration_temperature": self.calibration_temperature}


class Failed(ResultBase):
    """A scan that could not be classified, with the reason."""

    error: ErrorDetail

    @classmethod
    def of(cls, files: list[str], message: str, code: str = "unreadable_scan") -> Failed:
        return cls(file=files[0], files=files, error=ErrorDetail(code=code, message=message))


class Result(ResultBase):
    """One classified scan: the stage, calibrated probabilities, what qualifies them and how the file was read."""

    kind: str = Field(description="PNG image, DICOM, DICOM series, NIfTI-1, Analyze 7.5, ...")
    slice: int = Field(description="the slice used, 1-based (1 for a 2D image)")
    n_slices: int = Field(description="slices, frames or series files to pick from")
    prediction: str = Field(description="class name of the predicted stage")
    display_name: str = Field(description="the predicted stage in words")
    label: int = Field(description="label index of the predicted stage (order of /v1/model classes)")
    confidence: float = Field(description="calibrated probability of the predicted stage")
    probabilities: dict[str, float] = Field(description="calibrated probabilities by class name")
    uncertainty: Uncertainty
    flags: list[str] = Field(description="'out of distribution', 'near-copy of a training slice', 'no guard'")
    reliable: bool = Field(description="false when out of distribution or a near-copy of a training slice")
    guard: Guard | None = Field(description="the out-of-distribution guard's report; null without the guard")
    never_seen: NeverSeenAnswer | None = Field(
        None, description="for a near-copy of a training slice: the stage from the cross-validation's network that "
                          "never saw that subject, the answer to read; null otherwise")
    steps: list[str] = Field(description="what was done to the file to bring it to the training slices' look")
    header: dict[str, str] = Field(description="technical header fields read (never patient identifiers)")
    model_sha256: str
    calibration_temperature: float

    # what made the record, for a page that shows it (never serialised)
    _scan = PrivateAttr(default=None)
    _assessment = PrivateAttr(default=None)

    @property
    def scan(self):
        """The model.scans.scan_io.Scan read (None for a slice handed over already decoded)."""
        return self._scan

    @property
    def assessment(self):
        """The model.qualify.trust.Assessment the fields come from."""
        return self._assessment

    @classmethod
    def of(cls, assessment, *, files: list[str], model_sha256: str, temperature: float, scan=None,
           kind: str = "slice") -> Result:
        """The record of one assessed slice (model.qualify.trust.Assessment) read from `files` as `scan`."""
        p = assessment.prediction
        qualifiers = assessment.as_dict()
        result = cls(
            file=files[0], files=files,
            kind=scan.kind if scan is not None else kind,
            slice=scan.slice_index + 1 if scan is not None else 1,
            n_slices=scan.n_slices if scan is not None else 1,
            prediction=p.class_name, display_name=p.display_name, label=p.label,
            confidence=round(p.confidence, PROBABILITY_DECIMALS),
            probabilities={n: round(v, PROBABILITY_DECIMALS) for n, v in zip(CLASS_NAMES, p.probabilities)},
            uncertainty={"spread": round(assessment.spread, SPREAD_DECIMALS),
                         "agreement": round(assessment.agreement, SPREAD_DECIMALS),
                         "level": qualifiers["uncertainty"].get("level")},
            flags=qualifiers["flags"], reliable=qualifiers["reliable"], guard=qualifiers.get("guard"),
            steps=list(scan.steps) if scan is not None else [],
            header=dict(scan.header) if scan is not None else {},
            model_sha256=model_sha256, calibration_temperature=round(temperature, TEMPERATURE_DECIMALS))
        result._scan, result._assessment = scan, assessment
        return result

    def without_slice(self) -> Result:
        """This result, letting go of the decoded slice it was read from (a stream holds no slices it has passed)."""
        self._scan = None
        return self

    def nearest_subject(self) -> str:
        near = self.guard.nearest_training_slices if self.guard else []
        return near[0].subject if near else ""


def page_record(result: Result, *, explanation=None, cam_settings: dict | None = None, checks=None,
                true_label: int | None = None, subject=None, subject_id: str | None = None,
                created_utc: str | None = None) -> dict:
    """The Classify page's JSON download and PDF: `result.record()` and what the page adds: when it was made, the
    intended use, the true stage of a test-split example, the explanation's settings with its checks
    (checks: (model.qualify.faithfulness.Faithfulness, randomisation Spearman or None)), and for several slices
    of one subject (subject: (their Results, the subject's Prediction)) the subject's stage."""
    out = result.record()
    if created_utc:
        out["created_utc"] = created_utc
    out["intended_use"] = INTENDED_USE
    if true_label is not None:
        out["true_label"] = CLASS_NAMES[true_label]
    if explanation is not None:
        out["explanation"] = {**explanation.settings(), **(cam_settings or {})}
        if checks is not None:
            out["explanation"]["faithfulness"] = checks[0].as_dict()
            if checks[1] is not None:
                out["explanation"]["randomisation_spearman"] = round(checks[1], 4)
    if subject is not None:
        slices, stage = subject
        out["subject"] = {**({"id": subject_id} if subject_id else {}), "files": [s.file for s in slices],
                          **stage.as_dict(),
                          "aggregation": "mean of calibrated probabilities",
                          "slices": [{"file": s.file, "prediction": s.prediction, "confidence": s.confidence,
                                      "flags": s.flags} for s in slices]}
    return out


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W) or (H, W, 3) -> PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class Slab(BaseModel):
    start: int = Field(description="first axial slice of the slab, 1-based, bottom of the head first")
    stop: int = Field(description="last axial slice of the slab, 1-based (start + 31)")
    score: float = Field(description="how well the slab fits the training slices' 32 positions (lower is better; "
                                     "grey levels RMS at 64 px)")
    typical: float = Field(description="99th percentile of that score for the training subjects' own slabs")
    aligned: bool = Field(description="score <= typical: the volume lines up with the training slices")


class SubjectResult(ResultBase):
    """Several slices of one subject staged together: each slice's result and the subject's stage, the mean of
    their calibrated probabilities (the rule the new-subject figures are for). From a volume, the slices are the
    slab of 32 matching the training slices' positions (`slab`); from separate files, the files given."""

    subject: str = Field(description="the subject's id as given (a folder, a file-name prefix, a field), or the "
                                     "volume's name")
    kind: str = Field(description="'slices' for separate files, else the volume's format (NIfTI-1, Analyze 7.5)")
    n_slices: int = Field(description="axial slices in the volume, or slices given")
    slab: Slab | None = Field(description="where the 32 slices lie in the volume; null for separate files")
    prediction: str = Field(description="class name of the subject's stage")
    display_name: str = Field(description="the subject's stage in words")
    label: int = Field(description="label index of the subject's stage")
    confidence: float = Field(description="the subject's mean calibrated probability of that stage")
    probabilities: dict[str, float] = Field(description="mean calibrated probabilities of the subject's slices")
    agreement: float = Field(description="share of the slices whose own stage is the subject's")
    flags: list[str] = Field(description="'slab not aligned', 'N of M slices flagged by the guard', 'slices of "
                                         "different training subjects', 'N files could not be read'")
    reliable: bool = Field(description="false when the slab is not aligned, most slices are flagged, or the slices "
                                       "are near-copies of different training subjects")
    slices: list[Result] = Field(description="each slice's own result, in order")
    skipped: list[Failed] = Field(default_factory=list, description="files given that could not be read")
    steps: list[str] = Field(description="what was done to a volume to bring it to the training slices' look")
    model_sha256: str
    calibration_temperature: float

    @classmethod
    def of(cls, slice_results: list[Result], *, subject: str, files: list[str], model_sha256: str,
           temperature: float, match=None, volume=None, skipped: list[Failed] = ()) -> SubjectResult:
        """The subject's record from its slices' results; match (model.core.slab.SlabMatch) and volume
        (scan_io.Volume) when they are a volume's slab."""
        if not slice_results:
            raise ValueError("a subject needs at least one readable slice")
        stage = subject_prediction([r.assessment.prediction if r.assessment is not None else
                                    Prediction(tuple(r.probabilities[n] for n in CLASS_NAMES), r.label)
                                    for r in slice_results])  # the one subject rule: mean, then arg-max
        mean, label = np.array(stage.probabilities), stage.label
        probs = np.array([[r.probabilities[n] for n in CLASS_NAMES] for r in slice_results], dtype=np.float64)
        flagged = sum(not r.reliable for r in slice_results)
        recognised = {r.nearest_subject() for r in slice_results if "near-copy of a training slice" in r.flags}
        flags = ([] if match is None or match.aligned else ["slab not aligned"])
        flags += [f"{flagged} of {len(slice_results)} slices flagged by the guard"] if flagged else []
        flags += [f"slices of different training subjects ({', '.join(sorted(recognised))})"] if len(recognised) > 1 \
            else []
        flags += [f"{len(skipped)} files could not be read"] if skipped else []
        return cls(file=files[0], files=files, subject=subject,
                   kind=volume.kind if volume is not None else "slices",
                   n_slices=len(volume.slices) if volume is not None else len(slice_results),
                   slab=None if match is None else Slab(start=match.start + 1, stop=match.stop,
                                                        score=round(match.score, 3), typical=round(match.typical, 3),
                                                        aligned=match.aligned),
                   prediction=CLASS_NAMES[label], display_name=DISPLAY_NAMES[label], label=label,
                   confidence=round(float(mean[label]), PROBABILITY_DECIMALS),
                   probabilities={n: round(float(v), PROBABILITY_DECIMALS) for n, v in zip(CLASS_NAMES, mean)},
                   agreement=round(float((probs.argmax(1) == label).mean()), SPREAD_DECIMALS),
                   flags=flags, reliable=(match is None or match.aligned) and flagged <= len(slice_results) // 2
                   and len(recognised) <= 1, slices=slice_results, skipped=list(skipped),
                   steps=list(volume.steps) if volume is not None else [], model_sha256=model_sha256,
                   calibration_temperature=round(temperature, TEMPERATURE_DECIMALS))

    def rows(self) -> list[dict]:
        """CSV rows: the subject's own row (slice empty; kind says 'subject') then one row per slice, then one per
        skipped file."""
        where = f" (slices {self.slab.start}-{self.slab.stop})" if self.slab else ""
        head = dict.fromkeys(ROW_COLUMNS, "") | {
            "schema_version": self.schema_version, "file": self.subject, "files": " + ".join(self.files),
            "kind": f"subject: {self.kind}{where}", "n_slices": self.n_slices,
            "prediction": self.prediction, "display_name": self.display_name, "label": self.label,
            "confidence": self.confidence, **{f"p_{n}": self.probabilities[n] for n in CLASS_NAMES},
            "agreement": self.agreement, "flags": "; ".join(self.flags), "reliable": self.reliable,
            "model_sha256": self.model_sha256, "calibration_temperature": self.calibration_temperature}
        return [head] + [r.row() for r in self.slices] + [f.row() for f in self.skipped]
