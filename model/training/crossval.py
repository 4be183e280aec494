"""Subject-grouped cross-validation: `python -m model.training.crossval --help`.

How well does the network stage a brain it has never seen? Every slice of both published
splits (6,400) is predicted by a network that never saw any slice of that subject:

* outer folds: scikit-learn's `StratifiedGroupKFold` over subjects (`assets/subjects.csv`),
  5 folds by default, seeded;
* inside each fold, an inner split that is also by subject (`model.training.data.grouped_split`)
  chooses the epoch; the fold's network then predicts its held-out subjects;
* the same folds score the floors (`model.training.floors`): the raw-pixel nearest-neighbour
  lookup, two PCA + logistic regression models on pixels, and a clinical logistic regression
  on age, sex, eTIV and nWBV, each paired with the network over the same subjects.

Probabilities are calibrated with one temperature fitted on out-of-fold logits: the
reported figures use a temperature fitted on the *other* folds (cross-fitted), the shipped
one is fitted on all of them. Figures come at slice and subject level (a subject's
probabilities averaged over its slices), with 95% intervals from a bootstrap over subjects.

Training flags after `--` go to `model.training.train` (the recipe), e.g.
`python -m model.training.crossval --folds 5 -- --image-size 128 --epochs 12 --optimizer adamw ...`.
Each fold checkpoints every epoch; a rerun resumes the unfinished fold and skips finished ones.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold

from model.core.calibration import expected_calibration_error, fit_temperature, reliability
from model.core.assets import read_model_config
from model.core.constants import (
    CLASS_NAMES,
    CROSSVAL_PATH,
    CROSSVAL_PREDICTIONS_PATH,
    NUM_CLASSES,
    SUBJECT_TABLE_PATH,
    SUBJECTS_PATH,
    default_data_dir,
)
from model.core.dataset import DatasetError, SliceSet, load_split_with_keys, read_subjects, subjects_for
from model.core.inference import predict_logits
from model.core.recipe import RESUME_FREE, recipe_differences
from model.qualify.evaluate import subject_predictions
from model.training import train
from model.training.data import grouped_split
from model.training.floors import (FLOORS, add_floors, error_confounds, floor_figures, level_figures,
                                   reference_subject_probs, summary)
from model.training.tracking import Tracker

NON = CLASS_NAMES.index("Non_Demented")


def folds_by_subject(labels: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number (N,) of each slice: stratified by label, every subject wholly in one fold."""
    fold = np.full(len(labels), -1)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        fold[held] = k
    return fold


def calibrated_out_of_fold(logits: np.ndarray, labels: np.ndarray, fold: np.ndarray) -> tuple[np.ndarray, list]:
    """Probabilities (N, C) where each fold's logits are scaled by a temperature fitted on the other folds'
    out-of-fold logits, so no slice helps calibrate its own probability. Returns (probs, temperatures)."""
    probs, temps = np.zeros_like(logits, dtype=np.float64), []
    for k in np.unique(fold):
        other = fold != k
        t = fit_temperature(torch.from_numpy(logits[other]), torch.from_numpy(labels[other]))
        probs[fold == k] = torch.softmax(torch.from_numpy(logits[fold == k]).double() / t, 1).numpy()
        temps.append(t)
    return probs, temps


# ---------------------------------------------------------------- running
def load_everything(data_dir, subjects_path=SUBJECTS_PATH) -> tuple[SliceSet, np.ndarray, list[str]]:
    """Both published splits as one SliceSet, each slice's subject id, and its split name."""
    table = read_subjects(subjects_path)
    parts, groups, splits = [], [], []
    for split in ("train", "test"):
        data, keys = load_split_with_keys(split, data_dir)
        parts.append(data)
        groups.append(subjects_for(split, keys.path, keys.sha256, table))
        splits += [split] * len(data)
    data = SliceSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                    parts[0].ids + parts[1].ids)
    return data, np.concatenate(groups), splits


def run_fold(k: int, data: SliceSet, groups: np.ndarray, fold: np.ndarray, cfg, inner_fraction: float,
             out_dir: Path, on_epoch=None) -> dict:
    """Train fold k (resuming if it was interrupted) and predict its held-out subjects. Writes fold<k>/oof.npz."""
    fold_dir = out_dir / f"fold{k}"
    done = fold_dir / "oof.npz"
    trainable = np.flatnonzero(fold != k)
    held = np.flatnonzero(fold == k)
    if done.is_file():
        saved = np.load(done)
        if not np.array_equal(saved["index"], held):  # another subject table or data order: folds would leak
            raise ValueError(f"{done} holds predictions for other slices than fold {k} now has; "
                             "use a new --output-dir")
        return {"index": saved["index"], "logits": saved["logits"], **json.loads((fold_dir / "fold.json").read_text())}
    keep, inner = grouped_split(data.labels.numpy()[trainable], groups[trainable], inner_fraction, cfg.seed + k)
    # --select last in the recipe keeps a fixed epoch count (the inner subjects are still predicted, for pooling)
    fold_cfg = dataclasses.replace(cfg, output_dir=str(fold_dir), export_dir=None, resume=True,
                                   val_fraction=inner_fraction, temperature=None)
    t0 = time.perf_counter()
    result = train.main(fold_cfg, sets=(data.subset(trainable[keep]), data.subset(trainable[inner])),
                        groups=(groups[trainable[keep]], groups[trainable[inner]]), on_epoch=on_epoch)
    net = result["net"]
    device = next(net.parameters()).device
    logits = predict_logits(net, data.images[held], cfg.image_size, device, cfg.eval_batch_size,
                                  channels_last=cfg.channels_last).numpy()
    # the inner subjects' predictions by the selected network: what a pooling rule may be learned on
    inner_logits = predict_logits(net, data.images[trainable[inner]], cfg.image_size, device, cfg.eval_batch_size,
                                  channels_last=cfg.channels_last).numpy()
    np.savez(fold_dir / "inner.npz", index=trainable[inner], logits=inner_logits)
    info = {"fold": k, "held_subjects": int(len(set(groups[held]))), "held_slices": int(len(held)),
            "train_subjects": int(len(set(groups[trainable[keep]]))), "inner_subjects": int(len(set(groups[trainable[inner]]))),
            "selected_epoch": result["selected"]["epoch"], "inner_val_macro_f1": result["selected"].get("val_macro_f1"),
            "seconds": round(time.perf_counter() - t0, 1)}
    (fold_dir / "fold.json").write_text(json.dumps(info, indent=1) + "\n")  # before oof.npz, which marks done
    np.savez(done.with_suffix(".tmp.npz"), index=held, logits=logits)
    done.with_suffix(".tmp.npz").replace(done)
    return {"index": held, "logits": logits, **info}


def evaluate_out_of_fold(data: SliceSet, groups: np.ndarray, splits: list[str], fold: np.ndarray,
                         logits: np.ndarray, subject_table: pd.DataFrame | None, n_bootstrap: int,
                         positions: np.ndarray | None = None, reference: np.ndarray | None = None
                         ) -> tuple[dict, pd.DataFrame]:
    """Every figure of the network and the floors, paired differences against each, and the per-slice
    out-of-fold table. reference: slice probabilities (N, C) of an earlier recipe on the same folds
    (`--compare-to`), compared by subject like a floor."""
    labels = data.labels.numpy()
    probs, temps = calibrated_out_of_fold(logits, labels, fold)
    shipped_t = fit_temperature(torch.from_numpy(logits), torch.from_numpy(labels))
    raw = torch.softmax(torch.from_numpy(logits).double(), 1).numpy()
    result = {"network": level_figures(probs, labels, groups, n_bootstrap)}
    result.update(floor_figures(data, groups, fold, probs, subject_table, n_bootstrap, positions, reference))
    result["calibration"] = {
        "temperature": shipped_t, "cross_fitted_temperatures": temps,
        "ece_before": expected_calibration_error(raw, labels), "ece_after": expected_calibration_error(probs, labels),
        "reliability_before": reliability(raw, labels), "reliability_after": reliability(probs, labels)}
    table = pd.DataFrame({"split": splits, "id": data.ids, "subject": groups, "fold": fold,
                          "true_label": [CLASS_NAMES[v] for v in labels]})
    for c, name in enumerate(CLASS_NAMES):
        table[f"p_{name}"] = np.round(probs[:, c], 6)
    table["prediction"] = [CLASS_NAMES[v] for v in probs.argmax(1)]
    table["correct"] = table.prediction == table.true_label
    if subject_table is not None and "age" in subject_table.columns:
        result["error_confounds"] = error_confounds(subject_predictions(table, subject_table))
    return result, table


def cross_validate(data: SliceSet, groups: np.ndarray, cfg, n_folds: int, seed: int, inner_fraction: float,
                   out_dir: Path, only_fold: int | None = None, tracker=None) -> tuple[np.ndarray, np.ndarray,
                                                                                       list[dict]]:
    """Train every fold (or `only_fold`) and collect out-of-fold logits.

    Returns (fold of each slice (N,), logits (N, C) with NaN rows for folds not run, per-fold info). Refuses an
    `out_dir` that holds folds of another plan (fold count, seed, inner fraction or recipe).
    """
    labels = data.labels.numpy()
    fold = folds_by_subject(labels, groups, n_folds, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = {"folds": n_folds, "seed": seed, "inner_fraction": inner_fraction,
            "recipe": plan_recipe(cfg)}
    plan_file = out_dir / "plan.json"
    if plan_file.is_file() and json.loads(plan_file.read_text()) != plan:
        raise ValueError(f"{out_dir} holds folds of another plan (folds, seed, inner fraction or recipe); "
                         "use a new --output-dir")
    plan_file.write_text(json.dumps(plan, indent=1) + "\n")
    logits = np.full((len(labels), NUM_CLASSES), np.nan)
    infos = []
    for k in range(n_folds) if only_fold is None else [only_fold]:
        print(f"fold {k + 1}/{n_folds}: {int((fold == k).sum())} held-out slices of "
              f"{len(set(groups[fold == k]))} subjects", flush=True)
        on_epoch = tracker.epoch_logger(f"fold{k}") if tracker is not None else None
        out = run_fold(k, data, groups, fold, cfg, inner_fraction, out_dir, on_epoch)
        if tracker is not None:
            tracker.log_metrics({f"fold{k}_{'total_seconds' if key == 'seconds' else key}": v  # per-epoch rows log
                                 for key, v in out.items()                              # fold<k>_seconds already
                                 if key in ("selected_epoch", "inner_val_macro_f1", "seconds")})
        logits[out["index"]] = out["logits"]
        infos.append({key: v for key, v in out.items() if key not in ("index", "logits")})
        print(f"fold {k + 1}: epoch {out['selected_epoch']} chosen on {out['inner_subjects']} inner subjects, "
              f"{out['seconds']:.0f} s", flush=True)
    return fold, logits, infos


def plan_recipe(cfg) -> dict:
    """The recipe a cross-validation's plan and its MLflow run record: the options that change a fold's network.
    `select` counts only when it is not the default: with `last` every fold keeps its last epoch (the plans of runs
    that selected the best epoch stay as they were written, so they still resume)."""
    recipe = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in train_resume_free()}
    if cfg.select != "best":
        recipe["select"] = cfg.select
    return recipe


def train_resume_free() -> set[str]:
    """Training options that do not change what is trained (where output goes, threads, device)."""
    return RESUME_FREE


def set_temperature(config_path: Path, temperature: float, plan: dict) -> None:
    """Give an exported model the cross-validation's temperature, recording where it came from.

    Refuses a model trained with another recipe than the folds (image size, epochs, optimiser, ...): the
    temperature is only valid for logits of the same kind.
    """
    config = read_model_config(config_path)
    differ = recipe_differences(config.get("train_config", {}), plan.get("recipe", {}))
    if differ:
        raise ValueError(f"{config_path} was trained with another recipe than the cross-validation "
                         f"({'; '.join(differ)})")
    config["temperature"] = float(temperature)
    config["temperature_source"] = {"method": "crossval out-of-fold", "folds": plan.get("folds"),
                                    "seed": plan.get("seed")}
    Path(config_path).write_text(json.dumps(config, indent=2) + "\n")


def slice_positions(splits: list[str], ids, subjects_path: Path = SUBJECTS_PATH) -> np.ndarray | None:
    """Each slice's position in its subject's stack (0..31) from the subject list, or None when unknown."""
    table = read_subjects(subjects_path).set_index(["split", "path"])
    if "position" not in table:
        return None
    keys = pd.MultiIndex.from_arrays([splits, list(ids)])
    positions = table.reindex(keys)["position"]
    return None if positions.isna().any() else positions.to_numpy(int)


def tracking_metrics(result: dict) -> dict[str, float]:
    """The headline figures of a finished cross-validation, flat, for the tracking store."""
    out = {}
    for name in ("network", *FLOORS, "reference"):
        for level in ("subject", "slice"):
            figures = result.get(name, {}).get(level)
            if figures is None:
                continue
            for key in ("any_dementia_auc", "balanced_accuracy", "macro_f1", "accuracy", "ece", "quadratic_weighted_kappa"):
                if isinstance(figures.get(key), (int, float)):
                    out[f"{name}_{level}_{key}"] = figures[key]
            for key in ("any_dementia_auc", "balanced_accuracy"):
                ci = figures.get("ci95", {}).get(key)
                if ci:
                    out[f"{name}_{level}_{key}_lo"], out[f"{name}_{level}_{key}_hi"] = ci
    for name, diff in result.get("paired", {}).items():
        for key in ("auc", "bacc"):
            out[f"paired_{name}_{key}_diff"] = diff[f"{key}_difference"]
            out[f"paired_{name}_{key}_lo"], out[f"paired_{name}_{key}_hi"] = diff[f"{key}_difference_ci95"]
    calibration = result.get("calibration", {})
    for key in ("temperature", "ece_before", "ece_after"):
        if key in calibration:
            out[f"calibration_{key}"] = calibration[key]
    return out


def _interval(ci) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.training.crossval", description=__doc__.split("\n\n")[0],
                                     epilog="Flags after `--` set the training recipe "
                                            "(alzmri-train train --help).")
    parser.add_argument("--folds", type=int, default=5, help="outer folds (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default: %(default)s)")
    parser.add_argument("--inner-fraction", type=float, default=0.2,
                        help="share of each fold's training subjects that choose the epoch (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="default: %(default)s")
    parser.add_argument("--subjects", type=Path, default=SUBJECTS_PATH, help="default: %(default)s")
    parser.add_argument("--subject-table", type=Path, default=SUBJECT_TABLE_PATH, help="default: %(default)s")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/crossval"),
                        help="fold checkpoints and out-of-fold logits (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=CROSSVAL_PATH, help="figures (default: %(default)s)")
    parser.add_argument("--predictions-out", type=Path, default=CROSSVAL_PREDICTIONS_PATH,
                        help="per-slice out-of-fold predictions (default: %(default)s)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="subject-bootstrap resamples (default: %(default)s)")
    parser.add_argument("--only-fold", type=int, default=None, help="train just this fold and stop (default: every fold)")
    parser.add_argument("--compare-to", type=Path, default=None, metavar="PREDICTIONS_CSV",
                        help="an earlier run's per-slice out-of-fold table on the same folds (e.g. "
                             "assets/crossval_predictions.csv): paired subject-level differences against it (default: none)")
    parser.add_argument("--run-name", default=None,
                        help="name of the MLflow run (default: the output folder's name)")
    parser.add_argument("--track", action=argparse.BooleanOptionalAction, default=True,
                        help="track the run in MLflow ($MLFLOW_TRACKING_URI, else runs/mlflow.db) (default: on)")
    parser.add_argument("--calibrate", type=Path, default=None, metavar="MODEL_CONFIG",
                        help="write the out-of-fold temperature into this model_config.json (a network trained "
                             "with the same recipe), so its probabilities are calibrated for a new subject "
                             "(default: none)")
    parser.add_argument("--add-floors", action="store_true",
                        help="train nothing: score today's floors on the folds of the existing --predictions-out "
                             "table and add them, with the network's paired differences, to the existing --out "
                             "(default: off)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe = argv[argv.index("--") + 1:] if "--" in argv else []
    args = get_args_parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    cfg = train.TrainConfig(**vars(train.get_args_parser().parse_args(recipe)))
    cfg.data_dir = str(args.data_dir)
    if args.folds < 2 or not 0 < args.inner_fraction < 1:
        print("error: --folds must be >= 2 and --inner-fraction in (0, 1)", file=sys.stderr)
        return 2
    if args.only_fold is not None and not 0 <= args.only_fold < args.folds:
        print(f"error: --only-fold must be in 0..{args.folds - 1}", file=sys.stderr)
        return 2
    try:
        cfg.validate()
        data, groups, splits = load_everything(args.data_dir, args.subjects)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.add_floors:
        return add_floors_cli(args, data, groups, splits)
    tracker = None
    if args.track:
        recipe = plan_recipe(cfg)
        tracker = Tracker(args.run_name or Path(args.output_dir).name,
                          {"folds": args.folds, "fold_seed": args.seed, "inner_fraction": args.inner_fraction,
                           **recipe}, tags={"kind": "crossval", "output_dir": str(args.output_dir)},
                          resume_file=Path(args.output_dir) / "mlflow_run_id")
        print(f"tracking in MLflow run {tracker.run_id} ({tracker.uri})", flush=True)
    try:
        fold, logits, infos = cross_validate(data, groups, cfg, args.folds, args.seed, args.inner_fraction,
                                             args.output_dir, args.only_fold, tracker)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if tracker is not None:
            tracker.finish(ok=False)
        return 2
    if args.only_fold is not None:
        return 0
    table = pd.read_csv(args.subject_table) if args.subject_table.is_file() else None
    positions = slice_positions(splits, data.ids, args.subjects)
    try:
        reference = (reference_subject_probs(args.compare_to, splits, data.ids, groups)
                     if args.compare_to is not None else None)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: --compare-to: {exc}", file=sys.stderr)
        return 2
    result, predictions = evaluate_out_of_fold(data, groups, splits, fold, logits, table, args.bootstrap,
                                               positions=positions, reference=reference)
    plan = json.loads((args.output_dir / "plan.json").read_text())
    result.update({"plan": plan, "folds_run": infos, "slices": len(data),
                   "subjects": int(len(set(groups)))})
    result["summary"] = summary(result)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        predictions.to_csv(args.predictions_out, index=False)
        if args.calibrate is not None:
            set_temperature(args.calibrate, result["calibration"]["temperature"], plan)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for level, rows in result["summary"].items():
        print(f"{level} level:")
        for row in rows:
            print(f"  {row['method']:30s} n={row['n']:<5d} any-dementia AUC {row['any_dementia_auc']:.3f}  "
                  f"balanced acc {row['balanced_accuracy']:.3f}  ECE {row['ece']:.3f}  recalled {row['recalled']}")
    for name, diff in result["paired"].items():
        print(f"  network - {name:18s} AUC {diff['auc_difference']:+.3f} {_interval(diff['auc_difference_ci95'])}  "
              f"balanced acc {diff['bacc_difference']:+.3f} {_interval(diff['bacc_difference_ci95'])}")
    if tracker is not None:
        tracker.log_metrics(tracking_metrics(result))
        tracker.log_artifact(args.out)
        tracker.log_artifact(args.predictions_out)
        tracker.log_artifact(args.output_dir / "plan.json")
        tracker.finish()
    print(f"temperature {result['calibration']['temperature']:.4f}; out-of-fold ECE "
          f"{result['calibration']['ece_before']:.4f} -> {result['calibration']['ece_after']:.4f}")
    print(f"wrote {args.out} and {args.predictions_out}")
    return 0


def add_floors_cli(args: argparse.Namespace, data: SliceSet, groups: np.ndarray, splits: list[str]) -> int:
    table = pd.read_csv(args.subject_table) if args.subject_table.is_file() else None
    try:
        result = add_floors(args.out, args.predictions_out, data, groups, splits, table, args.bootstrap,
                            slice_positions(splits, data.ids, args.subjects))
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: --add-floors: {exc}", file=sys.stderr)
        return 2
    for name, diff in result["paired"].items():
        print(f"  network - {name:18s} AUC {diff['auc_difference']:+.3f} {_interval(diff['auc_difference_ci95'])}  "
              f"balanced acc {diff['bacc_difference']:+.3f} {_interval(diff['bacc_difference_ci95'])}")
    print(f"wrote the floors into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
