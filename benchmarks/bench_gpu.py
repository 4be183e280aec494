"""Training and inference on one CUDA GPU: throughput, the shipped recipe, the cross-validation.

    python -m benchmarks.bench_gpu [--out runs/bench_gpu.json] [--max-minutes 10] [--compile]
    python -m benchmarks.bench_gpu --dry-run          # = --device cpu --quick: every part, a few steps, on CPU

Four parts, each printed as a table and written to one JSON file:

a. training throughput with the decoded train split held on the GPU (uint8, 84 MB), batches indexed,
   preprocessed and augmented there (model.core.preprocess.to_input, augment), bf16 autocast, channels-last, the
   shipped recipe's optimizer, loss weights and weight EMA; images/s at 160 px and at the shipped 96 px
   (batch 256), and at 96 px with the recipe's batch of 32 (batches drawn at random: the recipe's k slices per
   subject is an order of rows, not a cost). Target: >= 10,000 images/s at 160 px.
b. the wall time of the shipped recipe (assets/model_config.json train_config): `model.training.train.main` with that
   config on the GPU, once as the code runs it today (decoded slices on the CPU, each batch preprocessed
   there and copied over) and once with the decoded images handed over already on the GPU (`sets=`, labels
   left on the CPU, where validation reads them). As recorded, the recipe trains in float32 (amp "off"); only
   the data folder (this machine's) and the CPU threads (torch's choice, not the recorded 2) are changed.
   Target: under a minute.
c. the subject-grouped cross-validation (`model.training.crossval.cross_validate`, 5 folds, the same recipe):
   training and out-of-fold prediction of every fold, images on the GPU; the figures and their bootstraps
   (CPU work) are not timed. Stops after the fold that passes --max-minutes and extrapolates. Target: under
   five minutes.
d. batch inference throughput (`predict_logits`, the shipped weights, images on the GPU) at several batch
   sizes, float32 and bf16.

The published anchor: one H200 trains ResNet-50 at 224 px at about 3,100 images/s in fp16; ResNet-34 is
about 1.7x faster and 160 px costs about half of 224 px, so about 10,500 images/s is the expectation at
160 px. Without a CUDA device the script stops at once with a message, unless --device cpu is given.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

TARGETS = {"train_images_per_s_160px": 10_000, "recipe_seconds": 60, "crossval_seconds": 300}


class Clock:
    """Wall time since start, and whether the --max-minutes budget is spent."""

    def __init__(self, max_minutes: float | None):
        self.start, self.limit = time.perf_counter(), (max_minutes * 60 if max_minutes else None)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def spent(self) -> bool:
        return self.limit is not None and self.elapsed() > self.limit


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def recipe_config(**overrides):
    """The shipped TrainConfig (assets/model_config.json train_config) with `overrides`."""
    from model.core.assets import read_model_config
    from model.core.constants import default_data_dir
    from model.training.train import TrainConfig

    recorded = read_model_config().get("train_config", {})
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    # the data where this machine keeps it ($ALZ_MRI_DATA), not where the training machine did
    return TrainConfig(**{k: v for k, v in recorded.items() if k in fields}
                       | {"data_dir": str(default_data_dir())} | overrides)


# ---------------------------------------------------------------- a. training throughput
def train_throughput(images: torch.Tensor, labels: torch.Tensor, cfg, *, size: int, batch: int, steps: int,
                     warmup: int, device: torch.device, bf16: bool = True, compile_net: bool = False) -> dict:
    """images/s of `model.training.train.train_one_epoch` itself (index, to_input, augment, bf16, step, EMA, as
    training runs it) on `steps` batches drawn from device-resident uint8 slices."""
    from model.core.dataset import SliceSet
    from model.core.network import build_model
    from model.training.train import class_weight_tensor, make_ema, make_optimizer, train_one_epoch

    torch.manual_seed(0)
    cfg = dataclasses.replace(cfg, image_size=size, batch_size=batch, amp="bf16" if bf16 else "off", seed=0,
                              slices_per_subject=0)  # the batches below are drawn at random already
    net = build_model().to(device).to(memory_format=torch.channels_last).train()
    optimizer, scheduler = make_optimizer(net, cfg, steps_per_epoch=max(1, len(images) // batch))
    ema = make_ema(net, cfg.ema_decay)
    weight = class_weight_tensor(labels.cpu(), cfg.class_weights)
    weight = weight.to(device) if weight is not None else None
    model = torch.compile(net) if compile_net else net
    draw = torch.Generator().manual_seed(0)

    def epoch(n_steps: int, number: int) -> float:  # one epoch of n_steps batches: what train.main calls
        idx = torch.randint(len(images), (n_steps * batch,), generator=draw)
        data = SliceSet(images[idx.to(images.device)], labels[idx.to(labels.device)], ("",) * len(idx))
        return train_one_epoch(model, optimizer, scheduler, data, cfg, number, device, weight,
                               show_progress=False, ema=ema)

    t0 = time.perf_counter()
    epoch(warmup, 0)
    sync(device)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    loss = epoch(steps, 1)
    sync(device)
    seconds = time.perf_counter() - t0
    return {"image_size": size, "batch": batch, "steps": steps, "seconds": seconds, "warmup_seconds": warm,
            "images_per_s": steps * batch / seconds, "final_loss": float(loss), "bf16": bf16,
            "compiled": compile_net}


def part_throughput(args, device, images, labels) -> list[dict]:
    cfg = recipe_config(device=str(device))
    rows = []
    plan = [(160, 2, 1), (96, 2, 1)] if args.quick else [(160, 256, 200), (96, 256, 200), (96, 32, 300)]
    for size, batch, steps in plan:
        row = train_throughput(images, labels, cfg, size=size, batch=batch, steps=steps,
                               warmup=1 if args.quick else 20, device=device, bf16=uses_bf16(args, device),
                               compile_net=args.compile)
        rows.append(row)
        print(f"  {size:4d} px batch {batch:4d} {'bf16' if row['bf16'] else 'fp32'}: {row['images_per_s']:9.0f} images/s "
              f"({steps} steps in {row['seconds']:.2f} s; warm-up {row['warmup_seconds']:.1f} s)", flush=True)
    return rows


# ---------------------------------------------------------------- b. the shipped recipe
def part_recipe(args, device, out_dir: Path) -> list[dict]:
    """train.main with the recorded recipe: data as today (CPU), then with the images on the device."""
    from model.core.dataset import SliceSet
    from model.training.train import load_data, main

    overrides = {"device": str(device), "threads": None, "export_dir": None, "resume": False}
    if args.quick:  # a few steps; a larger validation share so that a few subjects are held out of 128 slices
        overrides |= {"epochs": 1, "limit": 128, "val_fraction": 0.3}
    rows = []
    for where in ("device",) if args.quick else ("cpu", "device"):  # quick: the hand-over; test_train covers the rest
        cfg = recipe_config(output_dir=str(out_dir / f"recipe_{where}"), **overrides)
        t0 = time.perf_counter()
        train_set, val_set, groups = load_data(cfg, with_groups=True)  # subjects: the recipe draws k slices each
        load_seconds = time.perf_counter() - t0
        if where == "device":  # labels stay on the CPU: validation turns them into numpy arrays
            train_set, val_set = (SliceSet(s.images.to(device), s.labels, s.ids) for s in (train_set, val_set))
        sync(device)
        t0 = time.perf_counter()
        result = main(cfg, sets=(train_set, val_set), groups=groups)
        sync(device)
        seconds = time.perf_counter() - t0
        selected = result["selected"]
        rows.append({"data": where, "load_seconds": load_seconds, "train_seconds": seconds,
                     "total_seconds": load_seconds + seconds, "epochs": cfg.epochs, "image_size": cfg.image_size,
                     "batch": cfg.batch_size, "amp": cfg.amp, "train_slices": len(train_set),
                     "selected_epoch": selected["epoch"], "val_macro_f1": selected.get("val_macro_f1")})
        print(f"  slices on {where:6s}: decode + split {load_seconds:5.1f} s, train.main {seconds:6.1f} s "
              f"({cfg.epochs} epochs of {len(train_set)} slices at {cfg.image_size} px, batch {cfg.batch_size}, "
              f"amp {cfg.amp}); selected epoch {selected['epoch']}, val macro-F1 "
              f"{selected.get('val_macro_f1', float('nan')):.3f}", flush=True)
    return rows


# ---------------------------------------------------------------- c. the cross-validation
def crossval_data(quick: bool, data_dir=None):
    """Both splits, each slice's subject and split: all 6,400 slices, or for --quick the first 96 of each."""
    if not quick:
        from model.training.crossval import load_everything

        return load_everything(data_dir)
    from model.core.dataset import SliceSet
    from model.training.data import slices_with_subjects

    parts, groups, splits = [], [], []
    for split in ("train", "test"):
        data, _, subjects = slices_with_subjects(split, data_dir, limit=96)
        parts.append(data)
        groups.append(subjects)
        splits += [split] * len(data)
    data = SliceSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                    parts[0].ids + parts[1].ids)
    return data, np.concatenate(groups), splits


def part_crossval(args, device, out_dir: Path, clock: Clock) -> dict:
    from model.training.crossval import cross_validate
    from model.core.dataset import SliceSet

    folds = 2 if args.quick else args.folds
    cfg = recipe_config(device=str(device), threads=None, export_dir=None,
                        **({"epochs": 1} if args.quick else {}))
    t0 = time.perf_counter()
    data, groups, _ = crossval_data(args.quick)
    load_seconds = time.perf_counter() - t0
    data = SliceSet(data.images.to(device), data.labels, data.ids)
    fold_seconds = []
    t0 = time.perf_counter()
    for k in range(folds):
        start = time.perf_counter()
        cross_validate(data, groups, cfg, folds, 0, 0.2, out_dir / "crossval", only_fold=k)
        sync(device)
        fold_seconds.append(time.perf_counter() - start)
        if clock.spent() and k + 1 < folds:
            print(f"  --max-minutes reached after fold {k + 1} of {folds}: the rest is extrapolated", flush=True)
            break
    seconds = time.perf_counter() - t0
    estimate = seconds / len(fold_seconds) * folds
    print(f"  {folds} folds, {len(data)} slices: decode {load_seconds:.1f} s; folds run {len(fold_seconds)} in "
          f"{seconds:.1f} s ({', '.join(f'{s:.1f}' for s in fold_seconds)} s each); all folds "
          f"{'' if len(fold_seconds) == folds else '(extrapolated) '}{estimate:.1f} s", flush=True)
    return {"folds": folds, "folds_run": len(fold_seconds), "fold_seconds": fold_seconds, "seconds": seconds,
            "estimated_all_folds_seconds": estimate, "load_seconds": load_seconds, "slices": len(data),
            "epochs": cfg.epochs, "image_size": cfg.image_size, "batch": cfg.batch_size}


# ---------------------------------------------------------------- d. batch inference
def part_inference(args, device, images: torch.Tensor) -> list[dict]:
    from model.core.inference import Predictor, predict_logits

    predictor = Predictor.from_assets(device=str(device))
    sizes = (1, 16) if args.quick else (1, 32, 128, 512, 2048)
    n = 64 if args.quick else 4096
    pool = images[:n] if len(images) >= n else images.repeat(-(-n // len(images)), 1, 1, 1)[:n]
    rows = []
    for batch in sizes:
        for amp in (False, True) if uses_bf16(args, device) else (False,):
            count = min(n, batch * (4 if args.quick else 50))  # batch 1: 50 calls, not 4,096

            def run(count=count, batch=batch, amp=amp):
                return predict_logits(predictor.net, pool[:count], predictor.image_size, device, batch, amp=amp)

            run()  # warm-up: kernel selection, autocast caches
            sync(device)
            t0 = time.perf_counter()
            run()
            sync(device)
            seconds = time.perf_counter() - t0
            rows.append({"batch": batch, "bf16": amp, "images": count, "images_per_s": count / seconds})
            print(f"  batch {batch:5d} {'bf16' if amp else 'fp32'}: {count / seconds:10.0f} images/s", flush=True)
    return rows


# ---------------------------------------------------------------- running
def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a few steps of every part (smoke test)")
    parser.add_argument("--dry-run", action="store_true", help="--device cpu --quick")
    parser.add_argument("--parts", default="throughput,recipe,crossval,inference",
                        help="comma-separated subset of throughput, recipe, crossval, inference (default: all)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: %(default)s)")
    parser.add_argument("--max-minutes", type=float, default=10.0,
                        help="stop starting parts and folds after this much wall time (default: %(default)s)")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"),
                        help="parts a and d: auto = bf16 autocast on CUDA, float32 on CPU (default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network in part a")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_gpu.json"),
                        help="the figures as JSON (default: %(default)s, git-ignored)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="checkpoints of parts b and c (default: a temporary folder, removed)")
    return parser


def uses_bf16(args, device: torch.device) -> bool:
    """--amp auto: bf16 on CUDA only (a CPU without bf16 units emulates it, 10x slower than float32)."""
    return args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")


def check_device(name: str) -> torch.device:
    """The device to run on; exits with a message when CUDA is asked for and none is visible."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda or "no CUDA"
        print(f"error: no CUDA device is visible (torch {torch.__version__}, built with {built}); this benchmark "
              "is for a GPU machine. To check that it runs, use --dry-run (every part, a few steps, on CPU).",
              file=sys.stderr)
        raise SystemExit(2)
    return device


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.dry_run:
        args.device, args.quick = "cpu", True
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    valid = ("throughput", "recipe", "crossval", "inference")
    if any(p not in valid for p in parts):
        print(f"error: --parts {args.parts!r}: choose from {', '.join(valid)}", file=sys.stderr)
        return 2
    device = check_device(args.device)
    from model.core.dataset import load_split

    clock = Clock(None if args.quick else args.max_minutes)  # a smoke run runs every part
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest convolution once
        name = torch.cuda.get_device_name(device)
    else:
        from benchmarks.bench_serving import cpu_name

        name = f"{cpu_name()} (CPU, {torch.get_num_threads()} threads)"
    print(f"{name}; torch {torch.__version__}; parts {', '.join(parts)}", flush=True)
    result = {"date": time.strftime("%Y-%m-%d"), "device": name, "torch": torch.__version__, "quick": args.quick,
              "targets": TARGETS, "skipped": []}
    t0 = time.perf_counter()
    train = load_split("train", limit=512 if args.quick else None)
    images, labels = train.images.to(device), train.labels.to(device)
    result["decode_train_seconds"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        steps = {"throughput": ("a. training throughput, data on the device, channels-last, bf16 autocast on CUDA",
                                lambda: part_throughput(args, device, images, labels)),
                 "recipe": ("b. the shipped recipe, model.training.train.main",
                            lambda: part_recipe(args, device, work)),
                 "crossval": (f"c. subject-grouped cross-validation, {2 if args.quick else args.folds} folds",
                              lambda: part_crossval(args, device, work, clock)),
                 "inference": ("d. batch inference, predict_logits, shipped weights",
                               lambda: part_inference(args, device, images))}
        for part in parts:
            if clock.spent():
                print(f"{part}: skipped, --max-minutes {args.max_minutes} spent", flush=True)
                result["skipped"].append(part)
                continue
            title, run = steps[part]
            print(title, flush=True)
            result[part] = run()
    result["wall_seconds"] = clock.elapsed()
    summary(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


def summary(result: dict) -> None:
    """One line per target: the figure, the target and whether it is met."""
    lines = []
    for row in result.get("throughput", []):
        if row["image_size"] == 160:
            lines.append(("training images/s at 160 px", row["images_per_s"], TARGETS["train_images_per_s_160px"],
                          row["images_per_s"] >= TARGETS["train_images_per_s_160px"]))
    for row in result.get("recipe", []):
        lines.append((f"shipped recipe, slices on {row['data']} (s)", row["total_seconds"],
                      TARGETS["recipe_seconds"], row["total_seconds"] < TARGETS["recipe_seconds"]))
    if "crossval" in result:
        cv = result["crossval"]
        lines.append((f"cross-validation, {cv['folds']} folds (s)", cv["estimated_all_folds_seconds"] + cv["load_seconds"],
                      TARGETS["crossval_seconds"],
                      cv["estimated_all_folds_seconds"] + cv["load_seconds"] < TARGETS["crossval_seconds"]))
    if lines:
        print("summary" + (" (quick run: figures are not comparable with the targets)" if result["quick"] else ""))
        for label, value, target, met in lines:
            print(f"  {label:42s} {value:10.1f}   target {target:>6}   {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    raise SystemExit(main())
