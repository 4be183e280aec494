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
  correlation with the real one, above RANDOMISATION_LIMIT) reflects the image, not what the network learned.
* **Outside the brain**: the share of a map's mass on the black background (`model.qualify.explain.outside_share`).

`default_method` reads the held-out table and picks the method the page shows first: one that beats both
baselines and passes the randomisation check, with the least of its map off the brain; Grad-CAM only when none does.

`alzmri-train data build-faithfulness` (`model.training.build_faithfulness`) scores every method on slices of the
subjects the shipped network never trained on and writes assets/faithfulness.json, which the model card shows.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
# scipy.ndimage (0.3 s) and scipy.stats (0.7 s) are imported in the two functions that use them: at the top they cost
# every cold start of the app and of `alzmri predict` (measured with `python -X importtime`, 2026-12-02).

from model.core.constants import ASSETS_DIR
from model.core.inference import Predictor
from model.qualify.explain import METHOD_NAMES, brain_mask, explain, outside_share

FAITHFULNESS_PATH = ASSETS_DIR / "faithfulness.json"
STEPS = 20  # deletion / insertion curve points after the start
RANDOMISED_BLOCKS = ("layer4", "fc")
RANDOMISATION_LIMIT = 0.5  # rank correlation with the randomised network's map above this: the map ignores the weights
FALLBACK_METHOD = "gradcam"  # shown first only when the held-out table names no method that beats both baselines


@dataclass(frozen=True)
class Scores:
    """Deletion and insertion areas (0-1, of the target's calibrated probability) for one map, and the share
    (0-1) of the map's mass outside the brain (`model.qualify.explain.outside_share`; None when not measured)."""

    deletion: float
    insertion: float
    outside_brain: float | None = None


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
        return {k: {m: round(v, 4) for m, v in asdict(getattr(self, k)).items() if v is not None}
                for k in ("map", "random", "edges")}


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
    x = np.asarray(image, dtype=np.float64)
    from scipy import ndimage

    return np.hypot(ndimage.sobel(x, axis=0), ndimage.sobel(x, axis=1))


def random_map(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


def faithfulness(predictor, image: np.ndarray, saliency: np.ndarray, target: int, seed: int = 0,
                 steps: int = STEPS) -> Faithfulness:
    """The map's deletion and insertion scores and share outside the brain, next to a random map's and the
    Sobel map's."""
    maps = [saliency, random_map(np.shape(image), seed), sobel_map(image)]
    mask = brain_mask(np.asarray(image, dtype=np.uint8))
    return Faithfulness(*(replace(s, outside_brain=outside_share(m, mask))
                          for s, m in zip(_scores(predictor, image, maps, target, steps), maps)))


def randomised_copy(predictor, blocks=RANDOMISED_BLOCKS, seed: int = 0):
    """A Predictor like `predictor` whose `blocks` have freshly initialised weights (the original is untouched)."""
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
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    from scipy.stats import spearmanr

    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def randomisation_check(predictor, randomised, image: np.ndarray, target: int, method: str, layer: str) -> float:
    """Spearman correlation between the method's map on the real network and on the randomised copy."""
    real = explain(predictor, image, target=target, method=method, layer=layer).heatmap
    rand = explain(randomised, image, target=target, method=method, layer=layer).heatmap
    return rank_correlation(real, rand)


def randomisation_verdict(rho: float) -> str:
    """One sentence on a randomisation check's rank correlation, read against RANDOMISATION_LIMIT."""
    if rho < RANDOMISATION_LIMIT:
        return (f"ρ {rho:.2f} is below {RANDOMISATION_LIMIT}: the map depends on the learned weights, as a faithful "
                "map should.")
    return (f"ρ {rho:.2f} is at or above {RANDOMISATION_LIMIT}: the map barely changes when the weights are "
            "randomised, so it says little about what the network learned.")


def read_table(path=FAITHFULNESS_PATH) -> dict | None:
    """The held-out faithfulness table (assets/faithfulness.json), or None when it is not shipped."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def default_method(record: dict | None) -> tuple[str, str]:
    """(method, one line saying why) for the page to show first, from a held-out table (`read_table`).

    Among the methods whose verdict is 'beats' against both the random and the edge map (deletion and insertion,
    95% intervals) and whose mean randomisation rho is below RANDOMISATION_LIMIT (the page calls a map above it one
    that says little about the network, so it should not be the first one shown), the one with the lowest mean
    share of its map outside the brain (table order breaks ties and stands in for a missing share).
    FALLBACK_METHOD when the table is missing or no method passes."""
    methods = (record or {}).get("methods", {})
    beats = [m for m, r in methods.items()
             if m in METHOD_NAMES and r.get("verdict", {}).get("random") == "beats"
             and r.get("verdict", {}).get("edges") == "beats"]
    good = [m for m in beats if methods[m].get("randomisation_spearman", {}).get("mean", 0.0) < RANDOMISATION_LIMIT]
    if not good:
        why = ("no held-out faithfulness table is shipped" if not methods else
               "no method beats both a random and an edge map on the held-out faithfulness table" if not beats else
               f"the methods that beat both a random and an edge map on the held-out faithfulness table "
               f"({', '.join(METHOD_NAMES[m] for m in beats)}) barely change when the weights are randomised")
        return FALLBACK_METHOD, f"{METHOD_NAMES[FALLBACK_METHOD]} by default: {why}."

    def outside(m):
        return methods[m].get("map_outside_brain", {}).get("mean", float("inf"))

    best = min(good, key=lambda m: (outside(m), list(methods).index(m)))
    why = f"{METHOD_NAMES[best]} is shown first: on {record.get('slices', 'the')} held-out slices it beats both a " \
          "random and an edge map"
    others = [m for m in good if m != best]
    if outside(best) != float("inf"):
        rest = "".join(f"; {METHOD_NAMES[m]}, which also does, " + (
            f"{outside(m):.0%}" if outside(m) != float("inf") else "not measured") for m in others)
        why += (f", with the least of its map outside the brain ({outside(best):.0%}{rest})" if others else
                f", with {outside(best):.0%} of its map outside the brain")
    elif others:
        why += f", as {' and '.join(METHOD_NAMES[m] for m in others)} also does"
    insensitive = [METHOD_NAMES[m] for m in beats if m not in good]
    if insensitive:
        one = len(insensitive) == 1
        why += (f"; {' and '.join(insensitive)} also beat{'s' * one} both but barely change{'s' * one} when the "
                "weights are randomised")
    return best, why + "."
