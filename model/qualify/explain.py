"""Saliency maps for the classifier, computed with Captum.

`explain(predictor, slice, method="gradcam", target=None, layer="layer4")` returns
a map in [0, 1] of the slice's size. `target=None` means the predicted class.
Each method is one small function registered in `METHODS`, with a line on what it
shows in `METHOD_NOTES`:

* gradcam: Grad-CAM at a layer (coarse: where the layer's features carry evidence);
* guided_gradcam: Grad-CAM times guided backpropagation (fine detail inside those regions);
* integrated_gradients: gradients integrated along a path from a black slice (pixel evidence
  that adds up to the score's change from black);
* occlusion: the drop in the class score when a patch is blacked out (model-agnostic, slow).

Only positive evidence is kept, as for Grad-CAM. Whether a map is faithful to the network is
measured by `model.qualify.faithfulness`, not assumed.

Grad-CAM and Guided Grad-CAM place hooks on the shared network while they work, so they hold the predictor's
lock; Integrated Gradients and Occlusion (`HOOK_FREE`) run on a copy of the network made once and take no lock.
Either way concurrent sessions each get the map they would get alone. `model.qualify.ahead` computes the other
classes' maps ahead of the question on a low-priority thread.
`overlay` blends a map over the slice as an RGB image. `brain_mask` finds the head on a slice (the training
slices' background is black) and `outside_share` says how much of a map lies off it: evidence on the black
background says more about the network's shortcuts than about the brain.
"""
from __future__ import annotations

import copy
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

# matplotlib (the colour map, 0.3 s) and scipy.ndimage (the brain mask, 0.3 s) are imported where they are used:
# at the top they cost every cold start of the app and of `alzmri predict`, which may never draw a map.

# captum is imported inside the functions that attribute, not here: it imports matplotlib.pyplot, 0.5 s of every
# start-up of the app and the API (`python -X importtime`, 2-core machine, 2026-12-02), before any map is asked for.

from model.core.constants import CLASS_NAMES, MEAN, STD
from model.core.inference import Predictor
from model.core.network import CAM_LAYERS, DEFAULT_CAM_LAYER, get_layer

COLORMAPS = ("jet", "inferno", "viridis", "magma", "turbo")


@dataclass(frozen=True)
class Explanation:
    """A saliency map (H, W) in [0, 1] for one slice and one target class."""

    heatmap: np.ndarray
    target: int
    method: str
    layer: str
    raw_max: float  # largest value before normalisation (0 means no positive evidence)
    options: tuple[tuple[str, object], ...] = ()  # the method's own settings (steps, window, ...)

    def settings(self) -> dict:
        out = {"method": self.method, "target": CLASS_NAMES[self.target], **dict(self.options)}
        if self.method in LAYER_METHODS:
            out["layer"] = self.layer
        return out


def _gradcam(net: torch.nn.Module, x: torch.Tensor, target: int, layer: str) -> torch.Tensor:
    """Grad-CAM at `layer`, upsampled to the input: (1, 1, H, W), ReLU applied."""
    from captum.attr import LayerAttribution, LayerGradCam  # lazy: see the note at the imports

    cam = LayerGradCam(net, get_layer(net, layer))
    attr = cam.attribute(x, target=target, relu_attributions=True)  # (1, 1, h, w)
    return LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")


BLACK = -MEAN / STD  # a black pixel after normalisation: the reference of integrated gradients and occlusion
IG_STEPS = 32
OCCLUSION_WINDOW = 0.125  # of the input side: 12 px at 96 px, about the size of a ventricle
OCCLUSION_STRIDE = 0.0625


def _guided_gradcam(net: torch.nn.Module, x: torch.Tensor, target: int, layer: str) -> torch.Tensor:
    """Guided Grad-CAM: Grad-CAM at `layer`, upsampled, times guided backpropagation: (1, 1, H, W)."""
    with _no_inplace_relu(net), warnings.catch_warnings():  # guided backpropagation hooks every ReLU
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        from captum.attr import GuidedGradCam  # lazy: see the note at the imports

        return GuidedGradCam(net, get_layer(net, layer)).attribute(x, target=target)


def _integrated_gradients(net: torch.nn.Module, x: torch.Tensor, target: int, layer: str) -> torch.Tensor:
    """Integrated gradients from a black slice in IG_STEPS steps: (1, 1, H, W)."""
    from captum.attr import IntegratedGradients  # lazy: see the note at the imports

    return IntegratedGradients(net).attribute(x, baselines=torch.full_like(x, BLACK), target=target,
                                                        n_steps=IG_STEPS, internal_batch_size=IG_STEPS)


def _occlusion(net: torch.nn.Module, x: torch.Tensor, target: int, layer: str) -> torch.Tensor:
    """Score drop when a square patch is set to black, averaged over the patches covering each pixel."""
    side = x.shape[-1]
    window, stride = max(2, round(OCCLUSION_WINDOW * side)), max(1, round(OCCLUSION_STRIDE * side))
    with torch.no_grad():
        from captum.attr import Occlusion  # lazy: see the note at the imports

        return Occlusion(net).attribute(x.detach(), sliding_window_shapes=(1, window, window),
                                                  strides=(1, stride, stride), baselines=BLACK, target=target,
                                                  perturbations_per_eval=64)


class _no_inplace_relu:
    """Within the block, every nn.ReLU of `net` works out of place (Captum's backward hooks need that)."""

    def __init__(self, net: torch.nn.Module):
        self.relus = [m for m in net.modules() if isinstance(m, torch.nn.ReLU) and m.inplace]

    def __enter__(self):
        for m in self.relus:
            m.inplace = False

    def __exit__(self, *exc):
        for m in self.relus:
            m.inplace = True


METHODS = {"gradcam": _gradcam, "guided_gradcam": _guided_gradcam,
           "integrated_gradients": _integrated_gradients, "occlusion": _occlusion}
LAYER_METHODS = ("gradcam", "guided_gradcam")  # the methods that read a layer
METHOD_NAMES = {"gradcam": "Grad-CAM", "guided_gradcam": "Guided Grad-CAM",
                "integrated_gradients": "Integrated Gradients", "occlusion": "Occlusion"}
METHOD_NOTES = {
    "gradcam": "Where the chosen layer's features carry evidence for the class, at that layer's coarse scale.",
    "guided_gradcam": "Grad-CAM sharpened by guided backpropagation: the fine edges inside Grad-CAM's regions "
                      "that raise the class score. Known to look much the same for a randomised network: check it.",
    "integrated_gradients": f"Each pixel's share of the change in the class score from a black slice to this one "
                            f"({IG_STEPS} steps). Fine-grained and often noisy.",
    "occlusion": "How much the class score drops when a patch (1/8 of the side) is blacked out. Asks the network "
                 "directly, with no gradients; coarse and slower.",
}


def method_options(method: str, image_size: int) -> tuple[tuple[str, object], ...]:
    """The settings a method ran with, for reports and the JSON record."""
    if method == "integrated_gradients":
        return (("baseline", "black slice"), ("steps", IG_STEPS))
    if method == "occlusion":
        return (("baseline", "black patch"), ("window_px", max(2, round(OCCLUSION_WINDOW * image_size))),
                ("stride_px", max(1, round(OCCLUSION_STRIDE * image_size))), ("input_px", image_size))
    return ()


HOOK_FREE = ("integrated_gradients", "occlusion")  # add no hook to the network and change none of its modules


def hook_free_network(predictor: Predictor) -> torch.nn.Module:
    """A copy of the predictor's network, made once, on which only the maps without hooks run (`HOOK_FREE`).

    Grad-CAM and Guided Grad-CAM hook the shared network (and Guided Grad-CAM turns its ReLUs out of place), so
    they hold the predictor's lock. Integrated Gradients and Occlusion only run forward and backward passes, which
    PyTorch allows from many threads on one module; on this copy they run side by side, with each other and with
    a hooked map on the original. Ten sessions waiting for one lock was what held back concurrent uploads
    (benchmarks/README.md)."""
    net = getattr(predictor, "_hook_free_net", None)
    if net is not None:
        return net
    with predictor.lock:  # copied once, while no hook is on the original
        net = getattr(predictor, "_hook_free_net", None)
        if net is None:
            net = copy.deepcopy(predictor.net).eval()
            for p in net.parameters():
                p.requires_grad_(False)  # gradients flow to the input only; nothing accumulates in the weights
            predictor._hook_free_net = net
        return net


def explain(predictor: Predictor, image: np.ndarray, *, target: int | None = None, layer: str = DEFAULT_CAM_LAYER,
            method: str = "gradcam") -> Explanation:
    """Saliency for one uint8 (S, S) slice; the map is resized to (S, S) and scaled to [0, 1]."""
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose one of {sorted(METHODS)}")
    if layer not in CAM_LAYERS.values():
        raise ValueError(f"unknown layer {layer!r}; choose one of {list(CAM_LAYERS.values())}")
    image = np.asarray(image)
    hooked = method not in HOOK_FREE
    with predictor.lock if hooked else nullcontext():  # hooks on the shared network: one map at a time
        net = predictor.net if hooked else hook_free_network(predictor)
        x = predictor.prepare(image).requires_grad_(True)
        with torch.enable_grad():
            if target is None:
                target = int(net(x).argmax(1))
            if not 0 <= target < len(CLASS_NAMES):
                raise ValueError(f"target class {target} is outside 0..{len(CLASS_NAMES) - 1}")
            attr = METHODS[method](net, x, target, layer)
        if hooked:
            net.zero_grad(set_to_none=True)
    heat = attr.detach().float().cpu()[0, 0]
    heat = torch.nn.functional.interpolate(heat[None, None], size=image.shape[-2:], mode="bilinear",
                                           align_corners=False)[0, 0]
    raw_max = float(heat.max())
    heat = heat.clamp(min=0) / raw_max if raw_max > 0 else torch.zeros_like(heat)
    return Explanation(heat.numpy(), target, method, layer, raw_max, method_options(method, predictor.image_size))


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] heatmap over a grayscale slice. Returns uint8 RGB (H, W, 3).

    image: uint8 (H, W), or float (H, W) in [0, 1]. Refuses values outside [0, 1].
    """
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
    import matplotlib  # 0.3 s, see the imports

    colored = matplotlib.colormaps[colormap](heat)[..., :3]  # (H, W, 3) in [0, 1]
    blended = (1 - alpha) * base[..., None] + alpha * colored
    return (blended.clip(0, 1) * 255).round().astype(np.uint8)


MASK_LEVEL = 12  # grey level (of 255) above which a median-filtered pixel is head, not the black background
MASK_MEDIAN = 3  # px, median filter before thresholding: isolated noisy pixels stay background, edges stay put
MASK_CLOSING = 2  # px: closes sulci open to the background, so dark CSF at the brain's edge counts as brain


def brain_mask(image: np.ndarray) -> np.ndarray:
    """The head on a slice: bool (H, W), True on the brain (and skull, where there is one), False on the background.

    image: uint8 (H, W), or float (H, W) in [0, 1], with a black background as in the training slices. The slice
    is median-filtered, thresholded at MASK_LEVEL, closed, reduced to its largest connected component and its holes
    (ventricles, dark CSF) filled, so noise on the background and dark tissue inside do not change the answer.
    An all-black slice gives an all-False mask.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"a slice must be 2-D (H, W), got shape {image.shape}")
    x = image.astype(np.float32) * (1.0 if image.dtype == np.uint8 else 255.0)  # grey levels 0-255
    from scipy import ndimage  # 0.3 s, see the imports

    head = ndimage.median_filter(x, MASK_MEDIAN) > MASK_LEVEL
    head = ndimage.binary_closing(head, iterations=MASK_CLOSING, border_value=0)
    parts, n = ndimage.label(head)
    if n == 0:
        return np.zeros(x.shape, dtype=bool)
    largest = 1 + int(np.argmax(ndimage.sum_labels(head, parts, index=range(1, n + 1))))
    return ndimage.binary_fill_holes(parts == largest)


def outside_share(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Fraction (0-1) of a map's positive mass that lies outside the brain mask.

    heatmap: (H, W) real values (negative values count as 0); mask: bool (H, W) from `brain_mask`. 0 when the
    map is empty (no positive mass, hence none outside).
    """
    heat = np.clip(np.asarray(heatmap, dtype=np.float64), 0, None)
    mask = np.asarray(mask, dtype=bool)
    if heat.shape != mask.shape:
        raise ValueError(f"map {heat.shape} and mask {mask.shape} differ in shape")
    total = heat.sum()
    return float(heat[~mask].sum() / total) if total > 0 else 0.0
