"""Every page through Streamlit's AppTest, against the shipped model and metrics."""
import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.shell import WARMUP
from model.core.recipe import floors_of
from model.reports.card import paired_auc
from model.core.constants import (
    BASELINE_PATH,
    CONFIG_FILES_PRESENT,
    CROSSVAL_PATH,
    DISPLAY_NAMES,
    METRICS_PATH,
    MODEL_CONFIG_PATH,
    PROJECT_ROOT,
)
from model.qualify.explain import METHOD_NAMES
from model.qualify.faithfulness import default_method, read_table
from model.reports.record import png_bytes

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
    crossval = json.loads(CROSSVAL_PATH.read_text())["network"]["subject"]
    assert [m.label for m in at.sidebar.metric] == ["Balanced acc.", "Dementia AUC"]
    assert any("On new subjects" in c.value for c in at.sidebar.caption)
    # the dataset by name and size, never the machine's path to it
    assert not [c.value for c in at.sidebar.caption if "/work" in c.value or "/home" in c.value]
    assert at.sidebar.metric[0].value == f"{crossval['balanced_accuracy']:.0%}"
    assert any("Published test split" in c.value for c in at.sidebar.caption)
    floors = floors_of(json.loads(CROSSVAL_PATH.read_text()))
    if floors:  # the best floor beside the network's figures
        assert any(f"AUC {floors[0]['any_dementia_auc']:.2f} on the same subjects" in c.value
                   for c in at.sidebar.caption)
    assert WARMUP.done.wait(120) and WARMUP.error is None  # the model loads on a thread; once it has, the
    at.run()  # sidebar names its device
    assert any("Running on" in c.value for c in at.sidebar.caption)
    assert any("not for the diagnosis" in w.value for w in at.sidebar.warning)


def test_the_sidebar_says_where_the_model_runs_once_a_page_has_loaded_it(scan, monkeypatch):
    """Without the warm-up, the first upload loads the model inside the page; the sidebar, drawn before the page,
    is refreshed after it, so it does not say "loads with the first scan" beside the answer."""
    from dashboard.common import get_predictor

    WARMUP.done.wait(120)
    monkeypatch.setenv("ALZ_MRI_NO_WARMUP", "1")
    monkeypatch.setattr(WARMUP, "thread", None)
    monkeypatch.setattr(WARMUP, "device", None)
    get_predictor.clear()
    at = start()
    assert any(c.value == "The model loads with the first scan." for c in at.sidebar.caption)
    upload(at, "slice.png", scan)
    captions = [c.value for c in at.sidebar.caption]
    assert any(c.startswith("Running on") for c in captions) and "The model loads with the first scan." not in captions


def test_upload_shows_prediction_and_overlay(scan):
    at = upload(start(), "slice.png", scan)
    # a synthetic head is not an OASIS slice: the guard marks it unreliable, with its reasons, and the stage is
    # still shown
    assert at.metric[0].label == "Predicted stage (unreliable)" and at.metric[0].value in DISPLAY_NAMES
    assert any(e.value.startswith("**Unreliable") and "unlike every training slice" in e.value for e in at.error)
    images = at.get("image")
    shown_first = METHOD_NAMES[default_method(read_table())[0]]  # the held-out faithfulness table's choice
    assert len(images) >= 2 and images[1].proto.imgs[0].caption.startswith(f"{shown_first} for")  # then nearest slices
    assert [b.label for b in at.get("download_button")] == ["Download overlay (PNG)", "Download result (JSON)",
                                                            "Download report (PDF)"]


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
    assert "cannot be classified" in at.error[0].value and "not a PNG" in at.error[0].value
    upload(at, "slice.png", scan)  # the same session still works
    assert not any("cannot be classified" in e.value for e in at.error)
    assert at.metric[0].label.startswith("Predicted stage")


def test_a_file_name_is_shown_as_text_not_markdown():
    at = upload(start(), "[click here](https://example.com) **bold**.png", b"junk")
    shown = at.error[0].value
    # a browser sends no folders; the part after the last "/" is the name, every Markdown character escaped
    assert shown.startswith("This file cannot be classified. example\\.com\\) \\*\\*bold\\*\\*\\.png")


def test_several_slices_of_one_subject_give_a_subject_prediction(test_slices):
    slices = [png_bytes(test_slices.images[i, 0].numpy()) for i in range(3)]
    at = start()
    at.file_uploader(key="classify_upload").set_value(
        [(f"slice_{i}.png", data, "image/png") for i, data in enumerate(slices)]).run()
    assert not at.exception, [e.value for e in at.exception]
    # nothing is averaged until the user says the slices are one subject
    assert not [m for m in at.metric if m.label.startswith("Subject-level")]
    assert list(frame(at, "file")["file"]) == ["slice_0.png", "slice_1.png", "slice_2.png"]
    # a selectbox shows its options as plain text: a name is not Markdown-escaped there ("slice\_0\.png")
    assert at.selectbox(key="classify_scan_pick").options == ["slice_0.png", "slice_1.png", "slice_2.png"]
    at.radio(key="classify_together").set_value("slices of one subject").run()
    at.text_input(key="classify_subject_id").input("S-017").run()
    assert at.metric[0].label == "Subject-level stage (3 slices)"
    table = frame(at, "file")
    assert list(table["file"]) == ["slice_0.png", "slice_1.png", "slice_2.png"]
    stages = [d for d in table.columns if d in DISPLAY_NAMES]
    mean = table[stages].mean()
    assert at.metric[0].value == mean.idxmax()  # the subject's stage is the arg-max of the mean probabilities
    bars = plotly_specs(at)["classify_subject_probs"]["data"][0]
    assert dict(zip(bars["y"], bars["x"])) == pytest.approx(mean.to_dict(), abs=2e-3)
    at.selectbox(key="classify_slice").set_value(2).run()
    assert any(c.value == "slice\\_2\\.png" for c in at.caption)  # a caption is Markdown: escaped


def test_slices_of_different_training_subjects_are_not_silently_one_subject(data_dir):
    """Two near-copies of two different training brains, said to be one subject: the page warns."""
    import numpy as np

    from model.core.dataset import load_split_with_keys, subjects_for
    from model.qualify.trust import TrustBank

    test, keys = load_split_with_keys("test", data_dir)
    groups = subjects_for("test", keys.path, keys.sha256)
    seen = np.flatnonzero(np.isin(groups, list(set(TrustBank.load().subjects))))
    a = seen[0]
    b = next(i for i in seen if groups[i] != groups[a])
    at = start()
    at.file_uploader(key="classify_upload").set_value(
        [("a.png", png_bytes(test.images[a, 0].numpy()), "image/png"),
         ("b.png", png_bytes(test.images[b, 0].numpy()), "image/png")]).run()
    at.radio(key="classify_together").set_value("slices of one subject").run()
    assert not at.exception
    assert any("look like 2 different people" in w.value for w in at.warning), [w.value for w in at.warning]


def test_a_bad_file_among_several_is_named_and_the_rest_are_classified(scan):
    at = start()
    at.file_uploader(key="classify_upload").set_value(
        [("good.png", scan, "image/png"), ("bad.png", b"junk", "image/png"), ("also.png", scan, "image/png")]).run()
    assert not at.exception
    refused = [e.value for e in at.error if "cannot be classified" in e.value]
    assert len(refused) == 1 and "bad\\.png" in refused[0]  # named, Markdown-escaped
    assert list(frame(at, "file")["file"]) == ["good.png", "also.png"]


@pytest.mark.data  # the page offers test-split examples only where the dataset is
def test_test_split_example_shows_true_label():
    at = start()
    at.button_group(key="classify_source").set_value("Test-split example").run()
    at.selectbox(key="classify_example_stage").set_value(1).run()  # Moderate
    assert not at.exception
    assert any("true stage Moderate dementia" in c.value for c in at.caption)
    assert at.metric[0].value in DISPLAY_NAMES


def plotly_specs(at: AppTest) -> dict[str, dict]:
    return {el.proto.id.rsplit("-", 1)[-1]: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def frame(at: AppTest, column: str):
    """The first dataframe on the page with this column (AppTest does not look dataframes up by key)."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def published_view(page: str = "views/evaluation.py") -> AppTest:
    at = start(page)
    at.button_group(key="evaluation_view").set_value("Published test split (slice-level)").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_evaluation_opens_on_new_subjects_and_matches_crossval_file():
    crossval = json.loads(CROSSVAL_PATH.read_text())
    metrics = json.loads(METRICS_PATH.read_text())
    at = start("views/evaluation.py")
    specs = plotly_specs(at)
    # the headline puts both questions side by side: the leakage is seen, not only read
    headline = specs["evaluation_headline"]["data"]
    assert [t["name"] for t in headline] == ["this network", "raw-pixel lookup (no learning)"]
    assert headline[0]["y"] == [metrics["balanced_accuracy"], crossval["network"]["slice"]["balanced_accuracy"],
                                crossval["network"]["subject"]["balanced_accuracy"]]
    assert metric(at, "Published test split") == f"{metrics['balanced_accuracy']:.1%}"
    subject = crossval["network"]["subject"]
    assert sum(map(sum, specs["evaluation_new_confusion"]["data"][0]["z"])) == crossval["subjects"] == 200
    assert metric(at, "Balanced accuracy") == f"{subject['balanced_accuracy']:.1%}"
    assert metric(at, "Any-dementia AUC") == f"{subject['any_dementia_auc']:.3f}"
    balance = specs["evaluation_new_balance"]["data"]
    assert [t["name"] for t in balance] == ["subjects (n=200)", "slices (n=6,400)"]
    assert balance[0]["customdata"] == [100, 70, 28, 2]  # stage order: no, very mild, mild, moderate
    table = frame(at, "recalled (subjects)")
    assert list(table["recalled (subjects)"]) == [subject["per_class"][n]["recalled"] for n in
                                                  ("Non_Demented", "Very_Mild_Demented", "Mild_Demented",
                                                   "Moderate_Demented")]
    methods = frame(at, "any-dementia AUC")
    clinical = crossval["clinical"]["subject"]["n"]
    assert list(methods["n"]) == [str(n) for n in (200, 200, 200, 200, clinical, clinical)]  # the report's rows
    assert list(methods["method"])[:4] == ["this network", "raw-pixel lookup (no learning)",
                                          "PCA(50) + logistic regression on 64 px pixels",
                                          "PCA(20) + logistic regression per slice position"]
    paired = list(methods["network AUC minus it, paired by subject"])  # each floor beside, paired
    assert paired[0] == "–" and paired[3] == paired_auc(crossval, "pca_by_position")
    at.button_group(key="evaluation_level").set_value("per slice").run()
    assert sum(map(sum, plotly_specs(at)["evaluation_new_confusion"]["data"][0]["z"])) == 6400
    subjects = frame(at, "p(true stage)")
    assert len(subjects) == 200 and subjects["p(true stage)"].is_monotonic_increasing
    assert "evaluation_reliability" not in plotly_specs(at)  # drawn when its section is opened, not before
    at.session_state["evaluation_new_calibration"] = True
    at.session_state["evaluation_new_clinical"] = True
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert {"evaluation_age", "evaluation_nwbv", "evaluation_age_errors"} <= set(plotly_specs(at))
    reliability = plotly_specs(at)["evaluation_reliability"]["data"]
    assert [t["name"] for t in reliability][1:] == ["before (T = 1)", "after temperature scaling"]


@pytest.mark.data
def test_a_subjects_slices_open_with_their_predictions():
    at = start("views/evaluation.py")
    first = frame(at, "p(true stage)")["subject"].iloc[0]
    at.selectbox(key="evaluation_subject").set_value(first).run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [img.caption for el in at.get("image") for img in el.proto.imgs]
    assert len(captions) == 32 and captions[0].startswith("0 · ") and captions[-1].startswith("31 · ")


def test_evaluation_page_matches_metrics_file():
    metrics = json.loads(METRICS_PATH.read_text())
    at = published_view()
    specs = plotly_specs(at)
    assert {"evaluation_test_confusion", "evaluation_test_roc", "evaluation_test_pr",
            "evaluation_test_balance"} <= set(specs)
    z = specs["evaluation_test_confusion"]["data"][0]["z"]
    assert sum(map(sum, z)) == metrics["n"]
    rocs = [t for t in specs["evaluation_test_roc"]["data"] if "AUC" in t["name"]]
    assert len(rocs) == 4
    shown = sorted(float(re.search(r"AUC ([\d.]+)", t["name"]).group(1)) for t in rocs)
    expected = sorted(round(e["roc_auc"], 4) for e in metrics["per_class"].values())
    assert shown == pytest.approx(expected, abs=1e-4)
    assert metric(at, "Accuracy") == f"{metrics['accuracy']:.1%}"
    lookup = json.loads(BASELINE_PATH.read_text())["test"]
    caveat = next(m.value for m in at.markdown if "most similar training slice" in m.value)
    assert f"{lookup['accuracy']:.2%}" in caveat and f"{metrics['accuracy']:.2%}" in caveat
    distance = specs["evaluation_distance"]["data"]
    assert [t["name"] for t in distance] == ["this model", "nearest-train-slice lookup"]
    assert distance[0]["y"] == [r["accuracy"] for r in metrics["by_train_distance"] if r["n"]]
    from model.qualify.neighbours import distance_summary

    assert any(c.value == distance_summary(metrics["by_train_distance"]) for c in at.caption)
    at.toggle(key="evaluation_test_normalize").set_value(True).run()
    rows = plotly_specs(at)["evaluation_test_confusion"]["data"][0]["z"]
    assert all(abs(sum(r) - 1) < 1e-9 for r in rows if sum(r))


def test_model_card_renders_from_assets():
    config = json.loads(MODEL_CONFIG_PATH.read_text())
    at = start("views/model_card.py")
    text = "\n".join(m.value for m in at.markdown)
    assert config["weights_sha256"] in text
    assert "Out of scope" in text and "Subject leakage" in text and "Performance on new subjects" in text
    specs = plotly_specs(at)
    assert [t["name"] for t in specs["card_history"]["data"]][0] == "train loss"
    if not config["train_config"].get("val_fraction"):  # a refit shows the run that validated its recipe
        names = [t["name"] for t in specs["card_selection"]["data"]]
        assert "validation accuracy" in names and "Validation run" in text


@pytest.mark.data
@pytest.mark.slow
def test_live_recompute_matches_shipped_metrics():
    metrics = json.loads(METRICS_PATH.read_text())
    at = published_view()
    at.button(key="evaluation_recompute").click().run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    assert any("recomputed just now" in c.value for c in at.caption)
    assert metric(at, "Accuracy") == f"{metrics['accuracy']:.1%}"


@pytest.mark.data
def test_recompute_without_the_train_split_is_a_message(tmp_path, monkeypatch, data_dir):
    """The nearest-train-slice figures need train too; without it the page says so and keeps the shipped results."""
    (tmp_path / "test-00000-of-00001.parquet").symlink_to(data_dir / "test-00000-of-00001.parquet")
    monkeypatch.setenv("ALZ_MRI_DATA", str(tmp_path))
    at = published_view()
    at.button(key="evaluation_recompute").click().run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    assert any("Could not recompute" in e.value and "train-00000-of-00001.parquet" in e.value for e in at.error)
    assert any("shipped with the model" in c.value for c in at.caption)


def test_the_sidebar_names_the_dataset_not_the_machines_path():
    from model.core.constants import HF_DATASET_ID, default_data_dir

    at = start()
    captions = [c.value for c in at.sidebar.caption]
    assert not any(str(default_data_dir()) in c for c in captions)
    if (default_data_dir() / "test-00000-of-00001.parquet").is_file():
        assert any(c.startswith(f"Dataset: {HF_DATASET_ID}, 6,400 slices") for c in captions), captions
