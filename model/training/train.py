"""Train the ResNet-34 stage classifier: `python -m model.training.train --help`.

Defaults reproduce the original model card (SGD momentum 0.9, lr 0.01, weight
decay 1e-3, batch 16, 7 epochs, cross-entropy, 224 px, 10% validation). The
recipe that made the shipped weights is recorded in assets/model_config.json
and in the README.

Multi-GPU / multi-node: `torchrun --nproc-per-node N -m model.training.train ...`
(DistributedDataParallel; NCCL on GPUs, gloo on CPU). `--batch-size` is per
process.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import inspect
import math
import os
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from model.core import checkpoint as ckpt
from model.core.assets import ModelLoadError
from model.core.calibration import fit_temperature
from model.core.constants import NUM_CLASSES, SELECTION_LOG_PATH, SUBJECT_TABLE_PATH, default_data_dir
from model.core.dataset import SliceSet, fingerprint, load_split, slice_keys, subjects_for
from model.core.distributed import init_distributed
from model.core.inference import predict_logits
from model.core.network import build_model
from model.core.prediction import subject_level
from model.core.preprocess import augment, cutout, hflip, mri_intensity, to_input
from model.core.recipe import RESUME_FREE
from model.qualify.evaluate import compute_metrics
from model.qualify.neighbours import nearest_neighbours
from model.training.data import grouped_split, stratified_split
from model.training.objectives import (FeatureTap, atrophy_targets, masked_mse, mixup, ordinal_loss,
                                       soft_cross_entropy, subject_epoch_order)

CHOICES = {
    "optimizer": ("sgd", "adamw"),
    "lr_schedule": ("constant", "cosine"),
    "class_weights": ("none", "sqrt", "inverse"),
    "amp": ("auto", "bf16", "off"),
    "select": ("best", "last"),
    "select_on": ("macro_f1", "subject_auc", "subject_bacc"),
}


@dataclass
class TrainConfig:
    data_dir: str = str(default_data_dir())  # parquet or image-folder dataset
    output_dir: str = "runs/resnet34"  # checkpoints and the per-epoch log
    image_size: int = 224  # slices are 128 px; the model card resized them to 224
    epochs: int = 7  # passes over the train slices
    batch_size: int = 16  # per process
    lr: float = 0.01  # peak learning rate
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-3  # decoupled for AdamW, L2 for SGD
    norm_bias_decay: bool = True  # also decay BatchNorm and bias parameters, as the model card did; off: weights only
    optimizer: str = "sgd"  # sgd | adamw
    lr_schedule: str = "constant"  # constant | cosine (per step, to zero)
    warmup_epochs: float = 0.0  # linear warm-up from lr/100
    augment: bool = False  # random affine, flip and intensity jitter (model.preprocess.augment)
    flip: float = 0.0  # chance that a slice is mirrored left-right, without the rest of --augment
    class_weights: str = "none"  # loss weights: none | sqrt | inverse class frequency
    label_smoothing: float = 0.0  # share of each target spread over the other classes
    cutout: float = 0.0  # chance that a slice gets one square blanked (model.preprocess.cutout)
    cutout_size: float = 0.25  # the square's side as a fraction of the input size
    neighbour_mix: float = 0.0  # chance that a slice is blended with one of its nearest same-class train slices
    neighbour_k: int = 3  # how many nearest same-class slices to pick the blend partner from
    ema_decay: float = 0.0  # >0: keep an exponential moving average of the weights; evaluate and export it
    mri_augment: bool = False  # MRI intensity changes: gamma, bias field, noise, blur (model.preprocess.mri_intensity)
    mixup: float = 0.0  # >0: blend each batch with itself shuffled, weight ~ Beta(a, a) (slices of other brains)
    dropout: float = 0.0  # dropout on the pooled features before the classifier (training only; weights unchanged)
    ordinal: float = 0.0  # weight of a cumulative (ordinal) loss on the softmax, beside cross-entropy
    aux_nwbv: float = 0.0  # weight of an auxiliary regression of the subject's nWBV (atrophy) from the pooled features
    slices_per_subject: int = 0  # >0: every epoch draws this many slices of each training subject; 0: every slice
    val_fraction: float = 0.1  # stratified, seeded; the test split is never used here. 0: refit on all of train
    val_buffer: float = 0.0  # >0: drop train slices closer than this (RMS grey levels) to any validation slice
    val_by_subject: bool = False  # hold out whole subjects (assets/subjects.csv) for validation, not single slices
    temperature: float | None = None  # use this calibration temperature instead of fitting one (needed when refitting)
    seed: int = 0  # seeds initialisation, batch order, augmentation and the validation split
    split_seed: int | None = None  # seed of the validation split if not --seed: retrain on one split with other seeds
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto: bf16 autocast on CUDA only | bf16 | off
    channels_last: bool = True  # NHWC memory layout for the convolutions
    limit: int | None = None  # use only the first N train rows (smoke tests)
    eval_batch_size: int = 128  # slices a forward pass in validation
    select: str = "best"  # export the best epoch by the --select-on figure, or the last
    select_on: str = "macro_f1"  # macro_f1 (slices) | subject_auc | subject_bacc (any-dementia AUC / balanced accuracy of validation subjects' mean probabilities)
    export_dir: str | None = None  # write safetensors + model_config.json here at the end
    export_half: bool = True  # store exported weights as float16 (half the bytes)
    resume: bool = False  # continue from <output_dir>/last.pt
    threads: int | None = None  # CPU threads (default: torch's choice)

    def validate(self) -> None:
        for field, valid in CHOICES.items():
            if getattr(self, field) not in valid:
                raise ValueError(f"--{field.replace('_', '-')} {getattr(self, field)!r} is not one of {list(valid)}")
        if self.epochs < 1 or self.batch_size < 1 or self.image_size < 32:
            raise ValueError("epochs and batch size must be >= 1 and image size >= 32")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_fraction == 0 and (self.temperature is None or self.select != "last"):
            raise ValueError("--val-fraction 0 (a refit on all of train) needs --select last and --temperature T: "
                             "with nothing held out, take the epoch count and T from a run that had a validation split")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"--temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.cutout <= 1.0 or not 0.0 < self.cutout_size <= 1.0:
            raise ValueError("--cutout must be in [0, 1] and --cutout-size in (0, 1]")
        if not 0.0 <= self.flip <= 1.0:
            raise ValueError(f"--flip must be in [0, 1], got {self.flip}")
        if not 0.0 <= self.neighbour_mix <= 1.0 or self.neighbour_k < 1:
            raise ValueError("--neighbour-mix must be in [0, 1] and --neighbour-k >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.dropout < 1.0 or self.mixup < 0 or self.ordinal < 0 or self.aux_nwbv < 0:
            raise ValueError("--dropout must be in [0, 1); --mixup, --ordinal and --aux-nwbv must be >= 0")
        if self.slices_per_subject < 0:
            raise ValueError(f"--slices-per-subject must be >= 0, got {self.slices_per_subject}")
        if self.val_buffer < 0:
            raise ValueError(f"--val-buffer must be >= 0, got {self.val_buffer}")
        if self.val_buffer > 0 and self.val_fraction == 0:
            raise ValueError("--val-buffer needs a validation split to keep away from (--val-fraction > 0)")
        if self.val_by_subject and self.val_fraction == 0:
            raise ValueError("--val-by-subject needs a validation split (--val-fraction > 0)")


def field_comments(cls) -> dict[str, str]:
    """The comment after each field of a dataclass's source: the one description of every option."""
    pattern = re.compile(r"^\s+(\w+):[^#\n]*#\s*(.+)$", re.MULTILINE)
    return dict(pattern.findall(inspect.getsource(cls)))


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.training.train", description=__doc__.split("\n\n")[0])
    comments = field_comments(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        text = (comments[field.name] + "; " if field.name in comments else "") + f"default: {default}"
        text = text.replace("%", "%%")
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
            continue
        kind = {"int": int, "float": float, "str": str}.get(str(field.type).split(" ")[0], str)
        if "None" in str(field.type):  # "int | None", "float | None", "str | None"
            kind = {"int": int, "float": float}.get(str(field.type).split(" ")[0], str)
        parser.add_argument(flag, type=kind, default=default, choices=CHOICES.get(field.name), help=text)
    return parser


# ---------------------------------------------------------------- distributed
# ---------------------------------------------------------------- phases
def load_data(cfg: TrainConfig, with_groups: bool = False):
    """Decode the train split once and carve the stratified validation split from it.

    Returns (train, validation) and, with with_groups, a third item: (train subject ids, validation subject
    ids) as arrays when the split is by subject (--val-by-subject), else None.
    """
    data = load_split("train", cfg.data_dir, limit=cfg.limit)
    groups = None
    if cfg.val_fraction == 0:  # a refit: everything trains, nothing is validated
        return (data, data.subset([])) + ((None,) if with_groups else ())
    split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    if cfg.val_by_subject:  # a validation brain has no slice in training: the figure holds for a new subject
        keys = slice_keys("train", cfg.data_dir).iloc[:len(data)]
        if list(keys.path) != list(data.ids):
            raise ValueError(f"{cfg.data_dir}: slice keys and decoded slices are out of step")
        subject_ids = subjects_for("train", keys.path, keys.sha256)
        keep, held = grouped_split(data.labels.numpy(), subject_ids, cfg.val_fraction, split_seed)
        groups = (subject_ids[keep], subject_ids[held])
    else:
        keep, held = stratified_split(data.labels, cfg.val_fraction, split_seed)
    train_set, val_set = data.subset(keep), data.subset(held)
    if cfg.val_buffer > 0 and groups is not None:
        raise ValueError("--val-buffer is for a split by slice; a split by subject (--val-by-subject) needs none")
    if cfg.val_buffer > 0:
        # Neighbouring slices of one brain are near-copies: without a buffer, most validation slices have one in
        # training and validation measures recognition of a brain already seen (see analysis.baseline).
        _, distance = nearest_neighbours(val_set.images, train_set.images, k=1)  # each train slice's nearest val slice
        train_set = train_set.subset(np.flatnonzero(distance[:, 0] >= cfg.val_buffer).tolist())
        if min(train_set.class_counts()) == 0:
            raise ValueError(f"--val-buffer {cfg.val_buffer} leaves a class with no train slices "
                             f"({train_set.class_counts()} in label order): use a smaller buffer")
    return (train_set, val_set) + ((groups,) if with_groups else ())


def class_weight_tensor(labels: torch.Tensor, mode: str) -> torch.Tensor | None:
    """Loss weights per class, scaled so that the average sample weight is 1."""
    if mode == "none":
        return None
    counts = torch.bincount(labels, minlength=NUM_CLASSES).clamp(min=1).double()
    w = (counts.sum() / counts) ** (0.5 if mode == "sqrt" else 1.0)
    w = w * counts.sum() / (w * counts).sum()
    return w.float()


def train_neighbours(data: SliceSet, k: int) -> torch.Tensor:
    """(N, k) indices of each train slice's nearest other slices of the same class (raw-pixel distance)."""
    k = max(1, min(k, len(data) - 1))
    idx, dist = nearest_neighbours(data.images, data.images, k, exclude_self=True,
                                   same_label=(data.labels, data.labels))
    idx, lonely = torch.from_numpy(idx), torch.from_numpy(~np.isfinite(dist))
    self_index = torch.arange(len(data))[:, None].expand_as(idx)
    return torch.where(lonely, self_index, idx)  # a class with too few slices blends with itself (no change)


def neighbour_blend(images: torch.Tensor, pool: torch.Tensor, partners: torch.Tensor, p: float,
                    generator: torch.Generator) -> torch.Tensor:
    """Blend each slice, with chance p, with one of its nearest same-class slices.

    images: uint8 (B, 1, H, W); pool: uint8 (N, 1, H, W) all train slices; partners: (B, k) indices
    into pool. The dataset holds neighbouring slices of the same brains, so a blend of a slice and
    its closest neighbour approximates the slice in between, and keeps its label. The slice keeps
    a weight of at least one half. Returns uint8 (B, 1, H, W).
    """
    b, k = partners.shape
    choice = partners[torch.arange(b), torch.randint(k, (b,), generator=generator)]
    weight = 1.0 - 0.5 * torch.rand(b, generator=generator)  # in (0.5, 1]
    weight = torch.where(torch.rand(b, generator=generator) < p, weight, torch.ones(b)).view(b, 1, 1, 1)
    mixed = weight * images.float() + (1.0 - weight) * pool[choice].float()
    return mixed.round_().clamp_(0, 255).to(torch.uint8)


def make_optimizer(net: nn.Module, cfg: TrainConfig, steps_per_epoch: int, extra: nn.Module | None = None):
    """The optimizer and its per-step LR schedule. Conv and linear weights get weight decay; BatchNorm and
    bias parameters (ndim <= 1) too unless --no-norm-bias-decay. `extra`: a training-only head trained alongside."""
    weights = list(net.parameters()) + (list(extra.parameters()) if extra is not None else [])
    params = [{"params": [p for p in weights if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for p in weights if p.ndim <= 1],
               "weight_decay": cfg.weight_decay if cfg.norm_bias_decay else 0.0}]
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    total_steps, warmup = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, cfg.lr_schedule))
    return optimizer, scheduler


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if step < warmup:
        return 0.01 + 0.99 * step / max(1, warmup)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    return 1.0


def uses_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast: always on CUDA under 'auto'; on CPU only when asked (fast with AVX512-BF16/AMX)."""
    return cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")


def autocast_for(cfg: TrainConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if uses_bf16(cfg, device) else nullcontext()


def training_batch(data: SliceSet, idx: torch.Tensor, cfg: TrainConfig, generator: torch.Generator,
                   neighbours: torch.Tensor | None = None, device=None) -> torch.Tensor:
    """The network input for train rows `idx`: neighbour blend, preprocessing, augmentation, cutout.

    Returns normalised float (B, 1, S, S) on `device`.
    """
    images = data.images[idx]  # uint8 (B, 1, 128, 128)
    if neighbours is not None and cfg.neighbour_mix > 0:
        images = neighbour_blend(images, data.images, neighbours[idx], cfg.neighbour_mix, generator)
    x = to_input(images, cfg.image_size)
    if device is not None:
        x = x.to(device, non_blocking=True)
    if cfg.augment:
        x = augment(x, generator)
    elif cfg.flip > 0:
        x = hflip(x, generator, p=cfg.flip)
    if cfg.mri_augment:
        x = mri_intensity(x, generator)
    if cfg.cutout > 0:
        x = cutout(x, generator, p=cfg.cutout, size=cfg.cutout_size)
    return x


def epoch_order(n: int, cfg: TrainConfig, epoch: int, groups: np.ndarray | None) -> torch.Tensor:
    """Row order of one epoch: a seeded permutation of every row, or k rows of each subject (--slices-per-subject)."""
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    if cfg.slices_per_subject > 0:
        if groups is None:
            raise ValueError("--slices-per-subject needs the subject of every train slice "
                             "(--val-by-subject, or the cross-validation, which knows them)")
        return subject_epoch_order(groups, cfg.slices_per_subject, generator)
    return torch.randperm(n, generator=generator)


def train_one_epoch(net, optimizer, scheduler, data: SliceSet, cfg: TrainConfig, epoch: int, device,
                    loss_weight, rank: int = 0, world: int = 1, show_progress: bool = True, ema=None,
                    neighbours: torch.Tensor | None = None, groups: np.ndarray | None = None,
                    aux: dict | None = None) -> float:
    """One pass over this process's shard of `data`. Returns the mean training loss.

    groups: (N,) subject id of each row (needed by --slices-per-subject); aux: {"head": Linear(512, K),
    "targets": (N, K), "known": (N, K)} for the auxiliary atrophy regression (--aux-nwbv).
    """
    net.train()
    order = epoch_order(len(data), cfg, epoch, groups)
    per_rank = len(order) // world
    order = order[rank * per_rank:(rank + 1) * per_rank]  # equal shards keep DDP in step
    aug_gen = torch.Generator().manual_seed(cfg.seed * 7919 + epoch * 31 + rank)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    total, seen = 0.0, 0
    batches = range(0, len(order) - cfg.batch_size + 1 if len(order) >= cfg.batch_size else 1, cfg.batch_size)
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show_progress, leave=False,
               file=sys.stderr, mininterval=2.0)
    plain = net.module if hasattr(net, "module") else net
    with FeatureTap(plain, cfg.dropout) as tap:
        for start in bar:
            idx = order[start:start + cfg.batch_size]
            x = training_batch(data, idx, cfg, aug_gen, neighbours, device).contiguous(memory_format=memory_format)
            y = data.labels[idx].to(device, non_blocking=True)
            target = F.one_hot(y, NUM_CLASSES).float()
            partner, lam = None, 1.0
            if cfg.mixup > 0:
                x, target, partner, lam = mixup(x, target, cfg.mixup, aug_gen)
                lam = float(lam)
            with autocast_for(cfg, device):
                logits = net(x)
            loss = soft_cross_entropy(logits, target, loss_weight, cfg.label_smoothing)
            if cfg.ordinal > 0:
                loss = loss + cfg.ordinal * ordinal_loss(logits, target if partner is not None else y)
            if aux is not None and cfg.aux_nwbv > 0:
                pred = aux["head"](tap.features.float())
                t, k = aux["targets"][idx].to(device), aux["known"][idx].to(device)
                loss_aux = masked_mse(pred, t, k)
                if partner is not None:
                    loss_aux = lam * loss_aux + (1 - lam) * masked_mse(pred, t[partner], k[partner])
                loss = loss + cfg.aux_nwbv * loss_aux
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(plain)
            total += loss.item() * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total / seen:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False)
    return total / max(1, seen)


def val_metrics(logits: torch.Tensor, labels: torch.Tensor, groups: np.ndarray | None = None) -> dict[str, float]:
    """Validation loss (cross-entropy of the raw logits), accuracy and macro-F1, by `evaluate.compute_metrics`;
    with the subject of each slice (groups (N,)), also the subject-level any-dementia AUC and balanced accuracy
    of the subjects' mean probabilities."""
    probs = torch.softmax(logits.double(), 1).numpy()
    m = compute_metrics(labels.numpy(), probs, n_bootstrap=0)
    row = {"val_loss": m["log_loss"], "val_acc": m["accuracy"], "val_macro_f1": m["macro_f1"]}
    if groups is not None:
        _, subject_labels, subject_probs = subject_level(probs, labels.numpy(), groups)
        s = compute_metrics(subject_labels, subject_probs, n_bootstrap=0)
        row.update(val_subject_auc=s["any_dementia_auc"], val_subject_bacc=s["balanced_accuracy"])
    return row


def selection_score(row: dict, select_on: str) -> tuple[float, float]:
    """The figure an epoch is chosen by (higher is better), ties broken by the lower validation loss."""
    key = {"macro_f1": "val_macro_f1", "subject_auc": "val_subject_auc", "subject_bacc": "val_subject_bacc"}[select_on]
    value = row.get(key)
    return (float("-inf") if value is None or np.isnan(value) else value, -row["val_loss"])


def main(cfg: TrainConfig, sets: tuple[SliceSet, SliceSet] | None = None,
         groups: tuple[np.ndarray, np.ndarray] | None = None, on_epoch=None) -> dict:
    """Train, validate each epoch, select, calibrate and (if asked) export.

    sets: (train, validation) to use instead of `load_data(cfg)`'s, as the subject-grouped cross-validation
    passes; groups: the subject id of every row of each (needed by --slices-per-subject, --aux-nwbv and the
    subject-level --select-on figures); on_epoch(row): called with each epoch's log row (experiment tracking).
    Returns {"history", "best"} and, on the main process, "temperature", "selected" and "net" (the selected
    weights, in eval mode).
    """
    cfg.validate()
    rank, world, device = init_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.output_dir)
    is_main = rank == 0
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    log = (lambda *a: print(*a, flush=True)) if is_main else (lambda *a: None)

    if sets is None:
        train_set, val_set, groups = load_data(cfg, with_groups=True)
    else:
        train_set, val_set = sets
    train_groups, val_groups = groups if groups is not None else (None, None)
    if cfg.select_on != "macro_f1" and val_groups is None:
        raise ValueError(f"--select-on {cfg.select_on} needs validation by subject (--val-by-subject)")
    data_sha256 = fingerprint(cfg.data_dir)
    log(f"train {len(train_set)} {train_set.class_counts()} | val {len(val_set)} {val_set.class_counts()} "
        f"| device {device} x{world} | {cfg.image_size}px batch {cfg.batch_size}")
    net = build_model().to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    aux = make_aux(cfg, train_groups, device, log)
    rows_per_epoch = len(train_set) if cfg.slices_per_subject == 0 else len(epoch_order(len(train_set), cfg, 0, train_groups))
    optimizer, scheduler = make_optimizer(net, cfg, steps_per_epoch=max(1, (rows_per_epoch // world) // cfg.batch_size),
                                          extra=aux["head"] if aux else None)
    start_epoch, history, best = 0, [], None
    if cfg.resume and (out_dir / "last.pt").is_file():
        state = ckpt.load_training_checkpoint(out_dir / "last.pt", net, optimizer, scheduler)
        if aux is not None and (out_dir / "aux_head.pt").is_file():
            aux["head"].load_state_dict(torch.load(out_dir / "aux_head.pt"))
        check_resumable(cfg, state, data_sha256, out_dir / "last.pt")
        start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]
        log(f"resumed from {out_dir / 'last.pt'} after epoch {start_epoch}")
    model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else net
    ema = make_ema(net, cfg.ema_decay)
    if ema is not None and start_epoch and "ema" in state:
        ema.load_state_dict(state["ema"])
    neighbours = None
    if cfg.neighbour_mix > 0:
        t0 = time.perf_counter()
        neighbours = train_neighbours(train_set, cfg.neighbour_k)
        log(f"nearest same-class neighbours of {len(train_set)} slices in {time.perf_counter() - t0:.1f} s")
    judged = ema.module if ema is not None else net  # the weights that are validated, selected and exported
    loss_weight = class_weight_tensor(train_set.labels, cfg.class_weights)
    loss_weight = loss_weight.to(device) if loss_weight is not None else None

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        train_loss = train_one_epoch(model, optimizer, scheduler, train_set, cfg, epoch, device, loss_weight,
                                     rank, world, show_progress=is_main, ema=ema,
                                     neighbours=neighbours, groups=train_groups, aux=aux)
        seconds = time.perf_counter() - t0
        if is_main:
            row = {"epoch": epoch + 1, "train_loss": train_loss, **validate(judged, val_set, cfg, device, val_groups),
                   "lr": scheduler.get_last_lr()[0], "seconds": seconds}
            if ema is not None and len(val_set):  # the raw weights too, so the average's effect can be read off
                row["raw_val_acc"] = validate(net, val_set, cfg, device)["val_acc"]
            history.append(row)
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            score = selection_score(row, cfg.select_on) if len(val_set) else None  # a refit ships its last
            if score is not None and (best is None or score > tuple(best["score"])):
                best = {"epoch": epoch + 1, "score": list(score)}
                ckpt.save_training_checkpoint(out_dir / "best.pt", net, optimizer, scheduler, epoch, cfg, history, best,
                                              ema=ema, data_sha256=data_sha256)
            ckpt.save_training_checkpoint(out_dir / "last.pt", net, optimizer, scheduler, epoch, cfg, history, best,
                                          ema=ema, data_sha256=data_sha256)
            if aux is not None:
                torch.save(aux["head"].state_dict(), out_dir / "aux_head.pt")
            write_log(out_dir / "log.csv", history)
            if on_epoch is not None:
                on_epoch(row)
        if world > 1:
            dist.barrier()

    if world > 1:
        in_sync = ranks_in_sync(net, world)
        log(f"weights identical on {world} ranks" if in_sync else f"WARNING: weights differ between the {world} ranks")
    result = {"history": history, "best": best}
    if is_main:
        result.update(finish(net, cfg, history, best, val_set, data_sha256, device, log))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def validate(net: nn.Module, val_set: SliceSet, cfg: TrainConfig, device: torch.device,
             groups: np.ndarray | None = None) -> dict[str, float]:
    """Validation loss, accuracy and macro-F1 of `net`, or {} for a refit (no validation split).

    In bf16 when training is: half the time of float32 on this CPU, and the same arg-max on 512 slices with
    the shipped weights. The calibration temperature is still fitted on float32 logits (`finish`).
    """
    if not len(val_set):
        return {}
    logits = predict_logits(net, val_set.images, cfg.image_size, device, cfg.eval_batch_size,
                            amp=uses_bf16(cfg, device), channels_last=cfg.channels_last)
    return val_metrics(logits, val_set.labels, groups)


def finish(net: nn.Module, cfg: TrainConfig, history: list[dict], best: dict | None, val_set: SliceSet,
           data_sha256: dict, device: torch.device, log) -> dict:
    """Load the selected epoch's shipped weights, calibrate them, and export them if asked."""
    out_dir = Path(cfg.output_dir)
    state = ckpt.load_training_checkpoint(out_dir / ("best.pt" if cfg.select == "best" else "last.pt"), net)
    net.load_state_dict(ckpt.weights_to_ship(state))  # the averaged weights, if kept, were the ones validated
    if cfg.temperature is not None:
        temperature = cfg.temperature
    else:
        logits = predict_logits(net, val_set.images, cfg.image_size, device, cfg.eval_batch_size,
                                channels_last=cfg.channels_last)
        temperature = fit_temperature(logits, val_set.labels)
    chosen = best["epoch"] if cfg.select == "best" else history[-1]["epoch"]
    chosen_row = next(r for r in history if r["epoch"] == chosen)
    log(f"selected epoch {chosen} ({cfg.select}); temperature {temperature:.3f}")
    if cfg.export_dir:
        paths = ckpt.export_weights(net, Path(cfg.export_dir), cfg=dataclasses.asdict(cfg), temperature=temperature,
                                    data_fingerprint=data_sha256, selected=chosen_row, half=cfg.export_half)
        write_log(Path(cfg.export_dir) / "train_log.csv", history)
        if len(val_set):  # this run validated itself: a selection log left by an earlier refit would mislead
            (Path(cfg.export_dir) / SELECTION_LOG_PATH.name).unlink(missing_ok=True)
        log(f"exported {paths['weights']} sha256 {paths['sha256'][:12]}")
    return {"temperature": temperature, "selected": chosen_row, "net": net.eval()}


def ranks_in_sync(net: nn.Module, world: int) -> bool:
    """Whether every process ends with the same parameters (DDP's all-reduce should guarantee it).

    Compares a per-tensor sum and absolute sum in float64. BatchNorm running statistics are left out:
    each rank updates them on its own shard, and DDP re-broadcasts rank 0's before every forward pass.
    """
    params = [p.detach() for p in net.parameters()]
    signature = torch.stack([torch.stack([p.double().sum(), p.double().abs().sum()]) for p in params])
    gathered = [torch.zeros_like(signature) for _ in range(world)]
    dist.all_gather(gathered, signature)
    return all(torch.equal(g, gathered[0]) for g in gathered)


# Options that may change between a run and its resumption: where things go and how fast, not what is trained.
# --select and --temperature only act after the last epoch.
def check_resumable(cfg: TrainConfig, state: dict, data_sha256: dict, path: Path) -> None:
    """Refuse to resume a checkpoint `state` under different training options (the LR schedule, for one,
    would jump) or on other train data."""
    if state.get("data_sha256", {}).get("train") not in (None, data_sha256.get("train")):  # test is not read
        raise ValueError(f"{path} was trained on other data files than {cfg.data_dir}; "
                         "resume on the same data or start a new --output-dir")
    free = RESUME_FREE | ({"epochs"} if cfg.lr_schedule == "constant" else set())  # a constant LR can be extended
    saved = {"norm_bias_decay": False, **state.get("config", {})}  # checkpoints from before it never decayed them
    changed = [f"--{k.replace('_', '-')} {saved[k]} -> {v}" for k, v in dataclasses.asdict(cfg).items()
               if k in saved and k not in free and saved[k] != v]
    if changed:
        raise ValueError(f"{path} was trained with other options ({'; '.join(changed)}); resume with the same "
                         "options or start a new --output-dir")


def make_aux(cfg: TrainConfig, groups: np.ndarray | None, device: torch.device, log) -> dict | None:
    """The auxiliary atrophy head (Linear(512, 1) on the pooled features) and its per-slice targets: the
    subject's nWBV, standardised on the training subjects, from the subject table. None without --aux-nwbv."""
    if cfg.aux_nwbv <= 0:
        return None
    if groups is None:
        raise ValueError("--aux-nwbv needs the subject of every train slice (--val-by-subject or the cross-validation)")
    if not SUBJECT_TABLE_PATH.is_file():
        raise FileNotFoundError(f"--aux-nwbv reads nWBV from {SUBJECT_TABLE_PATH}, which is missing "
                                "(python -m model.subjects writes it)")
    targets, known, stats = atrophy_targets(groups, pd.read_csv(SUBJECT_TABLE_PATH), ("nwbv",))
    log(f"auxiliary nWBV target for {int(known.any(1).sum())} of {len(groups)} train slices "
        f"(mean {stats['nwbv'][0]:.3f}, sd {stats['nwbv'][1]:.3f})")
    torch.manual_seed(cfg.seed + 1)
    return {"head": nn.Linear(512, 1).to(device), "targets": targets, "known": known}


def make_ema(net: nn.Module, decay: float):
    """An exponential moving average of the weights (BatchNorm statistics included), or None."""
    if not decay:
        return None
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def write_log(path: Path, history: list[dict]) -> None:
    if not history:
        return
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def cli(argv: list[str] | None = None) -> int:
    """The command line: the recipe's flags (`get_args_parser`) plus where the run is tracked."""
    parser = get_args_parser()
    tracking = parser.add_argument_group("tracking")
    tracking.add_argument("--track", action=argparse.BooleanOptionalAction, default=True,
                          help="record the run in MLflow ($MLFLOW_TRACKING_URI, else runs/mlflow.db); default: True")
    tracking.add_argument("--run-name", default=None, help="the MLflow run's name; default: the --output-dir's name")
    options = vars(parser.parse_args(argv))
    track, run_name = options.pop("track"), options.pop("run_name")
    cfg = TrainConfig(**options)
    tracker = None
    try:
        cfg.validate()
        if track and int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one run, from the main process
            tracker = start_tracking(cfg, run_name)
        result = main(cfg, on_epoch=tracker.epoch_logger("") if tracker is not None else None)
    except (ValueError, FileNotFoundError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if tracker is not None:
            tracker.finish(ok=False)
        return 2
    if tracker is not None and "selected" in result:
        finish_tracking(tracker, cfg, result)
    return 0


def start_tracking(cfg: TrainConfig, run_name: str | None):
    """The MLflow run of one training; a resumed training (--resume, same --output-dir) continues its run."""
    from model.training.tracking import Tracker  # MLflow takes ~1.5 s to import: only when a run is tracked

    out_dir = Path(cfg.output_dir)
    tracker = Tracker(run_name or out_dir.name, dataclasses.asdict(cfg),
                      tags={"kind": "train", "output_dir": str(out_dir)},
                      resume_file=out_dir / "mlflow_run_id" if cfg.resume else None)
    if not cfg.resume:  # a fresh run in a used folder must not be continued by a later --resume of another
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "mlflow_run_id").write_text(tracker.run_id + "\n")
    print(f"tracking in MLflow run {tracker.run_id} ({tracker.uri})", flush=True)
    return tracker


def finish_tracking(tracker, cfg: TrainConfig, result: dict) -> None:
    """The selected epoch's figures and temperature, the epoch log and (when exported) the shipped config."""
    tracker.log_metrics({"temperature": result["temperature"],
                         **{f"selected_{k}": v for k, v in result["selected"].items()}})
    tracker.log_artifact(Path(cfg.output_dir) / "log.csv")
    if cfg.export_dir:
        tracker.log_artifact(Path(cfg.export_dir) / "model_config.json")
    tracker.finish()


if __name__ == "__main__":
    raise SystemExit(cli())
