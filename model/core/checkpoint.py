"""Saving and loading weights.

Two kinds of file:

* training checkpoints (`runs/.../last.pt`, `best.pt`): model, optimizer,
  scheduler, epoch, history and the config, for resuming. Loaded with
  `weights_only=True`, so they can hold only tensors and plain data.
* shipped weights (`assets/*.safetensors`): the state dict alone, no pickle,
  with its SHA-256 in a side file and the model's config in a JSON file.
  `load_verified_state_dict` refuses a file whose checksum does not match.

The checks that need no PyTorch (checksums, the model config, the guard's arrays) are `model.core.assets`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from model.core.assets import ChecksumError, ModelLoadError, read_recorded_sha256, sha256_file
from model.core.constants import (CLASS_NAMES, IMAGE_SIZE, MEAN, MODEL_CONFIG_PATH, STD, WEIGHTS_PATH,
                                  WEIGHTS_SHA256_PATH)


def save_training_checkpoint(path, net, optimizer, scheduler, epoch, cfg, history, best, ema=None,
                             data_sha256: dict | None = None) -> None:
    """Everything needed to resume, plus the config and the data fingerprint that made it."""
    state = {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "config": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg),
        "history": history,
        "best": best,
        "data_sha256": data_sha256 or {},
    }
    if ema is not None:
        state["ema"] = ema.state_dict()
    tmp = Path(path).with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind


def load_training_checkpoint(path, net, optimizer=None, scheduler=None) -> dict:
    """Restore a training checkpoint into `net` (and the optimizer and scheduler); returns the whole state."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing = [k for k in ("model", "optimizer", "scheduler", "epoch", "history", "best") if k not in state]
        if missing:
            raise KeyError(f"missing {', '.join(missing)}")
        net.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
    # torch.load raises many kinds on a damaged file (UnpicklingError, IndexError, EOFError, ...); all mean the same
    except (OSError, RuntimeError, KeyError, ValueError, EOFError, IndexError, TypeError, AttributeError,
            pickle.UnpicklingError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"{path}: not a usable training checkpoint of this network ({detail}); "
                             "start a new --output-dir") from exc
    return state


def weights_to_ship(state: dict) -> dict[str, torch.Tensor]:
    """The weights of a training checkpoint that are validated and exported.

    The moving average of the weights when the run kept one (`--ema-decay`), else the raw weights.
    """
    if "ema" in state:
        return {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    return state["model"]


def export_weights(net, out_dir: Path, *, cfg: dict, temperature: float, data_fingerprint: dict,
                   selected: dict, half: bool = True) -> dict:
    """Write <out_dir>/resnet34_alzheimer.safetensors, its .sha256 and model_config.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS_PATH.name
    tensors = {}
    for k, v in net.state_dict().items():
        v = v.detach().cpu().contiguous()
        tensors[k] = v.half() if half and v.is_floating_point() else v
    save_file(tensors, str(weights), metadata={"arch": "resnet34", "classes": ",".join(CLASS_NAMES)})
    digest = sha256_file(weights)
    (out_dir / WEIGHTS_SHA256_PATH.name).write_text(f"{digest}  {weights.name}\n")
    config = {
        "arch": "torchvision.models.resnet34",
        "in_channels": 1,
        "class_names": list(CLASS_NAMES),
        "image_size": cfg["image_size"],
        "source_size": IMAGE_SIZE,
        "mean": MEAN,
        "std": STD,
        "temperature": temperature,
        "weights_file": weights.name,
        "weights_sha256": digest,
        "weights_dtype": "float16" if half else "float32",
        "selected_epoch": selected,
        "train_config": cfg,
        "data_sha256": data_fingerprint,
    }
    (out_dir / MODEL_CONFIG_PATH.name).write_text(json.dumps(config, indent=2) + "\n")
    return {"weights": weights, "sha256": digest, "config": out_dir / MODEL_CONFIG_PATH.name}


def load_verified_state_dict(weights: Path = WEIGHTS_PATH, sha_file: Path | None = None,
                             expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """State dict (float32) from a safetensors file whose SHA-256 matches the recorded one.

    The file is read once, and the bytes that were hashed are the bytes that are loaded. When the
    model config's `weights_sha256` is given it must match too, so weights and a config from two
    different trainings are refused.
    """
    weights = Path(weights)
    sha_file = Path(sha_file) if sha_file is not None else weights.with_name(weights.name + ".sha256")
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: weights file not found; train with "
                                "`alzmri-train train --export-dir assets`")
    expected = read_recorded_sha256(sha_file)
    data = weights.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ChecksumError(
            f"{weights.name}: SHA-256 {actual[:12]}… does not match the recorded {expected[:12]}…; "
            "the file is corrupt or was replaced. Restore it from git (git checkout -- assets) or retrain."
        )
    if expected_sha256 is not None and expected_sha256.lower() != actual:
        raise ChecksumError(
            f"{weights.name}: SHA-256 {actual[:12]}… is not the {expected_sha256[:12]}… that the model config "
            "records; the weights and the config come from different trainings."
        )
    try:
        tensors = load_safetensors(data)
    except SafetensorError as exc:
        raise ModelLoadError(f"{weights.name}: not a readable safetensors file ({exc})") from exc
    return {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}


