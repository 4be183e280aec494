import threading

import numpy as np
import pytest
import torch

from model.core.constants import CLASS_NAMES
from model.qualify.explain import explain, overlay


def test_probabilities_are_calibrated_softmax(tiny_predictor, test_slices):
    probs = tiny_predictor.probabilities(test_slices.images[:8])
    logits = tiny_predictor.logits(test_slices.images[:8])
    assert probs.shape == (8, 4)
    assert torch.allclose(probs.sum(1), torch.ones(8), atol=1e-5)
    assert torch.allclose(probs, torch.softmax(logits / 1.5, 1), atol=1e-6)  # temperature from config


def test_batched_equals_one_by_one(tiny_predictor, test_slices):
    batch = tiny_predictor.probabilities(test_slices.images[:6], batch_size=4)
    single = torch.cat([tiny_predictor.probabilities(test_slices.images[i, 0]) for i in range(6)])
    assert torch.allclose(batch, single, atol=1e-5)


def test_predict_one_is_the_calibrated_softmax_of_the_logits(tiny_predictor, test_slices):
    image = test_slices.images[3, 0].numpy()
    pred = tiny_predictor.predict_one(image)
    expected = torch.softmax(tiny_predictor.logits(image)[0] / 1.5, 0)  # the tiny model ships temperature 1.5
    assert pred.probabilities == pytest.approx(expected.tolist(), abs=1e-6)
    assert pred.label == int(expected.argmax()) and pred.class_name == CLASS_NAMES[pred.label]
    assert list(pred.as_dict()["probabilities"]) == list(CLASS_NAMES)  # keyed in label order


def test_subject_prediction_averages_probabilities():
    from model.core.prediction import Prediction, subject_prediction

    slices = [Prediction((0.6, 0.0, 0.4, 0.0), 0), Prediction((0.1, 0.0, 0.45, 0.45), 2),
              Prediction((0.2, 0.0, 0.5, 0.3), 2)]
    subject = subject_prediction(slices)
    assert subject.probabilities == pytest.approx((0.3, 0.0, 0.45, 0.25))
    assert subject.label == 2  # not a majority vote of the slices' own labels by accident: the mean
    with pytest.raises(ValueError):
        subject_prediction([])


def test_gradcam_shape_range_and_target(tiny_predictor, test_slices):
    image = test_slices.images[0, 0].numpy()
    a = explain(tiny_predictor, image, target=0, layer="layer3")
    b = explain(tiny_predictor, image, target=2, layer="layer3")
    assert a.heatmap.shape == (128, 128) and a.heatmap.dtype == np.float32
    assert a.heatmap.min() >= 0 and a.heatmap.max() <= 1
    assert a.target == 0 and not np.allclose(a.heatmap, b.heatmap)
    assert explain(tiny_predictor, image).target == tiny_predictor.predict_one(image).label


def test_gradcam_rejects_bad_layer_and_target(tiny_predictor, test_slices):
    image = test_slices.images[0, 0].numpy()
    with pytest.raises(ValueError, match="unknown layer"):
        explain(tiny_predictor, image, layer="fc")
    with pytest.raises(ValueError, match="outside 0..3"):
        explain(tiny_predictor, image, target=9)


def run_together(work, n: int) -> None:
    """work(0) ... work(n - 1), each in its own thread, all started before any is joined."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_explanations_match_sequential(tiny_predictor, test_slices):
    images = [test_slices.images[i, 0].numpy() for i in range(4)]
    alone = [explain(tiny_predictor, img, target=i % 4).heatmap for i, img in enumerate(images)]
    results = {}

    def work(i):
        for _ in range(3):
            results[i] = explain(tiny_predictor, images[i], target=i % 4).heatmap
            tiny_predictor.probabilities(images[(i + 1) % 4])  # predictions interleave with the hooks

    run_together(work, 4)
    for i in range(4):
        np.testing.assert_allclose(results[i], alone[i], atol=1e-5)
    assert not tiny_predictor.net.layer4._forward_hooks  # no hook left behind


def test_maps_without_hooks_run_beside_hooked_ones_and_need_no_lock(tiny_predictor, test_slices):
    """Integrated Gradients and Occlusion run on their own copy of the network: one finishes while another thread
    holds the predictor's lock, and many of them, mixed with Grad-CAM and predictions, give what they give alone."""
    images = [test_slices.images[i, 0].numpy() for i in range(4)]
    methods = ["integrated_gradients", "gradcam", "occlusion", "integrated_gradients"]
    alone = [explain(tiny_predictor, img, target=i % 4, method=m).heatmap
             for i, (img, m) in enumerate(zip(images, methods))]

    done = threading.Event()
    with tiny_predictor.lock:  # as a Grad-CAM in another session would hold it
        t = threading.Thread(target=lambda: (explain(tiny_predictor, images[0], method="integrated_gradients"),
                                             done.set()))
        t.start()
        assert done.wait(timeout=120), "Integrated Gradients waited for the lock"
    t.join()

    results = {}

    def work(i):
        for _ in range(2):
            results[i] = explain(tiny_predictor, images[i], target=i % 4, method=methods[i]).heatmap
            tiny_predictor.probabilities(images[(i + 1) % 4])

    run_together(work, 4)
    for i in range(4):
        np.testing.assert_allclose(results[i], alone[i], atol=1e-5)
    assert not tiny_predictor.net.layer2._forward_hooks and not tiny_predictor.net.layer4._forward_hooks
    assert all(p.grad is None for p in tiny_predictor.net.parameters())


def test_overlay_blends_and_refuses_out_of_range():
    image = np.full((8, 8), 128, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    out = overlay(image, heat, alpha=0.0)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8 and (out == 128).all()
    assert not (overlay(image, heat + 1, alpha=0.5) == 128).all()
    with pytest.raises(ValueError, match=r"heatmap values must lie in \[0, 1\]"):
        overlay(image, heat + 2)
    with pytest.raises(ValueError, match="unknown colormap"):
        overlay(image, heat, colormap="rainbowz")
