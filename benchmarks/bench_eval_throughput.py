"""Throughput of the test-split evaluation against the bare forward pass of the same network, in the same run.

    python -m benchmarks.bench_eval_throughput [--rounds 3] [--batch-size 128] [--out eval.json] [--quick]

The evaluation path is the prediction loop of `model.qualify.evaluate.run`: `Predictor.probabilities` over the
decoded test split (uint8 (1280, 1, 128, 128)) in chunks of 128, which runs `predict_logits`
(preprocessing, channels-last copy, forward, softmax). The reference is the forward pass alone, on inputs
already preprocessed and laid out channels-last, same network, same batch size, under inference mode.
Target: the evaluation within 1.2x of the bare forward. The same loop with the ONNX Runtime and OpenVINO
engines (model.core.engine) is shown beside it. Images/s over the best of the rounds (the first one warms up), which alternate between
the methods so that a shared machine's load falls on all of them alike.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_serving import cpu_name


def evaluation_loop(predictor, images: torch.Tensor, batch: int) -> np.ndarray:
    """What `model.qualify.evaluate.run` does to get the probabilities of the test split."""
    chunks = [predictor.probabilities(images[start:start + batch], batch) for start in range(0, len(images), batch)]
    return np.concatenate([c.numpy() for c in chunks]).astype(np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per method (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="as model.qualify.evaluate (default: %(default)s)")
    parser.add_argument("--engines", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the loop with the ONNX Runtime and OpenVINO engines (default: on)")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: the project's dataset folder")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 256 slices, 1 round")
    args = parser.parse_args(argv)
    from model.core.dataset import load_split
    from model.core.inference import Predictor, as_batch
    from model.core.preprocess import to_input

    rounds, limit = (1, 256) if args.quick else (args.rounds, None)
    predictor = Predictor.from_assets(device="cpu")
    test = load_split("test", args.data_dir, limit=limit)
    images, batch, size = test.images, args.batch_size, predictor.image_size
    inputs = [to_input(as_batch(images[s:s + batch]), size).contiguous(memory_format=torch.channels_last)
              for s in range(0, len(images), batch)]

    @torch.inference_mode()
    def bare():
        for x in inputs:
            predictor.net(x)

    methods = {"bare forward (inputs ready)": bare,
               "evaluation loop (torch)": lambda: evaluation_loop(predictor, images, batch)}
    if args.engines:
        for engine in ("onnxruntime", "openvino"):
            other = Predictor.from_assets(device="cpu", engine=engine)
            methods[f"evaluation loop ({engine})"] = lambda p=other: evaluation_loop(p, images, batch)
    times = {name: [] for name in methods}
    load_before = os.getloadavg()
    for _ in range(rounds):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = min(times["bare forward (inputs ready)"])
    print(f"{cpu_name()}, torch {torch.__version__} with {torch.get_num_threads()} threads; {len(images)} test "
          f"slices at {size} px, batch {batch}, best of {rounds}")
    print(f"  {'method':34s} {'seconds':>8s} {'images/s':>9s} {'time / bare':>12s}")
    rows = {}
    for name, t in times.items():
        best = min(t)
        rows[name] = {"seconds": best, "images_per_s": len(images) / best, "ratio_to_bare": best / base}
        print(f"  {name:34s} {best:8.2f} {len(images) / best:9.1f} {best / base:11.3f}x")
    ratio = rows["evaluation loop (torch)"]["ratio_to_bare"]
    print(f"evaluation / bare forward: {ratio:.3f}x (target <= 1.2x); load average before "
          f"{tuple(round(v, 1) for v in load_before)}, after {tuple(round(v, 1) for v in os.getloadavg())}")
    if args.out:
        args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(),
                                        "threads": torch.get_num_threads(), "slices": len(images), "batch": batch,
                                        "image_size": size, "rounds": rounds, "rows": rows, "ratio": ratio,
                                        "load_average": [load_before, os.getloadavg()]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
