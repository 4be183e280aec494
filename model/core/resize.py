"""Resizing slices in numpy, equal to PyTorch's `F.interpolate` to float32 rounding, for paths that never load torch.

    x = resize(images, 48, "bilinear")   # float32 (N, H, W) -> (N, 48, 48); antialiased when it shrinks
    s = resize(images, 32, "area")       # the mean of each pixel's source rectangle (adaptive average pooling)

Both are separable, so each is one weight matrix per axis: out = A @ x @ B.T, with A (size, H) and B (size, W).
The matrices reproduce PyTorch's index and weight rules exactly:

* "bilinear" (`mode="bilinear", align_corners=False`): when shrinking, with `antialias=True` as
  `model.core.preprocess.to_input` asks, a triangle filter stretched by the scale (PIL's and PyTorch's
  `_upsample_bilinear2d_aa`); when enlarging, plain bilinear with source coordinates clamped at 0;
* "area" (`mode="area"`, i.e. `adaptive_avg_pool2d`): output i averages source pixels floor(i * n / m) up to
  ceil((i + 1) * n / m).

`tests/model/test_resize.py` checks both against PyTorch on several sizes.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

MODES = ("bilinear", "area")


@lru_cache(maxsize=32)
def weights(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """float32 (n_out, n_in): row i holds the weights of the source pixels of output pixel i (each row sums to 1).
    Read-only: it is cached and shared."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {list(MODES)}")
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    w = np.zeros((n_out, n_in), dtype=np.float64)
    if n_in == n_out:
        np.fill_diagonal(w, 1.0)
    elif mode == "area":
        for i in range(n_out):
            start, stop = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)  # floor, ceil
            w[i, start:stop] = 1.0 / (stop - start)
    elif n_in > n_out:  # shrinking: the antialiased triangle filter, support scaled by the factor
        scale = n_in / n_out
        for i in range(n_out):
            center = scale * (i + 0.5)
            lo = max(int(center - scale + 0.5), 0)
            hi = min(int(center + scale + 0.5), n_in)
            taps = np.arange(lo, hi)
            tri = np.clip(1.0 - np.abs((taps - center + 0.5) / scale), 0.0, None)
            w[i, lo:hi] = tri / tri.sum()
    else:  # enlarging: plain bilinear, half-pixel centres, clamped at the first pixel
        scale = n_in / n_out
        for i in range(n_out):
            src = max(scale * (i + 0.5) - 0.5, 0.0)
            i0 = min(int(math.floor(src)), n_in - 1)
            i1 = min(i0 + 1, n_in - 1)
            frac = src - i0
            w[i, i0] += 1.0 - frac
            w[i, i1] += frac
    out = w.astype(np.float32)
    out.setflags(write=False)
    return out


def resize(images: np.ndarray, size: int | tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """float (..., H, W) -> float32 (..., size, size) (or (..., h, w) for a pair), as `F.interpolate` gives."""
    images = np.asarray(images, dtype=np.float32)
    h_out, w_out = (size, size) if isinstance(size, int) else size
    h, w = images.shape[-2:]
    if (h, w) == (h_out, w_out):
        return images.copy()
    rows, cols = weights(h, h_out, mode), weights(w, w_out, mode)
    return np.matmul(np.matmul(rows, images), cols.T)
