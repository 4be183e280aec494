"""Turning decoded slices into network input, the same way in training and use.

`to_input` is the one preprocessing function: uint8 (B, 1, S, S) in, normalised
float (B, 1, size, size) out. `augment` is the training-time batch augmentation,
done on tensors so that it costs a few milliseconds per batch, on CPU or GPU.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model.core.constants import MEAN, STD


def to_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 1, H, W) in 0..255 -> float32 (B, 1, size, size), normalised with MEAN/STD."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"expected uint8 (B, 1, H, W), got {images.dtype} {tuple(images.shape)}")
    x = images.float().div_(255.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
    return x.sub_(MEAN).div_(STD)


def augment(x: torch.Tensor, generator: torch.Generator | None = None, *, max_rotate: float = 10.0,
            max_scale: float = 0.08, max_shift: float = 0.06, flip: bool = True,
            max_brightness: float = 0.1, max_contrast: float = 0.1) -> torch.Tensor:
    """Random affine (rotation, scale, shift), left-right flip and intensity jitter.

    x: normalised float (B, 1, H, W). Returns a tensor of the same shape. The
    random draws come from `generator` (on CPU) so a seeded run repeats itself.
    Axial slices are near-symmetric, so a left-right flip keeps them plausible.
    """
    b = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * (hi - lo) + lo).to(x.device)

    angle = uniform(-max_rotate, max_rotate) * math.pi / 180
    scale = 1.0 + uniform(-max_scale, max_scale)
    sign = torch.ones(b, device=x.device)
    if flip:
        sign = torch.where(uniform(0, 1) < 0.5, -sign, sign)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sign, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * sign, cos
    theta[:, 0, 2], theta[:, 1, 2] = uniform(-max_shift, max_shift) * 2, uniform(-max_shift, max_shift) * 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = -MEAN / STD  # a black pixel after normalisation
    x = F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + background
    contrast = (1.0 + uniform(-max_contrast, max_contrast)).view(b, 1, 1, 1)
    brightness = (uniform(-max_brightness, max_brightness) / STD).view(b, 1, 1, 1)
    return x * contrast + brightness


def cutout(x: torch.Tensor, generator: torch.Generator | None = None, *, p: float = 0.5,
           size: float = 0.25) -> torch.Tensor:
    """Blank one random square per slice, with chance p, to the mean intensity (0 after normalisation).

    x: normalised float (B, 1, H, W); size: the square's side as a fraction of H. Unlike an
    affine transform it leaves every other pixel where it was, so the network must find its
    evidence in more than one part of the slice. The square may overhang the border.
    """
    b, _, h, w = x.shape
    side = max(1, round(size * h))
    cy = torch.randint(h, (b,), generator=generator).to(x.device)
    cx = torch.randint(w, (b,), generator=generator).to(x.device)
    apply = (torch.rand(b, generator=generator) < p).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((rows - cy.view(b, 1, 1)).abs() <= side // 2) & ((cols - cx.view(b, 1, 1)).abs() <= side // 2)
    mask = (inside & apply.view(b, 1, 1)).unsqueeze(1)  # (B, 1, H, W)
    return x.masked_fill(mask, 0.0)


def hflip(x: torch.Tensor, generator: torch.Generator | None = None, *, p: float = 0.5) -> torch.Tensor:
    """Mirror each slice left-right with chance p. x: (B, 1, H, W).

    The mildest geometric change: an axial slice's hemispheres are near mirror images, and no pixel
    is interpolated or moved off the slice.
    """
    apply = (torch.rand(x.shape[0], generator=generator) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(apply, x.flip(-1), x)


def mri_intensity(x: torch.Tensor, generator: torch.Generator | None = None, *, max_gamma: float = 0.3,
                  max_bias: float = 0.3, max_noise: float = 0.03, blur_p: float = 0.3,
                  max_blur: float = 1.0) -> torch.Tensor:
    """MRI-like intensity changes: gamma, a smooth multiplicative bias field, Gaussian noise and blur.

    x: normalised float (B, 1, H, W); returns the same shape. Scanners differ in contrast curve (gamma), coil
    sensitivity (a bias field that brightens one side of the head), noise and sharpness; none of these
    changes the anatomy, so a network that must ignore them has to look at shape. Draws come from `generator`.
    """
    b, _, h, w = x.shape

    def uniform(lo: float, hi: float, *shape) -> torch.Tensor:
        return (torch.rand(b, *shape, generator=generator) * (hi - lo) + lo).to(x.device)

    v = (x * STD + MEAN).clamp(0, 1)  # back to [0, 1] grey levels
    v = v ** torch.exp(uniform(-max_gamma, max_gamma)).view(b, 1, 1, 1)
    # bias field: exp of a random first- and second-order polynomial over [-1, 1]^2
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device),
                            indexing="ij")
    basis = torch.stack([xx, yy, xx * yy, xx ** 2 - 1 / 3, yy ** 2 - 1 / 3])  # (5, H, W)
    coeff = uniform(-max_bias, max_bias, 5) / 2  # (B, 5)
    v = v * torch.exp(torch.einsum("bk,khw->bhw", coeff, basis)).unsqueeze(1)
    if blur_p > 0 and max_blur > 0:
        sigma = float(torch.rand(1, generator=generator)) * max_blur
        apply = (torch.rand(b, generator=generator) < blur_p).to(x.device).view(b, 1, 1, 1)
        if sigma > 0.2:
            radius = max(1, int(round(2 * sigma)))
            t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
            kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
            kernel = kernel / kernel.sum()
            blurred = F.conv2d(F.pad(v, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
            blurred = F.conv2d(F.pad(blurred, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
            v = torch.where(apply, blurred, v)
    noise = torch.randn(v.shape, generator=generator).to(x.device) * uniform(0, max_noise).view(b, 1, 1, 1)
    v = (v + noise).clamp(0, 1)
    return (v - MEAN) / STD
