"""Every page through Streamlit's AppTest, against the shipped model and metrics."""
import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from model.constants import (
    BASELINE_PATH,
    CONFIG_FILES_PRESENT,
    DISPLAY_NAMES,
    METRICS_PATH,
    MODEL_CONFIG_PATH,
    PROJECT_ROOT,
)
from model.report import png_bytes

APP = str(PROJECT_ROOT / "dashboard" / "app.py")
pytestmark = pytest.mark.skipif(not CONFIG_FILES_PRESENT(), reason="no shipped model in assets/")


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def scan(test_slices):
    return png_bytes(test_slices.images[0, 0].numpy())


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="classify_upload").set_value((name, data, "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_landing_page_and_sidebar():
    at = start()
    assert at.title[0].value == "Classify a scan"
    assert [m.label for m in at.sidebar.metric] == ["Test accuracy", "Macro-F1"]
    assert any("Running on" in c.value for c in at.sidebar.caption)
    assert any("not for the diagnosis" in w.value for w in at.sidebar.warning)


def test_upload_shows_prediction_and_overlay(scan):
    at = upload(start(), "slice.png", scan)
    assert at.metric[0].label == "Predicted stage" and at.metric[0].value in DISPLAY_NAMES
    images = at.get("image")
    assert len(images) == 2 and images[1].proto.imgs[0].caption.startswith("Grad-CAM for")
    assert [b.label for b in at.get("download_button")] == ["Download overlay (PNG)", "Download result (JSON)"]


def test_changing_target_class_changes_overlay(scan):
    at = upload(start(), "slice.png", scan)
    before = at.get("image")[1].proto.imgs[0].url
    predicted = at.metric[0].value
    other = next(i for i, name in enumerate(DISPLAY_NAMES) if name != predicted)
    at.selectbox(key="classify_target").set_value(other).run()
    after = at.get("image")[1].proto.imgs[0]
    assert after.url != before
    assert DISPLAY_NAMES[other] in after.caption


def test_bad_upload_is_a_message_and_the_app_carries_on(scan):
    at = upload(start(), "notes.png", b"this is not an image")
    assert "cannot be classified" in at.error[0].value and "not a PNG or JPEG" in at.error[0].value
    upload(at, "slice.png", scan)  # the same session still works
    assert not at.error and at.metric[0].label == "Predicted stage"


def test_test_split_example_shows_true_label():
    at = start()
    at.button_group(key="classify_source").set_value("Test-split example").run()
    at.selectbox(key="classify_example_stage").set_value(1).run()  # Moderate
    assert not at.exception
    assert any("true stage Moderate dementia" in c.value for c in at.caption)
    assert at.metric[0].value in DISPLAY_NAMES


def plotly_specs(at: AppTest) -> dict[str, dict]:
    return {el.proto.id.rsplit("-", 1)[-1]: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def test_evaluation_page_matches_metrics_file():
    metrics = json.loads(METRICS_PATH.read_text())
    at = start("pages/evaluation.py")
    specs = plotly_specs(at)
    assert {"evaluation_confusion", "evaluation_roc", "evaluation_pr", "evaluation_balance"} <= set(specs)
    z = specs["evaluation_confusion"]["data"][0]["z"]
    assert sum(map(sum, z)) == metrics["n"]
    rocs = [t for t in specs["evaluation_roc"]["data"] if "AUC" in t["name"]]
    assert len(rocs) == 4
    shown = sorted(float(re.search(r"AUC ([\d.]+)", t["name"]).group(1)) for t in rocs)
    expected = sorted(round(e["roc_auc"], 4) for e in metrics["per_class"].values())
    assert shown == pytest.approx(expected, abs=1e-4)
    assert at.metric[0].value == f"{metrics['accuracy']:.2%}"
    lookup = json.loads(BASELINE_PATH.read_text())["test"]
    caveat = next(m.value for m in at.markdown if "most similar training slice" in m.value)
    assert f"{lookup['accuracy']:.2%}" in caveat and f"{metrics['accuracy']:.2%}" in caveat
    distance = specs["evaluation_distance"]["data"]
    assert [t["name"] for t in distance] == ["this model", "nearest-train-slice lookup"]
    assert distance[0]["y"] == [r["accuracy"] for r in metrics["by_train_distance"] if r["n"]]
    errors = sum(r["errors"] for r in metrics["by_train_distance"])
    assert any(f"All {errors} of its errors" in c.value for c in at.caption)
    at.toggle(key="evaluation_normalize").set_value(True).run()
    rows = plotly_specs(at)["evaluation_confusion"]["data"][0]["z"]
    assert all(abs(sum(r) - 1) < 1e-9 for r in rows if sum(r))


def test_model_card_renders_from_assets():
    config = json.loads(MODEL_CONFIG_PATH.read_text())
    at = start("pages/model_card.py")
    text = "\n".join(m.value for m in at.markdown)
    assert config["weights_sha256"] in text
    assert "Out of scope" in text and "Subject leakage" in text and "no near-copy in training" in text
    specs = plotly_specs(at)
    assert [t["name"] for t in specs["card_history"]["data"]][0] == "train loss"
    if not config["train_config"].get("val_fraction"):  # a refit shows the run that validated its recipe
        names = [t["name"] for t in specs["card_selection"]["data"]]
        assert "validation accuracy" in names and "Validation run" in text


@pytest.mark.slow
def test_live_recompute_matches_shipped_metrics():
    metrics = json.loads(METRICS_PATH.read_text())
    at = start("pages/evaluation.py")
    at.button(key="evaluation_recompute").click().run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    assert any("recomputed just now" in c.value for c in at.caption)
    assert at.metric[0].value == f"{metrics['accuracy']:.2%}"


def test_recompute_without_the_train_split_is_a_message(tmp_path, monkeypatch, data_dir):
    """The nearest-train-slice figures need train too; without it the page says so and keeps the shipped results."""
    (tmp_path / "test-00000-of-00001.parquet").symlink_to(data_dir / "test-00000-of-00001.parquet")
    monkeypatch.setenv("ALZ_MRI_DATA", str(tmp_path))
    at = start("pages/evaluation.py")
    at.button(key="evaluation_recompute").click().run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    assert any("Could not recompute" in e.value and "train-00000-of-00001.parquet" in e.value for e in at.error)
    assert any("shipped with the model" in c.value for c in at.caption)
