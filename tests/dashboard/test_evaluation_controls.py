"""The Evaluation page's interrogation controls, on both views, through AppTest: the confusion-cell gallery
(by its keyboard fallback), mean maps of right and wrong slices, the stage distance, the class-mix control,
referral of the least confident, and the published split's calibration."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from dashboard import charts
from dashboard.evaluation_views import clicked_cell
from dashboard.interrogation_views import OUT_OF_FOLD_NOTE
from model.qualify import interrogate
from model.qualify.explain import METHOD_NAMES
from model.qualify.faithfulness import FAITHFULNESS_PATH, default_method, read_table
from model.core.constants import (
    CLASS_NAMES,
    CONFIG_FILES_PRESENT,
    CROSSVAL_PATH,
    CROSSVAL_PREDICTIONS_PATH,
    DISPLAY_NAMES,
    METRICS_PATH,
    PREDICTIONS_PATH,
    STAGE_ORDER,
)
from tests.dashboard.test_app import frame, metric, plotly_specs, published_view, start

pytestmark = pytest.mark.skipif(not CONFIG_FILES_PRESENT(), reason="no shipped model in assets/")
MILD, MODERATE, NON, VERY_MILD = range(4)
MEMORY_CLINIC = {NON: 40.0, VERY_MILD: 35.0, MILD: 20.0, MODERATE: 5.0}


def predictions(level: str):
    """(labels, probabilities) of the shipped predictions: "subject" or "slice" out of fold, or "test"."""
    from model.core.prediction import subject_level

    table = pd.read_csv(PREDICTIONS_PATH if level == "test" else CROSSVAL_PREDICTIONS_PATH)
    y = table.true_label.map(CLASS_NAMES.index).to_numpy()
    probs = table[[f"p_{n}" for n in CLASS_NAMES]].to_numpy()
    if level == "subject":
        _, y, probs = subject_level(probs, y, table.subject.to_numpy())
    return y, probs


def check_ordinal(at, key: str, level_metrics: dict, n: int) -> None:
    assert metric(at, "Quadratic-weighted kappa") == f"{level_metrics['quadratic_weighted_kappa']:.3f}"
    bars = plotly_specs(at)[f"{key}_stage_distance"]["data"][0]
    assert sum(bars["customdata"]) == n and bars["x"] == ["-3", "-2", "-1", "0", "+1", "+2", "+3"]
    cm = np.asarray(level_metrics["confusion_matrix"])
    assert metric(at, "Right stage") == f"{np.trace(cm) / n:.1%}"


def check_prevalence(at, key: str, level_metrics: dict) -> None:
    """Default mix is the data's own, so the clinic's PPV is the data's precision; a preset fills the inputs."""
    table = frame(at, "PPV (this mix)")
    assert list(table.stage) == [DISPLAY_NAMES[c] for c in STAGE_ORDER]
    assert list(table["PPV (this mix)"]) == list(table["PPV (this data)"])
    precision = [level_metrics["per_class"][CLASS_NAMES[c]]["precision"] for c in STAGE_ORDER]
    predicted = [level_metrics["per_class"][CLASS_NAMES[c]]["predicted"] for c in STAGE_ORDER]
    assert list(table["PPV (this data)"]) == [f"{p:.1%}" if k else "never called" for p, k in zip(precision, predicted)]
    at.selectbox(key=f"{key}_mix_preset").set_value("memory clinic (illustrative)").run()
    assert not at.exception, [e.value for e in at.exception]
    for c, share in MEMORY_CLINIC.items():
        assert at.number_input(key=f"{key}_mix_{CLASS_NAMES[c]}").value == share
    table = frame(at, "PPV (this mix)")
    assert list(table["assumed share"]) == ["40.0%", "35.0%", "20.0%", "5.0%"]
    expected = interrogate.prevalence_ppv_npv(level_metrics["confusion_matrix"], [0.20, 0.05, 0.40, 0.35])
    assert list(table["NPV (this mix)"]) == [f"{expected['npv'][c]:.1%}" for c in STAGE_ORDER]
    at.number_input(key=f"{key}_mix_{CLASS_NAMES[NON]}").set_value(90.0).run()  # typing a share makes it custom
    assert at.selectbox(key=f"{key}_mix_preset").value == "custom"
    assert any("add up to 150.0%" in c.value for c in at.caption)
    assert list(frame(at, "PPV (this mix)")["assumed share"]) == ["60.0%", "23.3%", "13.3%", "3.3%"]


def check_referral(at, key: str, y, probs, unit: str) -> None:
    at.slider(key=f"{key}_refer").set_value(30).run()
    assert not at.exception, [e.value for e in at.exception]
    chosen = interrogate.referral(y, probs, 0.3)
    assert chosen["kept"] == round(0.7 * len(y))
    assert metric(at, "Accuracy, kept") == f"{chosen['accuracy']:.1%}"
    assert metric(at, "Balanced accuracy, kept") == f"{chosen['balanced_accuracy']:.1%}"
    traces = plotly_specs(at)[f"{key}_risk"]["data"]
    marks = [t for t in traces if t.get("mode") == "markers+text"]
    assert [m["x"][0] for m in marks] == [pytest.approx(chosen["kept"] / len(y))] * 2
    assert any(f"{chosen['kept']:,}" in m.value and unit in m.value for m in at.markdown)


def test_new_subjects_ordinal_class_mix_and_referral_per_subject_and_per_slice():
    crossval = json.loads(CROSSVAL_PATH.read_text())["network"]
    at = start("views/evaluation.py")
    check_ordinal(at, "evaluation_new", crossval["subject"], 200)
    check_prevalence(at, "evaluation_new", crossval["subject"])
    check_referral(at, "evaluation_new", *predictions("subject"), "subjects")
    at.button_group(key="evaluation_level").set_value("per slice").run()
    check_ordinal(at, "evaluation_new", crossval["slice"], 6400)
    assert any("bootstrap resamples of subjects" in c.value for c in at.caption)  # slices resampled by subject
    check_referral(at, "evaluation_new", *predictions("slice"), "slices")


def test_published_ordinal_class_mix_referral_and_calibration():
    metrics = json.loads(METRICS_PATH.read_text())
    at = published_view()
    check_ordinal(at, "evaluation_test", metrics, metrics["n"])
    check_prevalence(at, "evaluation_test", metrics)
    check_referral(at, "evaluation_test", *predictions("test"), "slices")
    assert "evaluation_test_reliability" not in plotly_specs(at)  # drawn when its section is opened
    at.session_state["evaluation_test_calibration"] = True
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    reliability = plotly_specs(at)["evaluation_test_reliability"]["data"]
    assert [t["name"] for t in reliability] == ["perfectly calibrated", "before (T = 1)", "after temperature scaling"]
    assert sum(reliability[1]["customdata"]) == sum(reliability[2]["customdata"]) == metrics["n"]
    text = next(m.value for m in at.markdown if "Expected calibration error per slice" in m.value)
    assert f"**{metrics['ece']:.3f}** after" in text and f"T = {metrics['temperature']:.3f}" in text


def choose_cell(at, key: str, true: int, predicted: int):
    at.selectbox(key=f"{key}_cell_true").set_value(true)
    at.selectbox(key=f"{key}_cell_pred").set_value(predicted).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def gallery_captions(at) -> list[str]:
    return [img.caption for el in at.get("image") for img in el.proto.imgs]


def test_cell_gallery_without_the_dataset_lists_the_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("ALZ_MRI_DATA", str(tmp_path))  # an empty folder: no dataset
    metrics = json.loads(METRICS_PATH.read_text())
    at = published_view()
    assert any("Click a cell of the confusion matrix" in c.value for c in at.caption)
    choose_cell(at, "evaluation_test", VERY_MILD, NON)
    n = metrics["confusion_matrix"][VERY_MILD][NON]
    assert any(m.value.startswith(f"**{n:,} slices** truly Very mild dementia, predicted No dementia")
               for m in at.markdown)
    cell = frame(at, DISPLAY_NAMES[NON])
    assert len(cell) == n and cell[DISPLAY_NAMES[NON]].is_monotonic_decreasing  # the surest first
    assert any("dataset is available locally" in i.value for i in at.info)
    assert not gallery_captions(at)


@pytest.mark.data
def test_published_cell_gallery_shows_maps_and_more():
    metrics = json.loads(METRICS_PATH.read_text())
    at = choose_cell(published_view(), "evaluation_test", NON, VERY_MILD)
    n = metrics["confusion_matrix"][NON][VERY_MILD]
    assert n > 12, "the shipped matrix should have more than one page of this cell"
    captions = gallery_captions(at)
    y, probs = predictions("test")
    first = pd.read_csv(PREDICTIONS_PATH).id[interrogate.cell_indices(y, probs, NON, VERY_MILD)[0]]
    assert len(captions) == 12 and captions[0].startswith(f"{first} · No ")
    at.button(key="evaluation_test_cell_more").click().run()
    assert len(gallery_captions(at)) == min(24, n)
    # a click answers at once: no maps until asked for; the method the faithfulness table puts first is offered first
    maps = at.button_group(key="evaluation_test_cell_maps")
    assert maps.value is None and not any("for the predicted stage" in c.value for c in at.caption)
    first, _ = default_method(read_table())
    if first == "gradcam":  # no method beats both baselines on the shipped table: nothing is called most faithful
        assert maps.options[1:] == ["Grad-CAM (fast, coarse)"]
    else:
        assert maps.options[1].startswith(f"{METHOD_NAMES[first]} (the most faithful here")
    maps.set_value("gradcam").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(gallery_captions(at)) == min(24, n)
    assert any("Grad-CAM for the predicted stage (Very mild dementia)" in c.value for c in at.caption)


@pytest.mark.data
def test_new_subjects_cell_gallery_shows_one_slice_per_subject_and_says_where_maps_come_from():
    crossval = json.loads(CROSSVAL_PATH.read_text())["network"]["subject"]
    at = choose_cell(start("views/evaluation.py"), "evaluation_new", VERY_MILD, NON)
    n = crossval["confusion_matrix"][VERY_MILD][NON]
    captions = gallery_captions(at)
    assert len(captions) == min(12, n) and all(c.startswith("OAS1_") and "this slice No" in c for c in captions)
    assert any(OUT_OF_FOLD_NOTE in c.value for c in at.caption)


@pytest.mark.data
def test_mean_maps_of_right_and_wrong_slices_on_both_views():
    at = published_view()
    assert not any(", right" in c for c in gallery_captions(at))  # nothing computed before the button
    at.number_input(key="evaluation_test_maps_cap").set_value(1).run()
    at.button(key="evaluation_test_maps_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    y, probs = predictions("test")
    pred = probs.argmax(1)
    expected = [f"{DISPLAY_NAMES[c]}, {'right' if r else 'wrong'} · 1 of {((y == c) & ((pred == c) == r)).sum():,}"
                for c in STAGE_ORDER for r in (True, False) if ((y == c) & ((pred == c) == r)).any()]
    assert [c for c in gallery_captions(at) if ", right" in c or ", wrong" in c] == expected
    at.slider(key="evaluation_test_refer").set_value(50).run()  # another control: the maps stay
    assert len([c for c in gallery_captions(at) if ", right" in c or ", wrong" in c]) == len(expected)

    at.button_group(key="evaluation_view").set_value("New subjects (cross-validated)").run()
    at.number_input(key="evaluation_new_maps_cap").set_value(1).run()
    at.button(key="evaluation_new_maps_button").click().run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    y, probs = predictions("slice")
    pred = probs.argmax(1)
    expected = [f"{DISPLAY_NAMES[c]}, {'right' if r else 'wrong'} · 1 of {((y == c) & ((pred == c) == r)).sum():,}"
                for c in STAGE_ORDER for r in (True, False) if ((y == c) & ((pred == c) == r)).any()]
    assert [c for c in gallery_captions(at) if ", right" in c or ", wrong" in c] == expected
    assert any(OUT_OF_FOLD_NOTE in c.value and "Columns in pairs" in c.value for c in at.caption)
    faith = json.loads(FAITHFULNESS_PATH.read_text())  # the caption says the measured share, at the measured layer
    share = f"{faith['methods']['gradcam']['map_outside_brain']['mean']:.0%} of its mass at {faith['layer']} lies off"
    assert any(share in c.value for c in at.caption)


# ---------------------------------------------------------------- the pieces, without a page
def test_clickable_confusion_matrix_carries_each_cell_and_keeps_the_heatmap_first():
    matrix = np.arange(16).reshape(4, 4)
    fig = charts.clickable_confusion_matrix(matrix, normalize=True)
    heat, cells = fig.data
    assert heat.type == "heatmap" and cells.type == "scatter" and len(cells.customdata) == 16
    for x, y, (t, p, count) in zip(cells.x, cells.y, cells.customdata):
        assert (x, y, count) == (DISPLAY_NAMES[p], DISPLAY_NAMES[t], matrix[t][p])
    assert fig.layout.clickmode == "event+select"


def test_a_click_event_becomes_a_cell():
    event = {"selection": {"points": [{"curve_number": 1, "customdata": [3, 2, 17]}], "point_indices": [6]}}
    assert clicked_cell(event) == (3, 2)
    assert clicked_cell({"selection": {"points": [{"curve_number": 0, "z": 5}]}}) is None  # the heatmap itself
    assert clicked_cell({"selection": {"points": []}}) is None and clicked_cell(None) is None


def test_stage_distance_and_risk_coverage_charts():
    fig = charts.stage_distance({-1: 2, 0: 6, 1: 2}, unit="subjects")
    assert list(fig.data[0].y) == [0.2, 0.6, 0.2] and list(fig.data[0].x) == ["-1", "0", "+1"]
    y = np.array([0, 1, 2, 3] * 250)
    probs = np.full((1000, 4), 0.1)
    probs[np.arange(1000), y] = np.linspace(0.3, 0.7, 1000)
    curve, chosen = interrogate.risk_coverage(y, probs), interrogate.referral(y, probs, 0.25)
    fig = charts.risk_coverage(curve, chosen, points=100)
    assert [t.x[0] for t in fig.data if t.mode == "markers+text"] == [0.75, 0.75]
    lines = [t for t in fig.data if t.mode == "lines"]
    assert [t.name for t in lines] == ["accuracy", "balanced accuracy"]
    assert len(lines[0].x) <= 102 and lines[0].x[0] == 0.1 and lines[0].x[-1] == 1.0  # from 10% kept on
    assert skm.accuracy_score(y, probs.argmax(1)) == lines[0].y[-1] == 1.0
