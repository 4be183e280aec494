"""Reports you can cite: one classified slice, one view of the Evaluation page or the user's own cohort, as a PDF
(or HTML) file that carries everything needed to reproduce it (the stamp, `model.reports.stamp`).

* `scan_report_pdf(record, image, overlay, stamp)` -> PDF bytes: the slice and its saliency overlay, the stage and
  its probabilities, uncertainty and the guard's verdict, how the file was read, and the stamp.
* `evaluation_report(view, crossval=..., metrics=..., baseline=..., stamp=..., fmt="pdf" | "html")` -> bytes: the
  Evaluation page's figures (matplotlib PNGs drawn from the same numbers as the app's charts) and tables, with
  their caveats and the stamp. The HTML file is self-contained (figures as data URIs) and escapes every text.
* `cohort_report(evaluation, stamp=..., fmt=...)` -> bytes: the user's own labelled cohort evaluated
  (`model.serve.cohort.evaluate_cohort`), with the same tables and figures.

This module says what each report contains. A report is a list of blocks (`model.reports.blocks`: heading,
paragraph, table, figures, ...) with figures drawn by `model.reports.figures`, which `model.reports.render` turns
into PDF or HTML, showing every text literally.
"""
from __future__ import annotations

import json
import math

import numpy as np

from model.core.constants import CLASS_COLORS, CLASS_NAMES, CROSSVAL_PATH, DISPLAY_NAMES, STAGE_ORDER
from model.qualify.explain import METHOD_NAMES, METHOD_NOTES
from model.qualify.neighbours import distance_summary
from model.reports.blocks import (Bars, Beside, Bullets, Figures, Heading, KeyValues, Lead, Notice, Paragraph,
                                  Report, Table, display, words)
from model.reports.card import BASELINE_NAMES, confound_sentence, paired_auc
from model.reports.figures import (figure_class_balance, figure_confusion, figure_headline, figure_pr,
                                   figure_reliability, figure_roc, figure_train_distance, pixel_png)
from model.reports.render import FORMATS, render
from model.reports.stamp import stamp_rows

RESEARCH_NOTICE = ("Research use only. Not a medical device and not for the diagnosis of any patient. Trained on "
                   "one public dataset of 2D axial MRI slices of Alzheimer's disease; other brain diseases and other "
                   "kinds of scans are out of scope.")
EVALUATION_VIEWS = {"new": "New subjects (cross-validated)", "published": "Published test split (slice-level)"}


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
            blocks.append(Paragraph("A near-copy of a training slice: the network trained on this brain, so "
                                    "the answer is not a reading of a new one."))
            seen = record.get("never_seen")
            if seen:
                whose = "the shipped recipe's" if seen.get("shipped_recipe") else "an earlier recipe's"
                right = ("right" if seen["prediction"] == seen["true_stage"]
                         else f"wrong (true stage: {display(seen['true_stage'])})")
                blocks.append(Paragraph(
                    f"Read this one: the fold-{seen['fold']} network of {whose} 5-fold cross-validation was trained "
                    f"without {seen['subject']}; from all 32 of its slices it stages this subject "
                    f"{seen['display_name']} ({seen['confidence']:.0%}), {right}. That is what the model does on a "
                    "new brain; the stage above comes from a network that trained on this brain."))
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
    return render(_scan_blocks(record, image, overlay, stamp), "pdf")


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
    return fmt.format(value) + (f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]" if known else "")


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
    lookup = (f"a lookup that learns nothing is right on {baseline['test']['accuracy']:.1%} of it" if baseline
              else "a lookup that learns nothing scores high there")
    text = (f"The published split is by slice, so every test brain also sits in training, and {lookup}: a figure "
            "there says little about a new brain. For a brain the model has never seen, read the new-subject "
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
                     "[{:.0%}, {:.0%}]".format(*exact) if exact else "–", _ci(e, "precision"), _ci(e, "recall"),
                     _ci(e, "f1"), _ci(e, "roc_auc"), _ci(e, "pr_auc")))
    return (("stage", f"recalled ({unit})", "recall, exact 95%", "precision", "recall", "F1", "ROC AUC", "PR AUC"),
            tuple(rows))


def baseline_rows(crossval: dict, level: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """This network against the baselines (`card.BASELINE_NAMES`) at one level ("slice" or "subject"), with the
    network's AUC minus each, paired over the same subjects (subject level only)."""
    rows = tuple((label, str(e["n"]), _ci(e, "any_dementia_auc"),
                  paired_auc(crossval, key) if level == "subject" else "–", _ci(e, "balanced_accuracy"),
                  _ci(e, "three_class_balanced_accuracy"),
                  " / ".join(str(e["per_class"][CLASS_NAMES[i]].get("recalled", "")) for i in STAGE_ORDER))
                 for key, label in BASELINE_NAMES.items() if (e := crossval.get(key, {}).get(level)))
    return (("method", "n", "any-dementia AUC", "network AUC minus it, paired by subject", "balanced accuracy",
             "3-stage balanced accuracy", "recalled: none / very mild / mild / moderate"), rows)


def per_class_table(metrics: dict, unit: str) -> Table:
    return Table(*per_class_rows(metrics, unit), widths=(1.8, 1.3, 1.3, 1.9, 1.9, 1.9, 1.9, 0.9))


def _baseline_table(crossval: dict, level: str) -> Table | None:
    columns, rows = baseline_rows(crossval, level)
    return Table(columns, rows, widths=(2.2, 0.5, 1.8, 1.8, 1.8, 1.8, 1.7)) if rows else None


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
     "a seen brain, not staging a new one. A raw-pixel lookup that learns nothing is right on over 90% of it."),
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
    return render(report, fmt)


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
    return render(report, fmt)
