"""Faster CPU runtimes for the prediction path: the network exported to ONNX, run by ONNX Runtime or OpenVINO.

    engine = load_engine("onnxruntime", predictor.net, image_size=48, sha256=predictor.sha256)
    logits = engine.logits(x)     # normalised float32 (N, 1, S, S) -> float32 (N, C), as predictor.net(x)

`Predictor(..., engine="onnxruntime")` uses one for `logits`, `probabilities` and `predict`; Grad-CAM and
anything else that needs gradients keeps the PyTorch network. Every engine runs float32 and is checked
against PyTorch when it is loaded (`MAX_LOGIT_DIFFERENCE`).

The export (float32, eval mode, a dynamic batch of 1-channel S x S slices) is cached in `cache_dir()`,
named by the weights' SHA-256 and the input size, so it is made once per set of weights and machine, never
committed. Why these runtimes: at the shipped 48 px and one slice at a time, PyTorch's CPU convolutions take
their generic im2col path (oneDNN is chosen only for batches > 1 or larger inputs), and ONNX Runtime and
OpenVINO run the whole graph with fused convolution + batch-norm + ReLU kernels. One slice on 2 CPU cores
(2026-11-30, `benchmarks/bench_serving.py`): PyTorch 17.8 ms, ONNX Runtime 11.3 ms, OpenVINO 7.6 ms (p50).
"""
from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

ENGINES = ("torch", "onnxruntime", "openvino")  # the valid values of Predictor(engine=...)
CACHE_ENV_VAR = "ALZ_MRI_ENGINE_CACHE"  # where exported networks are kept; default ~/.cache/alzheimer_mri/engines
OPSET = 17  # ONNX opset of the export; both runtimes installed here read it
MAX_LOGIT_DIFFERENCE = 1e-3  # an engine whose logits differ more from PyTorch's on the load check is refused


class EngineError(RuntimeError):
    """An engine could not be exported, loaded, or does not reproduce the PyTorch network."""


def cache_dir() -> Path:
    """$ALZ_MRI_ENGINE_CACHE if set, else $XDG_CACHE_HOME (or ~/.cache)/alzheimer_mri/engines."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "alzheimer_mri" / "engines"


def weights_sha256(net: torch.nn.Module) -> str:
    """SHA-256 over the network's state dict (names and float32 values), for a network not loaded from a file."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def export_onnx(net: torch.nn.Module, image_size: int, *, sha256: str = "", cache: Path | None = None,
                refresh: bool = False) -> Path:
    """The network as ONNX for input float32 (batch, in_channels, S, S) -> logits (batch, C), from the cache.

    sha256: the weights file's SHA-256 (Predictor.sha256); empty: hashed from the state dict. refresh: export
    again even when a cached file exists. The file is written under a temporary name and renamed, so two
    processes exporting at once never leave a half-written model.
    """
    sha256 = (sha256 or weights_sha256(net)).lower()
    in_channels = _first_conv(net).in_channels
    folder = Path(cache) if cache is not None else cache_dir()
    path = folder / f"resnet34_{sha256[:16]}_{in_channels}x{image_size}px_opset{OPSET}.onnx"
    if path.is_file() and not refresh:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    cpu_net = net if next(net.parameters()).device.type == "cpu" else copy.deepcopy(net).cpu()
    example = torch.zeros(1, in_channels, image_size, image_size)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.stem, suffix=".tmp")
    os.close(fd)
    was_training = cpu_net.training
    cpu_net.eval()
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is deprecated in torch 2.9+; the dynamo one needs onnxscript, which
            # is not a dependency. When the legacy exporter goes, add onnxscript and pass dynamo=True with
            # dynamic_shapes={"x": {0: torch.export.Dim("batch")}}.
            warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
            torch.onnx.export(cpu_net, (example,), tmp, dynamo=False, opset_version=OPSET,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        os.replace(tmp, path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise EngineError(f"could not export the network to ONNX: {exc}") from exc
    finally:
        cpu_net.train(was_training)
    return path


def _first_conv(net: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def default_threads() -> int:
    """Intra-op threads for an engine: as many as PyTorch uses (torch.set_num_threads, OMP_NUM_THREADS)."""
    return max(1, torch.get_num_threads())


class TorchEngine:
    """The PyTorch network itself, behind the same `logits` interface (for benchmarks and comparisons)."""

    name = "torch"

    def __init__(self, net: torch.nn.Module, device: torch.device | str = "cpu", channels_last: bool = True):
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(self.device).eval().to(memory_format=self.memory_format)

    @torch.inference_mode()
    def logits(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, S, S) -> float32 (N, C)."""
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        return self.net(t.contiguous(memory_format=self.memory_format)).float().cpu().numpy()


class OnnxRuntimeEngine:
    """An ONNX file run by ONNX Runtime on the CPU. `InferenceSession.run` is safe to call from many threads."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort  # optional engine: imported only when asked for (openvino alone adds ~0.6 s)

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1  # a plain chain of layers: nothing runs side by side
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        # Idle threads sleep instead of spinning: a spinning pool keeps the cores from PyTorch's Grad-CAM that
        # follows a prediction (end to end 97 -> 49 ms on 2 cores) and costs one slice 0.2 ms (7.8 -> 8.0 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise EngineError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from exc
        self.input = self.session.get_inputs()[0].name
        self.path = Path(path)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, S, S) -> float32 (N, C)."""
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]


class OpenVinoEngine:
    """An ONNX file compiled by OpenVINO for the CPU, latency-oriented, in float32.

    The precision is set explicitly: on CPUs with bf16 units OpenVINO would otherwise compute in bf16 and the
    logits would move by ~1e-2. One infer request serves every call, behind a lock.
    """

    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None):
        import openvino as ov  # optional engine, imported only when asked for (~0.6 s)

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                  "INFERENCE_NUM_THREADS": threads or default_threads()}
        try:
            self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        except Exception as exc:  # openvino raises RuntimeError subclasses of its own
            raise EngineError(f"{path}: OpenVINO cannot compile it ({str(exc).splitlines()[0]})") from exc
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)
        self.lock = threading.Lock()
        self.path = Path(path)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, S, S) -> float32 (N, C)."""
        with self.lock:
            result = self.request.infer([np.ascontiguousarray(x, dtype=np.float32)])
            return np.array(result[self.output], dtype=np.float32, copy=True)


def load_engine(name: str, net: torch.nn.Module, *, image_size: int, sha256: str = "", threads: int | None = None,
                cache: Path | None = None):
    """An engine named `name` (see ENGINES) for `net` at `image_size`, checked against PyTorch.

    "torch" returns a TorchEngine on the CPU; the others export (or reuse) the ONNX file. A cached file that
    cannot be loaded or disagrees with the network is exported again once before EngineError is raised.
    """
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {list(ENGINES)}")
    if name == "torch":
        return TorchEngine(copy.deepcopy(net).cpu())
    kind = OnnxRuntimeEngine if name == "onnxruntime" else OpenVinoEngine
    for refresh in (False, True):
        path = export_onnx(net, image_size, sha256=sha256, cache=cache, refresh=refresh)
        try:
            engine = kind(path, threads)
            difference = logit_difference(engine, net, image_size)
        except EngineError:
            if refresh:
                raise
            continue
        if difference <= MAX_LOGIT_DIFFERENCE:
            return engine
    raise EngineError(f"{name} logits differ from PyTorch's by {difference:.2g} (> {MAX_LOGIT_DIFFERENCE}) even "
                      f"after a fresh export to {path}; use engine='torch'")


@torch.inference_mode()
def logit_difference(engine, net: torch.nn.Module, image_size: int, batch: int = 2, seed: int = 0) -> float:
    """Largest absolute difference between the engine's and the network's logits on a seeded random batch."""
    in_channels = _first_conv(net).in_channels
    x = torch.randn(batch, in_channels, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    was_training = net.training
    net.eval()
    try:
        device = next(net.parameters()).device
        reference = net(x.to(device)).float().cpu().numpy()
    finally:
        net.train(was_training)
    return float(np.abs(engine.logits(x.numpy()) - reference).max())
