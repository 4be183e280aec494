"""One path for a scan: group -> open -> assess, and one shape for what comes out (`model.reports.record`).

    results = classify(files, predictor=p, bank=b)         # [(name, bytes), ...] -> [Result | Failed, ...]
    for batch in assess_stream(opened, predictor=p): ...     # the same, streamed in chunks (the CLI)

The Classify and Batch pages, the API (`/v1/predict`, `/v1/predict/batch`) and the CLI (`alzmri predict`) all
come through here, so a scan is grouped, read and assessed one way and its result has one shape:

* **group**: which files make one scan (`scan_io.group_uploads`: an Analyze .hdr + .img pair, the files of one
  DICOM series, else each file alone), in input order;
* **open**: `scan_io.open_upload` brings it to the training slices' look (a volume at its middle slice, or at
  `slice`, 1-based); a file that cannot be read becomes a `Failed` with a code and the reason;
* **assess**: `trust.assess` in chunks of `chunk` slices: calibrated probabilities, the spread over test-time
  variants and, with a bank, the guard's report with the `NEIGHBOURS` nearest training slices.

Results come back in input order, one per scan (a scan sits where its first file was).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from model.core.slab import SlabError, SlabTemplate
from model.qualify.trust import assess
from model.qualify.unseen import never_seen, shipped_recipe_crossvalidated
from model.reports.record import ErrorDetail, Failed, NeverSeenAnswer, Result, SubjectResult
from model.scans.scan_io import (ACCEPTED, SCAN_SUFFIXES, Scan, ScanError, group_uploads, open_upload, open_volume,
                                 printable)

CHUNK = 64  # slices assessed per forward pass: bounds the decoded slices held at once
NEIGHBOURS = 3  # nearest training slices the guard reports for each scan


@dataclass
class Opened:
    """One scan read, or why not. files: its files' names in reading order; scan: None after an error."""

    files: list[str]
    scan: Scan | None = None
    error: ErrorDetail | None = None


def _suffix(name: str) -> str:
    lower = name.lower()
    return "nii.gz" if lower.endswith(".nii.gz") else Path(lower).suffix.lstrip(".")


def error_detail(exc: ScanError, item: Sequence[tuple[str, bytes]]) -> ErrorDetail:
    """A ScanError as a coded reason: 'unsupported_type' when a file is no scan type this tool reads (its suffix
    is not in SCAN_SUFFIXES and it is not DICOM by content), else 'unreadable_scan'; the message is scan_io's."""
    foreign = any(_suffix(name) and _suffix(name) not in (*SCAN_SUFFIXES, "nii.gz") and data[128:132] != b"DICM"
                  for name, data in item)
    if foreign:
        return ErrorDetail(code="unsupported_type",
                           message=f"{exc} (readable: {ACCEPTED})" if ACCEPTED not in str(exc) else str(exc))
    return ErrorDetail(code="unreadable_scan", message=str(exc))


def open_item(item: Sequence[tuple[str, bytes]], *, slice: int | None = None) -> Opened:
    """Read one group of files (one scan) at `slice` (1-based; None: the middle one)."""
    files = [printable(name) for name, _ in item]
    try:
        return Opened(files, open_upload(item, slice_index=None if slice is None else slice - 1))
    except ScanError as exc:
        return Opened(files, error=error_detail(exc, item))


def assess_opened(opened: Sequence[Opened], *, predictor, bank=None) -> list[Result | Failed]:
    """Results of already opened scans, in their order; the readable ones assessed together."""
    readable = [o for o in opened if o.scan is not None]
    assessments = iter(assess(predictor, np.stack([o.scan.image for o in readable]), bank,
                              [o.scan.colour for o in readable], k=NEIGHBOURS) if readable else [])
    return [with_never_seen(Result.of(next(assessments), files=o.files, scan=o.scan, model_sha256=predictor.sha256,
                                      temperature=predictor.temperature)) if o.scan is not None
            else Failed(file=o.files[0], files=o.files, error=o.error) for o in opened]


def with_never_seen(result: Result) -> Result:
    """`result`, with the never-seen answer filled in when the guard calls it a near-copy of a training slice:
    the stage that the cross-validation's network trained without that subject gave it (model.qualify.unseen)."""
    guard = result.guard
    if guard is not None and guard.near_copy and guard.nearest_training_slices:
        nearest = guard.nearest_training_slices[0]
        answer = never_seen(nearest.subject, nearest.path)
        if answer is not None:
            result.never_seen = NeverSeenAnswer.of(answer, shipped_recipe=shipped_recipe_crossvalidated())
    return result


def assess_stream(opened: Iterable[Opened], *, predictor, bank=None, chunk: int = CHUNK
                  ) -> Iterator[list[Result | Failed]]:
    """`assess_opened` a chunk at a time: the next chunk is read only once this one is handed on, so at most
    `chunk` decoded slices are held."""
    opened = iter(opened)
    while batch := list(islice(opened, chunk)):
        yield assess_opened(batch, predictor=predictor, bank=bank)
        del batch  # before the next chunk is read


def classify(files: Sequence[tuple[str, bytes]], *, predictor, bank=None, slice: int | None = None,
             chunk: int = CHUNK, progress: Callable[[int, int], None] | None = None) -> list[Result | Failed]:
    """One result per scan that `files` make, in input order: group -> open -> assess, `chunk` scans at a time.

    files: (name, bytes) pairs; slice: 1-based slice of a volume (None: the middle one); progress(done, total)
    after each chunk, counted in scans."""
    items = group_uploads(files)
    out: list[Result | Failed] = []
    for batch in assess_stream((open_item(item, slice=slice) for item in items), predictor=predictor, bank=bank,
                               chunk=chunk):
        out += batch
        if progress:
            progress(len(out), len(items))
    return out


def classify_slices(images, names: Sequence[str], *, predictor, bank=None, colours: Sequence[float] | None = None,
                    kind: str = "dataset slice") -> list[Result]:
    """Results of slices already decoded to the training look (uint8 (N, S, S)), e.g. test-split examples."""
    images = np.asarray(images, dtype=np.uint8).reshape(-1, *np.shape(images)[-2:])
    colours = list(colours) if colours is not None else [0.0] * len(images)
    return [with_never_seen(Result.of(a, files=[name], kind=kind, model_sha256=predictor.sha256,
                                      temperature=predictor.temperature))
            for a, name in zip(assess(predictor, images, bank, colours, k=NEIGHBOURS), names)]


def stage_volume(item: Sequence[tuple[str, bytes]], *, predictor, bank=None, template=None) -> SubjectResult | Failed:
    """A NIfTI file or Analyze pair staged as a subject: every axial slice read in the training look, the slab of
    32 matching the training slices' positions found (`model.core.slab`), each slab slice assessed like any
    scan, and the subject's stage the mean of their calibrated probabilities. template: a SlabTemplate (default:
    the shipped one). A file that is no usable volume, or too short, becomes a `Failed` with the reason."""
    files = [printable(name) for name, _ in item]
    try:
        volume = open_volume(item)
        template = template if template is not None else SlabTemplate.load()
        match = template.locate(volume.slices)
    except (ScanError, SlabError) as exc:
        return Failed(file=files[0], files=files, error=ErrorDetail(code="not_a_subject_volume", message=str(exc)))
    names = [f"{files[0]} slice {z + 1}" for z in range(match.start, match.stop)]
    results = classify_slices(volume.slices[match.start:match.stop], names, predictor=predictor, bank=bank,
                              kind=volume.kind)
    for r, z in zip(results, range(match.start, match.stop)):
        r.slice, r.n_slices = z + 1, len(volume.slices)
    return SubjectResult.of(results, subject=files[0], files=files, model_sha256=predictor.sha256,
                            temperature=predictor.temperature, match=match, volume=volume)


def stage_subject(files: Sequence[tuple[str, bytes]], *, predictor, bank=None, subject: str | None = None,
                  template=None) -> SubjectResult | Failed:
    """Files of one subject staged together. One NIfTI/Analyze volume: `stage_volume`. Several scans: each is
    classified (a volume at its middle slice) and the subject's stage is the mean of their calibrated
    probabilities; files that cannot be read are listed in `skipped`. subject: its id (default: the first file)."""
    items = group_uploads(files)
    if len(items) == 1 and _suffix(items[0][0][0]) in ("nii", "nii.gz", "hdr", "img"):
        result = stage_volume(items[0], predictor=predictor, bank=bank, template=template)
        if isinstance(result, SubjectResult) and subject:
            result.subject = subject
        return result
    results = classify(files, predictor=predictor, bank=bank)
    readable = [r for r in results if isinstance(r, Result)]
    names = [printable(name) for name, _ in files]
    if not readable:
        return Failed(file=names[0], files=names, error=ErrorDetail(
            code="unreadable_scan", message="none of these files could be read: " +
            "; ".join(f.error.message for f in results if isinstance(f, Failed))))
    return SubjectResult.of(readable, subject=subject or names[0], files=names, model_sha256=predictor.sha256,
                            temperature=predictor.temperature,
                            skipped=[r for r in results if isinstance(r, Failed)])
