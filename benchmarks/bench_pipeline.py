"""Speed of the model pipeline on this machine, as figures and ratios.

    python -m benchmarks.bench_pipeline [--steps 20]

1. A training epoch's loop (indexing the decoded uint8 array, preprocessing,
   augmentation, forward, backward, step) against bare forward+backward+step
   on a batch already in memory, same network, batch size and precision.
2. The whole test-split evaluation (`model.evaluate.run`, 1,280 slices,
   1,000 bootstrap resamples).
3. One scan through `Predictor.predict_one` with the weights loaded, and one
   Grad-CAM explanation.
Nothing here asserts: the machines are shared and noisy.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from model.constants import CONFIG_FILES_PRESENT
from model.data import load_split
from model.network import build_model
from model.preprocess import augment, to_input


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_training(steps: int, batch: int, size: int, bf16: bool) -> None:
    data = load_split("train", limit=batch * steps)
    net = build_model().to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else torch.enable_grad

    def step(x, y):
        with ctx():
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    fixed_x = to_input(data.images[:batch], size).contiguous(memory_format=torch.channels_last)
    fixed_y = data.labels[:batch]
    step(fixed_x, fixed_y)  # warm-up

    def bare():
        for _ in range(steps):
            step(fixed_x, fixed_y)

    def pipeline():
        order = torch.randperm(len(data), generator=gen)
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            x = augment(to_input(data.images[idx], size), gen).contiguous(memory_format=torch.channels_last)
            step(x, data.labels[idx])

    def data_only():
        order = torch.randperm(len(data), generator=gen)
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            augment(to_input(data.images[idx], size), gen).contiguous(memory_format=torch.channels_last)

    # interleave to share the machine's noise fairly
    t_bare, t_pipe = [], []
    for _ in range(2):
        t_bare += timed(bare, 1)
        t_pipe += timed(pipeline, 1)
    t_data = min(timed(data_only, 2))
    b, p = min(t_bare), min(t_pipe)
    print(f"training loop, {steps} steps of batch {batch} at {size}px ({'bf16' if bf16 else 'fp32'}):")
    print(f"  bare forward+backward+step {b:7.2f} s  ({steps * batch / b:6.1f} img/s)")
    print(f"  full pipeline              {p:7.2f} s  ({steps * batch / p:6.1f} img/s)  ratio {p / b:.3f}x")
    print(f"  data side alone            {t_data:7.2f} s  ({100 * t_data / b:.1f}% of a bare step)")


def bench_inference() -> None:
    from model.evaluate import run
    from model.explain import explain
    from model.inference import Predictor

    t0 = time.perf_counter()
    predictor = Predictor.from_assets()
    load = time.perf_counter() - t0
    test = load_split("test", limit=64)
    image = test.images[0, 0].numpy()
    predictor.predict_one(image)
    one = timed(lambda: predictor.predict_one(image), 50)
    cam = timed(lambda: explain(predictor, image), 20)
    print(f"inference at {predictor.image_size}px on {predictor.device_name()}:")
    print(f"  load + verify weights      {load * 1000:7.1f} ms")
    print(f"  predict one scan           {statistics.median(one) * 1000:7.1f} ms median "
          f"(p90 {sorted(one)[44] * 1000:.1f} ms, 50 runs; target 20 ms)")
    print(f"  Grad-CAM one scan          {statistics.median(cam) * 1000:7.1f} ms median (20 runs)")
    t0 = time.perf_counter()
    metrics, _ = run(n_bootstrap=1000)
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(n_bootstrap=0)
    no_boot = time.perf_counter() - t0
    print(f"  evaluate {metrics['n']} test scans    {total:7.1f} s with 1,000 bootstrap resamples "
          f"({no_boot:.1f} s without; target 30 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per measurement (default: 20)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: 32")
    parser.add_argument("--image-size", type=int, default=160, help="default: 160, the shipped model's")
    parser.add_argument("--fp32", action="store_true", help="measure in float32 instead of bf16 autocast")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    bench_training(args.steps, args.batch_size, args.image_size, not args.fp32)
    if CONFIG_FILES_PRESENT():
        bench_inference()
    else:
        print("no shipped weights in assets/: inference figures skipped")


if __name__ == "__main__":
    main()
