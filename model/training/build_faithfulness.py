"""Score every explanation method's faithfulness on held-out subjects: writes assets/faithfulness.json.

    alzmri-train data build-faithfulness --slices 64      # the model card's faithfulness table

The scores themselves (deletion, insertion, baselines, the randomisation check, the share of the map outside the
brain) are `model.qualify.faithfulness` and `model.qualify.explain`; this module picks the slices of the subjects
the shipped network never trained on and summarises.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from model.core.inference import Predictor
from model.core.constants import MODEL_CONFIG_PATH
from model.core.network import CAM_STRIDE
from model.qualify.explain import METHODS, explain
from model.qualify.faithfulness import (
    FAITHFULNESS_PATH,
    RANDOMISED_BLOCKS,
    STEPS,
    faithfulness,
    randomised_copy,
    rank_correlation,
)
from model.training.data import shipped_split, slices_with_subjects


def held_out_slices(data_dir=None, n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n slices (uint8 (n, S, S)), labels and ids of the subjects the shipped network never trained on
    (the subjects its epoch was chosen on), a seeded sample spread over those subjects."""
    train, _, groups = slices_with_subjects("train", data_dir)
    _, held = shipped_split(train.labels.numpy(), groups)
    if not len(held):
        raise SystemExit("the shipped network held out no subjects; score it with --split test instead")
    pick = np.sort(np.random.default_rng(seed).choice(held, size=min(n, len(held)), replace=False))
    return train.images[pick, 0].numpy(), train.labels.numpy()[pick], [train.ids[i] for i in pick]


def score_methods(predictor, images: np.ndarray, methods, layer: str, seed: int = 0,
                  progress=None) -> dict:
    """Every method's faithfulness, randomisation check and share outside the brain on each slice, summarised
    (means, 95% bootstrap intervals over slices, share of slices where the map beats each baseline, time per map)."""
    randomised = randomised_copy(predictor, seed=seed)
    rng = np.random.default_rng(seed)
    out = {}
    for method in methods:
        rows, seconds = [], []
        for i, image in enumerate(images):
            target = predictor.predict_one(image).label
            start = time.perf_counter()
            heat = explain(predictor, image, target=target, method=method, layer=layer).heatmap
            seconds.append(time.perf_counter() - start)
            f = faithfulness(predictor, image, heat, target, seed=seed + i)
            rand = explain(randomised, image, target=target, method=method, layer=layer).heatmap
            rows.append({**{f"{k}_{m}": v for k, d in f.as_dict().items() for m, v in d.items()},
                         "beats_random": f.beats("random"), "beats_edges": f.beats("edges"),
                         "randomisation_spearman": rank_correlation(heat, rand)})
            if progress:
                progress(method, i + 1, len(images))
        table = {k: np.array([r[k] for r in rows], dtype=float) for k in rows[0]}
        for base in ("random", "edges"):  # paired differences: below 0 for deletion and above for insertion is better
            table[f"deletion_minus_{base}"] = table["map_deletion"] - table[f"{base}_deletion"]
            table[f"insertion_minus_{base}"] = table["map_insertion"] - table[f"{base}_insertion"]
        boot = rng.integers(0, len(rows), (1000, len(rows)))
        out[method] = {k: {"mean": float(v.mean()), "ci95": np.percentile(v[boot].mean(1), [2.5, 97.5]).round(4).tolist()}
                       for k, v in table.items()}
        out[method]["seconds_per_map"] = float(np.median(seconds))
        out[method]["verdict"] = {base: verdict(out[method], base) for base in ("random", "edges")}
    return out


def verdict(summary: dict, baseline: str) -> str:
    """'beats', 'loses' or 'no clear difference': both paired differences' 95% intervals on the right side of 0
    (deletion lower and insertion higher than the baseline's) beat it; both on the wrong side lose."""
    d, i = summary[f"deletion_minus_{baseline}"]["ci95"], summary[f"insertion_minus_{baseline}"]["ci95"]
    if d[1] < 0 and i[0] > 0:
        return "beats"
    if d[0] > 0 and i[1] < 0:
        return "loses"
    return "no clear difference"


def held_out_source(config: dict) -> str:
    """Where the scored slices come from, in the words the model card prints: whether the shipped epoch was chosen
    on those subjects depends on the recipe (`--select last` keeps the last epoch, chosen on nobody)."""
    chosen = (config.get("train_config") or {}).get("select", "best") != "last"
    return ("slices of the 20 subjects the shipped network never trained on "
            + ("(its epoch was chosen on them)" if chosen else "(held out; it ships its last epoch, chosen on none)"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alzmri-train data build-faithfulness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="default: $ALZ_MRI_DATA or ../shared/data/alzheimer_mri")
    parser.add_argument("--slices", type=int, default=64, help="held-out slices to score (default: %(default)s)")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every method in model.qualify.explain")
    parser.add_argument("--layer", default=None, help="Grad-CAM layer (default: the shipped network's default)")
    parser.add_argument("--set-default-layer", action="store_true",
                        help="write --layer into assets/model_config.json as the network's default Grad-CAM layer "
                             "(the page, the API and this table's default), after a measurement says it should be")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--out", default=str(FAITHFULNESS_PATH), help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads for torch (default: %(default)s; 1 is fastest on a busy machine, "
                             "where threads fight over the cores)")
    args = parser.parse_args(argv)
    methods = args.methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if args.layer is not None and args.layer not in CAM_STRIDE:
        parser.error(f"unknown layer {args.layer!r}; choose from {', '.join(CAM_STRIDE)}")
    if args.set_default_layer and args.layer is None:
        parser.error("--set-default-layer needs --layer")
    torch.set_num_threads(max(1, args.threads))
    predictor = Predictor.from_assets(device="cpu")
    layer = args.layer or predictor.cam_layer
    images, labels, ids = held_out_slices(args.data_dir, args.slices, args.seed)
    result = score_methods(predictor, images, methods, layer, args.seed,
                           progress=lambda m, i, n: print(f"\r{m}: {i}/{n}", end="", file=sys.stderr))
    print(file=sys.stderr)
    record = {"model_sha256": predictor.sha256, "slices": len(images), "source": held_out_source(predictor.config),
              "layer": layer, "steps": STEPS,
              "randomised_blocks": list(RANDOMISED_BLOCKS), "seed": args.seed, "methods": result}
    with open(args.out, "w") as fh:
        json.dump(record, fh, indent=1)
        fh.write("\n")
    if args.set_default_layer:
        config = json.loads(MODEL_CONFIG_PATH.read_text())
        config["cam_layer"] = layer
        MODEL_CONFIG_PATH.write_text(json.dumps(config, indent=2) + "\n")
        print(f"{MODEL_CONFIG_PATH}: Grad-CAM's default layer is now {layer}", file=sys.stderr)
    for method, r in result.items():
        print(f"{method:22s} deletion {r['map_deletion']['mean']:.3f} (random {r['random_deletion']['mean']:.3f}, "
              f"edges {r['edges_deletion']['mean']:.3f})  insertion {r['map_insertion']['mean']:.3f} (random "
              f"{r['random_insertion']['mean']:.3f}, edges {r['edges_insertion']['mean']:.3f})  beats random "
              f"{r['beats_random']['mean']:.0%}  randomisation rho {r['randomisation_spearman']['mean']:.2f}  "
              f"{r['seconds_per_map'] * 1000:.0f} ms/map")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
