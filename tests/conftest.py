"""Shared fixtures: the dataset in ../shared, tiny exported models, small images."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.constants import default_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = default_data_dir()
    assert (path / "test-00000-of-00001.parquet").is_file(), f"dataset not found at {path}"
    return path


@pytest.fixture(scope="session")
def test_slices(data_dir):
    """The first 64 slices of the test split, decoded."""
    from model.data import load_split

    return load_split("test", data_dir, limit=64)


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> Path:
    """An untrained ResNet-34 exported the way training exports, at 64 px."""
    from model.checkpoint import export_weights
    from model.network import build_model

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("assets")
    net = build_model().eval()
    export_weights(net, out, cfg={"image_size": 64}, temperature=1.5, data_fingerprint={},
                   selected={"epoch": 0}, half=False)
    return out


@pytest.fixture(scope="session")
def tiny_predictor(tiny_assets):
    from model.inference import Predictor

    return Predictor.from_assets(tiny_assets / "resnet34_alzheimer.safetensors",
                                 tiny_assets / "model_config.json", device="cpu")


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
