"""Build the slab template from the dataset: `python -m model.training.build_slab_template`.

The mean slice at each of the 32 positions over all 200 subjects (`assets/subjects.csv` gives every slice's
subject and position), at 64 px, and the 99th percentile of the subjects' own slab scores (each subject scored
against a template that leaves it out, so the figure is what a new subject's volume would get). Writes
assets/slab_template.safetensors and assets/slab_template.json (with its SHA-256). Training side: the app only
loads the result (`model.core.slab`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from model.core.constants import SUBJECTS_PATH, default_data_dir
from model.core.dataset import DatasetError, fingerprint
from model.core.slab import (SLAB_RECORD_PATH, SLAB_SLICES, SLAB_TEMPLATE_PATH, STEP_WEIGHT, SlabTemplate, downsample,
                        fitted_rms_rows)
from model.training.crossval import load_everything, slice_positions


def build(images: np.ndarray, groups: np.ndarray, positions: np.ndarray) -> tuple[SlabTemplate, dict]:
    """images uint8 (N, S, S); groups (N,) subject ids; positions (N,) 0..31. Returns the template and a record
    of how it was made (subjects, the leave-one-out score distribution)."""
    flat = downsample(images)
    subjects = np.unique(groups)
    sums = np.zeros((SLAB_SLICES, flat.shape[1]))
    counts = np.zeros(SLAB_SLICES)
    np.add.at(sums, positions, flat)
    np.add.at(counts, positions, 1)
    scores = []
    for s in subjects:  # leave-one-out: the subject's slab against the others' mean
        own = groups == s
        order = np.argsort(positions[own])
        own_sum = np.zeros_like(sums)
        np.add.at(own_sum, positions[own], flat[own])
        own_count = np.bincount(positions[own], minlength=SLAB_SLICES)
        means = (sums - own_sum) / np.maximum(counts - own_count, 1)[:, None]
        stack = flat[own][order]
        steps = np.maximum(fitted_rms_rows(stack[:-1], stack[1:]), fitted_rms_rows(stack[1:], stack[:-1]))
        scores.append(float(fitted_rms_rows(means[positions[own][order]], stack).mean() + STEP_WEIGHT * steps.max()))
    scores = np.array(scores)
    template = SlabTemplate(sums / counts[:, None], float(np.percentile(scores, 99)))
    return template, {"subjects": int(len(subjects)), "leave_one_out_score": {
        "median": float(np.median(scores)), "p99": float(np.percentile(scores, 99)), "max": float(scores.max())}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.training.build_slab_template", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="default: %(default)s")
    parser.add_argument("--subjects", type=Path, default=SUBJECTS_PATH, help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=SLAB_TEMPLATE_PATH, help="default: %(default)s")
    parser.add_argument("--record", type=Path, default=SLAB_RECORD_PATH, help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        data, groups, splits = load_everything(args.data_dir, args.subjects)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    positions = slice_positions(splits, data.ids, args.subjects)
    if positions is None:
        print(f"error: {args.subjects} gives no slice positions; run python -m model.subjects", file=sys.stderr)
        return 2
    template, record = build(data.images[:, 0].numpy(), groups, positions)
    sha = template.save(args.out, args.record, {**record, "data_sha256": fingerprint(args.data_dir)})
    print(f"wrote {args.out} ({sha[:12]}): {record['subjects']} subjects; leave-one-out slab score median "
          f"{record['leave_one_out_score']['median']:.2f}, 99th percentile {template.typical:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
