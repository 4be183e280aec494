"""The reproducibility stamp: what a result needs to be reproduced, as a JSON-serialisable dict.

`reproducibility_stamp(predictor_or_config, method=..., scan=...)`: the model's checksum and the config that
matters (image size, temperature and where it came from), the dataset's fingerprint, the preprocessing, the
explanation method, software versions, the project's git commit and the time (UTC). `stamp_rows(stamp)`: the same
as (label, value) rows for a report's table.
"""
from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from model.core.constants import MEAN, MODEL_CONFIG_PATH, PROJECT_ROOT, STD, default_data_dir
from model.core.dataset import fingerprint
from model.reports.blocks import words

SOFTWARE = ("torch", "torchvision", "captum", "numpy", "streamlit", "fpdf2", "pydicom", "nibabel")


def software_versions() -> dict[str, str]:
    """{package: installed version} for Python and every library a result depends on ('not installed' if absent)."""
    out = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_state(root: Path = PROJECT_ROOT) -> dict:
    """{"commit": HEAD's SHA-1 or None, "modified": whether tracked files differ from it, or None}. Never raises:
    an installed copy without git, or without a repository, gives Nones."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], check=False, cwd=root, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "modified": None if status is None else bool(status)}


def _temperature_source(config: dict) -> str:
    source = config.get("temperature_source")
    if source:
        details = ", ".join(f"{k} {v}" for k, v in source.items() if k != "method")
        return f"{source.get('method', 'recorded')}" + (f", {details}" if details else "")
    if config.get("train_config", {}).get("temperature") is not None:
        return "given at training (--temperature)"
    return "fitted on the training run's validation split" if config else "unknown"


def _model_facts(source) -> tuple[dict, dict]:
    """(checksum and config essentials, the whole config) of a Predictor, a model_config dict, or None (the
    shipped config)."""
    if source is None:
        source = json.loads(MODEL_CONFIG_PATH.read_text()) if MODEL_CONFIG_PATH.is_file() else {}
    if isinstance(source, dict):
        config, sha = source, source.get("weights_sha256")
        temperature, image_size = config.get("temperature"), config.get("image_size")
        checksum_source = "recorded in model_config.json (the app refuses weights that do not match it)"
    else:  # a model.core.inference.Predictor, or a model.core.runtimes.EnginePredictor (which says its own source)
        config, sha = dict(source.config), source.sha256
        temperature, image_size = source.temperature, source.image_size
        checksum_source = getattr(source, "checksum_source",
                                  "of the loaded weights, verified against model_config.json when they were loaded")
    return {"weights_sha256": (sha or "").lower() or None, "checksum_source": checksum_source,
            "arch": config.get("arch"), "weights_dtype": config.get("weights_dtype"),
            "image_size": image_size, "source_size": config.get("source_size"),
            "temperature": None if temperature is None else round(float(temperature), 6),
            "temperature_source": _temperature_source(config),
            "selected_epoch": (config.get("selected_epoch") or {}).get("epoch")}, config


def _dataset_facts(config: dict, data_dir) -> dict:
    """The local dataset's fingerprint when it is there, else the one recorded with the model, saying which."""
    recorded = dict(config.get("data_sha256") or {})
    path = Path(data_dir) if data_dir is not None else default_data_dir()
    local = fingerprint(path) if path.is_dir() else {}
    if local:
        same = None if not recorded else all(recorded.get(k) == v for k, v in local.items())
        return {"source": "local dataset", "path": str(path), "sha256": local, "matches_model_config": same}
    return {"source": "recorded in model_config.json" if recorded else "not recorded, and no local dataset",
            "path": None, "sha256": recorded, "matches_model_config": None}


def _preprocessing(facts: dict, config: dict, scan) -> dict:
    size, source = facts["image_size"], facts["source_size"] or "S"
    steps = [f"grey levels 0-255 scaled to [0, 1] (uint8 slice of {source}x{source} px)",
             f"resized to {size}x{size} px, bilinear, antialiased when shrinking (model.core.preprocess.to_input)",
             f"normalised as (x - {MEAN}) / {STD} (model.core.constants MEAN and STD)"]
    out = {"steps": steps, "mean": MEAN, "std": STD}
    if config.get("mean") not in (None, MEAN) or config.get("std") not in (None, STD):
        out["config_mean_std"] = [config.get("mean"), config.get("std")]  # a model trained with other constants
    if scan is not None:
        scan_steps = scan.get("steps") if isinstance(scan, dict) else getattr(scan, "steps", None)
        out["slice_reading"] = list(scan_steps or [])
    return out


def reproducibility_stamp(predictor_or_config=None, *, method: dict | None = None, data_dir=None,
                          scan=None) -> dict:
    """What it takes to reproduce a result, as a JSON-serialisable dict.

    predictor_or_config: a model.core.inference.Predictor, the model_config.json dict, or None for the shipped config.
    method: the explanation's settings (a record's "explanation": method, layer, target, opacity, colormap).
    data_dir: the dataset folder to fingerprint (default $ALZ_MRI_DATA or ../shared/data/alzheimer_mri); without
    one the fingerprint recorded in model_config.json is given, and "dataset.source" says which.
    scan: a model.scans.scan_io.Scan (or a record's "scan" dict): how the slice was read from its file.
    """
    model, config = _model_facts(predictor_or_config)
    git = git_state()
    return {
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "dataset": _dataset_facts(config, data_dir),
        "preprocessing": _preprocessing(model, config, scan),
        "explanation": dict(method) if method else None,
        "software": software_versions(),
        "git_commit": git["commit"],
        "git_modified": git["modified"],
    }


def stamp_rows(stamp: dict) -> list[tuple[str, str]]:
    """The stamp as (label, value) rows for a table, in reading order."""
    model, data, prep = stamp.get("model", {}), stamp.get("dataset", {}), stamp.get("preprocessing", {})
    rows = [("Model checksum (SHA-256)", model.get("weights_sha256") or "unknown"),
            ("Checksum source", model.get("checksum_source", "")),
            ("Model", f"{model.get('arch') or 'unknown'}, {model.get('weights_dtype') or '?'} weights, input "
                      f"{model.get('image_size')} px" + (f", selected epoch {model['selected_epoch']}"
                                                         if model.get("selected_epoch") is not None else "")),
            ("Temperature", f"{model.get('temperature')} ({model.get('temperature_source')})")]
    hashes = "\n".join(f"{split} {sha}" for split, sha in data.get("sha256", {}).items()) or "none"
    where = data.get("source", "")
    if data.get("path"):
        where += f" at {data['path']}"
    if data.get("matches_model_config") is not None:
        where += (": the same files the model was trained on" if data["matches_model_config"]
                  else ": NOT the files recorded with the model")
    rows += [("Dataset fingerprint", f"{hashes}\n({where})"),
             ("Preprocessing", "; ".join(prep.get("steps", [])))]
    if prep.get("config_mean_std"):
        rows.append(("Model config normalisation", "mean {}, std {}".format(*prep["config_mean_std"])))
    if prep.get("slice_reading") is not None:
        rows.append(("Slice reading", " ".join(prep["slice_reading"]) or "as stored (a 2D slice)"))
    if stamp.get("explanation"):
        rows.append(("Explanation", words(stamp["explanation"])))
    rows.append(("Software", " · ".join(f"{name} {version}" for name, version in stamp.get("software", {}).items())))
    commit = stamp.get("git_commit") or "not available"
    if stamp.get("git_modified"):
        commit += " (with uncommitted changes)"
    rows += [("Project commit", commit), ("Stamped (UTC)", stamp.get("created_utc", ""))]
    return rows
