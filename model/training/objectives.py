"""Training objectives beyond cross-entropy, and the per-epoch slice sampler (training only).

Every piece here acts on the shapes the training loop already has:
logits (B, C) in label order, labels (B,) int64, pooled features (B, 512).
None of it changes the shipped network: the auxiliary head is dropped at export
and the ordinal term is a loss on the ordinary softmax.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from model.core.constants import NUM_CLASSES, STAGE_ORDER

# rank of each label id on the disease scale: No 0 < Very mild 1 < Mild 2 < Moderate 3
RANK_OF_LABEL = torch.tensor([STAGE_ORDER.index(c) for c in range(NUM_CLASSES)])


def ordinal_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cumulative (ordinal) binary cross-entropy on the softmax: for each threshold k in 0..C-2, the
    probability that the stage lies above k against whether it does. Confusing No with Moderate costs
    three thresholds, No with Very mild one. logits (B, C) in label order; labels (B,) or soft (B, C)."""
    probs = torch.softmax(logits.float(), 1)[:, list(STAGE_ORDER)]  # (B, C) in rank order
    above = 1.0 - probs.cumsum(1)[:, :-1]  # (B, C-1): P(rank > k)
    if labels.dim() == 1:
        target = (RANK_OF_LABEL.to(labels.device)[labels].unsqueeze(1)
                  > torch.arange(NUM_CLASSES - 1, device=labels.device)).float()
    else:  # soft targets (mixup): the same cumulative sums of the target distribution
        target = 1.0 - labels[:, list(STAGE_ORDER)].cumsum(1)[:, :-1]
    return F.binary_cross_entropy(above.clamp(1e-6, 1 - 1e-6), target.clamp(0, 1))


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy against a target distribution (B, C) (mixup), with optional class weights and smoothing."""
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / target.shape[1]
    logp = F.log_softmax(logits.float(), 1)
    per_row = -(target * logp).sum(1)
    if weight is not None:
        per_row = per_row * (target * weight).sum(1)
        return per_row.sum() / (target * weight).sum()
    return per_row.mean()


class FeatureTap:
    """Captures the pooled features (B, 512) of a torchvision ResNet on every forward pass and, in training,
    applies dropout to them before the classifier (a forward hook on `avgpool`, so the state dict is untouched).
    Use as a context manager: the hook is removed on exit."""

    def __init__(self, net: nn.Module, dropout: float = 0.0):
        self.net, self.dropout, self.features, self._handle = net, dropout, None, None

    def _hook(self, module, inputs, output):
        self.features = output.flatten(1)
        if self.dropout and module.training:
            return F.dropout(output, self.dropout, training=True)
        return None

    def __enter__(self) -> "FeatureTap":
        self._handle = self.net.avgpool.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def atrophy_targets(groups, subject_table: pd.DataFrame, columns=("nwbv",)) -> tuple[torch.Tensor, torch.Tensor,
                                                                                      dict]:
    """Standardised clinical targets per slice for the auxiliary head.

    groups: (N,) subject ids of the training slices; subject_table: one row per subject with `columns`.
    Returns (targets float (N, len(columns)), known bool (N, len(columns)), {column: (mean, std)}); the
    mean and std come from the training subjects alone, one value per subject (not per slice).
    """
    table = subject_table.set_index("subject")
    subjects = pd.Index(pd.unique(np.asarray(groups)))
    values = table.reindex(subjects)[list(columns)].astype(float)
    stats = {c: (float(values[c].mean()), float(values[c].std(ddof=0)) or 1.0) for c in columns}
    per_slice = table.reindex(np.asarray(groups))[list(columns)].astype(float).to_numpy()
    known = ~np.isnan(per_slice)
    scaled = np.stack([(per_slice[:, i] - stats[c][0]) / stats[c][1] for i, c in enumerate(columns)], 1)
    return torch.from_numpy(np.nan_to_num(scaled)).float(), torch.from_numpy(known), stats


def masked_mse(pred: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the known entries only; 0 when none is known. All (B, K)."""
    known = known.float()
    return ((pred.float() - target) ** 2 * known).sum() / known.sum().clamp(min=1.0)


def subject_epoch_order(groups: np.ndarray, k: int, generator: torch.Generator) -> torch.Tensor:
    """Row indices for one epoch that take k slices of every subject (all of a subject's slices when it has
    fewer), shuffled. groups: (N,) subject id per row. Every brain weighs the same in an epoch, and an epoch
    costs k x subjects instead of every slice."""
    groups = np.asarray(groups)
    codes, inverse = np.unique(groups, return_inverse=True)
    rows = []
    perm = torch.randperm(len(groups), generator=generator).numpy()  # random order inside each subject
    by_subject = pd.Series(perm).groupby(inverse[perm]).apply(list)
    for members in by_subject:
        rows.extend(members[:k])
    rows = torch.tensor(rows, dtype=torch.long)
    return rows[torch.randperm(len(rows), generator=generator)]


def mixup(x: torch.Tensor, target: torch.Tensor, alpha: float, generator: torch.Generator
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blend each slice with another of the batch, weight lambda ~ Beta(alpha, alpha) per batch.

    x: (B, 1, H, W); target: one-hot (B, C). Returns (mixed x, mixed target, partner index (B,), lambda).
    """
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha)) if alpha > 0 else 1.0
    lam = max(lam, 1.0 - lam)  # the slice itself keeps the larger share
    partner = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return lam * x + (1 - lam) * x[partner], lam * target + (1 - lam) * target[partner], partner, torch.tensor(lam)
