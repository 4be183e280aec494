"""The classifier: torchvision's ResNet-34, for one grayscale channel and four stages.

Why one input channel: with no pretrained weights to reuse, repeating a gray
slice into three identical channels only triples the first convolution's work;
a 1-channel `conv1` spans exactly the same functions (the three kernels of a
3-channel conv would be summed anyway). Measured with
`benchmarks/bench_input_channels.py`: a 3-channel training step costs 0.99x the
1-channel one at 128 px and 1.05x at 224 px, so nothing is gained by three.

Why the network is written out here rather than imported from torchvision: importing `torchvision` imports
`torchvision.ops`, which imports `torch._dynamo`; on the 2-core machine that took 2.3 s quiet and 6.0 s loaded
(`python -X importtime`, 2026-12-02), a third of `alzmri predict` on one file and of the dashboard's cold start.
`ResNet34` below is torchvision's `resnet34` module for module: the same attribute names (so the same
state-dict keys and Grad-CAM layer paths), the same forward pass, and the same initialisation in the same order,
so one seed gives bit-identical weights (tests/model/test_preprocess_network.py checks both against torchvision).
"""
from __future__ import annotations

import torch
from torch import nn

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


def default_cam_layer(image_size: int, config: dict | None = None) -> str:
    """The Grad-CAM layer a network's maps use unless the user picks another: the layer its config names
    ("cam_layer", written by `alzmri-train data build-faithfulness --layer L --set-default-layer` after a measurement;
    the shipped 96 px network: layer2, 12x12), else the deepest layer whose map is at least MIN_CAM_SIDE cells a side
    at this input size: layer4 at 160 px and above (5x5), layer3 at 96 px (6x6), layer2 at 48 px (6x6)."""
    chosen = (config or {}).get("cam_layer")
    if chosen in CAM_STRIDE:
        return chosen
    for layer in ("layer4", "layer3", "layer2"):
        if -(-image_size // CAM_STRIDE[layer]) >= MIN_CAM_SIDE:
            return layer
    return "layer2"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch-norm and a residual connection (torchvision's `BasicBlock`)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet34(nn.Module):
    """torchvision's `resnet34(weights=None, num_classes=...)`: input (B, 3, H, W), logits (B, num_classes)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # as torchvision, in the same order: the same seed gives the same weights
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_model(in_channels: int = 1, num_classes: int = NUM_CLASSES) -> nn.Module:
    """ResNet-34 with random initialisation (no download), input (B, in_channels, H, W).

    Returns logits (B, num_classes).
    """
    net = ResNet34(num_classes=num_classes)
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
