"""`alzmri predict FILE` wall time: without PyTorch (the shipped path) against the PyTorch path, in the same run.

    python -m benchmarks.bench_cli [--rounds 5] [--file scan.png] [--out cli.json]

Each round starts two fresh processes on the same one-slice file, in alternating order so that a shared machine's
load falls on both alike:

* "pytorch": `ALZ_MRI_ENGINE=torch`, the CLI as it ran until 2026-12-03 (imports torch, loads and hashes the
  safetensors weights, predicts with PyTorch): the baseline;
* "engine": the shipped default, the checked OpenVINO export from the cache, without importing torch
  (`model.serve.predict.load_predictor`).

A first run with the default engine makes the export and its check record when the cache has none; it is timed
and reported apart ("first_run_s"), as a user's very first call. The file is the first test-split slice when the
dataset is there (its brain is a training subject's, so the guard's near-copy answer is part of the work), else a
synthetic slice. Both paths must give the same stage and probabilities to 1e-4, or the benchmark fails. Reported:
the median wall time of each and the ratio pytorch / engine (above 1: the shipped path is faster).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PATHS = {"pytorch": {"ALZ_MRI_ENGINE": "torch"}, "engine": {}}


def one_slice(folder: Path) -> Path:
    """The first test-split slice as its dataset bytes, or a synthetic slice without the dataset."""
    from model.core.constants import default_data_dir

    test = default_data_dir() / "test-00000-of-00001.parquet"
    path = folder / "slice.png"
    if test.is_file():
        import pyarrow.parquet as pq

        row = pq.read_table(test, columns=["image"]).slice(0, 1).to_pylist()[0]
        path.write_bytes(row["image"]["bytes"])
    else:
        y, x = np.mgrid[-1:1:128j, -1:1:128j]
        image = np.where(x ** 2 / 0.8 + y ** 2 / 0.9 < 1, 140, 0) + np.random.default_rng(0).integers(0, 30, (128, 128))
        Image.fromarray(image.astype(np.uint8)).save(path)
    return path


def run(path: Path, env: dict) -> tuple[float, dict]:
    """(wall seconds, the result row) of one `python -m model.cli predict FILE` in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "model.cli", "predict", str(path), "--quiet"], cwd=ROOT,
                          env=os.environ | env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"alzmri predict failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, next(csv.DictReader(io.StringIO(proc.stdout)))


def same_answer(a: dict, b: dict) -> bool:
    probs = [k for k in a if k.startswith("p_")]
    return a["prediction"] == b["prediction"] and all(abs(float(a[k]) - float(b[k])) <= 1e-4 for k in probs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each path (default: %(default)s)")
    parser.add_argument("--file", type=Path, default=None, help="the scan (default: the first test-split slice)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or one_slice(Path(tmp))
        first_s, reference = run(path, PATHS["engine"])  # makes the export and its record when none is cached
        walls: dict[str, list[float]] = {name: [] for name in PATHS}
        for i in range(args.rounds):
            for name in (list(PATHS) if i % 2 == 0 else list(PATHS)[::-1]):
                wall, row = run(path, PATHS[name])
                if not same_answer(row, reference):
                    raise SystemExit(f"the {name} path answered {row} against {reference}")
                walls[name].append(wall)
    median = {name: statistics.median(w) for name, w in walls.items()}
    result = {"file": str(args.file or "first test-split slice"), "rounds": args.rounds, "first_run_s": first_s,
              "walls_s": walls, "median_s": median, "ratio_pytorch_over_engine": median["pytorch"] / median["engine"],
              "load_average_1min": os.getloadavg()[0]}
    print(f"alzmri predict FILE, {args.rounds} rounds (load average {result['load_average_1min']:.1f}):")
    print(f"  pytorch (baseline) median {median['pytorch']:.2f} s   engine, no torch median {median['engine']:.2f} s"
          f"   ratio {result['ratio_pytorch_over_engine']:.2f}x   first run {first_s:.2f} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
