"""End to end in a real browser: `streamlit run`, Debian Chromium, Playwright.

Screenshots land in artifacts/screenshots/ (or $SCREENSHOT_DIR) for a person to look at.
"""
import os
from pathlib import Path

import pytest

from model.constants import CONFIG_FILES_PRESENT, PROJECT_ROOT
from model.report import png_bytes
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
        assert page.get_by_text("Grad-CAM for").is_visible()
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
        page.get_by_text("Subject-level stage (4 slices)").wait_for(timeout=60_000)
        wait_idle(page)
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / "classify_subject.png"))

        page.get_by_role("link", name="Evaluation").click()
        page.get_by_text("Balanced accuracy: a seen brain or a new one").wait_for(timeout=60_000)
        wait_idle(page)
        charts = page.locator("[data-testid='stPlotlyChart']")
        charts.nth(8).wait_for(timeout=60_000)  # headline, balance, confusion, ROC, PR, reliability, clinical x3
        page.locator(".js-plotly-plot").nth(8).wait_for(timeout=60_000)  # Plotly actually drew them
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
