"""Speed of the model pipeline on this machine, as figures and ratios.

    python -m benchmarks.bench_pipeline [--steps 20]

1. `model.training.train.train_one_epoch` with the shipped model's recipe (indexing the
   decoded uint8 array, neighbour blend, preprocessing, cutout, forward,
   backward, step, weight EMA) against bare forward+backward+step on a batch
   already in memory, same network, loss, batch size and precision; then what
   a whole epoch of the shipped split adds (validation passes, checkpoints).
2. The whole test-split evaluation (`model.qualify.evaluate.run`, 1,280 slices,
   1,000 bootstrap resamples).
3. One scan through `Predictor.predict_one` with the weights loaded, and one
   Grad-CAM explanation.
Nothing here asserts: the machines are shared and noisy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from model.core.constants import CONFIG_FILES_PRESENT, MODEL_CONFIG_PATH
from model.core.dataset import load_split
from model.core.network import build_model
from model.core.preprocess import to_input


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def shipped_recipe() -> dict:
    """The training options of the shipped model (its augmentations, EMA), or {} when none is shipped."""
    if not MODEL_CONFIG_PATH.is_file():
        return {}
    recipe = json.loads(MODEL_CONFIG_PATH.read_text()).get("train_config", {})
    keys = ("augment", "cutout", "cutout_size", "neighbour_mix", "neighbour_k", "ema_decay", "label_smoothing",
            "class_weights")
    return {k: recipe[k] for k in keys if k in recipe}


def bench_training(steps: int, batch: int, size: int, bf16: bool) -> None:
    """`model.training.train.train_one_epoch` with the shipped recipe against bare steps on one resident batch."""
    from model.training.train import (
        TrainConfig,
        class_weight_tensor,
        make_ema,
        train_neighbours,
        train_one_epoch,
        training_batch,
    )

    recipe = shipped_recipe()
    cfg = TrainConfig(**recipe, image_size=size, batch_size=batch, epochs=1, amp="bf16" if bf16 else "off",
                      limit=batch * steps)
    data = load_split("train", limit=batch * steps)
    net = build_model().to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    weight = class_weight_tensor(data.labels, cfg.class_weights)
    ema = make_ema(net, cfg.ema_decay)
    t0 = time.perf_counter()
    neighbours = train_neighbours(data, cfg.neighbour_k) if cfg.neighbour_mix else None
    t_neigh = time.perf_counter() - t0
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else torch.enable_grad

    def step(x, y):
        with ctx():
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, weight=weight, label_smoothing=cfg.label_smoothing)
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
        train_one_epoch(net, opt, sched, data, cfg, 0, torch.device("cpu"), weight, show_progress=False, ema=ema,
                        neighbours=neighbours)

    gen = torch.Generator().manual_seed(0)

    def data_only():
        order = torch.randperm(len(data), generator=gen)
        for s in range(steps):
            training_batch(data, order[s * batch:(s + 1) * batch], cfg, gen, neighbours).contiguous(
                memory_format=torch.channels_last)

    def ema_only():
        for _ in range(steps):
            ema.update_parameters(net)

    # interleave to share the machine's noise fairly
    t_bare, t_pipe = [], []
    for _ in range(2):
        t_bare += timed(bare, 1)
        t_pipe += timed(pipeline, 1)
    t_data = min(timed(data_only, 2))
    b, p = min(t_bare), min(t_pipe)
    options = ", ".join(f"{k}={v}" for k, v in recipe.items()) or "defaults"
    print(f"training loop, {steps} steps of batch {batch} at {size}px ({'bf16' if bf16 else 'fp32'}), {options}:")
    print(f"  bare forward+backward+step {b:7.2f} s  ({steps * batch / b:6.1f} img/s)")
    print(f"  train_one_epoch            {p:7.2f} s  ({steps * batch / p:6.1f} img/s)  ratio {p / b:.3f}x")
    print(f"  data side alone            {t_data:7.2f} s  ({100 * t_data / b:.1f}% of the bare steps)")
    if ema is not None:
        t_ema = min(timed(ema_only, 2))
        print(f"  weight EMA updates alone   {t_ema:7.2f} s  ({100 * t_ema / b:.1f}% of the bare steps)")
    if neighbours is not None:
        print(f"  neighbour search, once per run: {t_neigh:.2f} s for these {len(data)} slices "
              "(the training log prints it for the whole split)")
    bench_epoch_extras(net, cfg, ema, opt, sched, step_bare=b / steps, step_pipe=p / steps, batch=batch, size=size)


def bench_epoch_extras(net, cfg, ema, opt, sched, *, step_bare: float, step_pipe: float, batch: int, size: int,
                       train_rows: int = 4608, val_rows: int = 512) -> None:
    """What a real epoch adds after its training pass: validation and two checkpoint writes.

    Scaled to the shipped split (4,608 train rows, 512 validation rows): the validation pass runs on 512
    real slices, once for the weights that are judged and once more for the raw weights when an EMA is kept.
    """
    import tempfile

    from model.core import checkpoint as ckpt
    from model.core.inference import predict_logits
    from model.training.train import uses_bf16

    val = load_split("train", limit=val_rows).images
    passes = 2 if ema is not None else 1
    cpu = torch.device("cpu")
    t_val = passes * min(timed(lambda: predict_logits(net, val, size, cpu, cfg.eval_batch_size,
                                                      amp=uses_bf16(cfg, cpu)), 2))
    with tempfile.TemporaryDirectory() as tmp:
        t_ckpt = 2 * min(timed(lambda: ckpt.save_training_checkpoint(Path(tmp) / "last.pt", net, opt, sched, 0, cfg,
                                                                     [], None, ema=ema), 2))
    steps = train_rows // batch
    bare, train_pass = steps * step_bare, steps * step_pipe
    epoch = train_pass + t_val + t_ckpt
    print(f"one epoch of the shipped split ({steps} steps), from the figures above:")
    print(f"  bare steps {bare:6.1f} s | training pass {train_pass:6.1f} s ({train_pass / bare:.3f}x) | "
          f"+ validation {t_val:4.1f} s ({passes} pass{'es' if passes > 1 else ''} over {val_rows}) "
          f"+ checkpoints {t_ckpt:4.1f} s = {epoch:6.1f} s ({epoch / bare:.3f}x)")


def bench_inference() -> None:
    from model.qualify.evaluate import run
    from model.qualify.explain import explain
    from model.core.inference import Predictor

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
    shipped = json.loads(MODEL_CONFIG_PATH.read_text())["image_size"] if MODEL_CONFIG_PATH.is_file() else 160
    parser.add_argument("--image-size", type=int, default=shipped, help="default: %(default)s, the shipped model's")
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
