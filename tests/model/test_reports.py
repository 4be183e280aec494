"""Reports you can cite (model.reports.documents): PDFs read back with pypdf, the HTML report parsed as text, the stamp
checked against the predictor and the dataset."""
from __future__ import annotations

import base64
import copy
import importlib.metadata
import io
import json
import re
from datetime import datetime

import pytest
from pypdf import PdfReader

from model.reports import documents as reports
from model.reports.blocks import literal
from model.reports import render
from model.reports.stamp import SOFTWARE, git_state, reproducibility_stamp
from model.core.constants import (
    BASELINE_PATH,
    CLASS_NAMES,
    CROSSVAL_PATH,
    DISPLAY_NAMES,
    MEAN,
    METRICS_PATH,
    MODEL_CONFIG_PATH,
    STD,
)
from model.qualify.explain import explain, overlay
from model.reports.record import Result, page_record, png_bytes
from model.scans.scan_io import open_scan
from model.qualify.trust import TrustBank, assess

HOSTILE_NAME = "**bold** <b>x</b> [link](http://e.x) \x00 мозг 脑.png"


def pdf_text(data: bytes) -> tuple[PdfReader, str]:
    reader = PdfReader(io.BytesIO(data))
    return reader, "\n".join(page.extract_text() for page in reader.pages)


def flat(text: str) -> str:
    """Extracted text with line breaks as spaces: a sentence may wrap anywhere."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def scan_result(tiny_predictor, test_slices):
    """One synthetic slice through the guard (a bank fitted on the synthetic slices, thresholds set so the slice
    is out of distribution), uncertainty and Grad-CAM, as the Classify page builds them."""
    images = test_slices.images[:, 0].numpy()
    bank = TrustBank.fit(images, test_slices.labels.numpy(), [f"S{i // 2}" for i in range(8)], list(test_slices.ids),
                         n_components=4, thresholds={"residual": 0.0, "histogram": 10.0, "near_copy": 0.0})
    image = images[4]
    assessment = assess(tiny_predictor, image, bank)[0]
    explanation = explain(tiny_predictor, image)
    blended = overlay(image, explanation.heatmap)
    scan = open_scan(png_bytes(image), "slice.png")
    return image, blended, assessment, explanation, scan


def scan_record(predictor, result, name: str = "slice.png") -> dict:
    _, _, assessment, explanation, scan = result
    result = Result.of(assessment, files=[name], scan=scan, model_sha256=predictor.sha256,
                       temperature=predictor.temperature)
    return page_record(result, explanation=explanation, cam_settings={"opacity": 0.45, "colormap": "jet"},
                       created_utc="2026-12-02T12:00:00+00:00")


@pytest.fixture(scope="module")
def stamp(tiny_predictor, tmp_path_factory):
    """The tiny model's stamp, with an empty folder as the dataset: no local fingerprint."""
    return reproducibility_stamp(tiny_predictor, method={"method": "gradcam", "layer": "layer4"},
                                         data_dir=tmp_path_factory.mktemp("no_data"))


@pytest.fixture(scope="module")
def scan_pdf(tiny_predictor, scan_result):
    image, blended, _, _, scan = scan_result
    record = scan_record(tiny_predictor, scan_result)
    stamp = reproducibility_stamp(tiny_predictor, method=record["explanation"], scan=scan)
    return record, stamp, reports.scan_report_pdf(record, image, blended, stamp)


# ---------------------------------------------------------------------- the stamp
def test_stamp_records_the_predictor_config_and_software(tiny_predictor, stamp):
    model = stamp["model"]
    assert model["weights_sha256"] == tiny_predictor.sha256 and len(model["weights_sha256"]) == 64
    assert model["image_size"] == tiny_predictor.image_size == 64
    assert model["temperature"] == pytest.approx(tiny_predictor.temperature) == 1.5
    assert model["temperature_source"] == "fitted on the training run's validation split"  # none recorded
    assert stamp["dataset"] == {"source": "not recorded, and no local dataset", "path": None, "sha256": {},
                                "matches_model_config": None}
    prep = stamp["preprocessing"]
    assert (prep["mean"], prep["std"]) == (MEAN, STD) and "resized to 64x64 px" in prep["steps"][1]
    assert "slice_reading" not in prep  # no scan given
    assert stamp["explanation"] == {"method": "gradcam", "layer": "layer4"}
    assert set(stamp["software"]) == {"python", *SOFTWARE}
    assert stamp["software"]["fpdf2"] == importlib.metadata.version("fpdf2")
    assert stamp["software"]["torch"] == importlib.metadata.version("torch")
    assert stamp["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", stamp["git_commit"])
    assert datetime.fromisoformat(stamp["created_utc"]).utcoffset().total_seconds() == 0
    json.dumps(stamp)  # a stamp is plain data


def test_stamp_from_a_config_says_the_fingerprint_is_the_recorded_one(tmp_path):
    config = {"weights_sha256": "AB" * 32, "image_size": 48, "temperature": 2.0, "source_size": 128,
              "temperature_source": {"method": "crossval out-of-fold", "folds": 5, "seed": 0},
              "data_sha256": {"train": "1" * 64, "test": "2" * 64}}
    stamp = reproducibility_stamp(config, data_dir=tmp_path)
    assert stamp["model"]["weights_sha256"] == "ab" * 32
    assert stamp["model"]["temperature_source"] == "crossval out-of-fold, folds 5, seed 0"
    assert stamp["dataset"]["source"] == "recorded in model_config.json"
    assert stamp["dataset"]["sha256"] == config["data_sha256"]
    assert "config_mean_std" not in stamp["preprocessing"]


def test_stamp_of_the_shipped_config_by_default(tmp_path):
    if not MODEL_CONFIG_PATH.is_file():
        pytest.skip("no shipped model config")
    shipped = json.loads(MODEL_CONFIG_PATH.read_text())
    stamp = reproducibility_stamp(data_dir=tmp_path)
    assert stamp["model"]["weights_sha256"] == shipped["weights_sha256"]
    assert stamp["model"]["image_size"] == shipped["image_size"]


def test_stamp_fingerprints_the_local_dataset(data_dir, tiny_predictor):
    from model.core.dataset import fingerprint

    stamp = reproducibility_stamp(tiny_predictor, data_dir=data_dir)
    assert stamp["dataset"]["source"] == "local dataset" and stamp["dataset"]["path"] == str(data_dir)
    assert stamp["dataset"]["sha256"] == fingerprint(data_dir) and set(stamp["dataset"]["sha256"]) == {"train", "test"}
    assert stamp["dataset"]["matches_model_config"] is None  # the tiny model records no data
    if MODEL_CONFIG_PATH.is_file():
        shipped = json.loads(MODEL_CONFIG_PATH.read_text())
        matches = reproducibility_stamp(shipped, data_dir=data_dir)["dataset"]["matches_model_config"]
        assert matches == (shipped["data_sha256"] == fingerprint(data_dir))


def test_stamp_records_how_the_slice_was_read(tiny_predictor, scan_result, tmp_path):
    scan = scan_result[4]
    stamp = reproducibility_stamp(tiny_predictor, scan=scan, data_dir=tmp_path)
    assert stamp["preprocessing"]["slice_reading"] == list(scan.steps) and scan.steps
    by_record = reproducibility_stamp(tiny_predictor, scan={"steps": ["Used slice 3 of 9."]}, data_dir=tmp_path)
    assert by_record["preprocessing"]["slice_reading"] == ["Used slice 3 of 9."]


def test_git_state_never_fails(tmp_path, monkeypatch):
    assert git_state(tmp_path) == {"commit": None, "modified": None}  # not a repository
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert git_state() == {"commit": None, "modified": None}


# ---------------------------------------------------------------------- the scan report
def test_scan_report_shows_result_guard_method_and_stamp(scan_pdf, tiny_predictor):
    record, stamp, data = scan_pdf
    reader, text = pdf_text(data)
    words = flat(text)
    assert data.startswith(b"%PDF-") and len(reader.pages) <= 2
    assert len(reader.pages[0].images) == 2  # the slice and its overlay
    assert "not for the diagnosis of any patient" in words
    assert DISPLAY_NAMES[CLASS_NAMES.index(record["prediction"])] in words
    for name, p in record["probabilities"].items():
        assert f"{DISPLAY_NAMES[CLASS_NAMES.index(name)]} {p:.1%}" in words
    assert f"±{record['uncertainty']['spread']:.1%}" in words
    assert "out of distribution" in words and "its shape is unlike every training slice" in words
    assert "Grad-CAM for" in words and "layer4" in words and "colormap jet" in words
    assert tiny_predictor.sha256 in text and stamp["model"]["weights_sha256"] == tiny_predictor.sha256
    for name, version in stamp["software"].items():
        assert f"{name} {version}" in words
    assert record["schema_version"] == "1" and record["kind"] == "PNG image"
    for step in record["steps"]:
        assert flat(step) in words


def test_scan_report_writes_a_hostile_file_name_literally(tiny_predictor, scan_result, stamp):
    image, blended = scan_result[:2]
    record = scan_record(tiny_predictor, scan_result, name=HOSTILE_NAME)
    _, text = pdf_text(reports.scan_report_pdf(record, image, blended, stamp))
    # Markdown and HTML stay text; NUL and a character the font lacks are written as code points
    assert "**bold** <b>x</b> [link](http://e.x) [U+0000] мозг [U+8111].png" in text


def test_scan_report_refuses_arrays_of_the_wrong_kind(tiny_predictor, scan_result, stamp):
    image, blended = scan_result[:2]
    record = scan_record(tiny_predictor, scan_result)
    with pytest.raises(ValueError, match="uint8"):
        reports.scan_report_pdf(record, image.astype(float), blended, stamp)
    with pytest.raises(ValueError, match="overlay"):
        reports.scan_report_pdf(record, image, blended[:-1], stamp)


def test_scan_report_warns_when_another_model_made_the_result(tiny_predictor, scan_result, stamp):
    image, blended = scan_result[:2]
    record = {**scan_record(tiny_predictor, scan_result), "model_sha256": "0" * 64}
    _, text = pdf_text(reports.scan_report_pdf(record, image, blended, stamp))
    assert "Caution: this result was made by the model " + "0" * 64 in flat(text)


def test_literal_text():
    assert literal("a\x00b\x1b[31m") == "a[U+0000]b[U+001B][31m"
    assert render.pdf_text("brain 脑 mózg") == "brain [U+8111] mózg"


# ---------------------------------------------------------------------- the evaluation report
@pytest.fixture(scope="module")
def shipped():
    if not (CROSSVAL_PATH.is_file() and METRICS_PATH.is_file() and BASELINE_PATH.is_file()):
        pytest.skip("no shipped evaluation results in assets/")
    return tuple(json.loads(p.read_text()) for p in (CROSSVAL_PATH, METRICS_PATH, BASELINE_PATH))


def test_evaluation_pdf_of_new_subjects_per_slice(shipped, stamp):
    crossval, metrics, baseline = shipped
    reader, text = pdf_text(reports.evaluation_report("new", crossval=crossval, metrics=metrics, baseline=baseline,
                                                      stamp=stamp, fmt="pdf", level="slice"))
    words = flat(text)
    net = crossval["network"]["subject"]
    assert "Evaluation: New subjects (cross-validated)" in words
    assert "not for the diagnosis of any patient" in words
    low, high = net["ci95"]["balanced_accuracy"]
    assert f"{net['balanced_accuracy']:.1%} [{low:.1%}, {high:.1%}]" in words  # the headline figure, its interval
    assert f"{metrics['balanced_accuracy']:.1%}" in words and f"{baseline['test']['balanced_accuracy']:.1%}" in words
    assert "Moderate dementia is 2 subjects" in words and "recognising a seen brain" in words
    assert f"{crossval['calibration']['ece_after']:.3f} after temperature scaling" in words
    assert "raw-pixel lookup (no learning)" in words and "clinical baseline" in words
    slices = crossval["network"]["slice"]["per_class"]["Non_Demented"]
    assert "Per stage (slices)" in words and f"{slices['recalled']} [{slices['recall_exact_ci95'][0]:.0%}," in words
    assert stamp["model"]["weights_sha256"] in text
    # headline, confusion matrix, class balance, ROC, PR, reliability
    assert sum(len(page.images) for page in reader.pages) == 6


def test_evaluation_pdf_of_the_published_split(shipped, stamp):
    crossval, metrics, baseline = shipped
    reader, text = pdf_text(reports.evaluation_report("published", crossval=crossval, metrics=metrics,
                                                      baseline=baseline, stamp=stamp, fmt="pdf"))
    words = flat(text)
    assert "Published test split" in words and f"{metrics['n']:,} test slices" in words
    assert "Caution: these figures were computed with another model" in words  # the stamp is the tiny model's
    assert "recalled (slices)" in words and metrics["per_class"]["Non_Demented"]["recalled"] in words
    assert sum(len(page.images) for page in reader.pages) == 6  # headline, distance, confusion, balance, ROC, PR


def test_evaluation_html_is_self_contained_and_escapes_text(shipped, stamp):
    crossval, metrics, baseline = shipped
    hostile = copy.deepcopy(stamp)
    hostile["dataset"]["path"] = "<script>alert(1)</script>"
    hostile["explanation"] = {"method": '"><img src=x onerror=alert(2)>'}
    page = reports.evaluation_report("new", crossval=crossval, metrics=metrics, baseline=baseline, stamp=hostile,
                                     fmt="html").decode("utf-8")
    assert page.startswith("<!doctype html>") and "Content-Security-Policy" in page
    assert "<script" not in page and "onerror=alert(2)>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 6 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert base64.b64decode(sources[0].split(",", 1)[1]).startswith(b"\x89PNG")
    assert "href=" not in page and 'src="http' not in page  # nothing to fetch
    assert "Moderate dementia is 2 subjects" in page and stamp["model"]["weights_sha256"] in page


def test_evaluation_report_without_results_still_carries_notice_and_stamp(stamp):
    _, text = pdf_text(reports.evaluation_report("new", crossval=None, metrics=None, baseline=None, stamp=stamp))
    assert "No cross-validated results are shipped" in flat(text) and stamp["model"]["weights_sha256"] in text
    _, text = pdf_text(reports.evaluation_report("published", crossval=None, metrics=None, baseline=None,
                                                 stamp=stamp))
    assert "No evaluation results are shipped" in flat(text) and "not for the diagnosis of any patient" in flat(text)


@pytest.mark.parametrize("options, message", [({"view": "train"}, "unknown view"), ({"fmt": "docx"}, "unknown format"),
                                              ({"level": "voxel"}, "unknown level")])
def test_evaluation_report_refuses_unknown_options(stamp, options, message):
    kwargs = {"view": "new", "fmt": "pdf", "level": "subject", **options}
    with pytest.raises(ValueError, match=message):
        reports.evaluation_report(kwargs.pop("view"), crossval=None, metrics=None, baseline=None, stamp=stamp, **kwargs)


def test_the_page_record_carries_the_subject_id_the_user_gave(tiny_predictor, test_slices):
    from model.core.prediction import subject_prediction
    from model.serve.pipeline import classify_slices

    results = classify_slices(test_slices.images[:2, 0].numpy(), ["a.png", "b.png"], predictor=tiny_predictor)
    stage = subject_prediction([r.assessment.prediction for r in results])
    record = page_record(results[0], subject=(results, stage), subject_id="S-017")
    assert record["subject"]["id"] == "S-017" and record["subject"]["files"] == ["a.png", "b.png"]
    assert "id" not in page_record(results[0], subject=(results, stage))["subject"]


def test_a_subject_report_leads_with_the_subject_and_lists_its_slices(tiny_predictor, test_slices, stamp):
    from model.core.prediction import subject_prediction
    from model.qualify.explain import explain, overlay
    from model.serve.pipeline import classify_slices

    images = test_slices.images[:3, 0].numpy()
    results = classify_slices(images, ["a.png", "b.png", "c.png"], predictor=tiny_predictor)
    stage = subject_prediction([r.assessment.prediction for r in results])
    explanation = explain(tiny_predictor, images[0])
    record = page_record(results[0], explanation=explanation, subject=(results, stage), subject_id="S-3")
    reader, text = pdf_text(reports.scan_report_pdf(record, images[0], overlay(images[0], explanation.heatmap),
                                                    stamp))
    words = flat(text)
    assert "Subject report: Alzheimer's disease stage of one subject from 3 slices" in words
    assert "one MRI slice" not in words and "Subject S-3" in words
    assert all(name in words for name in ("a.png", "b.png", "c.png"))  # the per-slice table
    assert words.index("Subject S-3") < words.index("One of its slices")
    assert "a brain the model never saw was told apart from a healthy one with ROC AUC" in words


def test_scan_report_of_a_near_copy_says_which_answer_to_read(tiny_predictor, scan_result, stamp):
    image, blended = scan_result[:2]
    record = scan_record(tiny_predictor, scan_result)
    record["guard"] = {"reasons": [], "near_copy": True, "residual": 1.0, "histogram": 0.1,
                       "nearest_training_slices": [{"path": "train/x.jpg", "subject": "OAS1_0001_MR1",
                                                    "stage": "Non_Demented", "distance": 3.0}]}
    record["never_seen"] = {"subject": "OAS1_0001_MR1", "fold": 4, "prediction": "Very_Mild_Demented",
                            "display_name": "Very mild dementia", "confidence": 0.52, "probabilities": {},
                            "true_stage": "Non_Demented", "slice_prediction": None, "shipped_recipe": True}
    words = flat(pdf_text(reports.scan_report_pdf(record, image, blended, stamp))[1])
    assert "Read this one: the fold-4 network of the shipped recipe's 5-fold cross-validation" in words
    assert "stages this subject Very mild dementia (52%), wrong (true stage: No dementia)" in words
