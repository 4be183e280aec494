"""Compare validated runs made on the same validation split: paired errors and their ensembles.

Two networks that differ by a few errors may differ by chance. The exact McNemar test asks
whether the slices only one of them gets wrong split more unevenly than a fair coin would.
It compares these trained networks, not their recipes: a second seed of a recipe is another
network. Slices of one brain are not independent, so read the p-value as a guide, not a proof.
An ensemble is the mean of the runs' temperature-calibrated probabilities; it is compared
with the best single run the same way.

    python -m analysis.compare_runs runs/buffer20 runs/buffer20_plain runs/buffer20_flip --out assets/run_comparison.json

Each run's temperature is fitted on the slices it is scored on, so the ensemble figures are
in-sample for one scalar per run (the arg-max of a single run does not depend on it). The
runs must share their validation slices, data files and `--val-buffer`: the command checks
and names what differs.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch


def mcnemar(wrong_a, wrong_b) -> dict:
    """Exact McNemar test on paired per-slice errors (boolean arrays of one shape)."""
    from scipy.stats import binomtest

    wrong_a, wrong_b = np.asarray(wrong_a, dtype=bool), np.asarray(wrong_b, dtype=bool)
    if wrong_a.shape != wrong_b.shape or wrong_a.ndim != 1:
        raise ValueError(f"paired errors need two 1-D arrays of one length, got shapes {wrong_a.shape} "
                         f"and {wrong_b.shape}")
    only_a, only_b = int((wrong_a & ~wrong_b).sum()), int((~wrong_a & wrong_b).sum())
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(binomtest(min(only_a, only_b), discordant, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "both": int((wrong_a & wrong_b).sum()), "p_value": p}


def score(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """analysis.baseline.score of the arg-max of (N, C) probabilities, with per-class "recalled" and "predicted"."""
    from model.qualify.evaluate import predicted_counts, recalled_counts
    from analysis.baseline import score as label_score

    y, pred = labels.numpy(), probs.argmax(1).numpy()
    return {**label_score(y, pred), "recalled": recalled_counts(y, pred),
            "predicted": predicted_counts(pred)}


def ensembles(calibrated: dict[str, torch.Tensor], labels: torch.Tensor) -> list[dict]:
    """`score` of every run alone and of every combination of them (mean of calibrated probabilities)."""
    rows = []
    for k in range(1, len(calibrated) + 1):
        for combo in itertools.combinations(calibrated, k):
            mean = torch.stack([calibrated[name] for name in combo]).mean(0)
            rows.append({"runs": list(combo), **score(mean, labels)})
    return rows


def split_mismatch(first: dict, other: dict) -> str | None:
    """The keys on which two runs' validation differs, comma-joined, or None if they share one split.
    Each dict holds "val_ids", "data_sha256" and "val_buffer"."""
    differ = [key for key, what in (("val_ids", "validation slices"), ("data_sha256", "data files"),
                                    ("val_buffer", "--val-buffer")) if first[key] != other[key]]
    return ", ".join(differ) if differ else None


def compare(run_dirs: list[Path], device: str = "auto") -> dict:
    """Load each run's validation logits, check that they share one split, and score pairs and ensembles."""
    from model.core.calibration import fit_temperature
    from analysis.prior_shift import validation_logits

    resolved = [Path(r).resolve() for r in run_dirs]
    if len(run_dirs) < 2 or len(set(resolved)) != len(resolved):
        raise ValueError(f"give two or more different runs, got {', '.join(map(str, run_dirs))}")
    calibrated, records, labels = {}, {}, None
    for run in run_dirs:
        logits, run_labels, cfg, facts, _, val_set = validation_logits(run, device)
        record = {"val_ids": val_set.ids, "data_sha256": facts["data_sha256"], "val_buffer": cfg.get("val_buffer", 0.0)}
        if records:
            first = next(iter(records))
            differ = split_mismatch(records[first], record)
            if differ:
                raise ValueError(f"{run} and {first} were not validated on the same split: {differ} differ")
        temperature = fit_temperature(logits, run_labels)
        calibrated[str(run)] = torch.softmax(logits.float() / temperature, 1)
        records[str(run)] = {**record, "epoch": facts["epoch"], "checkpoint": facts["checkpoint"],
                             "temperature": temperature, "config": cfg}
        labels = run_labels
    names = list(calibrated)
    pairs = [{"a": a, "b": b, **mcnemar(calibrated[a].argmax(1) != labels, calibrated[b].argmax(1) != labels)}
             for a, b in itertools.combinations(names, 2)]
    rows = ensembles(calibrated, labels)
    best = min((r for r in rows if len(r["runs"]) == 1), key=lambda r: r["errors"])["runs"][0]
    everything = torch.stack(list(calibrated.values())).mean(0)
    ensemble_vs_best = {"a": " + ".join(names), "b": best,
                        **mcnemar(everything.argmax(1) != labels, calibrated[best].argmax(1) != labels)}
    first = records[names[0]]
    return {"val_slices": len(labels), "val_buffer": first["val_buffer"], "data_sha256": first["data_sha256"],
            "runs": {name: {k: v for k, v in r.items() if k not in ("val_ids", "data_sha256")}
                     for name, r in records.items()},
            "temperature_note": "each run's temperature is fitted on these validation slices (ensembles in-sample)",
            "pairs": pairs, "ensemble_vs_best_single": ensemble_vs_best, "scores": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.compare_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", type=Path, nargs="+", help="two or more validated model.training.train output dirs")
    parser.add_argument("--out", type=Path, default=None, help="also write the comparison as JSON; default: none")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N; default: auto")
    args = parser.parse_args(argv)
    try:
        result = compare(args.run_dirs, args.device)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # ModelLoadError is a RuntimeError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result['val_slices']} validation slices (val_buffer {result['val_buffer']:g})")
    for t in [*result["pairs"], result["ensemble_vs_best_single"]]:
        print(f"  {t['a']} vs {t['b']}: wrong only in the first {t['only_a']}, only in the second {t['only_b']}, "
              f"in both {t['both']}; exact McNemar p = {t['p_value']:.3f}")
    print("scores (ensembles: mean of calibrated probabilities; temperatures fitted on these slices):")
    for row in result["scores"]:
        print(f"  {' + '.join(row['runs'])}: errors {row['errors']}  accuracy {row['accuracy']:.4f}  "
              f"macro-F1 {row['macro_f1']:.4f}  Moderate recalled {row['recalled']['Moderate_Demented']} "
              f"(predicted {row['predicted']['Moderate_Demented']})")
    if args.out:
        try:
            args.out.write_text(json.dumps(result, indent=1) + "\n")
        except OSError as exc:
            print(f"error: cannot write: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
