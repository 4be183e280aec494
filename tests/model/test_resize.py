"""model.core.resize gives what PyTorch's F.interpolate gives, so the paths without torch preprocess as training did."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.core.preprocess import to_input
from model.core.resize import resize, weights
from model.core.runtimes import to_input_array

SIZES = [(128, 48), (128, 96), (128, 32), (64, 48), (100, 48), (130, 48), (32, 48), (48, 128), (7, 3), (128, 128)]


@pytest.mark.parametrize("n_in, n_out", SIZES)
def test_bilinear_matches_torch(n_in, n_out):
    x = np.random.default_rng(n_in * 1000 + n_out).random((3, n_in, n_in), dtype=np.float32)
    expected = F.interpolate(torch.from_numpy(x)[:, None], size=(n_out, n_out), mode="bilinear", align_corners=False,
                             antialias=n_in > n_out)[:, 0].numpy()
    assert resize(x, n_out, "bilinear").shape == (3, n_out, n_out)
    assert np.abs(resize(x, n_out, "bilinear") - expected).max() < 1e-5


@pytest.mark.parametrize("n_in, n_out", SIZES)
def test_area_matches_adaptive_average_pooling(n_in, n_out):
    x = np.random.default_rng(n_in + n_out).random((2, n_in, n_in), dtype=np.float32)
    expected = F.adaptive_avg_pool2d(torch.from_numpy(x)[:, None], n_out)[:, 0].numpy()
    assert np.abs(resize(x, n_out, "area") - expected).max() < 1e-6


def test_rectangular_sizes_resize_each_axis_on_its_own():
    x = np.random.default_rng(1).random((1, 60, 90), dtype=np.float32)
    expected = F.interpolate(torch.from_numpy(x)[:, None], size=(30, 48), mode="bilinear", align_corners=False,
                             antialias=True)[:, 0].numpy()
    assert np.abs(resize(x, (30, 48)) - expected).max() < 1e-5


def test_weights_rows_sum_to_one_and_are_read_only():
    for mode in ("bilinear", "area"):
        for n_in, n_out in SIZES:
            w = weights(n_in, n_out, mode)
            assert w.shape == (n_out, n_in) and np.allclose(w.sum(1), 1, atol=1e-6)
            with pytest.raises(ValueError):
                w[0, 0] = 2.0
    with pytest.raises(ValueError, match="unknown mode"):
        weights(8, 4, "bicubic")


def test_numpy_preprocessing_equals_to_input(test_slices):
    images = test_slices.images  # uint8 (8, 1, 128, 128)
    for size in (48, 96, 128):
        ours = to_input_array(images.numpy(), size)
        assert ours.dtype == np.float32 and ours.shape == (8, 1, size, size)
        assert np.abs(ours - to_input(images, size).numpy()).max() < 1e-4  # normalised units (1/STD ~ 3 per grey)
    with pytest.raises(ValueError, match="uint8"):
        to_input_array(images.numpy().astype(np.float32), 48)
