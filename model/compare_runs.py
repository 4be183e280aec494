"""Compare validated runs made on the same validation split: paired errors and their ensemble.

Two runs that differ by a few errors may differ by chance. The exact McNemar test asks
whether the slices only one run gets wrong split more unevenly than a fair coin would; the
ensemble (the mean of each run's temperature-calibrated probabilities) shows how much of
the error is the run's own rather than the recipe's.

    python -m model.compare_runs runs/buffer20 runs/buffer20_plain runs/buffer20_flip

Each run's temperature is fitted on the slices it is scored on, so the ensemble figures are
in-sample for one scalar per run; the McNemar counts use the raw arg-max and are not. The runs
must share their validation split (same data, seed, fraction and buffer): the command checks
that the labels agree slice for slice and refuses otherwise.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

from model.constants import CLASS_NAMES, NUM_CLASSES


def mcnemar(wrong_a, wrong_b) -> dict:
    """Exact McNemar test on paired per-slice errors (boolean arrays of one length)."""
    from scipy.stats import binomtest

    wrong_a, wrong_b = np.asarray(wrong_a, dtype=bool), np.asarray(wrong_b, dtype=bool)
    if wrong_a.shape != wrong_b.shape:
        raise ValueError(f"paired errors need one length, got {wrong_a.shape[0]} and {wrong_b.shape[0]}")
    only_a, only_b = int((wrong_a & ~wrong_b).sum()), int((~wrong_a & wrong_b).sum())
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(binomtest(min(only_a, only_b), discordant, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "both": int((wrong_a & wrong_b).sum()), "p_value": p}


def score(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """Errors, accuracy, macro-F1 and Moderate recalled / predicted for (N, C) probabilities."""
    from sklearn.metrics import f1_score

    y, pred = labels.numpy(), probs.argmax(1).numpy()
    moderate = CLASS_NAMES.index("Moderate_Demented")
    return {"errors": int((pred != y).sum()), "accuracy": float((pred == y).mean()),
            "macro_f1": float(f1_score(y, pred, labels=list(range(NUM_CLASSES)), average="macro", zero_division=0)),
            "moderate_recalled": f"{int(((pred == moderate) & (y == moderate)).sum())}/{int((y == moderate).sum())}",
            "predicted_moderate": int((pred == moderate).sum())}


def ensembles(calibrated: dict[str, torch.Tensor], labels: torch.Tensor) -> list[dict]:
    """`score` of every run alone and of every combination of them (mean of calibrated probabilities)."""
    rows = []
    for k in range(1, len(calibrated) + 1):
        for combo in itertools.combinations(calibrated, k):
            mean = torch.stack([calibrated[name] for name in combo]).mean(0)
            rows.append({"runs": list(combo), **score(mean, labels)})
    return rows


def main(argv: list[str] | None = None) -> int:
    from model.calibration import fit_temperature
    from model.prior_shift import validation_logits

    parser = argparse.ArgumentParser(prog="python -m model.compare_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", help="two or more validated model.train output dirs")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N; default: auto")
    args = parser.parse_args(argv)
    if len(args.run_dirs) < 2:
        print("error: give at least two runs to compare", file=sys.stderr)
        return 2
    calibrated, labels = {}, None
    try:
        for run in args.run_dirs:
            logits, run_labels, cfg, _ = validation_logits(run, args.device)
            if labels is not None and not torch.equal(labels, run_labels):
                raise ValueError(f"{run} was validated on other slices than {args.run_dirs[0]} "
                                 "(data, seed, --val-fraction and --val-buffer must match)")
            labels = run_labels
            calibrated[str(run)] = torch.softmax(logits.float() / fit_temperature(logits, run_labels), 1)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # ModelLoadError is a RuntimeError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = list(calibrated)
    print(f"{len(labels)} validation slices (val_buffer {cfg.get('val_buffer', 0)})")
    for a, b in itertools.combinations(names, 2):
        t = mcnemar(calibrated[a].argmax(1) != labels, calibrated[b].argmax(1) != labels)
        print(f"  {a} vs {b}: wrong only in the first {t['only_a']}, only in the second {t['only_b']}, "
              f"in both {t['both']}; exact McNemar p = {t['p_value']:.3f}")
    print("ensembles (mean of calibrated probabilities; temperatures fitted on these slices):")
    for row in ensembles(calibrated, labels):
        print(f"  {' + '.join(row['runs'])}: errors {row['errors']}  accuracy {row['accuracy']:.4f}  "
              f"macro-F1 {row['macro_f1']:.4f}  Moderate recalled {row['moderate_recalled']} "
              f"(predicted {row['predicted_moderate']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
