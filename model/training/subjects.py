"""Recover the subjects behind the 6,400 slices: `alzmri-train data subjects --help`.

The dataset publishes no subject ids, but its slices are 200 OASIS-1 subjects, 32
consecutive axial slices each (Mild 28, Moderate 2, Non 100, Very mild 70 subjects;
see ../shared/data/oasis1_reference/README.md). Neighbouring slices of one brain are
far closer in raw pixels than slices of two brains, so the subjects can be rebuilt:

1. **Group.** Within each label (a subject has one), join slices closest pair first
   (single linkage) but never into a group of more than 32 slices.
2. **Order.** Inside a group, the shortest path through all 32 slices is the slice
   order; its direction is fixed by a reference slice where one matches, else by the
   rule `direction_cue` learns on the groups that have one.
3. **Name.** OASIS reference slices (176x208 JPEGs, one per subject) are rotated 180
   degrees, resized to 128x128 and compared with every slice after a least-squares
   intensity fit; a match (RMS ~3-4 grey levels, non-matches >= 20) gives the group its
   OASIS id and clinical row. Other groups get a stable pseudo id made from their
   slices' hashes.

Writes `assets/subjects.csv` (one row per slice, keyed by origin path and the SHA-256
of its bytes), `assets/subject_table.csv` (one row per subject, with the clinical
columns where known) and `assets/subjects_report.json` (the consistency report).
Nothing is edited by hand, and no reference image is shipped.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from model.core.constants import (
    ASSETS_DIR,
    CLASS_NAMES,
    SUBJECT_TABLE_PATH,
    SUBJECTS_PATH,
    SUBJECTS_REPORT_PATH,
    default_data_dir,
    default_reference_dir,
)
from model.core.dataset import DatasetError, load_split_with_keys

BLOCK = 32  # consecutive axial slices per subject
REFERENCE_POSITION = 13  # 0-based place of the OASIS reference slice in its subject's block
MATCH_RMS = 8.0  # a reference matches a slice below this RMS after the intensity fit (true ~3-4, others >= 20)
# CDR -> label id: 0 Non, 0.5 Very mild, 1 Mild, 2 Moderate
CDR_TO_LABEL = {0.0: 2, 0.5: 3, 1.0: 0, 2.0: 1}
EXPECTED_SUBJECTS = {"Mild_Demented": 28, "Moderate_Demented": 2, "Non_Demented": 100, "Very_Mild_Demented": 70}
CLINICAL_COLUMNS = {"M/F": "sex", "Age": "age", "Educ": "educ", "eTIV": "etiv", "nWBV": "nwbv", "MMSE": "mmse",
                    "CDR": "cdr"}
SHORT = {"Mild_Demented": "mild", "Moderate_Demented": "moderate", "Non_Demented": "non",
         "Very_Mild_Demented": "verymild"}


# ---------------------------------------------------------------- grouping and ordering
def pairwise_rms(images: torch.Tensor) -> np.ndarray:
    """(N, N) root-mean-square grey-level distance between uint8 images (N, 1, H, W) or (N, H, W)."""
    x = images.reshape(len(images), -1).double()
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_(min=0) / x.shape[1]
    d2.fill_diagonal_(0)
    return d2.sqrt().numpy()


def pairwise_fitted_rms(images: torch.Tensor) -> np.ndarray:
    """(N, N) distance between uint8 images that ignores a linear change of grey levels: the RMS residual of
    fitting one image by a * other + b, sqrt(1 - r^2) times the pair's mean standard deviation.

    Some subjects' slices differ in brightness from their neighbours; raw RMS then splits a subject's chain
    and glues the pieces to other subjects (15 broken groups of the Non_Demented class), this does not (none).
    """
    x = images.reshape(len(images), -1).double()
    x = x - x.mean(1, keepdim=True)
    std = x.norm(dim=1) / x.shape[1] ** 0.5
    z = x / (x.norm(dim=1, keepdim=True) + 1e-12)
    r = (z @ z.T).clamp_(-1.0, 1.0)
    d = (1.0 - r * r).clamp_(min=0).sqrt_() * (std[:, None] + std[None, :]) / 2
    d.fill_diagonal_(0)
    return d.numpy()


def capped_single_linkage(dist: np.ndarray, cap: int = BLOCK) -> np.ndarray:
    """Group ids (N,) from joining the closest pairs first, never into a group larger than `cap`.

    dist: (N, N) symmetric distances. Deterministic: ties are broken by index order.
    """
    n = len(dist)
    parent, size = np.arange(n), np.ones(n, dtype=int)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    rows, cols = np.triu_indices(n, k=1)
    for k in np.argsort(dist[rows, cols], kind="stable"):
        a, b = root(rows[k]), root(cols[k])
        if a != b and size[a] + size[b] <= cap:
            if size[a] < size[b]:
                a, b = b, a
            parent[b] = a
            size[a] += size[b]
    roots = np.array([root(i) for i in range(n)])
    _, group = np.unique(roots, return_inverse=True)
    return group


def shortest_path_order(dist: np.ndarray) -> np.ndarray:
    """An order of the items that makes the path through them short (nearest-neighbour starts + 2-opt).

    dist: (n, n). For consecutive slices of one brain it recovers the slice order (up to direction).
    """
    n = len(dist)
    if n <= 2:
        return np.arange(n)

    def length(order):
        return float(dist[order[:-1], order[1:]].sum())

    best, best_len = None, np.inf
    for start in range(n):
        order, left = [start], set(range(n)) - {start}
        while left:
            nxt = min(left, key=lambda j: (dist[order[-1], j], j))
            order.append(nxt)
            left.remove(nxt)
        order = two_opt(np.array(order), dist)
        if length(order) < best_len - 1e-9:
            best, best_len = order, length(order)
    return best


def two_opt(order: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Reverse segments of an open path while that shortens it."""
    improved = True
    while improved:
        improved = False
        for i in range(0, len(order) - 1):
            for j in range(i + 1, len(order)):
                a_prev = dist[order[i - 1], order[i]] if i > 0 else 0.0
                a_new = dist[order[i - 1], order[j]] if i > 0 else 0.0
                b_prev = dist[order[j], order[j + 1]] if j < len(order) - 1 else 0.0
                b_new = dist[order[i], order[j + 1]] if j < len(order) - 1 else 0.0
                if a_new + b_new < a_prev + b_prev - 1e-9:
                    order[i:j + 1] = order[i:j + 1][::-1].copy()
                    improved = True
    return order


def brain_area_slope(images: torch.Tensor, order: np.ndarray) -> float:
    """Slope of the bright-pixel fraction along `order` (uint8 images (n, 1, H, W)): how the head's section
    grows or shrinks along the chain, used to tell its direction when no reference slice fixes it."""
    area = (images[order].reshape(len(order), -1) > 40).double().mean(1).numpy()
    return float(np.polyfit(np.arange(len(order)), area, 1)[0])


@dataclass
class Recovered:
    """Per-slice results, all arrays of length N (slices of both splits, in input order)."""

    group: np.ndarray  # int, 0..G-1
    position: np.ndarray  # int, place in the group's chain (0-based)
    prev_rms: np.ndarray  # float, RMS to the previous slice in the chain (nan at the start)
    next_rms: np.ndarray  # float, RMS to the next slice in the chain (nan at the end)


def group_and_order(images: torch.Tensor, labels: np.ndarray, cap: int = BLOCK) -> Recovered:
    """Group the slices of each label with `capped_single_linkage` and order each group along its shortest path.

    images: uint8 (N, 1, H, W); labels: (N,). Directions are as the path came out; `orient` fixes them.
    """
    n = len(labels)
    group, position = np.full(n, -1), np.full(n, -1)
    prev_rms, next_rms = np.full(n, np.nan), np.full(n, np.nan)
    next_id = 0
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        dist = pairwise_fitted_rms(images[idx])
        local = capped_single_linkage(dist, cap)
        for g in range(local.max() + 1):
            members = idx[local == g]
            sub = dist[np.ix_(local == g, local == g)]
            order = shortest_path_order(sub)
            chain = members[order]
            group[chain] = next_id
            position[chain] = np.arange(len(chain))
            steps = sub[order[:-1], order[1:]]
            next_rms[chain[:-1]], prev_rms[chain[1:]] = steps, steps
            next_id += 1
    return Recovered(group, position, prev_rms, next_rms)


def reverse_group(rec: Recovered, g: int) -> None:
    members = np.flatnonzero(rec.group == g)
    rec.position[members] = len(members) - 1 - rec.position[members]
    rec.prev_rms[members], rec.next_rms[members] = rec.next_rms[members].copy(), rec.prev_rms[members].copy()


# ---------------------------------------------------------------- reference slices
def reference_to_dataset_look(path: Path, size: int = 128) -> np.ndarray:
    """An OASIS reference slice as the dataset made its slices: rotated 180 degrees, resized straight to
    size x size (aspect not kept, bicubic). Returns float64 (size, size)."""
    with Image.open(path) as img:
        img = img.convert("L").rotate(180).resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.float64)


def fitted_rms(references: np.ndarray, images: np.ndarray) -> np.ndarray:
    """(R, N) RMS residual of each image after the best linear fit a * reference + b of it.

    references: (R, P) float; images: (N, P) float. The residual of that fit is std(image) * sqrt(1 - r^2).
    """
    r = references - references.mean(1, keepdims=True)
    x = images - images.mean(1, keepdims=True)
    r_norm, x_norm = np.linalg.norm(r, axis=1), np.linalg.norm(x, axis=1)
    corr = (r @ x.T) / np.maximum(r_norm[:, None] * x_norm[None, :], 1e-12)
    residual = (x_norm[None, :] ** 2) * np.clip(1.0 - corr ** 2, 0.0, None)
    return np.sqrt(residual / references.shape[1])


def match_references(reference_dir: Path, images: torch.Tensor) -> pd.DataFrame:
    """Each reference slice's best-matching dataset slice: columns oasis_id, slice (index), rms, second_rms."""
    files = sorted(Path(reference_dir).glob("OAS1_*_a.jpg"))
    if not files:
        raise FileNotFoundError(f"{reference_dir}: no OASIS reference slices (OAS1_*_a.jpg)")
    refs = np.stack([reference_to_dataset_look(f, images.shape[-1]).ravel() for f in files])
    flat = images.reshape(len(images), -1).double().numpy()
    rms = np.concatenate([fitted_rms(refs, flat[s:s + 1024]) for s in range(0, len(flat), 1024)], axis=1)
    best = rms.argmin(1)
    part = np.partition(rms, 1, axis=1)
    return pd.DataFrame({"oasis_id": [f.name.removesuffix("_a.jpg") for f in files], "slice": best,
                         "rms": part[:, 0], "second_rms": part[:, 1]})


def read_clinical(path: Path) -> pd.DataFrame:
    """The OASIS-1 cross-sectional table indexed by ID, with the columns this project uses, renamed."""
    table = pd.read_csv(path, encoding="utf-8-sig")
    if "ID" not in table.columns or not set(CLINICAL_COLUMNS) <= set(table.columns):
        raise ValueError(f"{path}: expected the OASIS cross-sectional columns ID, {', '.join(CLINICAL_COLUMNS)}")
    return table.set_index("ID")[list(CLINICAL_COLUMNS)].rename(columns=CLINICAL_COLUMNS)


# ---------------------------------------------------------------- the whole recovery
def recover(images: torch.Tensor, labels: np.ndarray, keys: pd.DataFrame, reference_dir: Path | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Subjects of the slices. keys: one row per slice with columns split, path, sha256.
    reference_dir: the OASIS reference folder (axial/OAS1_*_a.jpg and oasis_cross-sectional.csv), or None.

    Returns (per-slice table, per-subject table, consistency report).
    """
    labels = np.asarray(labels)
    rec = group_and_order(images, labels)
    n_groups = int(rec.group.max()) + 1
    matches = None
    oasis_of_group: dict[int, str] = {}
    match_rms = np.full(len(labels), np.nan)
    if reference_dir is not None:
        matches = match_references(Path(reference_dir) / "axial", images)
        matched = matches[matches.rms < MATCH_RMS]
        for row in matched.itertuples():
            g = int(rec.group[row.slice])
            match_rms[row.slice] = row.rms
            oasis_of_group.setdefault(g, row.oasis_id)
    # Direction: the reference is the 14th slice of its block. Learn which way the brain-area trend runs
    # from the groups a reference orients, then apply it to the others.
    slope_sign = {}
    for g in range(n_groups):
        members = np.flatnonzero(rec.group == g)
        order = members[np.argsort(rec.position[members])]
        slope_sign[g] = np.sign(brain_area_slope(images, order))
    oriented_by_reference, agree = 0, []
    for g, oasis_id in oasis_of_group.items():
        ref_slice = int(matches.loc[matches.oasis_id == oasis_id, "slice"].iloc[0])
        size = int((rec.group == g).sum())
        pos = rec.position[ref_slice]
        if abs((size - 1 - pos) - REFERENCE_POSITION) < abs(pos - REFERENCE_POSITION):
            reverse_group(rec, g)
            slope_sign[g] = -slope_sign[g]
        oriented_by_reference += 1
        agree.append(slope_sign[g])
    cue = float(np.sign(np.sum(agree))) if agree else 1.0  # the slope sign that a correctly oriented chain shows
    cue_agreement = float(np.mean(np.array(agree) == cue)) if agree else None
    for g in range(n_groups):
        if g not in oasis_of_group and slope_sign[g] != cue and slope_sign[g] != 0:
            reverse_group(rec, g)

    # ids: OASIS where a reference names the group, else a stable pseudo id from the member hashes
    subject_of_group = {}
    for g in range(n_groups):
        members = np.flatnonzero(rec.group == g)
        if g in oasis_of_group:
            subject_of_group[g] = oasis_of_group[g]
        else:
            digest = hashlib.sha256("".join(sorted(keys.sha256.iloc[members])).encode()).hexdigest()[:8]
            subject_of_group[g] = f"{SHORT[CLASS_NAMES[labels[members[0]]]]}-{digest}"
    slices = pd.DataFrame({
        "split": keys.split.values, "path": keys.path.values, "sha256": keys.sha256.values,
        "label": [CLASS_NAMES[v] for v in labels],
        "subject": [subject_of_group[g] for g in rec.group],
        "position": rec.position,
        "reference_match_rms": np.round(match_rms, 2),
        "prev_rms": np.round(rec.prev_rms, 2), "next_rms": np.round(rec.next_rms, 2),
    })
    subjects = subject_table(slices, reference_dir)
    report = consistency_report(slices, subjects, matches, cue_agreement, oriented_by_reference, labels)
    return slices, subjects, report


def subject_table(slices: pd.DataFrame, reference_dir: Path | None) -> pd.DataFrame:
    """One row per subject: id, label, slice counts per split, and the OASIS clinical columns where known."""
    grouped = slices.groupby("subject", sort=True)
    table = pd.DataFrame({
        "label": grouped.label.first(),
        "slices": grouped.size(),
        "train_slices": grouped.split.apply(lambda s: int((s == "train").sum())),
        "test_slices": grouped.split.apply(lambda s: int((s == "test").sum())),
        "identified_by": grouped.reference_match_rms.apply(lambda r: "oasis reference" if r.notna().any() else ""),
    })
    clinical_path = Path(reference_dir) / "oasis_cross-sectional.csv" if reference_dir else None
    if clinical_path is not None and clinical_path.is_file():
        clinical = read_clinical(clinical_path)
        known = table.index[table.index.isin(clinical.index)]
        table = table.join(clinical.loc[known])
        # The two Moderate subjects are the only CDR 2 subjects in OASIS-1; which is which cannot be told.
        cdr2 = clinical.index[clinical.cdr == 2.0].tolist()
        table["candidates"] = ""
        moderate = table.label == "Moderate_Demented"
        if moderate.sum() == len(cdr2) and not table.loc[moderate].index.isin(clinical.index).any():
            table.loc[moderate, "candidates"] = "|".join(cdr2)
            table.loc[moderate, "cdr"] = 2.0
    table.index.name = "subject"
    return table.reset_index()


def consistency_report(slices, subjects, matches, cue_agreement, oriented, labels) -> dict:
    sizes = slices.groupby("subject").size()
    purity = slices.groupby("subject").label.nunique()
    steps = slices.next_rms.dropna().to_numpy()
    report = {
        "slices": len(slices),
        "subjects": int(len(sizes)),
        "subjects_per_class": {name: int((subjects.label == name).sum()) for name in CLASS_NAMES},
        "expected_subjects_per_class": EXPECTED_SUBJECTS,
        "group_sizes": {str(k): int(v) for k, v in sizes.value_counts().sort_index().items()},
        "label_purity": float((purity == 1).mean()),
        "chain_step_rms": {"median": round(float(np.median(steps)), 2),
                           "p95": round(float(np.percentile(steps, 95)), 2), "max": round(float(steps.max()), 2)},
        "subjects_in_both_splits": int(((subjects.train_slices > 0) & (subjects.test_slices > 0)).sum()),
    }
    if matches is not None:
        matched = matches[matches.rms < MATCH_RMS]
        hit = slices.iloc[matched.slice.to_numpy()]
        positions = hit.position.to_numpy()
        report["references"] = {
            "files": int(len(matches)),
            "matched": int(len(matched)),
            "unmatched": int(len(matches) - len(matched)),
            "match_rms": {"median": round(float(matched.rms.median()), 2), "max": round(float(matched.rms.max()), 2)},
            "unmatched_best_rms_min": round(float(matches.rms[matches.rms >= MATCH_RMS].min()), 2)
            if (matches.rms >= MATCH_RMS).any() else None,
            "second_best_rms_min": round(float(matched.second_rms.min()), 2) if len(matched) else None,
            "distinct_slices_matched": int(matched.slice.nunique()),
            "distinct_subjects_named": int(hit.subject.nunique()),
            "at_reference_position": int((positions == REFERENCE_POSITION).sum()),
            "direction_cue_agreement": cue_agreement,
            "oriented_by_reference": oriented,
        }
        if "cdr" in subjects.columns:
            named = subjects[subjects.identified_by != ""]
            agree = named.apply(lambda r: CDR_TO_LABEL.get(float(r.cdr)) == CLASS_NAMES.index(r.label)
                                if pd.notna(r.cdr) else False, axis=1)
            report["cdr_agreement"] = f"{int(agree.sum())}/{len(named)}"
            report["clinical_rows"] = int(subjects.age.notna().sum())
    report["checks"] = {
        "200 subjects of 32 slices": bool(len(sizes) == 200 and (sizes == BLOCK).all()),
        "one label per subject": bool((purity == 1).all()),
        "28/2/100/70 subjects per class": report["subjects_per_class"] == EXPECTED_SUBJECTS,
    }
    if matches is not None:
        refs = report["references"]
        report["checks"]["each match names a different subject"] = refs["distinct_subjects_named"] == refs["matched"]
        report["checks"]["every match at position 13"] = refs["at_reference_position"] == refs["matched"]
        if "cdr_agreement" in report:
            a, b = report["cdr_agreement"].split("/")
            report["checks"]["CDR agrees with label"] = a == b
    return report


# ---------------------------------------------------------------- using the shipped ids
def print_report(report: dict) -> None:
    print(f"{report['subjects']} subjects from {report['slices']} slices; group sizes {report['group_sizes']}")
    print(f"subjects per class {report['subjects_per_class']} (expected {report['expected_subjects_per_class']})")
    print(f"label purity {report['label_purity']:.3f}; chain step RMS {report['chain_step_rms']}; "
          f"{report['subjects_in_both_splits']} subjects have slices in both train and test")
    if "references" in report:
        r = report["references"]
        print(f"references: {r['matched']}/{r['files']} matched (RMS median {r['match_rms']['median']}, max "
              f"{r['match_rms']['max']}; best unmatched {r['unmatched_best_rms_min']}; runner-up min "
              f"{r['second_best_rms_min']}), {r['at_reference_position']} at position {REFERENCE_POSITION}, "
              f"direction cue agrees on {r['direction_cue_agreement']:.1%}")
    if "cdr_agreement" in report:
        print(f"CDR agrees with label for {report['cdr_agreement']} named subjects; "
              f"{report['clinical_rows']} subjects with clinical data")
    for name, ok in report["checks"].items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alzmri-train data subjects", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="default: %(default)s")
    parser.add_argument("--reference-dir", type=Path, default=default_reference_dir(),
                        help="OASIS-1 reference slices (axial/) and clinical table; 'none' to group without "
                             "(pseudo ids only). Default: %(default)s")
    parser.add_argument("--out-dir", type=Path, default=ASSETS_DIR, help="default: %(default)s")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    reference = None if str(args.reference_dir).lower() == "none" else args.reference_dir
    if reference is not None and not (reference / "axial").is_dir():
        print(f"error: {reference}/axial not found; pass --reference-dir none to group without references",
              file=sys.stderr)
        return 2
    try:
        parts = [load_split_with_keys(split, args.data_dir) for split in ("train", "test")]
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    images = torch.cat([p[0].images for p in parts])
    labels = torch.cat([p[0].labels for p in parts]).numpy()
    keys = pd.concat([p[1] for p in parts], ignore_index=True)
    slices, subjects, report = recover(images, labels, keys, reference)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    slices.to_csv(args.out_dir / SUBJECTS_PATH.name, index=False)
    subjects.to_csv(args.out_dir / SUBJECT_TABLE_PATH.name, index=False)
    (args.out_dir / SUBJECTS_REPORT_PATH.name).write_text(json.dumps(report, indent=1) + "\n")
    print_report(report)
    print(f"wrote {args.out_dir / SUBJECTS_PATH.name}, {SUBJECT_TABLE_PATH.name} and {SUBJECTS_REPORT_PATH.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
