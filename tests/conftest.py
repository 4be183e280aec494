"""Shared fixtures: the dataset in ../shared, tiny exported models, small images.

Tests that need the real 6,400 slices carry the `data` marker (every test that asks for `data_dir` gets it
here); without the dataset they are skipped with one reason line, and the summary counts them. Tests that only
need a few real slices read tests/fixtures/test_slices.parquet and run everywhere.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.constants import DATA_ENV_VAR, SPLIT_FILES, default_data_dir

ROOT = Path(__file__).resolve().parent.parent

FIXTURE_SLICES = ROOT / "tests" / "fixtures" / "test_slices.parquet"  # made by tests/fixtures/make_fixture.py


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
    """Eight real test-split slices, two per class, decoded: (8, 1, 128, 128) uint8 (tests/fixtures)."""
    from model.data import load_parquet

    return load_parquet(FIXTURE_SLICES)


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
