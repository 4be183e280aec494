"""Faster CPU runtimes for the prediction path: the network exported to ONNX, run by ONNX Runtime or OpenVINO.

    engine = load_engine("onnxruntime", predictor.net, image_size=48, sha256=predictor.sha256)
    logits = engine.logits(x)     # normalised float32 (N, 1, S, S) -> float32 (N, C), as predictor.net(x)

`Predictor(..., engine="onnxruntime")` uses one for `logits`, `probabilities` and `predict`; Grad-CAM and
anything else that needs gradients keeps the PyTorch network. Every engine runs float32 and is checked
against PyTorch when it is loaded (`MAX_LOGIT_DIFFERENCE`).

The export (float32, eval mode, a dynamic batch of 1-channel S x S slices) is cached in `cache_dir()`,
named by the weights' SHA-256 and the input size, so it is made once per set of weights and machine, never
committed. Why these runtimes: one slice at a time, PyTorch's CPU convolutions take their generic im2col path
(oneDNN is chosen only for batches > 1 or larger inputs), and ONNX Runtime and OpenVINO run the whole graph with
fused convolution + batch-norm + ReLU kernels. One slice at the shipped 96 px on 2 CPU cores (2026-12-03,
`benchmarks/bench_serving.py`): PyTorch 20.9 ms, ONNX Runtime 14.8 ms, OpenVINO 10.3 ms (p50; at 48 px, 17.8,
11.3 and 7.6 ms).

The runtimes themselves, the cache's naming and the check records live in `model.core.runtimes`, which needs no
PyTorch; this module is the PyTorch side: exporting, and checking against the network.
"""
from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from model.core.runtimes import (ENGINES, MAX_LOGIT_DIFFERENCE, OPSET, RUNTIMES, EngineError, check_input,
                                 export_path, write_check_record)

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
    path = export_path(sha256, in_channels, image_size, cache)
    if path.is_file() and not refresh:
        return path
    folder = path.parent
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


def load_engine(name: str, net: torch.nn.Module, *, image_size: int, sha256: str = "", threads: int | None = None,
                cache: Path | None = None):
    """An engine named `name` (see ENGINES) for `net` at `image_size`, checked against PyTorch.

    "torch" returns a TorchEngine on the CPU; the others export (or reuse) the ONNX file. A cached file that
    cannot be loaded or disagrees with the network is exported again once before EngineError is raised. An engine
    that passes leaves a check record beside its export (`model.core.runtimes.write_check_record`), so that a
    later process can trust the export without PyTorch (`model.core.runtimes.EnginePredictor.from_cache`).
    """
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {list(ENGINES)}")
    if name == "torch":
        return TorchEngine(copy.deepcopy(net).cpu())
    sha256 = (sha256 or weights_sha256(net)).lower()
    in_channels = _first_conv(net).in_channels
    reference = reference_logits(net, image_size)
    for refresh in (False, True):
        path = export_onnx(net, image_size, sha256=sha256, cache=cache, refresh=refresh)
        try:
            engine = RUNTIMES[name](path, threads or default_threads())
            difference = float(np.abs(engine.logits(check_input(in_channels, image_size)) - reference).max())
        except EngineError:
            if refresh:
                raise
            continue
        if difference <= MAX_LOGIT_DIFFERENCE:
            try:
                write_check_record(path, sha256=sha256, in_channels=in_channels, image_size=image_size,
                                   reference=reference, difference=difference, engine=name)
            except OSError:  # a read-only cache: the engine is fine, later processes check it with PyTorch again
                pass
            return engine
    raise EngineError(f"{name} logits differ from PyTorch's by {difference:.2g} (> {MAX_LOGIT_DIFFERENCE}) even "
                      f"after a fresh export to {path}; use engine='torch'")


@torch.inference_mode()
def reference_logits(net: torch.nn.Module, image_size: int) -> np.ndarray:
    """The network's logits (float32 (CHECK_BATCH, C)) on `model.core.runtimes.check_input`, the batch every engine
    is checked on."""
    x = torch.from_numpy(check_input(_first_conv(net).in_channels, image_size))
    was_training = net.training
    net.eval()
    try:
        return net(x.to(next(net.parameters()).device)).float().cpu().numpy()
    finally:
        net.train(was_training)
