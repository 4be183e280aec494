"""Using the shipped classifier: load once, preprocess as in training, batch.

    predictor = Predictor.from_assets()            # verified safetensors, on GPU if present
    probs = predictor.predict(slices)              # uint8 (N, 1, 128, 128) -> (N, 4) calibrated
    fast = Predictor.from_assets(engine="openvino")  # predictions by an exported copy (model.core.engine), on CPU

A `Predictor` is safe to share between threads: predictions and explanations
take its lock, so hooks placed for Grad-CAM never see another caller's forward
pass. It never changes its weights after loading. With `engine` other than
"torch", `logits`, `probabilities` and `predict` run the exported network
(model.core.engine, float32, checked against PyTorch when loaded); Grad-CAM and
anything else that needs gradients still uses `net`.
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from model.core.assets import ModelLoadError, read_model_config

from model.core.checkpoint import load_verified_state_dict
from model.core.constants import CLASS_NAMES, MODEL_CONFIG_PATH, WEIGHTS_PATH
from model.core.engine import load_engine
from model.core.network import build_model, default_cam_layer, pick_device
from model.core.prediction import Prediction
from model.core.preprocess import to_input
from model.core.runtimes import DEFAULT_ENGINE, ENGINE_ENV_VAR, ENGINES

# The prediction engine of the shipped predictor that serves users (the API, the dashboard and the CLI):
# $ALZ_MRI_ENGINE, OpenVINO by default on a CPU (model.core.runtimes says why); Grad-CAM stays in PyTorch.
# Intra-op threads of a server that shares its cores (the dashboard): one. On the 2-core machine with a niced job on
# the other core, one upload (classify, Grad-CAM, faithfulness) took 5.6 s of CPU with PyTorch's 2 OpenMP threads and
# 0.8 s with 1 (2026-12-02): a second thread waits at every barrier for a core it does not get.
THREADS_ENV_VAR = "ALZ_MRI_THREADS"
log = logging.getLogger(__name__)


class Predictor:
    """A loaded, verified, calibrated classifier in eval mode."""

    def __init__(self, net: torch.nn.Module, *, image_size: int, temperature: float = 1.0,
                 device: torch.device | str = "cpu", sha256: str = "", config: dict | None = None,
                 engine: str = "torch", threads: int | None = None):
        """engine: "torch" (the network itself), "onnxruntime" or "openvino" (CPU only: see model.core.engine) for
        the prediction path; threads: the engine's intra-op threads (default: torch.get_num_threads())."""
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose one of {list(ENGINES)}")
        self.device = torch.device(device)
        if engine != "torch" and self.device.type != "cpu":
            raise ValueError(f"the {engine} engine runs on the CPU; use engine='torch' on {self.device}")
        self.net = net.to(self.device).eval()
        self.channels_last = True  # NHWC: faster convolutions on CUDA and with oneDNN on CPU (~8% here)
        self.net = self.net.to(memory_format=torch.channels_last)
        self.image_size = image_size
        self.temperature = float(temperature)
        self.sha256 = sha256
        self.config = config or {}
        self.lock = threading.RLock()
        self.engine = engine
        self.runtime = None  # the exported network that predicts, or None when `net` does
        if engine != "torch":
            self.runtime = load_engine(engine, self.net, image_size=image_size, sha256=sha256, threads=threads)

    @classmethod
    def from_assets(cls, weights: Path = WEIGHTS_PATH, config: Path = MODEL_CONFIG_PATH,
                    device: str = "auto", engine: str = "torch", threads: int | None = None) -> Predictor:
        """Load shipped weights after checking them and their config.

        engine: see `__init__`; with an engine other than "torch", device "auto" means the CPU.
        Raises FileNotFoundError when a file is missing, ChecksumError when the weights are not the
        recorded ones, ModelLoadError when the config or the tensors are not this model's,
        model.core.runtimes.EngineError when the engine cannot reproduce them, and ValueError for a device
        that is not there or an unknown engine.
        """
        cfg = read_model_config(config)
        weights = Path(weights)
        state = load_verified_state_dict(weights, expected_sha256=cfg["weights_sha256"])
        net = build_model(in_channels=cfg.get("in_channels", 1), num_classes=len(cfg["class_names"]))
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).split("\n")[1].strip() if "\n" in str(exc) else str(exc)
            raise ModelLoadError(f"{weights.name}: these tensors are not a ResNet-34 for {len(cfg['class_names'])} "
                                 f"classes and {cfg.get('in_channels', 1)} input channel(s): {first}") from exc
        device = torch.device("cpu") if engine != "torch" and device == "auto" else pick_device(device)
        return cls(net, image_size=cfg["image_size"], temperature=cfg["temperature"], device=device,
                   sha256=cfg["weights_sha256"].lower(), config=cfg,  # verified equal to the file's hash above
                   engine=engine, threads=threads)

    @property
    def cam_layer(self) -> str:
        """The Grad-CAM layer this network's maps use unless a user picks another (`default_cam_layer`: the layer
        its config names, else the deepest readable one at its input size)."""
        return default_cam_layer(self.image_size, self.config)

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return "CPU"

    def prepare(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (N, 1, S, S), (N, S, S) or (S, S) -> normalised float input on the device."""
        x = to_input(as_batch(images), self.image_size).to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def logits(self, images, batch_size: int = 128) -> torch.Tensor:
        """Raw logits (N, C), float32 on CPU, for uint8 slices (see `prepare`)."""
        # An engine never touches `net`, so its predictions need not wait for another thread's Grad-CAM (the lock
        # guards the hooks on `net`); the engines are safe to call from many threads (model.core.engine).
        with self.lock if self.runtime is None else nullcontext():
            return predict_logits(self.net, as_batch(images), self.image_size, self.device, batch_size,
                                  channels_last=self.channels_last, engine=self.runtime)

    def probabilities(self, images, batch_size: int = 128) -> torch.Tensor:
        """Calibrated probabilities (N, C): softmax(logits / temperature)."""
        return torch.softmax(self.logits(images, batch_size) / self.temperature, dim=1)

    def predict(self, images, batch_size: int = 128) -> list[Prediction]:
        probs = self.probabilities(images, batch_size)
        return [Prediction(tuple(float(p) for p in row), int(row.argmax())) for row in probs]

    def predict_one(self, image: np.ndarray) -> Prediction:
        """One uint8 (S, S) slice."""
        return self.predict(image)[0]


@torch.inference_mode()
def predict_logits(net: torch.nn.Module, images: torch.Tensor, image_size: int, device: torch.device,
                   batch_size: int = 128, amp: bool = False, channels_last: bool = True,
                   engine=None) -> torch.Tensor:
    """The one loop that computes batched logits: (N, C) float32 on CPU for uint8 images (N, 1, H, W).

    Used by training (validation), the cross-validation, evaluation and the Predictor. amp: bf16 autocast.
    engine: an exported copy of `net` (model.core.engine: `logits(float32 (B, 1, S, S) ndarray) -> (B, C)`) that
    computes the logits instead of `net`, on the CPU; amp and channels_last do not apply to it.
    """
    if engine is None:
        net.eval()
    out = []
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    ctx = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if amp else nullcontext()
    for start in range(0, len(images), batch_size):
        x = to_input(images[start:start + batch_size], image_size)  # float32 (B, 1, S, S), on the images' device
        if engine is not None:
            out.append(torch.from_numpy(engine.logits(x.cpu().numpy())))
            continue
        x = x.to(device).contiguous(memory_format=memory_format)
        with ctx:
            out.append(net(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, len(CLASS_NAMES))


def as_batch(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """View uint8 slices as (N, 1, S, S): accepts (S, S), (N, S, S) or (N, 1, S, S)."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # e.g. Streamlit's cached arrays; torch wants writable memory
    images = torch.as_tensor(images)
    if images.dim() == 2:
        images = images[None, None]
    elif images.dim() == 3:
        images = images[:, None]
    return images


def shipped_predictor(threads: int | None = None) -> Predictor:
    """The shipped Predictor as a server runs it: with $ALZ_MRI_ENGINE (default OpenVINO on a CPU; PyTorch on a GPU,
    or when the engine cannot be built, which is logged). Its probabilities (the guard's test-time variants and the
    faithfulness scores included) come from the engine; Grad-CAM from the PyTorch network.

    threads: intra-op threads for PyTorch (process-wide: torch.set_num_threads) and the engine; None leaves
    PyTorch's setting as it is."""
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    engine = os.environ.get(ENGINE_ENV_VAR, DEFAULT_ENGINE if not torch.cuda.is_available() else "torch")
    if engine == "torch":
        return Predictor.from_assets()
    try:
        return Predictor.from_assets(engine=engine)
    except (ModelLoadError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - any engine failure: serve with PyTorch, say why in the log
        log.warning("engine %s unavailable (%s); serving with PyTorch", engine, type(exc).__name__)
        return Predictor.from_assets()



_SHARED: dict[int | None, Predictor] = {}
_SHARED_LOCK = threading.Lock()


def shared_predictor(threads: int | None = None) -> Predictor:
    """`shipped_predictor`, loaded once per process and shared by every caller: a server's sessions and the thread
    that loads the model while the app's first page is drawn (`dashboard.shell.start_warmup`). A caller that comes
    while another loads it waits for that load; a failed load raises to its caller and is tried again next time."""
    with _SHARED_LOCK:
        if threads not in _SHARED:
            _SHARED[threads] = shipped_predictor(threads)
        return _SHARED[threads]


def shared_predictor_loaded(threads: int | None = None) -> Predictor | None:
    """The shared Predictor if it has been loaded, else None; never loads it (a page may ask without waiting)."""
    return _SHARED.get(threads)