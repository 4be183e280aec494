"""Shipped assets read and verified without PyTorch: checksums, the model config, and numpy array files.

* `read_model_config` refuses a config that is not this project's model (labels, normalisation, sizes);
* `read_recorded_sha256` and `sha256_file` are the checksums every shipped file is held to;
* `save_checked_arrays` / `load_checked_arrays` write and read the guard's bank and the slab template: numpy
  arrays in one safetensors file, with a JSON record of its SHA-256 beside it.

None of this imports torch, so a path that never runs PyTorch (the CLI's exported engine,
`model.core.runtimes`) checks the same files the same way. The PyTorch side (training checkpoints, shipped
weights as tensors) is `model.core.checkpoint`.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy

from model.core.constants import CLASS_NAMES, MEAN, MODEL_CONFIG_PATH, STD


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelLoadError(RuntimeError):
    """Shipped weights or their config cannot be used: unreadable, corrupt, or not this model."""


class ChecksumError(ModelLoadError):
    """The weights file on disk is not the one whose checksum was recorded."""


def read_recorded_sha256(path: Path) -> str:
    try:
        return path.read_text().split()[0].strip().lower()
    except (OSError, IndexError) as exc:
        raise ChecksumError(f"{path}: no recorded SHA-256 for the weights") from exc


def read_model_config(path: Path = MODEL_CONFIG_PATH) -> dict:
    """The shipped model config, checked against this code's labels and normalisation."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model config not found")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a readable JSON model config ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    missing = [k for k in ("class_names", "image_size", "temperature", "weights_sha256") if k not in cfg]
    if missing:
        raise ModelLoadError(f"{path}: missing {', '.join(missing)}")
    if not isinstance(cfg["weights_sha256"], str) or not re.fullmatch(r"[0-9a-fA-F]{64}", cfg["weights_sha256"]):
        raise ModelLoadError(f"{path}: weights_sha256 must be 64 hexadecimal characters, got {cfg['weights_sha256']!r}")
    if not isinstance(cfg["class_names"], list) or cfg["class_names"] != list(CLASS_NAMES):
        raise ModelLoadError(f"{path}: classes {cfg['class_names']!r} are not this code's label order "
                             f"{list(CLASS_NAMES)}")
    for key, ours in (("mean", MEAN), ("std", STD)):
        if key in cfg and (not isinstance(cfg[key], (int, float)) or not math.isclose(cfg[key], ours, rel_tol=1e-6)):
            raise ModelLoadError(f"{path}: {key} {cfg[key]} differs from this code's {ours}; "
                                 "inputs would be normalised differently from training")
    size, temperature = cfg["image_size"], cfg["temperature"]
    if not isinstance(size, int) or not 16 <= size <= 1024:
        raise ModelLoadError(f"{path}: image_size must be an integer in 16..1024, got {size!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise ModelLoadError(f"{path}: temperature must be a positive number, got {temperature!r}")
    if cfg.get("in_channels", 1) not in (1, 3):
        raise ModelLoadError(f"{path}: in_channels must be 1 or 3, got {cfg.get('in_channels')!r}")
    return cfg


# ---------------------------------------------------------------- shipped array assets with a SHA-256 record
def save_checked_arrays(arrays: dict, path: Path, record_path: Path, sha_key: str, record: dict) -> str:
    """Numpy arrays as one safetensors file at `path`, and `record` with the file's name and SHA-256 (under
    `sha_key`) as JSON at `record_path`. The guard's bank and the slab template are shipped this way. Returns the
    hash."""
    blob = save_numpy(arrays)
    Path(path).write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    Path(record_path).write_text(json.dumps({sha_key.replace("_sha256", "_file"): Path(path).name, sha_key: sha,
                                             **record}, indent=1) + "\n")
    return sha


def load_checked_arrays(path: Path, record_path: Path, sha_key: str, error: type[Exception],
                        build_hint: str) -> tuple[dict, dict]:
    """(arrays, record) of a `save_checked_arrays` asset, refused with `error` unless both files are there, the
    record is readable and the file's bytes hash to the SHA-256 it records. build_hint: the command that rebuilds
    them, for the message."""
    path, record_path = Path(path), Path(record_path)
    if not path.is_file() or not record_path.is_file():
        raise error(f"{path.name} or {record_path.name} is missing; build them with `{build_hint}`")
    blob = path.read_bytes()
    try:
        record = json.loads(record_path.read_text())
        expected = record[sha_key]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise error(f"{record_path.name} is not the record of {path.name} ({exc})") from exc
    if hashlib.sha256(blob).hexdigest() != expected:
        raise error(f"{path.name} does not match the SHA-256 in {record_path.name}: it was altered or belongs to "
                    "another build")
    return load_numpy(blob), record
