"""The exported network run without PyTorch: ONNX Runtime and OpenVINO engines, and a predictor on them.

    predictor = EnginePredictor.from_cache()      # None unless a checked export of the shipped weights is cached
    probs = predictor.probabilities(slices)       # uint8 (N, 1, 128, 128) -> float32 (N, 4), calibrated

`model.core.engine` exports the PyTorch network to ONNX (in `cache_dir()`, named by the weights' SHA-256 and the
input size) and checks every engine it loads against PyTorch's logits. When a check passes it writes a *check
record* beside the export (`<export>.check.json`): the weights' SHA-256, the input size, and PyTorch's logits on a
fixed random batch (`check_input`). `EnginePredictor.from_cache` trusts an export only through that record: the
record must name the weights that the model config names, and the engine must give back PyTorch's logits on the same
batch (`MAX_LOGIT_DIFFERENCE`), which is the check `model.core.engine.load_engine` makes, without PyTorch. The
weights file's own bytes were hashed when the export was checked; this path reads only its recorded checksum.

Why a path without PyTorch: importing torch is ~1.8 s of the 3.5 s that `alzmri predict FILE` took (2026-12-03),
and one slice needs nothing from it. Preprocessing is `model.core.resize`, equal to
`model.core.preprocess.to_input` to float32 rounding.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from model.core.assets import ModelLoadError, read_model_config, read_recorded_sha256
from model.core.constants import MEAN, MODEL_CONFIG_PATH, STD, WEIGHTS_PATH
from model.core.prediction import Prediction
from model.core.resize import resize

ENGINES = ("torch", "onnxruntime", "openvino")  # the valid values of Predictor(engine=...)
# The engine that serves users on a CPU (the API, the dashboard, the CLI) unless $ALZ_MRI_ENGINE names another:
# OpenVINO, the fastest here in benchmarks/bench_serving.py (41x the naive baseline, against 17.5x for PyTorch).
ENGINE_ENV_VAR = "ALZ_MRI_ENGINE"
DEFAULT_ENGINE = "openvino"
CACHE_ENV_VAR = "ALZ_MRI_ENGINE_CACHE"  # where exported networks are kept; default ~/.cache/alzheimer_mri/engines
OPSET = 17  # ONNX opset of the export; both runtimes installed here read it
MAX_LOGIT_DIFFERENCE = 1e-3  # an engine whose logits differ more from PyTorch's on the check batch is refused
CHECK_BATCH, CHECK_SEED = 2, 0  # the fixed random batch an engine is checked on (`check_input`)


class EngineError(RuntimeError):
    """An engine could not be exported, loaded, or does not reproduce the PyTorch network."""


def cache_dir() -> Path:
    """$ALZ_MRI_ENGINE_CACHE if set, else $XDG_CACHE_HOME (or ~/.cache)/alzheimer_mri/engines."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "alzheimer_mri" / "engines"


def export_path(sha256: str, in_channels: int, image_size: int, cache: Path | None = None) -> Path:
    """Where the ONNX export of the weights with this SHA-256 at this input lives (it may not exist yet)."""
    folder = Path(cache) if cache is not None else cache_dir()
    return folder / f"resnet34_{sha256.lower()[:16]}_{in_channels}x{image_size}px_opset{OPSET}.onnx"


def check_record_path(export: Path) -> Path:
    return Path(export).with_suffix(".check.json")


def check_input(in_channels: int, image_size: int) -> np.ndarray:
    """The fixed batch every engine is checked on: float32 (CHECK_BATCH, in_channels, S, S), standard normal."""
    rng = np.random.default_rng(CHECK_SEED)
    return rng.standard_normal((CHECK_BATCH, in_channels, image_size, image_size), dtype=np.float32)


def write_check_record(export: Path, *, sha256: str, in_channels: int, image_size: int, reference: np.ndarray,
                       difference: float, engine: str) -> Path:
    """Record that the engine `engine` on `export` gave PyTorch's logits `reference` on `check_input` (to within
    `difference`). Written under a temporary name and renamed, like the export."""
    path = check_record_path(export)
    record = {"export": Path(export).name, "export_bytes": Path(export).stat().st_size, "weights_sha256": sha256.lower(),
              "in_channels": in_channels, "image_size": image_size, "opset": OPSET, "check_seed": CHECK_SEED,
              "check_batch": CHECK_BATCH, "reference_logits": np.asarray(reference, dtype=np.float64).tolist(),
              "checked_with": engine, "max_logit_difference": float(difference)}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_check_record(export: Path, *, sha256: str, in_channels: int, image_size: int) -> dict | None:
    """The check record of `export` if it is there and describes this export of these weights, else None."""
    path = check_record_path(export)
    try:
        record = json.loads(path.read_text())
        matches = (record["weights_sha256"] == sha256.lower() and record["in_channels"] == in_channels
                   and record["image_size"] == image_size and record["opset"] == OPSET
                   and record["check_seed"] == CHECK_SEED and record["check_batch"] == CHECK_BATCH
                   and record["export_bytes"] == Path(export).stat().st_size)
        reference = np.asarray(record["reference_logits"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError):  # absent, unreadable or not a record: no record
        return None
    if not matches or reference.ndim != 2 or reference.shape[0] != CHECK_BATCH:
        return None
    return {**record, "reference_logits": reference}


class OnnxRuntimeEngine:
    """An ONNX file run by ONNX Runtime on the CPU. `InferenceSession.run` is safe to call from many threads."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: int = 0):
        """threads: intra-op threads; 0: ONNX Runtime's default."""
        import onnxruntime as ort  # optional engine: imported only when asked for (openvino alone adds ~0.6 s)

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, threads)
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

    def __init__(self, path: Path, threads: int = 0):
        """threads: inference threads; 0: OpenVINO's default."""
        import openvino as ov  # optional engine, imported only when asked for (~0.6 s)

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                  "INFERENCE_NUM_THREADS": max(0, threads)}
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


RUNTIMES = {"onnxruntime": OnnxRuntimeEngine, "openvino": OpenVinoEngine}


# ---------------------------------------------------------------------- predicting without PyTorch
def as_batch_array(images) -> np.ndarray:
    """uint8 slices (S, S), (N, S, S) or (N, 1, S, S) -> uint8 (N, 1, S, S)."""
    images = np.asarray(images)
    if images.ndim == 2:
        return images[None, None]
    return images[:, None] if images.ndim == 3 else images


def to_input_array(images: np.ndarray, size: int) -> np.ndarray:
    """`model.core.preprocess.to_input` in numpy: uint8 (B, 1, H, W) -> float32 (B, 1, size, size), normalised."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected uint8 (B, 1, H, W), got {images.dtype} {tuple(images.shape)}")
    x = resize(images.astype(np.float32) / np.float32(255.0), size, "bilinear")
    return (x - np.float32(MEAN)) / np.float32(STD)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class EnginePredictor:
    """The shipped classifier on an exported engine, without PyTorch: `Predictor`'s prediction methods
    (`logits`, `probabilities`, `predict`, `predict_one`), returning numpy arrays. No maps: Grad-CAM and every
    other explanation need the PyTorch network (`model.core.inference.Predictor`)."""

    device = "cpu"
    checksum_source = ("recorded in model_config.json; the cached export was checked against the weights with this "
                       "checksum when it was made (model.core.runtimes)")

    def __init__(self, runtime, *, image_size: int, temperature: float, sha256: str, config: dict | None = None):
        self.runtime = runtime
        self.engine = runtime.name
        self.image_size = image_size
        self.temperature = float(temperature)
        self.sha256 = sha256
        self.config = config or {}

    @classmethod
    def from_cache(cls, weights: Path = WEIGHTS_PATH, config: Path = MODEL_CONFIG_PATH, engine: str = "openvino",
                   threads: int = 0, cache: Path | None = None) -> EnginePredictor | None:
        """The shipped model on `engine` from a checked export in the cache, or None when there is none to trust
        (no export or check record for these weights, or an engine that does not give back the recorded logits).
        None is no error: the PyTorch path (`Predictor.from_assets(engine=...)`) makes the export and its record.
        Raises FileNotFoundError or ModelLoadError for a missing or invalid config, as `from_assets` does."""
        if engine not in RUNTIMES:
            raise ValueError(f"no runtime {engine!r} without PyTorch; choose one of {list(RUNTIMES)}")
        cfg = read_model_config(config)
        sha256 = cfg["weights_sha256"].lower()
        weights = Path(weights)
        try:
            if not weights.is_file() or read_recorded_sha256(weights.with_name(weights.name + ".sha256")) != sha256:
                return None  # the PyTorch path says what is wrong with the weights
        except ModelLoadError:
            return None
        in_channels, size = cfg.get("in_channels", 1), cfg["image_size"]
        export = export_path(sha256, in_channels, size, cache)
        record = read_check_record(export, sha256=sha256, in_channels=in_channels, image_size=size)
        if record is None:
            return None
        try:
            runtime = RUNTIMES[engine](export, threads)
            difference = float(np.abs(runtime.logits(check_input(in_channels, size)) - record["reference_logits"]).max())
        except (EngineError, ValueError):  # an export the runtime cannot read, or logits of another shape
            return None
        if not difference <= MAX_LOGIT_DIFFERENCE:
            return None
        return cls(runtime, image_size=size, temperature=cfg["temperature"], sha256=sha256, config=cfg)

    def device_name(self) -> str:
        return "CPU"

    def logits(self, images, batch_size: int = 128) -> np.ndarray:
        """Raw logits float32 (N, C) for uint8 slices (S, S), (N, S, S) or (N, 1, S, S)."""
        images = as_batch_array(images)
        out = [self.runtime.logits(to_input_array(images[start:start + batch_size], self.image_size))
               for start in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.config.get("class_names", ()))), np.float32)

    def probabilities(self, images, batch_size: int = 128) -> np.ndarray:
        """Calibrated probabilities (N, C): softmax(logits / temperature)."""
        return softmax(self.logits(images, batch_size) / self.temperature)

    def predict(self, images, batch_size: int = 128) -> list[Prediction]:
        return [Prediction(tuple(float(p) for p in row), int(row.argmax()))
                for row in self.probabilities(images, batch_size)]

    def predict_one(self, image: np.ndarray) -> Prediction:
        """One uint8 (S, S) slice."""
        return self.predict(image)[0]
