"""Each benchmark still runs, in its quick mode; figures are read for shape, never for speed.

They run as subprocesses, so that a benchmark's thread settings stay out of this session, with one
intra-op thread (a shared CPU) and the exported engines in a temporary folder.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.core.constants import CONFIG_FILES_PRESENT

ROOT = Path(__file__).resolve().parents[2]

needs_weights = pytest.mark.skipif(not CONFIG_FILES_PRESENT(), reason="needs the shipped weights in assets/")


def run_benchmark(module: str, *args: str, tmp_path: Path, data_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1", "ALZ_MRI_ENGINE_CACHE": str(tmp_path / "engines"),
                        "PYTHONWARNINGS": "ignore"}
    if data_dir is not None:
        env["ALZ_MRI_DATA"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.slow
@needs_weights
def test_bench_serving_quick(data_dir, tmp_path):
    out = tmp_path / "serving.json"
    proc = run_benchmark("bench_serving", "--quick", "--out", str(out), tmp_path=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    for part in ("prediction_alone", "end_to_end"):
        rows = result[part]
        assert len(rows) == 4 and next(iter(rows.values()))["ratio"] == pytest.approx(1.0)  # baseline first
        assert all(row["p50"] > 0 and row["p95"] >= row["p50"] and row["n"] == 2 for row in rows.values())
    assert result["max_engine_probability_difference"] < 1e-4  # the engines predict what torch predicts
    assert "network forward (channels-last)" in result["breakdown_ms"]


@pytest.mark.slow
@needs_weights
def test_bench_eval_throughput_quick(data_dir, tmp_path):
    out = tmp_path / "eval.json"
    proc = run_benchmark("bench_eval_throughput", "--quick", "--out", str(out), tmp_path=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["slices"] == 256 and set(result["rows"]) == {
        "bare forward (inputs ready)", "evaluation loop (torch)", "evaluation loop (onnxruntime)",
        "evaluation loop (openvino)"}
    assert result["ratio"] == pytest.approx(result["rows"]["evaluation loop (torch)"]["ratio_to_bare"])


@pytest.mark.slow
@needs_weights
def test_bench_int8_quick(data_dir, tmp_path):
    out = tmp_path / "int8.json"
    proc = run_benchmark("bench_int8", "--quick", "--out", str(out), tmp_path=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["sets"]) == {"test", "never_trained"}
    assert result["kept"] == all(s["class_flips"] == 0 and s["max_probability_change"] <= 0.01
                                 for s in result["sets"].values())


@pytest.mark.slow
@needs_weights
def test_bench_gpu_dry_run(data_dir, tmp_path):
    out = tmp_path / "gpu.json"
    proc = run_benchmark("bench_gpu", "--dry-run", "--out", str(out), tmp_path=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["quick"] and not result["skipped"]
    assert [row["image_size"] for row in result["throughput"]] == [160, 96]
    assert all(row["images_per_s"] > 0 and row["final_loss"] > 0 for row in result["throughput"])
    assert result["recipe"][0]["data"] == "device" and result["recipe"][0]["selected_epoch"] == 1
    assert result["crossval"]["folds_run"] == result["crossval"]["folds"] == 2
    assert {row["batch"] for row in result["inference"]} == {1, 16}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_bench_gpu_fails_fast_without_cuda(tmp_path):
    proc = run_benchmark("bench_gpu", "--out", str(tmp_path / "gpu.json"), tmp_path=tmp_path)
    assert proc.returncode == 2 and "no CUDA device is visible" in proc.stderr and "--dry-run" in proc.stderr
    assert not (tmp_path / "gpu.json").exists()


def test_bench_bootstrap_quick(tmp_path):
    """Both bootstraps run on the same resamples and give the same intervals; the ratio is only read for shape."""
    out = tmp_path / "bootstrap.json"
    proc = run_benchmark("bench_bootstrap", "--resamples", "5", "--rounds", "1", "--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["slices"] == 6400 and result["subjects"] == 200 and result["resamples"] == 5
    assert result["largest_interval_difference"] < 1e-9 and result["speed_up"] > 0


@needs_weights
def test_bench_cli_quick(tmp_path):
    """Both paths answer the same file alike (the benchmark fails otherwise); the ratio is only read for shape."""
    out = tmp_path / "cli.json"
    proc = run_benchmark("bench_cli", "--rounds", "1", "--out", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["median_s"]) == {"pytorch", "engine"} and result["ratio_pytorch_over_engine"] > 0
    assert (tmp_path / "engines").is_dir() and list((tmp_path / "engines").glob("*.check.json"))
