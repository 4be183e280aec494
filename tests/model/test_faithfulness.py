"""Explanation methods and their checks (model.qualify.explain, model.qualify.faithfulness) on networks with known answers."""
import numpy as np
import pytest
import torch
from torch import nn

from model.qualify.explain import METHODS, explain
from model.qualify.faithfulness import deletion_insertion, faithfulness, randomised_copy, rank_correlation, sobel_map
from model.training.build_faithfulness import score_methods, verdict
from model.core.inference import Predictor


class QuadrantNet(nn.Module):
    """Looks only at the top-left quadrant: class 0's logit grows with its brightness, class 2's shrinks."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(8.0))

    def forward(self, x):  # (B, 1, S, S) -> (B, 4)
        s = x.shape[-1] // 2
        q = x[:, 0, :s, :s].mean((1, 2)) * self.scale
        zero = torch.zeros_like(q)
        return torch.stack([q, zero, -q, zero], 1)


@pytest.fixture(scope="module")
def quadrant():
    return Predictor(QuadrantNet(), image_size=32, device="cpu")


def bright_slice(size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(150, 255, (size, size)).astype(np.uint8)


def quadrant_map(size: int = 64, corner: str = "top-left") -> np.ndarray:
    m = np.zeros((size, size))
    h = size // 2
    {"top-left": m[:h, :h], "bottom-right": m[h:, h:]}[corner][:] = 1.0
    return m + np.random.default_rng(1).random((size, size)) * 1e-3  # a strict order inside each part


def test_the_map_on_the_quadrant_the_network_reads_scores_best(quadrant):
    image = bright_slice()
    right = deletion_insertion(quadrant, image, quadrant_map(corner="top-left"), target=0)
    wrong = deletion_insertion(quadrant, image, quadrant_map(corner="bottom-right"), target=0)
    assert right.deletion < wrong.deletion and right.insertion > wrong.insertion
    f = faithfulness(quadrant, image, quadrant_map(), target=0)
    assert f.beats("random") and f.as_dict()["map"]["deletion"] == round(f.map.deletion, 4)


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_gradient_and_occlusion_maps_find_that_quadrant(quadrant, method):
    heat = explain(quadrant, bright_slice(), target=0, method=method).heatmap
    h = heat.shape[0] // 2
    assert heat[:h, :h].mean() > 5 * max(heat[h:, h:].mean(), 1e-6)


def test_every_method_gives_a_map_in_range_with_its_settings(tiny_predictor, test_slices):
    image = test_slices.images[1, 0].numpy()
    for method in METHODS:
        e = explain(tiny_predictor, image, target=2, method=method, layer="layer3")
        assert e.heatmap.shape == (128, 128) and 0 <= e.heatmap.min() and e.heatmap.max() <= 1
        settings = e.settings()
        assert settings["method"] == method and settings["target"] == "Non_Demented"
        assert ("layer" in settings) == (method in ("gradcam", "guided_gradcam"))
    assert explain(tiny_predictor, image, method="occlusion").settings()["window_px"] == 8  # 1/8 of 64 px


def test_randomisation_changes_the_map_and_leaves_the_original_alone(tiny_predictor, test_slices):
    before = {k: v.clone() for k, v in tiny_predictor.net.state_dict().items()}
    randomised = randomised_copy(tiny_predictor)
    assert all(torch.equal(before[k], v) for k, v in tiny_predictor.net.state_dict().items())
    assert not torch.equal(randomised.net.fc.weight, tiny_predictor.net.fc.weight)
    assert torch.equal(randomised.net.conv1.weight.cpu(), tiny_predictor.net.conv1.weight.cpu())
    image = test_slices.images[2, 0].numpy()
    real = explain(tiny_predictor, image, target=0, layer="layer3").heatmap
    assert rank_correlation(real, real) == pytest.approx(1.0)
    assert rank_correlation(real, explain(randomised, image, target=0, layer="layer3").heatmap) < 0.95
    assert rank_correlation(real, np.zeros_like(real)) == 0.0


def test_sobel_map_marks_edges():
    image = np.zeros((32, 32), np.uint8)
    image[:, 16:] = 200
    edges = sobel_map(image)
    assert edges[:, 15:17].min() > 0 and edges[:, :10].max() == 0


def test_verdicts_read_both_intervals():
    def summary(d, i):
        return {"deletion_minus_random": {"ci95": d}, "insertion_minus_random": {"ci95": i}}

    assert verdict(summary([-0.2, -0.1], [0.1, 0.3]), "random") == "beats"
    assert verdict(summary([0.1, 0.2], [-0.3, -0.1]), "random") == "loses"
    assert verdict(summary([-0.2, 0.1], [0.1, 0.3]), "random") == "no clear difference"


def test_score_methods_summarises_with_intervals(tiny_predictor, test_slices):
    images = test_slices.images[:2, 0].numpy()
    out = score_methods(tiny_predictor, images, ["gradcam"], "layer3")
    r = out["gradcam"]
    assert {"map_deletion", "random_insertion", "edges_deletion", "beats_random", "randomisation_spearman",
            "deletion_minus_random", "seconds_per_map", "verdict"} <= set(r)
    assert r["map_deletion"]["ci95"][0] <= r["map_deletion"]["mean"] <= r["map_deletion"]["ci95"][1]
    assert r["verdict"]["random"] in ("beats", "loses", "no clear difference")
