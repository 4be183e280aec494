import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from model.core.calibration import expected_calibration_error, fit_temperature
from model.core.assets import ChecksumError, ModelLoadError, sha256_file
from model.core.checkpoint import export_weights, load_verified_state_dict
from model.core.inference import Predictor
from model.core.network import build_model, pick_device


def test_fit_temperature_recovers_the_true_temperature():
    gen = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 4, generator=gen) * 2
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=gen).squeeze(1)
    t = fit_temperature(true_logits * 3.0, labels)  # an over-confident network
    assert t == pytest.approx(3.0, rel=0.1)


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = torch.tensor([[1.0, 0, 0, 0]] * 10)
    assert expected_calibration_error(probs, torch.zeros(10)) == pytest.approx(0.0)
    assert expected_calibration_error(probs, torch.ones(10)) == pytest.approx(1.0)


def test_export_round_trip_in_half_precision(tmp_path):
    torch.manual_seed(0)
    net = build_model().eval()
    paths = export_weights(net, tmp_path, cfg={"image_size": 64}, temperature=1.0, data_fingerprint={},
                           selected={}, half=True)
    assert paths["weights"].stat().st_size < 45_000_000  # float16: half of ResNet-34's 85 MB
    loaded = Predictor.from_assets(paths["weights"], paths["config"], device="cpu")
    x = torch.randint(0, 255, (3, 1, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        ref = torch.softmax(net(loaded.prepare(x)), 1)
    assert torch.allclose(loaded.probabilities(x), ref, atol=2e-3)


def test_checksum_mismatch_is_refused(tiny_assets, tmp_path):
    weights = tmp_path / "w.safetensors"
    data = bytearray((tiny_assets / "resnet34_alzheimer.safetensors").read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    (tmp_path / "w.safetensors.sha256").write_text((tiny_assets / "resnet34_alzheimer.safetensors.sha256").read_text())
    with pytest.raises(ChecksumError, match="does not match the recorded"):
        load_verified_state_dict(weights)


def test_missing_checksum_is_refused(tiny_assets, tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes((tiny_assets / "resnet34_alzheimer.safetensors").read_bytes())
    with pytest.raises(ChecksumError, match="no recorded SHA-256"):
        load_verified_state_dict(weights)


def copy_assets(tiny_assets, tmp_path):
    out = tmp_path / "assets"
    shutil.copytree(tiny_assets, out)
    return out / "resnet34_alzheimer.safetensors", out / "model_config.json"


def rewrite_config(path, **changes):
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_weights_and_config_from_different_trainings_are_refused(tiny_assets, tmp_path):
    weights, config = copy_assets(tiny_assets, tmp_path)
    rewrite_config(config, weights_sha256="ab" * 32)
    with pytest.raises(ChecksumError, match="come from different trainings"):
        Predictor.from_assets(weights, config, device="cpu")


@pytest.mark.parametrize("changes, message", [
    ({"class_names": ["Non_Demented", "Moderate_Demented", "Mild_Demented", "Very_Mild_Demented"]}, "label order"),
    ({"mean": 0.5}, "normalised differently"),
    ({"image_size": "160"}, "image_size must be an integer"),
    ({"temperature": -1}, "temperature must be a positive number"),
    ({"weights_sha256": 123}, "weights_sha256 must be 64 hexadecimal characters"),
    ({"class_names": None}, "label order"),
    ({"std": "0.3"}, "normalised differently"),
])
def test_a_config_that_is_not_this_model_is_refused(tiny_assets, tmp_path, changes, message):
    weights, config = copy_assets(tiny_assets, tmp_path)
    rewrite_config(config, **changes)
    with pytest.raises(ModelLoadError, match=message):
        Predictor.from_assets(weights, config, device="cpu")


def test_unreadable_config_and_missing_keys_are_clear_errors(tiny_assets, tmp_path):
    weights, config = copy_assets(tiny_assets, tmp_path)
    config.write_text("{not json")
    with pytest.raises(ModelLoadError, match="not a readable JSON model config"):
        Predictor.from_assets(weights, config, device="cpu")
    config.write_text(json.dumps({"image_size": 64}))
    with pytest.raises(ModelLoadError, match="missing class_names, temperature, weights_sha256"):
        Predictor.from_assets(weights, config, device="cpu")


def test_tensors_of_another_network_are_refused_even_with_a_valid_checksum(tiny_assets, tmp_path):
    weights, config = copy_assets(tiny_assets, tmp_path)
    save_file({"fc.weight": torch.zeros(4, 512), "fc.bias": torch.zeros(4)}, str(weights))
    digest = sha256_file(weights)
    weights.with_name(weights.name + ".sha256").write_text(f"{digest}  {weights.name}\n")
    rewrite_config(config, weights_sha256=digest)
    with pytest.raises(ModelLoadError, match="not a ResNet-34 for 4 classes"):
        Predictor.from_assets(weights, config, device="cpu")
    weights.write_bytes(b"garbage, not safetensors")
    digest = sha256_file(weights)
    weights.with_name(weights.name + ".sha256").write_text(f"{digest}  {weights.name}\n")
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        load_verified_state_dict(weights)


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        pick_device("gpu")
