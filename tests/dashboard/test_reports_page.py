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
