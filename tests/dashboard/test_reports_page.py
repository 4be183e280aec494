"""The Evaluation page's export, through AppTest: build the report, then download it."""
import io

import pytest
from pypdf import PdfReader

from model.core.constants import CONFIG_FILES_PRESENT, CROSSVAL_PATH
from tests.dashboard.test_app import start

pytestmark = pytest.mark.skipif(not (CONFIG_FILES_PRESENT() and CROSSVAL_PATH.is_file()),
                                reason="no shipped model or cross-validation in assets/")


def downloads(at) -> list[str]:
    return [b.label for b in at.get("download_button")]


def test_evaluation_export_builds_a_pdf_then_an_html_report():
    at = start("views/evaluation.py")
    assert "Download report (PDF)" not in downloads(at)  # nothing is drawn until asked for
    at.button(key="evaluation_export_build").click().run(timeout=180)
    assert not at.exception, [e.value for e in at.exception]
    assert "Download report (PDF)" in downloads(at)
    _, data = at.session_state["evaluation_export_report"]  # what the download button serves
    assert data.startswith(b"%PDF-")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    assert "Evaluation: New subjects (cross-validated)" in text and "Reproducibility" in text

    at.button_group(key="evaluation_export_format").set_value("HTML").run()
    assert "Download report (PDF)" not in downloads(at)  # the PDF is not offered as the HTML report
    at.button(key="evaluation_export_build").click().run(timeout=180)
    assert not at.exception, [e.value for e in at.exception]
    assert "Download report (HTML)" in downloads(at)
    assert at.session_state["evaluation_export_report"][1].startswith(b"<!doctype html>")


def test_evaluation_export_states_the_class_mix_referral_and_opened_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("ALZ_MRI_DATA", str(tmp_path))  # no dataset: the cell is listed without maps, quickly
    at = start("views/evaluation.py")
    at.selectbox(key="evaluation_new_mix_preset").set_value("population screening (illustrative)").run()
    at.slider(key="evaluation_new_refer").set_value(35).run()
    at.selectbox(key="evaluation_new_cell_true").set_value(0)  # truly mild, predicted very mild
    at.selectbox(key="evaluation_new_cell_pred").set_value(3).run()
    assert not at.exception, [e.value for e in at.exception]
    cell = at.session_state["evaluation_new_cell_result"]
    referral = at.session_state["evaluation_new_refer_result"]
    at.button(key="evaluation_export_build").click().run(timeout=180)
    assert not at.exception, [e.value for e in at.exception]
    _, data = at.session_state["evaluation_export_report"]
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages).replace("\n", " ")
    assert "Your choices in this view" in text
    assert "Assumed class mix: population screening (illustrative) (counted in subjects)" in text
    assert "least confident 35% of the subjects" in text and f"at least {referral['threshold']:.3f}" in text
    assert f"truly Mild dementia, predicted Very mild dementia: {cell['count']} subjects" in text
    assert cell["items"] and cell["items"][0] in text  # the subjects in that cell are named

    at.slider(key="evaluation_new_refer").set_value(10).run()  # another choice: the built report is not offered
    assert "Download report (PDF)" not in downloads(at)
