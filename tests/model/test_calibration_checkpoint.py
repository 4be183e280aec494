import pytest
import torch

from model.calibration import expected_calibration_error, fit_temperature
from model.checkpoint import ChecksumError, export_weights, load_verified_state_dict
from model.inference import Predictor
from model.network import build_model


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
