"""End to end in a real browser: `streamlit run`, Debian Chromium, Playwright.

Screenshots land in artifacts/screenshots/ (or $SCREENSHOT_DIR) for a person to look at.
"""
import os
import re
from pathlib import Path

import pytest

from model.core.constants import CONFIG_FILES_PRESENT, PROJECT_ROOT
from model.qualify.explain import METHOD_NAMES
from model.qualify.faithfulness import default_method, read_table
from model.reports.record import png_bytes
from tests.dashboard.live import CHROMIUM, browser_page, streamlit_server, upload_through_chooser, wait_idle

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CONFIG_FILES_PRESENT(), reason="no shipped model in assets/"),
]
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", PROJECT_ROOT / "artifacts" / "screenshots"))


def test_upload_classify_and_browse_evaluation(test_slices, tmp_path):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run `make browser` (apt-get install chromium)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    scan = tmp_path / "axial_slice.png"
    scan.write_bytes(png_bytes(test_slices.images[3, 0].numpy()))
    bad = tmp_path / "not_a_scan.png"
    bad.write_bytes(b"%PDF-1.4 definitely not an image")

    with streamlit_server() as (url, _, _), browser_page(viewport=(1440, 1500)) as page:
        page.goto(url)
        wait_idle(page)
        assert page.get_by_text("Research use only").is_visible()

        upload_through_chooser(page, bad)
        page.get_by_text("This file cannot be classified").wait_for(timeout=60_000)
        page.screenshot(path=str(SHOTS / "classify_bad_upload.png"))

        upload_through_chooser(page, scan)
        page.get_by_text("Predicted stage").wait_for(timeout=60_000)
        wait_idle(page)
        images = page.locator("[data-testid='stImage'] img")
        images.nth(1).wait_for(timeout=30_000)
        assert images.count() == 2
        assert page.get_by_text(f"{METHOD_NAMES[default_method(read_table())[0]]} for").is_visible()
        page.locator("[data-testid='stPlotlyChart'] .js-plotly-plot").first.wait_for(timeout=30_000)
        assert page.locator("[data-testid='stPlotlyChart']").count() == 1
        page.wait_for_timeout(500)  # let Plotly finish its transition before the picture
        page.screenshot(path=str(SHOTS / "classify.png"))

        others = [tmp_path / f"slice_{i}.png" for i in range(3)]
        for i, path in enumerate(others):
            path.write_bytes(png_bytes(test_slices.images[i, 0].numpy()))
        with page.expect_file_chooser() as chooser:  # several slices of one subject at once
            page.get_by_role("button", name="Add files").first.click()
        chooser.value.set_files([str(p) for p in others])
        choice = page.get_by_text("slices of one subject", exact=True)  # the radio option, not the captions
        choice.wait_for(timeout=60_000)
        wait_idle(page)
        choice.click()  # nothing is averaged until the user says so
        page.get_by_text("Subject-level stage (4 slices)").wait_for(timeout=60_000)
        wait_idle(page)
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / "classify_subject.png"))

        page.get_by_role("link", name="Evaluation").click()
        page.get_by_text("Balanced accuracy: a seen brain or a new one").wait_for(timeout=60_000)
        wait_idle(page)
        charts = page.locator("[data-testid='stPlotlyChart']")
        charts.nth(4).wait_for(timeout=60_000)  # headline, balance, confusion, ROC, PR drawn on arrival
        page.locator(".js-plotly-plot").nth(4).wait_for(timeout=60_000)  # Plotly actually drew them
        wait_idle(page)
        before = charts.count()
        page.get_by_text("Calibration: expected calibration error").click()  # a section drawn when opened
        charts.nth(before).wait_for(timeout=60_000)  # its reliability diagram
        wait_idle(page)
        page.get_by_text("Clinical context: age and atrophy").click()
        charts.nth(before + 3).wait_for(timeout=60_000)  # age by stage, nWBV and age against the errors
        page.locator(".js-plotly-plot").nth(before + 3).wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_text("Balanced accuracy: a seen brain or a new one").scroll_into_view_if_needed()
        assert page.get_by_text("For a brain the model has never seen, read the new-subject figures").is_visible()
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / "evaluation.png"))
        page.get_by_text("Published test split (slice-level)").click()
        page.get_by_text("Accuracy by distance to the nearest training slice").wait_for(timeout=60_000)
        wait_idle(page)
        assert page.get_by_text("measure recognising a brain already seen").is_visible()
        page.screenshot(path=str(SHOTS / "evaluation_published.png"))

        page.get_by_role("link", name="Model card").click()
        page.get_by_text("Intended use").first.wait_for(timeout=60_000)
        wait_idle(page)
        page.screenshot(path=str(SHOTS / "model_card.png"))


def test_trust_flags_dicom_and_the_batch_page(test_slices, tmp_path):
    """A photo is marked unreliable with its reasons; a DICOM says how it was read; the Batch page classifies
    an archive, names the files it cannot read, and opens a row on the Classify page."""
    import io
    import zipfile

    import numpy as np
    from pydicom.data import get_testdata_file

    SHOTS.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:160, 0:200]
    photo = tmp_path / "holiday.png"
    photo.write_bytes(png_bytes(np.stack([x * 255 / 200, y * 255 / 160, 255 - x * 255 / 200], -1).astype(np.uint8)))
    dicom = tmp_path / "MR_small.dcm"
    dicom.write_bytes(Path(get_testdata_file("MR_small.dcm")).read_bytes())
    archive = tmp_path / "cohort.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(4):
            zf.writestr(f"subject{i // 2}/slice_{i}.png", png_bytes(test_slices.images[i, 0].numpy()))
        zf.writestr("subject1/notes.txt", b"not a scan")
    archive.write_bytes(buf.getvalue())

    with streamlit_server() as (url, _, _), browser_page(viewport=(1440, 1600)) as page:
        page.goto(url)
        wait_idle(page)
        upload_through_chooser(page, photo)
        page.get_by_text("Unreliable: this does not look like the slices").wait_for(timeout=60_000)
        wait_idle(page)
        assert page.get_by_text("it is a colour picture").is_visible()
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / "classify_photo_flagged.png"))

        page.goto(url)  # a new session
        wait_idle(page)
        upload_through_chooser(page, dicom)
        page.get_by_text("How MR_small.dcm was read (DICOM)").wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_text("How MR_small.dcm was read (DICOM)").click()
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / "classify_dicom.png"))
        with page.expect_download(timeout=120_000) as download:  # one export, built on click
            page.get_by_role("button", name="Download report (PDF)").click()
        pdf = Path(download.value.path()).read_bytes()
        assert pdf.startswith(b"%PDF-") and len(pdf) > 10_000

        from tests.model.hostile import hostile_corpus

        sample = {kind: (name, data) for kind, name, data, _ in hostile_corpus()}
        for kind in ("bomb PNG 12000x12000", "4D NIfTI", "broken-header DICOM", "EPS renamed .png"):
            name, data = sample[kind]
            path = tmp_path / name
            path.write_bytes(data)
            page.goto(url)
            wait_idle(page)
            upload_through_chooser(page, path)
            page.get_by_text("This file cannot be classified").wait_for(timeout=60_000)
            assert page.locator("[data-testid='stException']").count() == 0, kind
        upload_through_chooser(page, dicom)  # the same session goes on with a valid file
        page.get_by_text("How MR_small.dcm was read (DICOM)").wait_for(timeout=60_000)

        page.get_by_role("link", name="Batch").click()
        wait_idle(page)
        upload_through_chooser(page, archive)
        wait_idle(page)
        page.get_by_text("folder", exact=True).click()
        wait_idle(page)
        page.get_by_role("button", name="Classify 5 files").click()
        page.get_by_text("Scans classified").wait_for(timeout=120_000)
        wait_idle(page)
        assert page.get_by_text("Could not be read").is_visible()
        page.locator("[data-testid='stPlotlyChart'] .js-plotly-plot").first.wait_for(timeout=30_000)
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / "batch.png"))
        grid = page.locator("[data-testid='stDataFrame']").first
        box = grid.bounding_box()
        page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)  # the first row's selection cell
        page.get_by_role("button", name=re.compile("^Open .* on the Classify page$")).click()
        page.get_by_text("Opened from the Batch page").wait_for(timeout=60_000)
        wait_idle(page)
        assert page.locator("[data-testid='stImage'] img").count() >= 2
        page.screenshot(path=str(SHOTS / "classify_from_batch.png"))


def test_own_cohort_evaluation_on_the_batch_page(data_dir, tmp_path):
    """A zip of test-split slices in class-named folders: classified, then evaluated as the user's own cohort."""
    from tests.dashboard.test_cohort_page import labelled_zip

    SHOTS.mkdir(parents=True, exist_ok=True)
    archive = tmp_path / "my_cohort.zip"
    archive.write_bytes(labelled_zip(data_dir))
    with streamlit_server() as (url, _, _), browser_page(viewport=(1440, 1500)) as page:
        page.goto(url)
        wait_idle(page)
        page.get_by_role("link", name="Batch").click()
        wait_idle(page)
        upload_through_chooser(page, archive)
        wait_idle(page)
        page.get_by_role("button", name="Classify 13 files").click()
        page.get_by_text("Scans classified").wait_for(timeout=120_000)
        wait_idle(page)
        page.get_by_role("button", name="Evaluate on 12 labelled files").click()
        page.get_by_text("The guard's flags").wait_for(timeout=180_000)
        wait_idle(page)
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.get_by_text("your external validation of a research model").is_visible()
        # wait_for fails unless the element becomes visible: on loaded cores the metrics can follow the last delta
        page.get_by_text("Labelled slices", exact=True).wait_for(state="visible", timeout=30_000)
        page.get_by_text("Without a true stage", exact=True).wait_for(state="visible", timeout=30_000)
        page.locator(".js-plotly-plot").nth(4).wait_for(timeout=60_000)  # counts, balance, confusion, ROC, PR
        page.get_by_role("heading", name="Evaluate on your cohort").evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(800)  # let Plotly finish its transition before the picture
        page.screenshot(path=str(SHOTS / "own_cohort.png"))
