"""The classifier: torchvision ResNet-34 for one grayscale channel and four stages.

Why one input channel: with no pretrained weights to reuse, repeating a gray
slice into three identical channels only triples the first convolution's work;
a 1-channel `conv1` spans exactly the same functions (the three kernels of a
3-channel conv would be summed anyway). Measured with
`benchmarks/bench_input_channels.py`: a 3-channel training step costs 0.99x the
1-channel one at 128 px and 1.05x at 224 px, so nothing is gained by three.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet34

from model.core.constants import NUM_CLASSES

# Layers offered for Grad-CAM, deepest first: name -> attribute path in the model.
CAM_LAYERS: dict[str, str] = {
    "layer4 (last block, 1/32 scale)": "layer4",
    "layer3 (1/16 scale)": "layer3",
    "layer4.2.conv2 (last convolution)": "layer4.2.conv2",
    "layer2 (1/8 scale)": "layer2",
}
DEFAULT_CAM_LAYER = "layer4"
# Downsampling of each CAM layer's output: a map coarser than MIN_CAM_SIDE cells a side says little.
CAM_STRIDE = {"layer4": 32, "layer4.2.conv2": 32, "layer3": 16, "layer2": 8}
MIN_CAM_SIDE = 5


def default_cam_layer(image_size: int) -> str:
    """The deepest Grad-CAM layer whose map is at least MIN_CAM_SIDE cells a side at this input size:
    layer4 at 160 px and above (5x5), layer2 at 48 px (6x6; layer4 would be 2x2)."""
    for layer in ("layer4", "layer3", "layer2"):
        if -(-image_size // CAM_STRIDE[layer]) >= MIN_CAM_SIDE:
            return layer
    return "layer2"


def build_model(in_channels: int = 1, num_classes: int = NUM_CLASSES) -> nn.Module:
    """ResNet-34 with random initialisation (no download), input (B, in_channels, H, W).

    Returns logits (B, num_classes).
    """
    net = resnet34(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net


def get_layer(net: nn.Module, path: str) -> nn.Module:
    """The sub-module at a dotted path such as 'layer4' or 'layer4.2.conv2'."""
    module = net
    for part in path.split("."):
        if not hasattr(module, part) and not (part.isdigit() and isinstance(module, nn.Sequential)):
            valid = ", ".join(CAM_LAYERS.values())
            raise ValueError(f"model has no layer {path!r}; valid choices: {valid}")
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def pick_device(preferred: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cpu' or 'cuda[:N]' force one."""
    if preferred == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(preferred)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {preferred!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no GPU is visible; use --device cpu or auto")
    return device
