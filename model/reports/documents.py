"""Reports you can cite: one classified slice, or one view of the Evaluation page, as a PDF (or HTML) file that
carries everything needed to reproduce it.

* `reproducibility_stamp(predictor_or_config, method=..., scan=...)` -> dict: the model's checksum and the config
  that matters (image size, temperature and where it came from), the dataset's fingerprint, the preprocessing, the
  explanation method, software versions, the project's git commit and the time (UTC). JSON-serialisable.
* `scan_report_pdf(record, image, overlay, stamp)` -> PDF bytes: the slice and its saliency overlay, the stage and
  its probabilities, uncertainty and the guard's verdict, how the file was read, and the stamp.
* `evaluation_report(view, crossval=..., metrics=..., baseline=..., stamp=..., fmt="pdf" | "html")` -> bytes: the
  Evaluation page's figures (matplotlib PNGs drawn from the same numbers as the app's charts) and tables, with
  their caveats and the stamp. The HTML file is self-contained (figures as data URIs) and escapes every text.
* `cohort_report(evaluation, stamp=..., fmt=...)` -> bytes: the user's own labelled cohort evaluated
  (`model.serve.cohort.evaluate_cohort`), with the same tables and figures.

A report is a list of blocks (heading, paragraph, table, figures, ...) that two small renderers turn into PDF
(fpdf2, with matplotlib's bundled DejaVu Sans embedded so any printable name renders) or HTML. Text from a file or
a record is shown literally: never read as Markdown or HTML, control characters (a NUL included) and characters the
font cannot draw written as [U+XXXX].
"""
from __future__ import annotations

import base64
import html
import importlib.metadata
import io
import json
import math
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace
from matplotlib.figure import Figure
from PIL import Image

from model.core.constants import (
    CLASS_COLORS,
    CLASS_NAMES,
    CROSSVAL_PATH,
    DISPLAY_NAMES,
    MEAN,
    MODEL_CONFIG_PATH,
    PROJECT_ROOT,
    STAGE_ORDER,
    STD,
    default_data_dir,
)
from model.core.dataset import fingerprint
from model.qualify.explain import METHOD_NAMES, METHOD_NOTES
from model.qualify.neighbours import distance_bin_label, distance_summary
from model.reports.card import BASELINE_NAMES, confound_sentence
from model.reports.record import png_bytes

RESEARCH_NOTICE = ("Research use only. Not a medical device and not for the diagnosis of any patient. Trained on "
                   "one public dataset of 2D axial MRI slices of Alzheimer's disease; other brain diseases and other "
                   "kinds of scans are out of scope.")
FOOTER = "Research use only - not for the diagnosis of any patient"
SOFTWARE = ("torch", "torchvision", "captum", "numpy", "streamlit", "fpdf2", "pydicom", "nibabel")
EVALUATION_VIEWS = {"new": "New subjects (cross-validated)", "published": "Published test split (slice-level)"}
FORMATS = ("pdf", "html")
NETWORK_COLOR, LOOKUP_COLOR, GROUP_COLORS = "#0072B2", "#BBBBBB", ("#1F6F8B", "#9CC3D5")
FIGURE_DPI = 150  # sharp when printed at the half-page width figures take in the PDF
FIGURE_GAP = 5.0  # mm between figures side by side


def display(name: str) -> str:
    """'Mild_Demented' -> 'Mild dementia'."""
    return DISPLAY_NAMES[CLASS_NAMES.index(name)]


def words(value) -> str:
    """A setting in plain words: {"steps": 32, "scores": {"map": 0.1}} -> 'steps 32, scores (map 0.1)'."""
    if isinstance(value, dict):
        return ", ".join(f"{k} ({words(v)})" if isinstance(v, dict) else f"{k} {words(v)}" for k, v in value.items())
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ====================================================================== the reproducibility stamp
def software_versions() -> dict[str, str]:
    """{package: installed version} for Python and every library a result depends on ('not installed' if absent)."""
    out = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_state(root: Path = PROJECT_ROOT) -> dict:
    """{"commit": HEAD's SHA-1 or None, "modified": whether tracked files differ from it, or None}. Never raises:
    an installed copy without git, or without a repository, gives Nones."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], check=False, cwd=root, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "modified": None if status is None else bool(status)}


def _temperature_source(config: dict) -> str:
    source = config.get("temperature_source")
    if source:
        details = ", ".join(f"{k} {v}" for k, v in source.items() if k != "method")
        return f"{source.get('method', 'recorded')}" + (f", {details}" if details else "")
    if config.get("train_config", {}).get("temperature") is not None:
        return "given at training (--temperature)"
    return "fitted on the training run's validation split" if config else "unknown"


def _model_facts(source) -> tuple[dict, dict]:
    """(checksum and config essentials, the whole config) of a Predictor, a model_config dict, or None (the
    shipped config)."""
    if source is None:
        source = json.loads(MODEL_CONFIG_PATH.read_text()) if MODEL_CONFIG_PATH.is_file() else {}
    if isinstance(source, dict):
        config, sha = source, source.get("weights_sha256")
        temperature, image_size = config.get("temperature"), config.get("image_size")
        checksum_source = "recorded in model_config.json (the app refuses weights that do not match it)"
    else:  # a model.core.inference.Predictor
        config, sha = dict(source.config), source.sha256
        temperature, image_size = source.temperature, source.image_size
        checksum_source = "of the loaded weights, verified against model_config.json when they were loaded"
    return {"weights_sha256": (sha or "").lower() or None, "checksum_source": checksum_source,
            "arch": config.get("arch"), "weights_dtype": config.get("weights_dtype"),
            "image_size": image_size, "source_size": config.get("source_size"),
            "temperature": None if temperature is None else round(float(temperature), 6),
            "temperature_source": _temperature_source(config),
            "selected_epoch": (config.get("selected_epoch") or {}).get("epoch")}, config


def _dataset_facts(config: dict, data_dir) -> dict:
    """The local dataset's fingerprint when it is there, else the one recorded with the model, saying which."""
    recorded = dict(config.get("data_sha256") or {})
    path = Path(data_dir) if data_dir is not None else default_data_dir()
    local = fingerprint(path) if path.is_dir() else {}
    if local:
        same = None if not recorded else all(recorded.get(k) == v for k, v in local.items())
        return {"source": "local dataset", "path": str(path), "sha256": local, "matches_model_config": same}
    return {"source": "recorded in model_config.json" if recorded else "not recorded, and no local dataset",
            "path": None, "sha256": recorded, "matches_model_config": None}


def _preprocessing(facts: dict, config: dict, scan) -> dict:
    size, source = facts["image_size"], facts["source_size"] or "S"
    steps = [f"grey levels 0-255 scaled to [0, 1] (uint8 slice of {source}x{source} px)",
             f"resized to {size}x{size} px, bilinear, antialiased when shrinking (model.core.preprocess.to_input)",
             f"normalised as (x - {MEAN}) / {STD} (model.core.constants MEAN and STD)"]
    out = {"steps": steps, "mean": MEAN, "std": STD}
    if config.get("mean") not in (None, MEAN) or config.get("std") not in (None, STD):
        out["config_mean_std"] = [config.get("mean"), config.get("std")]  # a model trained with other constants
    if scan is not None:
        scan_steps = scan.get("steps") if isinstance(scan, dict) else getattr(scan, "steps", None)
        out["slice_reading"] = list(scan_steps or [])
    return out


def reproducibility_stamp(predictor_or_config=None, *, method: dict | None = None, data_dir=None,
                          scan=None) -> dict:
    """What it takes to reproduce a result, as a JSON-serialisable dict.

    predictor_or_config: a model.core.inference.Predictor, the model_config.json dict, or None for the shipped config.
    method: the explanation's settings (a record's "explanation": method, layer, target, opacity, colormap).
    data_dir: the dataset folder to fingerprint (default $ALZ_MRI_DATA or ../shared/data/alzheimer_mri); without
    one the fingerprint recorded in model_config.json is given, and "dataset.source" says which.
    scan: a model.scans.scan_io.Scan (or a record's "scan" dict): how the slice was read from its file.
    """
    model, config = _model_facts(predictor_or_config)
    git = git_state()
    return {
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "dataset": _dataset_facts(config, data_dir),
        "preprocessing": _preprocessing(model, config, scan),
        "explanation": dict(method) if method else None,
        "software": software_versions(),
        "git_commit": git["commit"],
        "git_modified": git["modified"],
    }


def stamp_rows(stamp: dict) -> list[tuple[str, str]]:
    """The stamp as (label, value) rows for a table, in reading order."""
    model, data, prep = stamp.get("model", {}), stamp.get("dataset", {}), stamp.get("preprocessing", {})
    rows = [("Model checksum (SHA-256)", model.get("weights_sha256") or "unknown"),
            ("Checksum source", model.get("checksum_source", "")),
            ("Model", f"{model.get('arch') or 'unknown'}, {model.get('weights_dtype') or '?'} weights, input "
                      f"{model.get('image_size')} px" + (f", selected epoch {model['selected_epoch']}"
                                                         if model.get("selected_epoch") is not None else "")),
            ("Temperature", f"{model.get('temperature')} ({model.get('temperature_source')})")]
    hashes = "\n".join(f"{split} {sha}" for split, sha in data.get("sha256", {}).items()) or "none"
    where = data.get("source", "")
    if data.get("path"):
        where += f" at {data['path']}"
    if data.get("matches_model_config") is not None:
        where += (": the same files the model was trained on" if data["matches_model_config"]
                  else ": NOT the files recorded with the model")
    rows += [("Dataset fingerprint", f"{hashes}\n({where})"),
             ("Preprocessing", "; ".join(prep.get("steps", [])))]
    if prep.get("config_mean_std"):
        rows.append(("Model config normalisation", "mean {}, std {}".format(*prep["config_mean_std"])))
    if prep.get("slice_reading") is not None:
        rows.append(("Slice reading", " ".join(prep["slice_reading"]) or "as stored (a 2D slice)"))
    if stamp.get("explanation"):
        rows.append(("Explanation", words(stamp["explanation"])))
    rows.append(("Software", " · ".join(f"{name} {version}" for name, version in stamp.get("software", {}).items())))
    commit = stamp.get("git_commit") or "not available"
    if stamp.get("git_modified"):
        commit += " (with uncommitted changes)"
    rows += [("Project commit", commit), ("Stamped (UTC)", stamp.get("created_utc", ""))]
    return rows


# ====================================================================== blocks a report is made of
@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str
    small: bool = False


@dataclass(frozen=True)
class Notice:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    widths: tuple[float, ...] | None = None  # relative column widths; None: equal


@dataclass(frozen=True)
class KeyValues:
    rows: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Figures:
    """PNG images side by side, each with a caption: (png bytes, caption)."""
    items: tuple[tuple[bytes, str], ...]
    width: float = 1.0  # share of the text width the row takes
    left: bool = False  # aligned left instead of centred


@dataclass(frozen=True)
class Beside:
    """Figures on the left and other blocks in a column to their right (PDF); one after the other in HTML."""
    left: Figures
    right: tuple


@dataclass(frozen=True)
class Lead:
    """One line that stands out: the answer."""
    text: str


@dataclass(frozen=True)
class Bars:
    """Labelled values in [0, 1] drawn as horizontal bars: (label, value, colour)."""
    items: tuple[tuple[str, float, str], ...]


@dataclass
class Report:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> None:
        self.blocks.extend(b for b in blocks if b is not None)


def literal(text) -> str:
    """Text shown as it is: control characters (NUL, newline inside a name, ...) written as [U+XXXX]."""
    return "".join(ch if ch.isprintable() or ch == "\n" else f"[U+{ord(ch):04X}]" for ch in str(text))


# ====================================================================== figures (matplotlib, Agg)
def _new_figure(width: float = 5.2, height: float = 3.6):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, facecolor="white")
    return buf.getvalue()


def _short(name: str) -> str:
    return display(name).replace(" dementia", "\ndementia")


def figure_headline(rows: list[dict]) -> bytes:
    """Balanced accuracy of the network and the lookup per setting (rows: setting, network, lookup)."""
    fig, ax = _new_figure(5.6, 3.2)
    x = np.arange(len(rows))
    for offset, key, name, color in ((-0.2, "network", "this network", NETWORK_COLOR),
                                     (0.2, "lookup", "raw-pixel lookup (no learning)", LOOKUP_COLOR)):
        values = [r[key] for r in rows]
        bars = ax.bar(x + offset, values, 0.4, color=color, label=name)
        ax.bar_label(bars, [f"{v:.1%}" for v in values], fontsize=8)
    ax.axhline(0.25, ls=":", color="#777", label="chance (4 stages)")
    ax.set_xticks(x, [r["setting"] for r in rows], fontsize=8)
    ax.set(ylim=(0, 1.12), ylabel="balanced accuracy", title="Balanced accuracy: a seen brain or a new one")
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)


def figure_confusion(matrix, unit: str) -> bytes:
    """Counts and row shares, stages from healthy to severe; rows are the true stage."""
    m = np.asarray(matrix, dtype=float)[np.ix_(STAGE_ORDER, STAGE_ORDER)]
    share = m / np.clip(m.sum(1, keepdims=True), 1, None)
    fig, ax = _new_figure(5.2, 4.2)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(m)):
        for j in range(len(m)):
            ax.text(j, i, f"{int(m[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    labels = [_short(CLASS_NAMES[i]) for i in STAGE_ORDER]
    ax.set_xticks(range(len(m)), labels, fontsize=8)
    ax.set_yticks(range(len(m)), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix ({unit}; row shares)")
    return _png(fig)


def figure_roc(metrics: dict) -> bytes:
    fig, ax = _new_figure()
    for name in (CLASS_NAMES[i] for i in STAGE_ORDER):
        entry = metrics["per_class"].get(name, {})
        if "roc_curve" in entry:
            ax.plot(entry["roc_curve"]["fpr"], entry["roc_curve"]["tpr"], color=CLASS_COLORS[name], lw=1.6,
                    label=f"{display(name)} (AUC {entry['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="#999", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate",
           title="ROC curves, one stage vs rest")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def figure_pr(metrics: dict) -> bytes:
    fig, ax = _new_figure()
    for name in (CLASS_NAMES[i] for i in STAGE_ORDER):
        entry = metrics["per_class"].get(name, {})
        if "pr_curve" in entry:
            color = CLASS_COLORS[name]
            ax.step(entry["pr_curve"]["recall"], entry["pr_curve"]["precision"], where="post", color=color, lw=1.6,
                    label=f"{display(name)} (AP {entry['pr_auc']:.3f})")
            ax.axhline(entry["support"] / metrics["n"], color=color, ls=":", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title="Precision-recall (dotted: prevalence)")
    ax.legend(fontsize=7, loc="upper right")
    return _png(fig)


def figure_reliability(before: list[dict], after: list[dict],
                       title: str = "Reliability, out of fold (marker size: slices)") -> bytes:
    """Accuracy against mean confidence per bin, before and after temperature scaling; marker area ~ slices."""
    fig, ax = _new_figure(5.2, 4.0)
    ax.plot([0, 1], [0, 1], ls=":", color="#999", label="perfectly calibrated")
    for rows, name, color in ((before, "before (T = 1)", "#E69F00"), (after, "after temperature scaling",
                                                                      NETWORK_COLOR)):
        biggest = max([r["n"] for r in rows] or [1])
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], color=color, label=name)
        ax.scatter([r["confidence"] for r in rows], [r["accuracy"] for r in rows], color=color,
                   s=[10 + 90 * r["n"] / biggest for r in rows], zorder=3)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="mean confidence", ylabel="accuracy", title=title)
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def figure_class_balance(counts: dict[str, list[int]]) -> bytes:
    """Share of each stage per group of counts ({name: per-class counts in label order}), counts on the bars."""
    fig, ax = _new_figure()
    x = np.arange(len(STAGE_ORDER))
    width = 0.8 / max(1, len(counts))
    for k, ((name, values), color) in enumerate(zip(counts.items(), GROUP_COLORS)):
        total = max(1, sum(values))
        bars = ax.bar(x + (k - (len(counts) - 1) / 2) * width, [values[i] / total for i in STAGE_ORDER], width,
                      color=color, label=f"{name} (n={sum(values):,})")
        ax.bar_label(bars, [f"{values[i]:,}" for i in STAGE_ORDER], fontsize=7)
    ax.set_xticks(x, [_short(CLASS_NAMES[i]) for i in STAGE_ORDER], fontsize=8)
    ax.set(ylim=(0, 0.7), ylabel="share", title="Class balance")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.legend(fontsize=8)
    return _png(fig)


def figure_train_distance(rows: list[dict]) -> bytes:
    """Accuracy of the model and of the lookup per bin of distance to the nearest training slice."""
    rows = [r for r in rows if r["n"]]
    fig, ax = _new_figure(7.2, 3.0)
    x = np.arange(len(rows))
    for offset, key, name, color in ((-0.2, "accuracy", "this model", NETWORK_COLOR),
                                     (0.2, "lookup_accuracy", "nearest-train-slice lookup", LOOKUP_COLOR)):
        bars = ax.bar(x + offset, [r[key] for r in rows], 0.4, color=color, label=name)
        ax.bar_label(bars, [f"{r[key]:.0%}" for r in rows], fontsize=7)
    ax.set_xticks(x, [f"{distance_bin_label(r)}\nn={r['n']:,}" for r in rows], fontsize=7)
    ax.set(ylim=(0, 1.12), ylabel="accuracy", xlabel="RMS grey-level distance to the nearest train slice",
           title="Accuracy by distance to the nearest training slice")
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


def pixel_png(image: np.ndarray, min_side: int = 384) -> bytes:
    """A uint8 slice (S, S) or overlay (S, S, 3) as PNG, enlarged by a whole factor with nearest neighbours so
    that it prints sharp without inventing detail."""
    factor = max(1, -(-min_side // max(1, image.shape[0])))
    return png_bytes(np.repeat(np.repeat(np.asarray(image, np.uint8), factor, 0), factor, 1))


# ====================================================================== the scan report
def _probability_bars(probabilities: dict) -> Bars:
    return Bars(tuple((DISPLAY_NAMES[i], float(probabilities.get(CLASS_NAMES[i], 0.0)),
                       CLASS_COLORS[CLASS_NAMES[i]]) for i in STAGE_ORDER))


def _guard_blocks(record: dict) -> list:
    blocks = [Heading("Uncertainty and the guard's verdict")]
    u = record.get("uncertainty")
    if u:
        level = f" ({u['level']} for a new subject's slice)" if u.get("level") else ""
        blocks.append(Paragraph(
            f"Under a mirror image, one-pixel shifts and ±5% brightness the probability of this stage moves by "
            f"±{u['spread']:.1%}{level}, and {u['agreement']:.0%} of those 8 variants give the same stage."))
    flags = record.get("flags")
    if flags is not None:
        blocks.append(Paragraph("Flags: " + ("; ".join(map(str, flags)) if flags else "none") +
                                ("" if record.get("reliable", True) else ". This answer is NOT reliable.")))
    guard = record.get("guard")
    if guard:
        if guard.get("reasons"):
            blocks += [Paragraph("Out of distribution because:"), Bullets(tuple(map(str, guard["reasons"])))]
        if guard.get("near_copy"):
            blocks.append(Paragraph("A near-copy of a training slice: the answer recognises a brain seen in "
                                    "training; it is not a reading of a new one."))
            seen = record.get("never_seen")
            if seen:
                whose = "the shipped recipe's" if seen.get("shipped_recipe") else "an earlier recipe's"
                right = ("right" if seen["prediction"] == seen["true_stage"]
                         else f"wrong (true stage: {display(seen['true_stage'])})")
                blocks.append(Paragraph(
                    f"Read this one: the fold-{seen['fold']} network of {whose} 5-fold cross-validation was trained "
                    f"without {seen['subject']}; from all 32 of its slices it stages this subject "
                    f"{seen['display_name']} ({seen['confidence']:.0%}), {right}. That is what the model does on a "
                    "new brain; the stage above only says which brain it recognised."))
        near = guard.get("nearest_training_slices") or []
        if near:
            blocks.append(Table(("nearest training slice", "subject", "stage", "distance (grey levels RMS)"),
                                tuple((n["path"], n["subject"], display(n["stage"]), f"{n['distance']:.1f}")
                                      for n in near), widths=(3, 1.4, 1.6, 1.6)))
    return blocks if len(blocks) > 1 else []


def _nested_table(name: str, value: dict) -> Table:
    """{row: {column: v}} as a table (e.g. faithfulness: map / random / edges by deletion / insertion)."""
    if value and all(isinstance(v, dict) for v in value.values()):
        columns = list(dict.fromkeys(k for v in value.values() for k in v))
        return Table((name, *columns), tuple((str(r), *(words(v.get(c, "")) for c in columns))
                                             for r, v in value.items()), widths=(2, *[1.5] * len(columns)))
    return Table((name, "value"), tuple((str(k), words(v)) for k, v in value.items()), widths=(2, 3))


def _method_words(method: str | None) -> tuple[str, str]:
    """(the method's name as people write it, one sentence on what its map shows)."""
    return METHOD_NAMES.get(method, method or "saliency"), METHOD_NOTES.get(method, "")


def new_subject_sentence(crossval: dict | None = None) -> str | None:
    """How to read any stage this model gives: its subject-level figures on brains it never saw, from the shipped
    cross-validation (assets/crossval.json), with their intervals; None when that file is missing."""
    if crossval is None:
        crossval = json.loads(CROSSVAL_PATH.read_text()) if CROSSVAL_PATH.is_file() else None
    net = (crossval or {}).get("network", {}).get("subject")
    if not net:
        return None
    auc, bacc = _ci(net, "any_dementia_auc"), _ci(net, "balanced_accuracy")
    return (f"How to read this stage: on the {net.get('n', 200)} subjects of its {len(crossval.get('folds_run', [])) or 5}-fold "
            f"cross-validation, a brain the model never saw was told apart from a healthy one with ROC AUC {auc}, "
            f"and its four-stage balanced accuracy was {bacc} (95% intervals). A single slice carries less "
            "evidence than a subject's 32.")


def _scan_blocks(record: dict, image: np.ndarray, overlay: np.ndarray, stamp: dict) -> Report:
    subject = record.get("subject")
    title = (f"Subject report: Alzheimer's disease stage of one subject from {len(subject.get('files', []))} slices"
             if subject else "Scan report: Alzheimer's disease stage of one MRI slice")
    report = Report(title)
    report.add(Notice(RESEARCH_NOTICE))
    if subject:  # the subject's stage leads; the slice shown below is one of its slices
        report.add(Heading("Subject" + (f" {subject['id']}" if subject.get("id") else "")),
                   Lead(display(subject["prediction"])),
                   Paragraph(f"Subject-level stage: the {subject.get('aggregation', 'mean')} of "
                             f"{len(subject.get('files', []))} slices, "
                             f"{subject['probabilities'][subject['prediction']]:.1%}."),
                   _probability_bars(subject.get("probabilities", {})))
        rows = tuple((str(s["file"]), display(s["prediction"]), f"{s['confidence']:.1%}", ", ".join(s["flags"]))
                     for s in subject.get("slices", []))
        if rows:
            report.add(Table(("slice", "stage", "probability", "flags"), rows, widths=(3, 2, 1.2, 3)))
        report.add(Heading("One of its slices"))
    scan = bool(record.get("steps"))  # read from a file (model.reports.record: kind, slice, n_slices, steps, header)
    facts = [("File", str(record.get("file", ""))), ("Classified (UTC)", record.get("created_utc", ""))]
    if scan:
        facts.append(("Scan", f"{record.get('kind')}, slice {record.get('slice')} of {record.get('n_slices')}"))
    report.add(KeyValues(tuple(facts)))

    explanation = record.get("explanation") or {}
    target = explanation.get("target")
    method, note = _method_words(explanation.get("method"))
    cam = (f"{method} for '{display(target)}'" if target in CLASS_NAMES else "Saliency overlay") + \
        (f" at {explanation['layer']}" if explanation.get("layer") else "")
    images = Figures(((pixel_png(image), f"The slice as classified ({image.shape[1]}x{image.shape[0]} px)"),
                      (pixel_png(overlay), cam)), width=0.56, left=True)
    stage = record.get("prediction")
    result = [Heading("Result"), Lead(display(stage) if stage in CLASS_NAMES else str(stage))]
    if record.get("confidence") is not None:
        temperature = record.get("calibration_temperature")
        result.append(Paragraph(f"Predicted stage, calibrated probability {record['confidence']:.1%}"
                                + (f" (temperature {temperature:.3f})." if temperature is not None else ".")))
    if record.get("true_label") in CLASS_NAMES:
        result.append(Paragraph(f"True stage: {display(record['true_label'])}."))
    report.add(Beside(images, (*result, _probability_bars(record.get("probabilities", {})))))
    sentence = new_subject_sentence()
    if sentence:
        report.add(Paragraph(sentence))
    report.add(*_guard_blocks(record))

    if explanation:
        rest = {k: v for k, v in explanation.items() if k not in ("method", "layer", "target")}
        settings = words({k: v for k, v in rest.items() if not isinstance(v, dict)})
        report.add(Heading("Explanation"), Paragraph(f"{cam}" + (f"; {settings}" if settings else "") + ". "
                                                     + note + " A saliency map is not a lesion map."))
        for key, value in rest.items():  # results about the map, e.g. its faithfulness scores beside baselines'
            if isinstance(value, dict):
                report.add(_nested_table(key.replace("_", " "), value))
    if scan:
        report.add(Heading("How the file was read"), Bullets(tuple(map(str, record["steps"]))))
        if record.get("header"):
            report.add(KeyValues(tuple((str(k), str(v)) for k, v in record["header"].items())))

    report.add(Heading("Reproducibility"))
    sha = (stamp.get("model") or {}).get("weights_sha256")
    if record.get("model_sha256") and sha and record["model_sha256"].lower() != sha:
        report.add(Paragraph(f"Caution: this result was made by the model {record['model_sha256']}, not the one "
                             "the stamp below describes."))
    shown = {"Slice reading"} if scan else set()  # its steps are listed above
    report.add(KeyValues(tuple(row for row in stamp_rows(stamp) if row[0] not in shown)))
    return report


def scan_report_pdf(record: dict, image: np.ndarray, overlay: np.ndarray, stamp: dict) -> bytes:
    """One classified slice as a PDF (one page, two when the guard has much to say).

    record: model.reports.record.page_record(...) (stage, probabilities, and uncertainty, flags, guard, explanation and
    scan when present); image: the slice, uint8 (S, S); overlay: its saliency overlay, uint8 (S, S, 3);
    stamp: reproducibility_stamp(...).
    """
    image, overlay = np.asarray(image), np.asarray(overlay)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"image must be a uint8 (S, S) slice, got {image.dtype} {image.shape}")
    if overlay.dtype != np.uint8 or overlay.shape != (*image.shape, 3):
        raise ValueError(f"overlay must be uint8 {(*image.shape, 3)}, got {overlay.dtype} {overlay.shape}")
    return _render_pdf(_scan_blocks(record, image, overlay, stamp))


# ====================================================================== the evaluation report
def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _ci(entry: dict, key: str, percent: bool = False) -> str:
    value = entry.get(key)
    if not _finite(value):
        return "–"
    fmt = "{:.1%}" if percent else "{:.3f}"
    ci = entry.get("ci95", {}).get(key)
    known = ci and all(map(_finite, ci))  # a class never predicted has no interval
    return fmt.format(value) + (f" ({fmt.format(ci[0])}–{fmt.format(ci[1])})" if known else "")


def headline_rows(crossval: dict | None, metrics: dict | None, baseline: dict | None) -> list[dict]:
    """Balanced accuracy of the network and the raw-pixel lookup on a seen brain (the published test split) and
    on new subjects (per slice and per subject): [{"setting", "network", "lookup"}]."""
    rows = []
    if metrics and baseline and "test" in baseline:
        rows.append({"setting": "published test split\n(slices of seen brains)",
                     "network": metrics["balanced_accuracy"], "lookup": baseline["test"]["balanced_accuracy"]})
    if crossval:
        for level, text in (("slice", "new subjects,\nper slice"), ("subject", "new subjects,\nper subject")):
            rows.append({"setting": text, "network": crossval["network"][level]["balanced_accuracy"],
                         "lookup": crossval["lookup"][level]["balanced_accuracy"]})
    return rows


def _headline_blocks(crossval, metrics, baseline) -> list:
    rows = headline_rows(crossval, metrics, baseline)
    if not rows:
        return []
    text = ("The published split is by slice, so every test brain also sits in training, and a lookup that learns "
            "nothing scores almost as well there. For a brain the model has never seen, read the new-subject "
            "figures: the dataset's 6,400 slices were traced back to 200 OASIS-1 subjects and each was predicted "
            "by a network trained without it (5-fold cross-validation by subject).")
    return [Heading("Headline: a seen brain or a new one"), Paragraph(text),
            Figures(((figure_headline(rows), "Balanced accuracy of the network and of a raw-pixel lookup"),),
                    width=0.6),
            Table(("setting", "this network", "raw-pixel lookup"),
                  tuple((r["setting"].replace("\n", " "), f"{r['network']:.1%}", f"{r['lookup']:.1%}")
                        for r in rows), widths=(3, 1, 1))]


SUMMARY_METRICS = (("balanced_accuracy", "balanced accuracy", True), ("accuracy", "accuracy", True),
                   ("any_dementia_auc", "any-dementia ROC AUC", False),
                   ("three_class_balanced_accuracy", "3-stage balanced accuracy", True),
                   ("macro_f1", "macro-F1", False), ("quadratic_weighted_kappa", "quadratic-weighted kappa", False),
                   ("ece", "expected calibration error", False))


def _summary_table(columns: dict[str, dict]) -> Table:
    """One row per headline metric, one column per {name: metrics dict}, each value with its 95% interval."""
    return Table(("metric (95% bootstrap interval)", *columns),
                 tuple((label, *(_ci(m, key, percent) for m in columns.values()))
                       for key, label, percent in SUMMARY_METRICS), widths=(2, *[2.2] * len(columns)))


# The tables of the Evaluation page and of its exported report, built once: (column names, rows of text).
def per_class_rows(metrics: dict, unit: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Per stage, healthy to severe: recalled, exact interval of the recall, and bootstrap intervals."""
    rows = []
    for name in (CLASS_NAMES[i] for i in STAGE_ORDER):
        e = metrics["per_class"][name]
        exact = e.get("recall_exact_ci95")
        rows.append((display(name), str(e.get("recalled", e.get("support", ""))),
                     "{:.0%}–{:.0%}".format(*exact) if exact else "–", _ci(e, "precision"), _ci(e, "recall"),
                     _ci(e, "f1"), _ci(e, "roc_auc"), _ci(e, "pr_auc")))
    return (("stage", f"recalled ({unit})", "recall, exact 95%", "precision", "recall", "F1", "ROC AUC", "PR AUC"),
            tuple(rows))


def baseline_rows(crossval: dict, level: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """This network against the baselines (`card.BASELINE_NAMES`) at one level ("slice" or "subject")."""
    rows = tuple((label, str(e["n"]), _ci(e, "any_dementia_auc"), _ci(e, "balanced_accuracy"),
                  _ci(e, "three_class_balanced_accuracy"),
                  " / ".join(str(e["per_class"][CLASS_NAMES[i]].get("recalled", "")) for i in STAGE_ORDER))
                 for key, label in BASELINE_NAMES.items() if (e := crossval.get(key, {}).get(level)))
    return (("method", "n", "any-dementia AUC", "balanced accuracy", "3-stage balanced accuracy",
             "recalled: none / very mild / mild / moderate"), rows)


def per_class_table(metrics: dict, unit: str) -> Table:
    return Table(*per_class_rows(metrics, unit), widths=(1.8, 1.3, 1.3, 1.9, 1.9, 1.9, 1.9, 0.9))


def _baseline_table(crossval: dict, level: str) -> Table | None:
    columns, rows = baseline_rows(crossval, level)
    return Table(columns, rows, widths=(2.4, 0.6, 2, 2, 2, 2)) if rows else None


def _counts(metrics: dict) -> list[int]:
    return [metrics["per_class"][name]["support"] for name in CLASS_NAMES]


def _panel(metrics: dict, counts: dict, unit: str) -> list:
    """Per-stage table, confusion matrix with class balance, ROC with PR: what the page's metric panel shows."""
    return [Heading(f"Per stage ({unit})"), per_class_table(metrics, unit),
            Paragraph("Intervals: 95% percentile bootstrap over "
                      f"{'subjects' if metrics.get('bootstrap', {}).get('unit') == 'subject' else unit}; recall also "
                      "with an exact binomial interval.", small=True),
            Figures(((figure_confusion(metrics["confusion_matrix"], unit), "Rows: true stage"),
                     (figure_class_balance(counts), "Class balance")), width=0.85),
            Figures(((figure_roc(metrics), "One stage against the rest"),
                     (figure_pr(metrics), "Average precision in the legend")), width=0.85)]


CAVEATS = (
    ("The published split is by slice: every test brain also sits in training, so its figures measure recognising "
     "a seen brain, not staging a new one. A raw-pixel lookup that learns nothing scores almost as well there."),
    "Moderate dementia is 2 subjects (64 slices): no figure can validate that class.",
    ("The labels are per-subject clinical ratings attached to single slices; one slice can lack the anatomy that "
     "carried the rating."),
    ("All slices come from one preprocessed collection (OASIS-1); other scanners and protocols are out of "
     "distribution."),
)


def _new_subject_blocks(crossval: dict | None, level: str) -> list:
    if not crossval:
        return [Paragraph("No cross-validated results are shipped (assets/crossval.json is missing); run "
                          "`python -m model.training.crossval` to create them.")]
    plan, recipe, cal = crossval.get("plan", {}), crossval.get("plan", {}).get("recipe", {}), crossval["calibration"]
    unit = "subjects" if level == "subject" else "slices"
    net = crossval["network"]
    blocks = [Heading("How these figures were made"), Paragraph(
        f"{crossval['subjects']} subjects, {crossval['slices']:,} slices; {plan.get('folds')}-fold cross-validation "
        f"by subject (seed {plan.get('seed')}); recipe at {recipe.get('image_size')} px, {recipe.get('epochs')} "
        f"epochs; temperature {cal['temperature']:.3f} fitted on out-of-fold logits. Subject level: a subject's "
        "probabilities averaged over its slices."),
        Heading("Metrics on new subjects"), _summary_table({"per subject": net["subject"], "per slice": net["slice"]}),
        Heading(f"Against baselines on the same folds (per {level})"), _baseline_table(crossval, level),
        Paragraph("The lookup gives each slice the stage of the most similar slice of the other folds' subjects (raw "
                  "pixels). The clinical baseline is a logistic regression on age, sex, eTIV and nWBV.", small=True),
        *_panel(net[level], {"subjects": _counts(net["subject"]), "slices": _counts(net["slice"])}, unit),
        Heading("Calibration"),
        Figures(((figure_reliability(cal["reliability_before"], cal["reliability_after"]),
                  "Out of fold, per slice"),), width=0.5),
        Paragraph(f"Out-of-fold expected calibration error, per slice, {cal['ece_before']:.3f} before and "
                  f"{cal['ece_after']:.3f} after temperature scaling. Each fold's temperature was fitted on the "
                  f"other folds ({', '.join(f'{t:.2f}' for t in cal.get('cross_fitted_temperatures', []))}), so no "
                  "slice calibrates itself.")]
    if crossval.get("error_confounds"):
        blocks.append(Paragraph(confound_sentence(crossval["error_confounds"]).replace("**", "")))
    return blocks


def _published_blocks(metrics: dict | None, baseline: dict | None, stamp: dict) -> list:
    if not metrics:
        return [Paragraph("No evaluation results are shipped (assets/metrics.json is missing); run "
                          "`python -m model.evaluate` to create them.")]
    blocks = [Heading("Reading these numbers"), Paragraph(
        f"{metrics['n']:,} test slices; evaluated with the model {metrics.get('model_sha256', 'unknown')}. This split "
        "is by slice: every test slice has neighbouring slices of the same brain in training, so these figures "
        "measure recognising a brain already seen, not staging a new one.")]
    sha = (stamp.get("model") or {}).get("weights_sha256")
    if sha and metrics.get("model_sha256") and metrics["model_sha256"] != sha:
        blocks.append(Paragraph("Caution: these figures were computed with another model than the one the stamp "
                                "at the end describes."))
    if baseline and "test" in baseline:
        test = baseline["test"]
        blocks.append(Paragraph(f"A lookup with no learning, which gives each test slice the stage of the most "
                                f"similar training slice (raw pixels), is right on {test['accuracy']:.2%} of it "
                                f"({test['errors']} errors in {test['n']:,}), against {metrics['accuracy']:.2%} for "
                                "the network."))
    if metrics.get("by_train_distance"):
        blocks += [Figures(((figure_train_distance(metrics["by_train_distance"]),
                             distance_summary(metrics["by_train_distance"])),), width=0.85)]
    counts = {k: list(v) for k, v in (metrics.get("class_counts") or {}).items()} or {"test": _counts(metrics)}
    blocks += [Heading("Metrics on the published test split"), _summary_table({"test slices": metrics}),
               *_panel(metrics, counts, "slices")]
    return blocks


def choice_blocks(choices: dict | None) -> list:
    """What the user chose on the page, stated in the report: the assumed class mix (with its predictive values),
    the referral threshold and the opened confusion-matrix cell. choices: {"class_mix": {"preset", "unit",
    "table": (columns, rows)}, "referral": {"share", "threshold", "kept", "of", "unit", "accuracy",
    "balanced_accuracy"}, "cell": {"true", "predicted", "count", "unit", "items"}}, each part optional."""
    if not choices:
        return []
    blocks = [Heading("Your choices in this view")]
    mix = choices.get("class_mix")
    if mix:
        blocks += [Paragraph(f"Assumed class mix: {mix['preset']} (counted in {mix['unit']}). Predictive values "
                             "for that mix, each true stage called as it is in this data:"),
                   Table(tuple(mix["table"][0]), tuple(tuple(str(v) for v in r) for r in mix["table"][1]))]
    ref = choices.get("referral")
    if ref:
        blocks.append(Paragraph(
            f"Referral: the least confident {ref['share']}% of the {ref['unit']} are referred, so those whose largest "
            f"probability is at least {ref['threshold']:.3f} are kept: {ref['kept']:,} of {ref['of']:,}, with "
            f"accuracy {ref['accuracy']:.1%} and balanced accuracy {ref['balanced_accuracy']:.1%} on them."))
    cell = choices.get("cell")
    if cell:
        items = list(cell.get("items") or [])
        listed = ", ".join(items[:20]) + (f" and {len(items) - 20} more" if len(items) > 20 else "")
        blocks.append(Paragraph(f"Opened confusion-matrix cell: truly {cell['true']}, predicted {cell['predicted']}: "
                                f"{cell['count']:,} {cell['unit']}" + (f" ({listed})" if items else "") + "."))
    return blocks if len(blocks) > 1 else []


def evaluation_report(view: str, *, crossval: dict | None, metrics: dict | None, baseline: dict | None,
                      stamp: dict, fmt: str = "pdf", level: str = "subject", choices: dict | None = None) -> bytes:
    """One view of the Evaluation page as a report file.

    view: "new" (new subjects, cross-validated) or "published" (the published test split); crossval, metrics,
    baseline: assets/crossval.json, metrics.json and baseline.json as dicts (None when missing); stamp:
    reproducibility_stamp(...); fmt: "pdf" or "html"; level: "subject" or "slice", the count of the new-subject
    view's per-stage table and figures; choices: what the user set on the page (`choice_blocks`), stated in the
    report. Returns the file's bytes.
    """
    if view not in EVALUATION_VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {list(EVALUATION_VIEWS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    if level not in ("subject", "slice"):
        raise ValueError(f"unknown level {level!r}; choose 'subject' or 'slice'")
    report = Report(f"Evaluation: {EVALUATION_VIEWS[view]}")
    report.add(Notice(RESEARCH_NOTICE), *_headline_blocks(crossval, metrics, baseline))
    report.add(*(_new_subject_blocks(crossval, level) if view == "new" else _published_blocks(metrics, baseline,
                                                                                                 stamp)))
    report.add(*choice_blocks(choices))
    report.add(Heading("Caveats"), Bullets(CAVEATS), Heading("Reproducibility"), KeyValues(tuple(stamp_rows(stamp))))
    return _render_pdf(report) if fmt == "pdf" else _render_html(report)


COHORT_CAVEATS = (
    "This is your own external validation of a research model: it says how the model does on these scans, and it is "
    "not a licence to use the model on patients. Not for the diagnosis of any patient.",
    "A small cohort gives wide intervals; a stage with a handful of subjects cannot be validated.",
    "The figures are only as good as the true stages given; the model was trained on one preprocessed collection "
    "(OASIS-1), so scans from other scanners and protocols are likely to be flagged and to score lower.",
)


def flag_rows(flags: dict) -> tuple[tuple[str, str], ...]:
    """The guard's flag summary (`model.qualify.evaluate.flag_summary`) as (what, how many) rows, page and report."""
    def pct(v):
        return "–" if v is None else f"{v:.1%}"

    return (("labelled slices", f"{flags['n']:,}"),
            ("flagged out of distribution", f"{flags['out of distribution']:,}"),
            ("flagged near-copy of a training slice", f"{flags['near-copy of a training slice']:,}"),
            (f"low agreement (under {flags['low_agreement_below']:.0%} of test-time variants agree)",
             f"{flags['low agreement']:,}"),
            ("without the guard (not checked)", f"{flags['no guard']:,}"),
            ("accuracy on flagged / unflagged slices", f"{pct(flags['accuracy_flagged'])} / "
                                                       f"{pct(flags['accuracy_unflagged'])}"))


def cohort_report(evaluation: dict, *, stamp: dict, fmt: str = "pdf", choices: dict | None = None) -> bytes:
    """The user's own cohort evaluated (`model.serve.cohort.evaluate_cohort`) as a PDF or HTML file: per subject and
    per slice, the summary with intervals, per-stage table, confusion matrix, ROC and PR curves, calibration, the
    guard's flags, what was left out, the user's choices on the page, caveats and the reproducibility stamp."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    report = Report("Evaluation on your cohort (external validation)")
    levels = {k: evaluation[k] for k in ("subject", "slice") if evaluation.get(k)}
    first = next(iter(levels.values()))
    boot = first.get("bootstrap", {})
    unlabelled = evaluation.get("unlabelled_files") or []
    report.add(Notice(RESEARCH_NOTICE), Heading("The cohort"), Paragraph(
        f"{evaluation['labelled']:,} labelled slices of {evaluation['subjects']:,} subjects, true stages from "
        f"{evaluation['source']}; {evaluation['unlabelled']:,} classified files had no true stage and "
        f"{evaluation['failed']:,} labelled files could not be read, both left out. Model "
        f"{evaluation.get('model_sha256', 'unknown')}. Subject level: a subject's calibrated probabilities averaged "
        f"over its slices. Intervals: {boot.get('resamples', 0):,} bootstrap resamples of "
        f"{'subjects' if boot.get('unit') == 'subject' or 'subject' in levels else 'slices'}."))
    if unlabelled:
        report.add(Paragraph("Without a true stage: " + ", ".join(unlabelled[:20])
                             + (f" and {len(unlabelled) - 20} more" if len(unlabelled) > 20 else ""), small=True))
    if evaluation.get("notes"):
        report.add(Bullets(tuple(evaluation["notes"])))
    report.add(Heading("Metrics on your cohort"),
               _summary_table({f"per {k}": m for k, m in levels.items()}))
    counts = {f"{k}s": _counts(m) for k, m in levels.items()}
    for level, metrics in levels.items():
        unit = f"{level}s"
        cal = metrics.get("calibration", {})
        report.add(*_panel(metrics, counts, unit), Heading(f"Calibration ({unit})"),
                   Figures(((figure_reliability(cal.get("reliability_before", []), cal.get("reliability_after", []),
                                                title=f"Reliability on your cohort ({unit})"),
                             f"ECE {cal.get('ece_after', metrics['ece']):.3f}"),), width=0.5))
    report.add(Heading("The guard's flags"), KeyValues(flag_rows(evaluation["flags"])))
    report.add(*choice_blocks(choices))
    report.add(Heading("Caveats"), Bullets(COHORT_CAVEATS), Heading("Reproducibility"),
               KeyValues(tuple(stamp_rows(stamp))))
    return _render_pdf(report) if fmt == "pdf" else _render_html(report)


# ====================================================================== PDF (fpdf2)
@lru_cache(maxsize=1)
def _font_files() -> dict[str, Path]:
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return {"": ttf / "DejaVuSans.ttf", "B": ttf / "DejaVuSans-Bold.ttf"}


@lru_cache(maxsize=1)
def _drawable() -> frozenset[int]:
    """Code points DejaVu Sans has glyphs for."""
    return frozenset(TTFont(_font_files()[""])["cmap"].getBestCmap())


def pdf_text(text) -> str:
    """`literal` text, with characters the embedded font cannot draw (CJK, emoji, ...) as [U+XXXX]."""
    drawable = _drawable()
    return "".join(ch if ord(ch) in drawable or ch == "\n" else f"[U+{ord(ch):04X}]" for ch in literal(text))


def _hex(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


class _PdfWriter:
    """Draws blocks onto an A4 fpdf2 document, one method per kind of block. Every text goes through `pdf_text`."""

    def __init__(self, title: str):
        class PDF(FPDF):
            def footer(self):
                self.set_y(-11)
                self.set_font("DejaVu", "", 7)
                self.set_text_color(110)
                self.cell(0, 4, f"{FOOTER} · page {self.page_no()} of {{nb}}", align="C")
                self.set_text_color(0)

        self.pdf = pdf = PDF(format="A4", unit="mm")
        for style, path in _font_files().items():
            pdf.add_font("DejaVu", style, str(path))
        pdf.set_margins(15, 14, 15)
        pdf.set_auto_page_break(True, margin=16)
        pdf.set_title(pdf_text(title))
        pdf.set_creator("Alzheimer MRI staging research dashboard (model.reports.documents)")
        pdf.add_page()
        self.text(title, 15, "B", 7)
        pdf.ln(1.5)

    def text(self, body: str, size: float = 9, style: str = "", h: float = 4.6, **kw) -> None:
        self.pdf.set_font("DejaVu", style, size)
        self.pdf.multi_cell(kw.pop("w", 0), h, pdf_text(body), new_x=XPos.LMARGIN, new_y=YPos.NEXT,
                            align=kw.pop("align", "L"), **kw)

    def room(self, needed: float) -> None:
        if self.pdf.get_y() + needed > self.pdf.page_break_trigger:
            self.pdf.add_page()

    def draw(self, block, following=None) -> None:
        """Draw one block; `following` is the block after it (a heading keeps with it)."""
        method = getattr(self, f"_{type(block).__name__.lower()}")
        method(block, following) if isinstance(block, Heading) else method(block)

    def _heading(self, block: Heading, following=None) -> None:
        # never a heading alone at the foot of a page: keep it with the start of what follows
        self.room(12 + (self._figures_size(following)[1] + 8 if isinstance(following, Figures) else 12))
        self.pdf.ln(1.5)
        self.text(block.text, 11.5, "B", 6)

    def _paragraph(self, block: Paragraph) -> None:
        self.text(block.text, 7.5 if block.small else 9, h=3.8 if block.small else 4.6)
        self.pdf.ln(1)

    def _lead(self, block: Lead) -> None:
        self.text(block.text, 13, "B", 6.5)

    def _notice(self, block: Notice) -> None:
        pdf = self.pdf
        pdf.set_fill_color(253, 236, 234)
        pdf.set_draw_color(200, 60, 50)
        self.text(block.text, 9, "B", 5, border=1, fill=True, padding=1.5)
        pdf.set_draw_color(0)
        pdf.set_fill_color(255)
        pdf.ln(2)

    def _bullets(self, block: Bullets) -> None:
        pdf = self.pdf
        for item in block.items:  # a hanging indent: the bullet, then the item in a column of its own
            pdf.set_font("DejaVu", "", 8.5)
            pdf.set_x(pdf.l_margin + 1.5)
            pdf.cell(3.5, 4.2, "•")
            pdf.multi_cell(pdf.epw - 5, 4.2, pdf_text(item), align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)

    def _table(self, block) -> None:
        pdf = self.pdf
        header = block.header if isinstance(block, Table) else None
        pdf.set_font("DejaVu", "", 7.5)
        with pdf.table(col_widths=block.widths if header else (1.15, 3.5), first_row_as_headings=header is not None,
                       line_height=3.6, text_align="LEFT", padding=(0.8, 1.2), width=pdf.epw,
                       cell_fill_color=(246, 248, 250), cell_fill_mode="ROWS",
                       headings_style=FontFace(emphasis="BOLD", fill_color=(228, 235, 242)),
                       borders_layout="HORIZONTAL_LINES" if header else "NONE") as table:
            if header:
                table.row([pdf_text(c) for c in header])
            for row in block.rows:
                cells = table.row()
                for i, cell in enumerate(row):
                    cells.cell(pdf_text(cell), style=FontFace(emphasis="BOLD") if header is None and i == 0 else None)
        pdf.ln(2)

    _keyvalues = _table

    def _figures_size(self, block: Figures) -> tuple[float, float]:
        """(width of each figure, height of the row) in mm, captions left out."""
        n = len(block.items)
        w = (self.pdf.epw * block.width - FIGURE_GAP * (n - 1)) / n
        return w, max(w * hh / ww for ww, hh in (Image.open(io.BytesIO(png)).size for png, _ in block.items))

    def _figures(self, block: Figures) -> float:
        """Draws the row of figures with their captions; returns the row's top."""
        pdf, gap = self.pdf, FIGURE_GAP
        total = pdf.epw * block.width
        (w, h), sizes = self._figures_size(block), [Image.open(io.BytesIO(png)).size for png, _ in block.items]
        self.room(h + 10)
        x0 = pdf.l_margin + (0 if block.left else (pdf.epw - total) / 2)
        y0 = bottom = pdf.get_y()
        for k, ((png, caption), (ww, hh)) in enumerate(zip(block.items, sizes)):
            x = x0 + k * (w + gap)
            pdf.image(io.BytesIO(png), x=x, y=y0, w=w, h=w * hh / ww)
            pdf.set_xy(x, y0 + h + 1)
            pdf.set_font("DejaVu", "", 7.5)
            pdf.multi_cell(w, 3.6, pdf_text(caption), align="C")
            bottom = max(bottom, pdf.get_y())
        pdf.set_xy(pdf.l_margin, bottom + 2)
        return y0

    def _bars(self, block: Bars) -> None:
        pdf, h = self.pdf, 5.2
        label_w, value_w = min(40.0, pdf.epw * 0.42), 15.0
        bar_w = min(90.0, pdf.epw - label_w - value_w - 4)
        for label, value, color in block.items:
            y = pdf.get_y()
            pdf.set_font("DejaVu", "", 8.5)
            pdf.cell(label_w, h, pdf_text(label))
            pdf.cell(value_w, h, f"{value:.1%}", align="R")
            x = pdf.get_x() + 3
            pdf.set_draw_color(200)
            pdf.rect(x, y + 1, bar_w, h - 2)
            pdf.set_fill_color(*_hex(color))
            if value > 0:
                pdf.rect(x, y + 1, bar_w * min(1.0, value), h - 2, style="F")
            pdf.set_draw_color(0)
            pdf.set_fill_color(255)
            pdf.set_xy(pdf.l_margin, y + h)
        pdf.ln(2)

    def _beside(self, block: Beside) -> None:
        """Figures on the left, other blocks in the column to their right; then on below both."""
        pdf = self.pdf
        margin, column = pdf.l_margin, pdf.l_margin + pdf.epw * block.left.width + 6
        top = self._figures(block.left)  # moves to a new page first when the figures do not fit
        below = pdf.get_y()
        pdf.set_left_margin(column)
        pdf.set_xy(column, top)
        for item in block.right:
            self.draw(item)
        pdf.set_left_margin(margin)
        pdf.set_xy(margin, max(below, pdf.get_y()))

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def _render_pdf(report: Report) -> bytes:
    writer = _PdfWriter(report.title)
    for block, following in zip(report.blocks, [*report.blocks[1:], None]):
        writer.draw(block, following)
    return writer.output()


# ====================================================================== HTML (self-contained)
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'DejaVu Sans',sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:1.8rem;border-bottom:1px solid #ddd}
.notice{border:1px solid #c83c32;background:#fdeceb;padding:.6rem .8rem;font-weight:600}
.small{font-size:.85em;color:#555}.lead{font-size:1.25rem;font-weight:700;margin:.3rem 0}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9em}
th,td{text-align:left;padding:.25rem .6rem;border-bottom:1px solid #e2e2e2;vertical-align:top;white-space:pre-line}
th{background:#ebf0f5}table.kv td:first-child{font-weight:600;white-space:nowrap}table.kv td:last-child{overflow-wrap:anywhere}
.figures{display:flex;gap:1rem;flex-wrap:wrap;justify-content:center;margin:0 auto}
figure{margin:.5rem 0;flex:1 1 0;min-width:16rem;text-align:center}figure img{max-width:100%}
figcaption{font-size:.85em;color:#555}
.bar{display:inline-block;height:.8em;background:#eee;width:14rem;vertical-align:middle}
.bar span{display:block;height:100%}
"""


def _esc(text) -> str:
    """The one rule for every text in an HTML report: `literal`, then escaped."""
    return html.escape(literal(text))


def _html_block(block) -> str:
    if isinstance(block, Heading):
        return f"<h2>{_esc(block.text)}</h2>"
    if isinstance(block, (Paragraph, Notice, Lead)):
        kind = "notice" if isinstance(block, Notice) else "lead" if isinstance(block, Lead) else \
            "small" if block.small else "text"
        return f'<p class="{kind}">{_esc(block.text)}</p>'
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_esc(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        return ("<table><thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in block.header) + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in block.rows)
                + "</tbody></table>")
    if isinstance(block, KeyValues):
        return ('<table class="kv"><tbody>' + "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>"
                                                      for k, v in block.rows) + "</tbody></table>")
    if isinstance(block, Figures):
        return (f'<div class="figures" style="max-width:{100 * block.width:.0f}%">' + "".join(
            f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>" for png, caption in block.items) + "</div>")
    if isinstance(block, Bars):
        return ("<table><tbody>" + "".join(
            f'<tr><td>{_esc(label)}</td><td>{value:.1%}</td><td><span class="bar"><span style="width:'
            f'{100 * min(1.0, value):.1f}%;background:{color}"></span></span></td></tr>'
            for label, value, color in block.items) + "</tbody></table>")
    if isinstance(block, Beside):
        return "\n".join(_html_block(b) for b in (block.left, *block.right))
    raise TypeError(f"no HTML for {type(block).__name__}")


def _render_html(report: Report) -> bytes:
    head = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
            # nothing in the file may load or run anything, even if a text slipped through unescaped
            ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
             "style-src 'unsafe-inline'\">"),
            f"<title>{_esc(report.title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{_esc(report.title)}</h1>"]
    body = [_html_block(b) for b in report.blocks]
    return "\n".join([*head, *body, f'<p class="small">{_esc(FOOTER)}</p></body></html>']).encode("utf-8")
