"""The exported engines (model.core.engine) reproduce the PyTorch network, and the Predictor uses them only to predict."""
import numpy as np
import pytest
import torch

from model.core.engine import export_onnx, load_engine
from model.core.runtimes import ENGINES, EngineError
from model.qualify.explain import explain
from model.core.inference import Predictor

EXPORTED = [e for e in ENGINES if e != "torch"]


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory):
    """Every export of this module goes to one temporary folder, never the user's cache."""
    folder = tmp_path_factory.mktemp("engines")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALZ_MRI_ENGINE_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module", params=EXPORTED)
def engine_predictor(request, tiny_assets, engine_cache):
    return Predictor.from_assets(tiny_assets / "resnet34_alzheimer.safetensors", tiny_assets / "model_config.json",
                                 engine=request.param)


def test_engine_logits_match_torch(engine_predictor, tiny_predictor, test_slices):
    assert engine_predictor.device.type == "cpu"  # "auto" means the CPU for an exported engine
    images = test_slices.images
    reference = tiny_predictor.logits(images)
    logits = engine_predictor.logits(images, batch_size=3)  # a dynamic batch: 3 + 3 + 2
    assert logits.shape == (8, 4) and logits.dtype == torch.float32
    assert torch.allclose(logits, reference, atol=1e-4, rtol=0)
    one = engine_predictor.predict_one(images[5, 0].numpy())
    assert one.label == tiny_predictor.predict_one(images[5, 0].numpy()).label
    assert one.probabilities == pytest.approx(tiny_predictor.predict_one(images[5, 0].numpy()).probabilities,
                                              abs=1e-5)


def test_concurrent_predictions_match_sequential(engine_predictor, test_slices):
    from concurrent.futures import ThreadPoolExecutor

    images = [test_slices.images[i, 0].numpy() for i in range(8)]
    alone = [engine_predictor.predict_one(image).probabilities for image in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda image: engine_predictor.predict_one(image).probabilities, images * 2))
    assert np.allclose(together, alone * 2, atol=1e-6, rtol=0)


def test_gradcam_still_runs_on_the_torch_network(engine_predictor, tiny_predictor, test_slices):
    image = test_slices.images[2, 0].numpy()
    ours, theirs = explain(engine_predictor, image, layer="layer3"), explain(tiny_predictor, image, layer="layer3")
    assert ours.target == theirs.target == engine_predictor.predict_one(image).label
    assert np.allclose(ours.heatmap, theirs.heatmap, atol=1e-5)


def test_export_is_cached_by_weights_hash(tiny_predictor, engine_cache):
    path = export_onnx(tiny_predictor.net, 64, sha256=tiny_predictor.sha256, cache=engine_cache)
    assert path.parent == engine_cache and tiny_predictor.sha256[:16] in path.name
    mtime = path.stat().st_mtime_ns
    assert export_onnx(tiny_predictor.net, 64, sha256=tiny_predictor.sha256, cache=engine_cache) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not written again
    assert not list(engine_cache.glob("*.tmp"))


def test_damaged_cache_file_is_exported_again(tiny_predictor, engine_cache, tmp_path):
    name = export_onnx(tiny_predictor.net, 64, sha256=tiny_predictor.sha256, cache=engine_cache).name
    (tmp_path / name).write_bytes(b"not an onnx file")
    engine = load_engine("onnxruntime", tiny_predictor.net, image_size=64, sha256=tiny_predictor.sha256,
                         cache=tmp_path)
    x = np.zeros((1, 1, 64, 64), np.float32)
    with torch.inference_mode():
        expected = tiny_predictor.net(torch.from_numpy(x)).numpy()
    assert np.allclose(engine.logits(x), expected, atol=1e-4)


def test_engine_that_disagrees_is_refused(tiny_predictor, tmp_path, monkeypatch):
    """An export that does not reproduce the network (here always another one) is refused, not used."""
    import model.core.engine

    other = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    wrong = export_onnx(other, 64, sha256="0" * 64, cache=tmp_path)
    monkeypatch.setattr(model.core.engine, "export_onnx", lambda *args, **kwargs: wrong)
    with pytest.raises(EngineError, match="differ from PyTorch"):
        load_engine("onnxruntime", tiny_predictor.net, image_size=64, sha256=tiny_predictor.sha256)


def test_bad_engine_options_are_refused(tiny_predictor):
    with pytest.raises(ValueError, match="onnxruntime"):
        Predictor(tiny_predictor.net, image_size=64, engine="tensorrt")
    with pytest.raises(ValueError, match="runs on the CPU"):
        Predictor(tiny_predictor.net, image_size=64, device="cuda", engine="openvino")
    with pytest.raises(ValueError, match="unknown engine"):
        load_engine("tvm", tiny_predictor.net, image_size=64)
