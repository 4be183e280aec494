"""Temperature scaling (Guo et al., 2017): one scalar T fitted on validation logits.

Calibrated probabilities are softmax(logits / T). T > 1 softens an
over-confident network; it never changes the arg-max, so accuracy is untouched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """Minimise the NLL of softmax(logits / T) over T > 0. logits (N, C), labels (N,)."""
    logits = logits.detach().double()
    labels = labels.detach().long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # T = exp(log_t) stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return min(max(t, 0.05), 20.0)


N_BINS = 15  # equal-width confidence bins of the ECE and the reliability diagram


def reliability(probs, labels, n_bins: int = N_BINS) -> list[dict]:
    """Top-label reliability: for each non-empty confidence bin (lo, hi], its count, mean confidence and
    accuracy. probs (N, C) rows sum to 1; labels (N,)."""
    probs = torch.as_tensor(probs, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.long)
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            rows.append({"from": round(float(lo), 4), "to": round(float(hi), 4), "n": int(in_bin.sum()),
                         "confidence": float(conf[in_bin].mean()), "accuracy": float(correct[in_bin].mean())})
    return rows


def expected_calibration_error(probs, labels, n_bins: int = N_BINS) -> float:
    """Top-label ECE: the count-weighted gap between confidence and accuracy over the `reliability` bins."""
    rows = reliability(probs, labels, n_bins)
    total = sum(r["n"] for r in rows)
    return float(sum(r["n"] / total * abs(r["confidence"] - r["accuracy"]) for r in rows)) if total else 0.0
