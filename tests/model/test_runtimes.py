"""The exported engine without PyTorch (model.core.runtimes): trusted only through its check record, and then it
predicts what the PyTorch Predictor predicts; the CLI's one-file run takes it without importing torch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.core.inference import Predictor
from model.core.runtimes import EnginePredictor, check_record_path, export_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "engines"
    monkeypatch.setenv("ALZ_MRI_ENGINE_CACHE", str(folder))
    return folder


def files(assets: Path) -> tuple[Path, Path]:
    return assets / "resnet34_alzheimer.safetensors", assets / "model_config.json"


def checked_export(assets: Path, engine: str = "openvino") -> Predictor:
    """What any server or CLI run on the CPU does first: load with an engine, which exports and checks it."""
    return Predictor.from_assets(*files(assets), engine=engine)


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_checked_export_predicts_what_pytorch_predicts(tiny_assets, tiny_predictor, test_slices, cache, engine):
    assert EnginePredictor.from_cache(*files(tiny_assets), engine=engine) is None  # nothing cached: no engine
    checked_export(tiny_assets, engine)
    fast = EnginePredictor.from_cache(*files(tiny_assets), engine=engine, threads=1)
    assert fast is not None and fast.engine == engine and fast.sha256 == tiny_predictor.sha256
    images = test_slices.images.numpy()  # uint8 (8, 1, 128, 128)
    probs = fast.probabilities(images, batch_size=3)
    assert isinstance(probs, np.ndarray) and probs.shape == (8, 4)
    assert np.abs(probs - tiny_predictor.probabilities(test_slices.images).numpy()).max() < 1e-5
    one = fast.predict_one(images[4, 0])
    assert one.label == tiny_predictor.predict_one(images[4, 0]).label
    assert one.probabilities == pytest.approx(tiny_predictor.predict_one(images[4, 0]).probabilities, abs=1e-5)


def test_record_names_the_weights_and_pytorch_logits(tiny_assets, tiny_predictor, cache):
    checked_export(tiny_assets)
    export = export_path(tiny_predictor.sha256, 1, 64)
    record = json.loads(check_record_path(export).read_text())
    assert record["weights_sha256"] == tiny_predictor.sha256 and record["image_size"] == 64
    assert np.array(record["reference_logits"]).shape == (2, 4)
    assert record["max_logit_difference"] <= 1e-3


def test_an_export_that_disagrees_with_its_record_is_not_trusted(tiny_assets, tiny_predictor, cache):
    checked_export(tiny_assets)
    record_path = check_record_path(export_path(tiny_predictor.sha256, 1, 64))
    record = json.loads(record_path.read_text())
    record["reference_logits"][0][0] += 0.01  # as if the export had been replaced by another network's
    record_path.write_text(json.dumps(record))
    assert EnginePredictor.from_cache(*files(tiny_assets)) is None


def test_a_damaged_export_or_record_is_not_trusted(tiny_assets, tiny_predictor, cache):
    checked_export(tiny_assets)
    export = export_path(tiny_predictor.sha256, 1, 64)
    record_path = check_record_path(export)
    good = record_path.read_text()
    record_path.write_text("{not json")
    assert EnginePredictor.from_cache(*files(tiny_assets)) is None
    record_path.write_text(good)
    blob = export.read_bytes()
    export.write_bytes(blob[: len(blob) // 2])  # truncated: its size no longer matches the record
    assert EnginePredictor.from_cache(*files(tiny_assets)) is None
    export.write_bytes(blob)
    assert EnginePredictor.from_cache(*files(tiny_assets)) is not None


def test_weights_of_another_training_are_not_served_from_the_cache(tiny_assets, tmp_path, cache):
    checked_export(tiny_assets)
    weights, config = files(tiny_assets)
    cfg = json.loads(config.read_text())
    other = tmp_path / "model_config.json"
    other.write_text(json.dumps({**cfg, "weights_sha256": "ab" * 32}))  # the config of other weights
    assert EnginePredictor.from_cache(weights, other) is None


def run_cli(args: list[str], env_cache: Path) -> subprocess.CompletedProcess:
    """`alzmri predict ARGS` in a fresh interpreter, saying on standard error whether it imported torch."""
    code = ("import sys\nfrom model.serve.predict import main\ncode = main(sys.argv[1:])\n"
            "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\nraise SystemExit(code)")
    env = os.environ | {"ALZ_MRI_ENGINE_CACHE": str(env_cache)}
    env.pop("ALZ_MRI_ENGINE", None)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_one_file_runs_without_torch_once_the_export_is_checked(tiny_assets, test_slices, tmp_path):
    from tests.conftest import png_bytes

    scan = tmp_path / "slice.png"
    scan.write_bytes(png_bytes(test_slices.images[2, 0].numpy()))
    weights, config = files(tiny_assets)
    args = [str(scan), "--weights", str(weights), "--config", str(config), "--device", "cpu", "--quiet"]
    first = run_cli(args, tmp_path / "engines")  # nothing cached: PyTorch, which exports and checks the engine
    assert first.returncode == 0, first.stderr[-2000:]
    assert "torch imported: True" in first.stderr
    second = run_cli(args, tmp_path / "engines")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "torch imported: False" in second.stderr
    header = first.stdout.splitlines()[0].split(",")
    a, b = (dict(zip(header, out.splitlines()[1].split(","))) for out in (first.stdout, second.stdout))
    assert a["prediction"] == b["prediction"] and a["flags"] == b["flags"]
    for column in ("p_Mild_Demented", "p_Non_Demented", "confidence", "spread"):
        assert float(a[column]) == pytest.approx(float(b[column]), abs=2e-5)
