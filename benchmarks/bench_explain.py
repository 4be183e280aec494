"""How long each saliency map and its checks take on this machine, against a bare forward pass.

    python -m benchmarks.bench_explain [--repeat 5] [--quick]

For each method of model.qualify.explain: the map alone, and the map with its faithfulness scores (deletion and
insertion beside a random and an edge map: what the Classify page shows), median and worst of --repeat
runs after one warm-up, with the ratio to one forward pass of the same network measured in the same run.
The issue's target: Grad-CAM and Guided Grad-CAM with their scores in under 2 s on a CPU. Nothing here
asserts: the machines are shared and noisy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up: caches, lazy imports, oneDNN kernels
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measure (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="one run each with a tiny untrained network (smoke test)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    import torch

    from model.qualify.explain import METHODS, explain
    from model.qualify.faithfulness import faithfulness
    from model.core.inference import Predictor
    from model.core.network import build_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.quick:
        predictor, repeat = Predictor(build_model().eval(), image_size=32, device="cpu"), 1
    else:
        predictor, repeat = Predictor.from_assets(device="cpu"), args.repeat
    rng = np.random.default_rng(0)
    y, x = np.mgrid[-1:1:128j, -1:1:128j]
    image = np.clip(np.where(x ** 2 + y ** 2 < 0.8, 120, 0) + rng.normal(0, 8, (128, 128)), 0, 255).astype(np.uint8)
    layer = predictor.cam_layer
    forward = timed(lambda: predictor.probabilities(image), repeat)
    base = statistics.median(forward)
    rows = []
    for method in METHODS:
        alone = timed(lambda: explain(predictor, image, target=0, method=method, layer=layer), repeat)

        def with_scores():
            heat = explain(predictor, image, target=0, method=method, layer=layer).heatmap
            faithfulness(predictor, image, heat, 0)

        both = timed(with_scores, repeat)
        rows.append({"method": method, "map_ms": statistics.median(alone) * 1e3, "map_worst_ms": max(alone) * 1e3,
                     "with_scores_ms": statistics.median(both) * 1e3, "with_scores_worst_ms": max(both) * 1e3,
                     "x_forward": statistics.median(both) / base})
    print(f"one forward pass: {base * 1e3:.1f} ms ({predictor.image_size} px, {torch.get_num_threads()} threads)")
    print(f"{'method':22s} {'map':>9s} {'+ scores':>10s} {'worst':>9s} {'x forward':>10s}")
    for r in rows:
        print(f"{r['method']:22s} {r['map_ms']:7.0f} ms {r['with_scores_ms']:8.0f} ms {r['with_scores_worst_ms']:7.0f} ms "
              f"{r['x_forward']:9.0f}x")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"forward_ms": base * 1e3, "image_size": predictor.image_size, "methods": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
