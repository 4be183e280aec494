"""Evaluate the model on a cohort the user brings: true stages from class-named folders or a CSV, then every
figure of the Evaluation page on the user's own scans (external validation).

    results = model.serve.pipeline.classify(files, ...)            # the one serving path, as for any batch
    truth = truth_from_folders([r.file for r in results])           # 'cohort.zip/Mild_Demented/a.png' -> Mild
    truth = truth_from_csv(csv_bytes, [r.file for r in results])    # or columns file, stage, optional subject
    evaluation = evaluate_cohort(results, truth, group_by="none")   # model.qualify.evaluate.cohort_metrics

Every problem a user can cause (a stage name no one knows, a CSV row naming a file that was not given, a subject
whose slices carry two stages, nothing labelled at all) raises `TruthError` with a message that lists what is
wrong. Files without a true stage are still classified; they are left out of the evaluation and counted.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from model.core.constants import CLASS_NAMES, COHORT_BOOTSTRAP
from model.core.prediction import subject_level
from model.qualify.evaluate import cohort_metrics
from model.reports.record import Result
from model.serve.batch import STAGE_HELP, stage_folder, stage_label, subject_key

SHOWN = 8  # names listed in one message before "and N more"


class TruthError(ValueError):
    """True stages that cannot be used as given: the message says which and what to do."""


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(f"'{i}'" for i in items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


@dataclass(frozen=True)
class Truth:
    """True stages of some of a batch's files.

    labels: {file name as in the results: label id}; subjects: {file name: subject id} where the source gives one;
    source: where the stages came from, in words.
    """

    labels: dict[str, int]
    subjects: dict[str, str] = field(default_factory=dict)
    source: str = "class-named folders"


def truth_from_folders(names: Sequence[str]) -> Truth:
    """Stages from folder names: a file under a folder named after a stage ('Mild_Demented', 'very mild
    demented', 'No dementia', ...) has that stage; the innermost such folder counts. A folder between the stage
    folder and the file ('Mild_Demented/OAS1_0001/s12.png') is the file's subject. Files under no stage folder stay
    unlabelled. Raises TruthError when no file is."""
    labels, subjects = {}, {}
    for name in names:
        parts = PurePosixPath(name).parts[:-1]
        found = [k for k, part in enumerate(parts) if stage_folder(part)]
        if found:
            k = found[-1]
            labels[name] = stage_label(parts[k])
            if len(parts) > k + 1:
                subjects[name] = "/".join(parts[k + 1:])
    if not labels:
        raise TruthError("No file is in a folder named after a stage, so there is nothing to evaluate. Put each "
                         f"stage's scans in a folder named {', '.join(CLASS_NAMES)} (one per stage; a folder inside "
                         "it is taken as the subject), or give a CSV of true stages instead.")
    return Truth(labels, subjects, "class-named folders")


def _match(wanted: str, names: Sequence[str], index: dict[str, list[str]]) -> list[str]:
    """The given files a CSV's file entry names: the same path, or a path that ends with it ('a/b.png' names
    'cohort.zip/a/b.png')."""
    return index.get(PurePosixPath(wanted.replace("\\", "/").strip().lstrip("./")).as_posix(), [])


def truth_from_csv(data: bytes | str, names: Sequence[str]) -> Truth:
    """Stages from a CSV with the columns file and stage (and optionally subject), matched to the given file
    names: a CSV file entry matches a name that is the same or ends with it at a folder boundary ('OAS1/s1.png'
    matches 'cohort.zip/OAS1/s1.png'). Raises TruthError listing unknown stages, files named twice with two
    stages, and files the CSV names that were not given or that match several."""
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    try:
        reader = csv.DictReader(io.StringIO(text))
        columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
        rows = list(reader)
    except csv.Error as exc:
        raise TruthError(f"The true-stage CSV cannot be read ({exc}). It needs a header row with the columns file "
                         "and stage, and optionally subject.") from exc
    if not {"file", "stage"} <= set(columns):
        raise TruthError(f"The true-stage CSV needs the columns file and stage (optionally subject); it has "
                         f"{', '.join(repr(c) for c in columns) or 'no header'}.")
    index: dict[str, list[str]] = {}
    for name in names:
        parts = PurePosixPath(name).parts
        for k in range(len(parts)):
            index.setdefault("/".join(parts[k:]), []).append(name)
    labels, subjects, unknown, missing, ambiguous, clash = {}, {}, [], [], [], []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        wanted = (row.get(columns["file"]) or "").strip()
        stage = (row.get(columns["stage"]) or "").strip()
        if not wanted and not stage:
            continue
        label = stage_label(stage)
        if label is None:
            unknown.append(f"line {n}: {stage or '(empty)'}")
            continue
        found = _match(wanted, names, index)
        if not found:
            missing.append(wanted or f"(empty, line {n})")
        elif len(found) > 1:
            ambiguous.append(wanted)
        elif labels.get(found[0], label) != label:
            clash.append(wanted)
        else:
            labels[found[0]] = label
            subject = (row.get(columns.get("subject", "")) or "").strip() if "subject" in columns else ""
            if subject:
                subjects[found[0]] = subject
    problems = []
    if unknown:
        problems.append(f"unknown stages ({_listing(unknown)}): {STAGE_HELP}")
    if missing:
        problems.append(f"{len(missing)} file{'s' if len(missing) != 1 else ''} named in the CSV "
                        f"{'were' if len(missing) != 1 else 'was'} not given ({_listing(missing)})")
    if ambiguous:
        problems.append(f"entries that match more than one given file ({_listing(ambiguous)}): write more of the "
                        "path")
    if clash:
        problems.append(f"files given two different stages ({_listing(clash)})")
    if problems:
        raise TruthError("The true-stage CSV cannot be used: " + "; ".join(problems) + ".")
    if not labels:
        raise TruthError("The true-stage CSV has no rows: add one row per file with its stage.")
    return Truth(labels, subjects, "CSV")


def _subject(name: str, truth: Truth, group_by: str) -> str:
    """The subject a labelled file is evaluated in: the truth's own, else the batch grouping (with a stage folder
    never taken for a subject), else the file alone."""
    if name in truth.subjects:
        return truth.subjects[name]
    if group_by == "name prefix":
        return subject_key(name, group_by)
    if group_by == "folder" and truth.source == "CSV":
        return subject_key(name, group_by)
    return name


def evaluate_cohort(results: Sequence, truth: Truth, *, group_by: str = "none",
                    n_bootstrap: int = COHORT_BOOTSTRAP, seed: int = 0) -> dict:
    """Every figure of the Evaluation page on the user's labelled files (`model.qualify.evaluate.cohort_metrics`),
    plus what was left out: {"slice", "subject" (None without subjects), "flags", "notes", "labelled",
    "unlabelled", "unlabelled_files", "failed", "source", "group_by", "subjects", "rows", "subject_rows"}.

    results: the batch's results (`Result`, or `Failed` for files that could not be read); truth: `Truth`;
    group_by: the batch page's grouping ("none", "folder", "name prefix"), used where the truth names no subject.
    "rows" is one dict per labelled slice: file, subject, true_label, p_<class>, prediction, flags; "subject_rows"
    one per subject (empty without subjects): subject, true_label, slices, mean p_<class>, prediction.
    """
    ok = [r for r in results if isinstance(r, Result)]
    labelled = [r for r in ok if r.file in truth.labels]
    unlabelled = [r.file for r in ok if r.file not in truth.labels]
    failed = [r.file for r in results if not isinstance(r, Result) and r.file in truth.labels]
    if not labelled:
        raise TruthError("None of the classified files has a true stage, so there is nothing to evaluate"
                         + (f" ({len(failed)} labelled files could not be read)" if failed else "") + ".")
    y = np.array([truth.labels[r.file] for r in labelled])
    probs = np.array([[r.probabilities[n] for n in CLASS_NAMES] for r in labelled], dtype=np.float64)
    subjects = np.array([_subject(r.file, truth, group_by) for r in labelled])
    mixed = sorted({s for s in subjects if len(set(y[subjects == s])) > 1})
    if mixed:
        raise TruthError(f"Subjects whose files carry different true stages ({_listing(mixed)}): a subject has one "
                         "stage. Correct the stages, or name the subjects apart.")
    out = cohort_metrics(y, probs, subjects, [r.flags for r in labelled],
                         agreement=np.array([r.uncertainty.agreement for r in labelled]),
                         temperature=labelled[0].calibration_temperature, n_bootstrap=n_bootstrap, seed=seed)
    subject_rows = []
    if out["subject"] is not None:  # the subject rule in one place: mean of the calibrated probabilities
        ids, labels, mean = subject_level(probs, y, subjects)
        sizes = dict(zip(*np.unique(subjects, return_counts=True)))
        subject_rows = [{"subject": str(i), "true_label": CLASS_NAMES[t], "slices": int(sizes[i]),
                         **{f"p_{n}": round(float(v), 6) for n, v in zip(CLASS_NAMES, p)},
                         "prediction": CLASS_NAMES[int(p.argmax())]} for i, t, p in zip(ids, labels, mean)]
    rows = [{"file": r.file, "subject": s, "true_label": CLASS_NAMES[t],
             **{f"p_{n}": r.probabilities[n] for n in CLASS_NAMES}, "prediction": r.prediction,
             "flags": "; ".join(r.flags)} for r, s, t in zip(labelled, subjects, y)]
    return out | {"labelled": len(labelled), "unlabelled": len(unlabelled), "unlabelled_files": unlabelled,
                  "failed": len(failed), "source": truth.source, "group_by": group_by,
                  "model_sha256": labelled[0].model_sha256, "rows": rows, "subject_rows": subject_rows}
