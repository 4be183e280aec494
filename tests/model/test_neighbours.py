"""model.qualify.neighbours: the nearest training slices, by RMS grey-level distance."""
import numpy as np
import pytest
import torch

from model.qualify.neighbours import nearest_neighbours


def test_nearest_neighbours_finds_the_closest_image_and_its_rms_distance():
    reference = torch.stack([torch.full((1, 8, 8), v, dtype=torch.uint8) for v in (0, 50, 200)])
    query = torch.stack([torch.full((1, 8, 8), v, dtype=torch.uint8) for v in (45, 190, 3)])
    idx, dist = nearest_neighbours(reference, query, k=2)
    assert idx.tolist() == [[1, 0], [2, 1], [0, 1]]
    np.testing.assert_allclose(dist[:, 0], [5.0, 10.0, 3.0], rtol=1e-5)  # RMS grey levels per pixel


def test_nearest_neighbours_can_skip_self_and_other_classes():
    images = torch.stack([torch.full((1, 4, 4), v, dtype=torch.uint8) for v in (0, 10, 20, 30)])
    labels = torch.tensor([0, 1, 0, 1])
    idx, _ = nearest_neighbours(images, images, k=1, exclude_self=True, same_label=(labels, labels), chunk=3)
    assert idx[:, 0].tolist() == [2, 3, 0, 1]


def test_nearest_neighbours_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        nearest_neighbours(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
