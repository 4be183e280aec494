"""The explanation controls on the Classify page, through AppTest: the method (the held-out table's choice first),
its faithfulness scores beside the trivial baselines, its share outside the brain, and the randomisation check."""
import pytest

from model.core.constants import CONFIG_FILES_PRESENT
from model.qualify.explain import METHOD_NAMES, brain_mask
from model.qualify.faithfulness import default_method, read_table
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


def test_the_page_opens_on_the_method_the_held_out_table_picks_and_says_why(classified):
    at = classified
    method, why = default_method(read_table())
    assert at.selectbox(key="classify_method").value == method
    assert at.get("image")[1].proto.imgs[0].caption.startswith(f"{METHOD_NAMES[method]} for")
    assert any(c.value == why for c in at.caption) and "beats both" in why


def test_the_map_comes_with_its_share_outside_the_brain(classified, test_slices):
    at = classified
    shown = next(m for m in at.metric if m.label == "Map outside the brain")
    table = frame(at, "deletion (lower is better)")
    assert f"{table['outside the brain'].iloc[0]:.0%}" == shown.value
    # the random map spreads evenly, so its share is the background's area on this slice
    background = 1 - brain_mask(test_slices.images[4, 0].numpy()).mean()
    assert table["outside the brain"].iloc[1] == pytest.approx(background, abs=0.02)


def test_the_layer_labels_are_short_enough_to_read_whole(classified):
    layer = classified.selectbox(key="classify_layer")
    assert layer.options and max(len(o) for o in layer.options) <= 22, layer.options


def test_the_randomisation_check_shows_a_correlation_a_verdict_and_a_map_in_colour(classified):
    at = classified
    at.selectbox(key="classify_colormap").set_value("viridis").run()
    at.button(key="classify_randomise").click().run()
    assert not at.exception
    rho = next(m for m in at.metric if m.label == "Rank correlation with the real map")
    assert -1 <= float(rho.value) <= 1
    expected = ("depends on the learned weights" if float(rho.value) < 0.5 else
                "says little about what the network learned")
    assert any(expected in m.value for m in at.markdown)
    assert any(c.value.startswith("The same method, last blocks randomised (viridis") for c in at.caption)
