"""analysis.learning_curve: subsets keep whole subjects in every stage, and the floor predicts every held-out slice."""
import numpy as np
import torch

from analysis.learning_curve import chosen_subjects, floor_out_of_fold


def cohort(n_subjects=24, slices=4, seed=0):
    rng = np.random.default_rng(seed)
    labels_of = np.array([0, 1, 2, 3] * (n_subjects // 4))
    groups = np.repeat([f"s{i}" for i in range(n_subjects)], slices)
    labels = np.repeat(labels_of, slices)
    positions = np.tile(np.arange(slices), n_subjects)
    pixels = rng.normal(60, 12, size=(len(labels), 1, 16, 16)) + labels[:, None, None, None] * 10  # by stage
    x = torch.from_numpy(np.clip(pixels, 0, 255).astype(np.uint8))  # uint8 (N, 1, 16, 16) slices
    fold = np.repeat(np.arange(n_subjects) % 3, slices)
    return x, labels, groups, positions, fold


def test_a_subset_takes_whole_subjects_from_every_stage():
    _, labels, groups, _, fold = cohort()
    train = fold != 0
    mask = chosen_subjects(groups, labels, train, 0.5, np.random.default_rng(1))
    kept = np.unique(groups[mask])
    assert len(kept) == 8 and not (mask & ~train).any()  # half of the 16 training subjects, none held out
    for s in kept:
        assert mask[groups == s].all()  # every slice of a chosen subject
    assert sorted(set(labels[mask])) == [0, 1, 2, 3]
    assert chosen_subjects(groups, labels, train, 1.0, np.random.default_rng(1)).sum() == train.sum()


def test_the_floor_scores_every_held_out_slice_and_learns_the_stage():
    x, labels, groups, positions, fold = cohort()
    for by_position in (False, True):
        probs = floor_out_of_fold(x, labels, groups, fold, positions, 5, by_position, 0.75, np.random.default_rng(0))
        assert probs.shape == (len(labels), 4) and np.allclose(probs.sum(1), 1)
        assert (probs.argmax(1) == labels).mean() > 0.5  # well above chance (0.25) on separable pixels
