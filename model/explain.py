"""Saliency maps for the classifier, computed with Captum.

`explain(predictor, slice, method="gradcam", target=None, layer="layer4")` returns
a map in [0, 1] of the slice's size. `target=None` means the predicted class.
Each method is one small function registered in `METHODS`, so further Captum
methods slot in beside Grad-CAM.

Captum places hooks on the shared network while it works, so every call holds
the predictor's lock: concurrent sessions each get the map they would get alone.
`overlay` blends a map over the slice as an RGB image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam

from model.constants import CLASS_NAMES
from model.inference import Predictor
from model.network import CAM_LAYERS, DEFAULT_CAM_LAYER, get_layer

COLORMAPS = ("jet", "inferno", "viridis", "magma", "turbo")


@dataclass(frozen=True)
class Explanation:
    """A saliency map (H, W) in [0, 1] for one slice and one target class."""

    heatmap: np.ndarray
    target: int
    method: str
    layer: str
    raw_max: float  # largest value before normalisation (0 means no positive evidence)

    def settings(self) -> dict:
        return {"method": self.method, "layer": self.layer, "target": CLASS_NAMES[self.target]}


def _gradcam(predictor: Predictor, x: torch.Tensor, target: int, layer: str) -> torch.Tensor:
    """Grad-CAM at `layer`, upsampled to the input: (1, 1, H, W), ReLU applied."""
    cam = LayerGradCam(predictor.net, get_layer(predictor.net, layer))
    attr = cam.attribute(x, target=target, relu_attributions=True)  # (1, 1, h, w)
    return LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")


METHODS = {"gradcam": _gradcam}


def explain(predictor: Predictor, image: np.ndarray, *, target: int | None = None, layer: str = DEFAULT_CAM_LAYER,
            method: str = "gradcam") -> Explanation:
    """Saliency for one uint8 (S, S) slice; the map is resized to (S, S) and scaled to [0, 1]."""
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose one of {sorted(METHODS)}")
    if layer not in CAM_LAYERS.values():
        raise ValueError(f"unknown layer {layer!r}; choose one of {list(CAM_LAYERS.values())}")
    image = np.asarray(image)
    with predictor.lock:
        x = predictor.prepare(image).requires_grad_(True)
        with torch.enable_grad():
            if target is None:
                target = int(predictor.net(x).argmax(1))
            if not 0 <= target < len(CLASS_NAMES):
                raise ValueError(f"target class {target} is outside 0..{len(CLASS_NAMES) - 1}")
            attr = METHODS[method](predictor, x, target, layer)
        predictor.net.zero_grad(set_to_none=True)
    heat = attr.detach().float().cpu()[0, 0]
    heat = torch.nn.functional.interpolate(heat[None, None], size=image.shape[-2:], mode="bilinear",
                                           align_corners=False)[0, 0]
    raw_max = float(heat.max())
    heat = heat.clamp(min=0) / raw_max if raw_max > 0 else torch.zeros_like(heat)
    return Explanation(heat.numpy(), target, method, layer, raw_max)


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] heatmap over a grayscale slice. Returns uint8 RGB (H, W, 3).

    image: uint8 (H, W), or float (H, W) in [0, 1]. Refuses values outside [0, 1].
    """
    import matplotlib

    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of {list(COLORMAPS)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {alpha}")
    base = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else np.asarray(image, dtype=np.float32)
    heat = np.asarray(heatmap, dtype=np.float32)
    for name, arr in (("image", base), ("heatmap", heat)):
        if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
            raise ValueError(f"{name} values must lie in [0, 1], got [{arr.min():.3g}, {arr.max():.3g}]")
    if base.shape != heat.shape:
        raise ValueError(f"image {base.shape} and heatmap {heat.shape} differ in shape")
    colored = matplotlib.colormaps[colormap](heat)[..., :3]  # (H, W, 3) in [0, 1]
    blended = (1 - alpha) * base[..., None] + alpha * colored
    return (blended.clip(0, 1) * 255).round().astype(np.uint8)
