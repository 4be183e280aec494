"""How often the shipped out-of-distribution guard flags images that are not training-like slices.

    python -m analysis.guard_rates [--seeds 20 21 22 23 24] [--out assets/guard_rates.json]

Draws `analysis.ood_images.made_images` for each seed (the brain kinds from real train-split slices when
the dataset is present) and reads `shipped_pictures()`, runs them through `model.qualify.trust.TrustBank.check`,
and prints the hit rate per kind. The seeds default to ones the guard's exploration never used
(docs/experiments.md, 2026-11-30).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from analysis.ood_images import made_images, shipped_pictures
from model.core.constants import GUARD_RATES_PATH
from model.qualify.trust import TrustBank


def guard_rates(seeds, brains=None, bank: TrustBank | None = None) -> dict:
    bank = bank or TrustBank.load()
    images: dict[str, list[np.ndarray]] = defaultdict(list)
    for seed in seeds:
        for kind, image in made_images(seed, brains).items():
            images[kind].append(image)
    refused: dict[str, str] = {}
    for kind, image in shipped_pictures(refused).items():
        images[kind].append(image)
    rows = []
    for kind, batch in images.items():
        reports = bank.check(np.stack(batch))
        rows.append({"kind": kind, "n": len(batch), "flagged": sum(r.out_of_distribution for r in reports),
                     "reasons": sorted({reason.split(" (")[0].split(":")[0] for r in reports for reason in r.reasons})})
    n, hit = sum(r["n"] for r in rows), sum(r["flagged"] for r in rows)
    return {"seeds": list(seeds), "images": n, "flagged": hit, "hit_rate": hit / n, "by_kind": rows,
            "refused_by_the_decoder": refused}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.guard_rates", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[20, 21, 22, 23, 24], help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=GUARD_RATES_PATH, help="default: %(default)s")
    args = parser.parse_args(argv)
    brains = None
    try:
        from model.core.dataset import load_split

        brains = load_split("train").images[:, 0].numpy()
    except (FileNotFoundError, ValueError):
        print("dataset not found: brain-derived kinds left out")
    result = guard_rates(args.seeds, brains)
    for row in result["by_kind"]:
        print(f"{row['kind']:<60} {row['flagged']:>3}/{row['n']:<3} {'; '.join(row['reasons'])}")
    for kind, reason in result["refused_by_the_decoder"].items():
        print(f"{kind:<60} refused before the guard: {reason}")
    print(f"all: {result['flagged']}/{result['images']} flagged ({result['hit_rate']:.1%})")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
