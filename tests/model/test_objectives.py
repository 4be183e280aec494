"""The training objectives of issue 18 on tiny synthetic data: each test can fail."""
import numpy as np
import pandas as pd
import pytest
import torch

from model.training import objectives
from model.core.constants import CLASS_NAMES
from model.core.network import build_model
from model.core.preprocess import mri_intensity, to_input

NON, VERY, MILD, MOD = (CLASS_NAMES.index(n) for n in
                        ("Non_Demented", "Very_Mild_Demented", "Mild_Demented", "Moderate_Demented"))


def logits_for(label: int, sure: float = 8.0) -> torch.Tensor:
    out = torch.zeros(1, 4)
    out[0, label] = sure
    return out


def test_ordinal_loss_grows_with_the_distance_between_stages():
    truth = torch.tensor([NON])
    by_guess = {g: objectives.ordinal_loss(logits_for(g), truth).item() for g in (NON, VERY, MILD, MOD)}
    assert by_guess[NON] < by_guess[VERY] < by_guess[MILD] < by_guess[MOD]
    # cross-entropy cannot tell these apart: every wrong stage costs the same
    ce = {g: torch.nn.functional.cross_entropy(logits_for(g), truth).item() for g in (VERY, MOD)}
    assert ce[VERY] == pytest.approx(ce[MOD])


def test_ordinal_loss_takes_mixed_targets_like_hard_ones():
    hard = objectives.ordinal_loss(logits_for(MILD), torch.tensor([VERY]))
    soft = objectives.ordinal_loss(logits_for(MILD), torch.nn.functional.one_hot(torch.tensor([VERY]), 4).float())
    assert soft.item() == pytest.approx(hard.item(), rel=1e-5)


def test_soft_cross_entropy_matches_torch_on_one_hot_targets_with_weights():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 2, 2])
    w = torch.tensor([1.0, 3.0, 0.5, 1.2])
    ours = objectives.soft_cross_entropy(logits, torch.nn.functional.one_hot(y, 4).float(), w)
    assert ours.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y, weight=w).item(), rel=1e-5)


def test_subject_sampler_takes_k_slices_of_every_subject_and_varies_them():
    groups = np.array(["a"] * 32 + ["b"] * 32 + ["c"] * 5, dtype=object)
    g = torch.Generator().manual_seed(0)
    first = objectives.subject_epoch_order(groups, 8, g)
    second = objectives.subject_epoch_order(groups, 8, g)
    counts = pd.Series(groups[first.numpy()]).value_counts()
    assert counts.to_dict() == {"a": 8, "b": 8, "c": 5}  # a subject with fewer slices gives them all
    assert len(set(first.tolist())) == len(first)  # no slice twice in one epoch
    assert set(first.tolist()) != set(second.tolist())  # another draw next epoch


def test_atrophy_targets_are_standardised_per_subject_and_masked_where_unknown():
    table = pd.DataFrame({"subject": ["a", "b", "c"], "nwbv": [0.70, 0.80, np.nan]})
    groups = np.array(["a", "a", "a", "b", "c"], dtype=object)  # a has 3 slices: stats must not weigh it 3x
    targets, known, stats = objectives.atrophy_targets(groups, table)
    assert stats["nwbv"][0] == pytest.approx(0.75)
    assert targets[:, 0].tolist() == pytest.approx([-1, -1, -1, 1, 0])
    assert known[:, 0].tolist() == [True, True, True, True, False]
    pred = torch.tensor([[-1.0], [-1.0], [-1.0], [1.0], [50.0]])  # wildly wrong only where unknown
    assert objectives.masked_mse(pred, targets, known).item() == pytest.approx(0.0)


def test_feature_tap_captures_pooled_features_and_drops_out_only_in_training():
    net = build_model()
    x = torch.randn(2, 1, 48, 48)
    with objectives.FeatureTap(net, dropout=0.9) as tap:
        net.eval()
        a, b = net(x), net(x)
        assert tap.features.shape == (2, 512)
        assert torch.equal(a, b)  # eval: no dropout
        net.train()
        c, d = net(x), net(x)
        assert not torch.allclose(c, d)  # training: features dropped at random
    assert not net.avgpool._forward_hooks  # the hook is gone after the block
    assert set(net.state_dict()) == set(build_model().state_dict())  # the shipped weights are unchanged in kind


def test_auxiliary_head_learns_a_signal_that_cross_entropy_ignores():
    """Slices whose brightness encodes a continuous target: the head fitted through the tap predicts it."""
    torch.manual_seed(0)
    net = build_model()
    head = torch.nn.Linear(512, 1)
    levels = torch.linspace(-1, 1, 16)
    images = (torch.rand(16, 1, 32, 32) * 40 + 100 + 60 * levels.view(16, 1, 1, 1)).clamp(0, 255).to(torch.uint8)
    x, target = to_input(images, 32), levels.view(16, 1)
    optimiser = torch.optim.Adam(list(net.parameters()) + list(head.parameters()), lr=1e-3)
    with objectives.FeatureTap(net) as tap:
        net.train()
        for _ in range(60):
            net(x)
            loss = objectives.masked_mse(head(tap.features), target, torch.ones_like(target, dtype=torch.bool))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        net.eval()
        net(x)
        pred = head(tap.features).detach()[:, 0]
    assert np.corrcoef(pred.numpy(), levels.numpy())[0, 1] > 0.9


def test_mixup_keeps_the_larger_share_and_mixes_targets_alike():
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2).clone()
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 4).float()
    mx, my, partner, lam = objectives.mixup(x, y, 0.4, torch.Generator().manual_seed(3))
    assert 0.5 <= lam.item() <= 1.0
    assert torch.allclose(mx, lam * x + (1 - lam) * x[partner])
    assert torch.allclose(my.sum(1), torch.ones(4)) and torch.allclose(my, lam * y + (1 - lam) * y[partner])


def test_mri_intensity_changes_grey_levels_but_keeps_shape_and_range():
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(4, 1, 48, 48, dtype=torch.uint8)
    images[:, :, 12:36, 12:36] = 150
    x = to_input(images, 48)
    y = mri_intensity(x, g)
    assert y.shape == x.shape and not torch.allclose(x, y)
    from model.core.constants import MEAN, STD
    grey = y * STD + MEAN
    assert grey.min() >= -1e-6 and grey.max() <= 1 + 1e-6
    inside, outside = grey[:, :, 16:32, 16:32].mean(), grey[:, :, :8, :8].mean()
    assert inside > outside + 0.3  # the head stays brighter than the background: anatomy is kept
