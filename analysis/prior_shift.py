"""Prior shift (logit adjustment, Menon et al., 2021) for the rare stages, chosen on validation.

A network trained on a 50 / 35 / 14 / 1% class mix learns that mix as a prior: on a slice
whose evidence is ambiguous, the 1% class loses. Logit adjustment divides that prior out,
partly or wholly:

    p_adjusted ∝ p_calibrated · π^(-tau)        (π: class frequencies of the slices trained on)

tau = 0 leaves the calibrated probabilities alone. With an unweighted loss the network learns
π itself and tau = 1 scores as if the classes were balanced; with `--class-weights sqrt` (the
shipped recipe) it learns about √π, so tau = 0.5 already balances and more over-corrects. It
only moves a decision where the network is unsure; a prediction at 0.999 stays.

`python -m analysis.prior_shift RUN_DIR` reloads a validated run (the checkpoint it selected,
`best.pt` or `last.pt`, and its own validation split, rebuilt from the run's config), fits
the temperature there, scores every tau of the grid and picks the one with the best
validation macro-F1 (ties: the smaller tau). Nothing in this code applies a shift at
inference: the sweep is a measurement.
Use it on a run made with `--val-buffer`, whose validation slices have no near-copy in
training: on an ordinary split almost every validation slice has one, the network is sure of
it, and no tau changes anything.

Measured for the shipped recipe (assets/buffered_validation.json): tau 0 wins. All 5
Moderate validation slices are already recalled without a shift, so that split cannot show a
recall gain; every shift it tried cost precision elsewhere.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from model.core.constants import NUM_CLASSES
from model.core.dataset import SliceSet

GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def class_priors(counts) -> list[float]:
    """Class frequencies from per-class counts, in label order."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (NUM_CLASSES,) or (counts <= 0).any():
        raise ValueError(f"need a positive count for each of the {NUM_CLASSES} classes, got {counts.tolist()}")
    return (counts / counts.sum()).tolist()


def logit_offsets(priors, tau: float) -> torch.Tensor:
    """What prior shift adds to the calibrated logits: -tau * log(prior), (C,)."""
    return -float(tau) * torch.log(torch.as_tensor(priors, dtype=torch.float64)).float()


def shifted_probabilities(logits: torch.Tensor, temperature: float, priors, tau: float) -> torch.Tensor:
    """softmax(logits / T - tau * log(prior))."""
    return torch.softmax(logits.float() / temperature + logit_offsets(priors, tau), dim=1)


def sweep(logits: torch.Tensor, labels: torch.Tensor, temperature: float, priors,
          grid=GRID) -> list[dict]:
    """Validation figures for each tau: accuracy, macro-F1, errors, per-class recall and how many slices were
    predicted as each class. tau 0 (no shift) is always scored, first. The ECE is in-sample when
    `temperature` was fitted on these logits."""
    from model.qualify.evaluate import compute_metrics

    y = labels.numpy()
    rows = []
    for tau in sorted({0.0, *(float(t) for t in grid)}):
        probs = shifted_probabilities(logits, temperature, priors, tau)
        m = compute_metrics(y, probs.double().numpy(), n_bootstrap=0)
        rows.append({
            "tau": float(tau), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "errors": int((probs.argmax(1).numpy() != y).sum()), "ece": m["ece"],
            "recall": {name: e["recall"] for name, e in m["per_class"].items()},
            "recalled": {name: e["recalled"] for name, e in m["per_class"].items()},
            "predicted": {name: e["predicted"] for name, e in m["per_class"].items()},
        })
    return rows


def choose(rows: list[dict]) -> float:
    """The tau with the highest validation macro-F1; on a tie, the smallest (the least change)."""
    best = max(rows, key=lambda r: (round(r["macro_f1"], 12), -r["tau"]))
    return best["tau"]


class ValidationRun(NamedTuple):
    """A validated run rescored on its own validation split (`validation_logits`)."""
    logits: torch.Tensor   # (N, C) float32, from the checkpoint the run selected
    labels: torch.Tensor   # (N,)
    config: dict           # the run's TrainConfig as a dict
    facts: dict            # for the record: "checkpoint", "epoch", "data_sha256", and class counts "trained_on"
    #                        (what the run trained on: the prior) and "validation"
    train_set: SliceSet    # the slices the run trained on (after any --val-buffer)
    val_set: SliceSet      # its validation slices


def validation_logits(run_dir: Path, device: str = "auto") -> ValidationRun:
    """A run's own validation split, rebuilt from its config, and its logits there from the checkpoint the run
    selected (`best.pt` for --select best, else `last.pt`)."""
    from model.core import checkpoint as ckpt
    from model.core.network import build_model, pick_device
    from model.core.inference import predict_logits
    from model.training.train import TrainConfig, load_data

    last = Path(run_dir) / "last.pt"
    if not last.is_file():
        raise FileNotFoundError(f"{last}: no training checkpoint (run model.training.train with --output-dir {run_dir})")
    net = build_model()
    state = ckpt.load_training_checkpoint(last, net)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in state.get("config", {}).items() if k in known})
    if cfg.val_fraction == 0:
        raise ValueError(f"{last} is a refit (--val-fraction 0): it has no validation split to choose on")
    path = last
    if cfg.select == "best":  # score the epoch the run selected, as its export did
        path = Path(run_dir) / "best.pt"
        state = ckpt.load_training_checkpoint(path, net)
    net.load_state_dict(ckpt.weights_to_ship(state))
    train_set, val_set = load_data(cfg)
    facts = {"checkpoint": str(path), "epoch": state["epoch"] + 1, "data_sha256": state.get("data_sha256", {}),
             "class_counts": {"trained_on": train_set.class_counts(), "validation": val_set.class_counts()}}
    device_ = pick_device(device)
    logits = predict_logits(net.to(device_), val_set.images, cfg.image_size, device_, cfg.eval_batch_size)
    return ValidationRun(logits, val_set.labels, dataclasses.asdict(cfg), facts, train_set, val_set)


def main(argv: list[str] | None = None) -> int:
    from analysis.baseline import lookup_score
    from model.core.calibration import fit_temperature

    parser = argparse.ArgumentParser(prog="python -m analysis.prior_shift", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="output dir of a validated model.training.train run (needs last.pt)")
    parser.add_argument("--grid", type=float, nargs="+", default=list(GRID),
                        help=f"taus to try, 0 always included; default: {' '.join(f'{t:g}' for t in GRID)}")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the sweep as JSON; default: RUN_DIR/prior_shift.json")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N; default: auto")
    args = parser.parse_args(argv)
    try:
        if any(t < 0 for t in args.grid):
            raise ValueError("--grid: tau must be >= 0")
        run = validation_logits(args.run_dir, args.device)
        logits, labels, cfg, facts = run.logits, run.labels, run.config, run.facts
        temperature = fit_temperature(logits, labels)
        priors = class_priors(facts["class_counts"]["trained_on"])
        rows = sweep(logits, labels, temperature, priors, args.grid)
        tau = choose(rows)
        lookup = lookup_score(run.train_set, run.val_set)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # ModelLoadError is a RuntimeError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.run_dir}: {len(labels)} validation slices, val_buffer {cfg.get('val_buffer', 0)}, "
          f"temperature {temperature:.4f}, priors of the slices trained on {[round(p, 4) for p in priors]}")
    for r in rows:
        print(f"  tau {r['tau']:.2f}: accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  "
              f"errors {r['errors']:3d}  recalled {r['recalled']}  predicted {r['predicted']}")
    print(f"chosen tau {tau} (highest validation macro-F1; ties -> smaller)")
    print(f"raw-pixel nearest-neighbour lookup on the same split: accuracy {lookup['accuracy']:.4f}  "
          f"macro-F1 {lookup['macro_f1']:.4f}  errors {lookup['errors']}  recalled {lookup['recalled']}")
    summary = {"run_dir": str(args.run_dir), "val_slices": len(labels), "val_buffer": cfg.get("val_buffer", 0),
               **facts, "epochs": cfg["epochs"], "image_size": cfg["image_size"], "class_weights": cfg["class_weights"],
               "temperature": temperature, "temperature_note": "fitted on these validation slices: the ECE is in-sample",
               "class_priors": priors, "sweep": rows, "chosen_tau": tau, "lookup": lookup,
               "rule": "highest validation macro-F1; ties -> the smaller tau"}
    out = args.out or Path(args.run_dir) / "prior_shift.json"
    try:
        out.write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as exc:
        print(f"error: cannot write: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
