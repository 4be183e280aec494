"""Does a saliency map show what the network uses? Deletion and insertion scores, trivial baselines, and
the randomisation sanity check.

* **Deletion** (Petsiuk et al. 2018): black out the map's most salient pixels first, in STEPS equal
  steps, and follow the calibrated probability of the target class; the area under that curve is low
  when the map found the evidence. **Insertion** starts from a black slice and puts the most salient
  pixels back first; its area is high for a faithful map.
* Each score is read next to the same score for a **random map** and for an **edge map** (Sobel
  magnitude of the slice): a map that does no better than those says nothing about the network.
* **Randomisation check** (Adebayo et al. 2018): the same method on a copy of the network whose last
  blocks (layer4 and the classifier) have random weights. A map that stays the same (high Spearman rank
  correlation with the real one) reflects the image, not what the network learned.

`python -m model.faithfulness` scores every method on slices of the subjects the shipped network never
trained on and writes assets/faithfulness.json, which the model card shows.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from model.constants import ASSETS_DIR

FAITHFULNESS_PATH = ASSETS_DIR / "faithfulness.json"
STEPS = 20  # deletion / insertion curve points after the start
RANDOMISED_BLOCKS = ("layer4", "fc")


@dataclass(frozen=True)
class Scores:
    """Deletion and insertion areas (0-1, of the target's calibrated probability) for one map."""

    deletion: float
    insertion: float


@dataclass(frozen=True)
class Faithfulness:
    """A map's scores beside a random map's and an edge map's, on the same slice and target."""

    map: Scores
    random: Scores
    edges: Scores

    def beats(self, baseline: str) -> bool:
        """Lower deletion and higher insertion than the baseline's ('random' or 'edges')."""
        other = getattr(self, baseline)
        return self.map.deletion < other.deletion and self.map.insertion > other.insertion

    def as_dict(self) -> dict:
        return {k: {m: round(v, 4) for m, v in asdict(getattr(self, k)).items()} for k in ("map", "random", "edges")}


def _perturbed(image: np.ndarray, saliency: np.ndarray, steps: int) -> np.ndarray:
    """(2 * (steps+1), S, S): the slice with the top k/steps most salient pixels deleted (set to black), then
    a black slice with them inserted, k = 0..steps."""
    order = np.argsort(-saliency.ravel(), kind="stable")  # most salient first
    flat = image.ravel()
    deleted, inserted = [], []
    for k in range(steps + 1):
        top = order[: round(order.size * k / steps)]
        d = flat.copy()
        d[top] = 0
        i = np.zeros_like(flat)
        i[top] = flat[top]
        deleted.append(d.reshape(image.shape))
        inserted.append(i.reshape(image.shape))
    return np.stack(deleted + inserted)


def _area(curve: np.ndarray) -> float:
    """Area under a curve sampled at equal steps on [0, 1] (trapezoid)."""
    return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


def _scores(predictor, image: np.ndarray, maps: list[np.ndarray], target: int, steps: int) -> list[Scores]:
    """Deletion and insertion scores of several maps of one slice, in one batched pass of the network."""
    image = np.asarray(image, dtype=np.uint8)
    for saliency in maps:
        if saliency.shape != image.shape:
            raise ValueError(f"map {saliency.shape} and slice {image.shape} differ in shape")
    batch = np.concatenate([_perturbed(image, np.asarray(m, np.float64), steps) for m in maps])
    probs = predictor.probabilities(batch, batch_size=len(batch)).numpy()[:, target].reshape(len(maps), 2, steps + 1)
    return [Scores(_area(p[0]), _area(p[1])) for p in probs]


def deletion_insertion(predictor, image: np.ndarray, saliency: np.ndarray, target: int, steps: int = STEPS) -> Scores:
    """Scores of one map: image uint8 (S, S), saliency (S, S) any real values (higher = more salient)."""
    return _scores(predictor, image, [saliency], target, steps)[0]


def sobel_map(image: np.ndarray) -> np.ndarray:
    """Edge magnitude of a slice (S, S): the trivial 'map' that only knows where the edges are."""
    from scipy import ndimage

    x = np.asarray(image, dtype=np.float64)
    return np.hypot(ndimage.sobel(x, axis=0), ndimage.sobel(x, axis=1))


def random_map(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


def faithfulness(predictor, image: np.ndarray, saliency: np.ndarray, target: int, seed: int = 0,
                 steps: int = STEPS) -> Faithfulness:
    """The map's deletion and insertion scores next to a random map's and the Sobel map's."""
    return Faithfulness(*_scores(predictor, image, [saliency, random_map(image.shape, seed), sobel_map(image)],
                                 target, steps))


def randomised_copy(predictor, blocks=RANDOMISED_BLOCKS, seed: int = 0):
    """A Predictor like `predictor` whose `blocks` have freshly initialised weights (the original is untouched)."""
    from model.inference import Predictor

    net = copy.deepcopy(predictor.net).cpu().float()
    torch.manual_seed(seed)
    for name in blocks:
        for module in getattr(net, name).modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return Predictor(net, image_size=predictor.image_size, temperature=predictor.temperature, device="cpu",
                     sha256=f"randomised {'+'.join(blocks)} of {predictor.sha256[:12]}")


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (0 when either is constant)."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def randomisation_check(predictor, randomised, image: np.ndarray, target: int, method: str, layer: str) -> float:
    """Spearman correlation between the method's map on the real network and on the randomised copy."""
    from model.explain import explain

    real = explain(predictor, image, target=target, method=method, layer=layer).heatmap
    rand = explain(randomised, image, target=target, method=method, layer=layer).heatmap
    return rank_correlation(real, rand)


# ---------------------------------------------------------------------- the CLI
def held_out_slices(data_dir=None, n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n slices (uint8 (n, S, S)), labels and ids of the subjects the shipped network never trained on
    (the subjects its epoch was chosen on), a seeded sample spread over those subjects."""
    from model.checkpoint import read_model_config
    from model.data import grouped_split, load_split_with_keys
    from model.subjects import subjects_for

    tc = read_model_config().get("train_config", {})
    if not tc.get("val_by_subject"):
        raise SystemExit("the shipped network held out no subjects; score it with --split test instead")
    train, keys = load_split_with_keys("train", data_dir)
    groups = subjects_for("train", keys.path, keys.sha256)
    _, held = grouped_split(train.labels.numpy(), groups, tc["val_fraction"], tc.get("split_seed") or tc.get("seed", 0))
    pick = np.sort(np.random.default_rng(seed).choice(held, size=min(n, len(held)), replace=False))
    return train.images[pick, 0].numpy(), train.labels.numpy()[pick], [train.ids[i] for i in pick]


def score_methods(predictor, images: np.ndarray, methods, layer: str, seed: int = 0,
                  progress=None) -> dict:
    """Every method's faithfulness and randomisation check on each slice, summarised (means, 95% bootstrap
    intervals over slices, share of slices where the map beats each baseline, time per map)."""
    from model.explain import explain

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.faithfulness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="default: $ALZ_MRI_DATA or ../shared/data/alzheimer_mri")
    parser.add_argument("--slices", type=int, default=64, help="held-out slices to score (default: %(default)s)")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every method in model.explain")
    parser.add_argument("--layer", default=None, help="Grad-CAM layer (default: the shipped network's default)")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--out", default=str(FAITHFULNESS_PATH), help="default: %(default)s")
    args = parser.parse_args(argv)
    from model.explain import METHODS
    from model.inference import Predictor
    from model.network import default_cam_layer

    methods = args.methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    predictor = Predictor.from_assets(device="cpu")
    layer = args.layer or default_cam_layer(predictor.image_size)
    images, labels, ids = held_out_slices(args.data_dir, args.slices, args.seed)
    result = score_methods(predictor, images, methods, layer, args.seed,
                           progress=lambda m, i, n: print(f"\r{m}: {i}/{n}", end="", file=sys.stderr))
    print(file=sys.stderr)
    record = {"model_sha256": predictor.sha256, "slices": len(images), "source": "slices of the 20 subjects the "
              "shipped network never trained on (its epoch was chosen on them)", "layer": layer, "steps": STEPS,
              "randomised_blocks": list(RANDOMISED_BLOCKS), "seed": args.seed, "methods": result}
    with open(args.out, "w") as fh:
        json.dump(record, fh, indent=1)
        fh.write("\n")
    for method, r in result.items():
        print(f"{method:22s} deletion {r['map_deletion']['mean']:.3f} (random {r['random_deletion']['mean']:.3f}, "
              f"edges {r['edges_deletion']['mean']:.3f})  insertion {r['map_insertion']['mean']:.3f} (random "
              f"{r['random_insertion']['mean']:.3f}, edges {r['edges_insertion']['mean']:.3f})  beats random "
              f"{r['beats_random']['mean']:.0%}  randomisation rho {r['randomisation_spearman']['mean']:.2f}  "
              f"{r['seconds_per_map'] * 1000:.0f} ms/map")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
