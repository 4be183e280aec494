"""The explanation controls on the Classify page, through AppTest: the method, its faithfulness scores beside
the trivial baselines, and the randomisation check."""
import pytest

from model.core.constants import CONFIG_FILES_PRESENT
from model.reports.record import png_bytes
from tests.dashboard.test_app import frame, start

pytestmark = pytest.mark.skipif(not CONFIG_FILES_PRESENT(), reason="no shipped model in assets/")


@pytest.fixture
def classified(test_slices):
    at = start()
    at.file_uploader(key="classify_upload").set_value(("slice.png", png_bytes(test_slices.images[4, 0].numpy()),
                                                       "image/png")).run()
    assert not at.exception
    return at


def test_every_map_comes_with_its_scores_beside_random_and_edge_maps(classified):
    at = classified
    table = frame(at, "deletion (lower is better)")
    assert list(table["map"]) == ["this map", "random map", "edge map (Sobel)"]
    assert ((table.iloc[:, 1:] >= 0) & (table.iloc[:, 1:] <= 1)).all().all()
    assert any("Is this map faithful?" in m.value for m in at.markdown)


def test_switching_method_changes_the_map_caption_and_disables_the_layer(classified):
    at = classified
    before = at.get("image")[1].proto.imgs[0].url
    at.selectbox(key="classify_method").set_value("guided_gradcam").run()
    assert not at.exception
    image = at.get("image")[1].proto.imgs[0]
    assert image.caption.startswith("Guided Grad-CAM for") and image.url != before
    at.selectbox(key="classify_method").set_value("integrated_gradients").run()
    assert at.get("image")[1].proto.imgs[0].caption.startswith("Integrated Gradients for")
    assert at.selectbox(key="classify_layer").disabled


def test_the_randomisation_check_shows_a_correlation(classified):
    at = classified
    at.button(key="classify_randomise").click().run()
    assert not at.exception
    rho = next(m for m in at.metric if m.label == "Rank correlation with the real map")
    assert -1 <= float(rho.value) <= 1
