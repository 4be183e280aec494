"""Shared fixtures: the dataset in ../shared, tiny exported models, small images.

Tests that need the real 6,400 slices carry the `data` marker (every test that asks for `data_dir` gets it
here); without the dataset they are skipped with one reason line, and the summary counts them. Tests that only
need a few brain-like slices use `test_slices`, which the tests draw themselves (no dataset image is committed),
and run everywhere.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.core.constants import DATA_ENV_VAR, SPLIT_FILES, default_data_dir

ROOT = Path(__file__).resolve().parent.parent



def missing_data_reason() -> str | None:
    """One line saying where the dataset was looked for and how to get it, or None when both splits are there."""
    path = default_data_dir()
    if all((path / name).is_file() or (path / split).is_dir() for split, name in SPLIT_FILES.items()):
        return None
    return f"dataset not found at {path}: run `make data` or set ${DATA_ENV_VAR}"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "data_dir" in item.fixturenames:
            item.add_marker(pytest.mark.data)
    reason = missing_data_reason()
    if reason:
        for item in items:
            if item.get_closest_marker("data"):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost, so the line comes after the short summary (-ra)
def pytest_terminal_summary(terminalreporter):
    result = yield
    reason = missing_data_reason()
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if reason and reason in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} test(s) need the dataset and were skipped: {reason}", yellow=True)
    return result


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real dataset folder; a test that asks for it is marked `data` and skipped when it is missing."""
    reason = missing_data_reason()
    if reason:
        pytest.skip(reason)
    return default_data_dir()


@pytest.fixture(scope="session")
def test_slices():
    """Eight synthetic axial 'slices', two per class label: (8, 1, 128, 128) uint8, drawn here so that no
    dataset image is committed. A skull ring, grey and white matter, and ventricles that widen with the
    label's stage, plus noise: enough structure for decoding, Grad-CAM and the upload paths."""
    from model.core.dataset import SliceSet

    rng = np.random.default_rng(0)
    y, x = np.mgrid[-1:1:128j, -1:1:128j]
    images, labels = [], []
    for label in (0, 0, 1, 1, 2, 2, 3, 3):
        stage = {2: 0, 3: 1, 0: 2, 1: 3}[label]  # no, very mild, mild, moderate
        a, b = rng.uniform(0.78, 0.86), rng.uniform(0.88, 0.95)
        r = (x / a) ** 2 + (y / b) ** 2
        img = np.where(r < 1, 90.0, 0.0) + np.where((r > 0.82) & (r < 1), 90.0, 0.0)  # brain, bright rim
        img += np.where(r < 0.6, 50.0 * np.cos(9 * np.arctan2(y, x) + rng.uniform(0, 6)) ** 2, 0.0)  # gyri
        w = 0.08 + 0.05 * stage
        img = np.where(((np.abs(x) - 0.12) / w) ** 2 + (y / 0.35) ** 2 < 1, 15.0, img)  # two ventricles
        img += rng.normal(0, 6, img.shape)
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(label)
    return SliceSet(torch.from_numpy(np.stack(images)).unsqueeze(1), torch.tensor(labels),
                    tuple(f"synthetic/slice_{i}.png" for i in range(8)))


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> Path:
    """An untrained ResNet-34 exported the way training exports, at 64 px."""
    from model.core.checkpoint import export_weights
    from model.core.network import build_model

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("assets")
    net = build_model().eval()
    export_weights(net, out, cfg={"image_size": 64}, temperature=1.5, data_fingerprint={},
                   selected={"epoch": 0}, half=False)
    return out


@pytest.fixture(scope="session")
def tiny_predictor(tiny_assets):
    from model.core.inference import Predictor

    return Predictor.from_assets(tiny_assets / "resnet34_alzheimer.safetensors",
                                 tiny_assets / "model_config.json", device="cpu")


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
