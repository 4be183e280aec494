"""Fetching, splitting and checking the Alzheimer MRI dataset (what builds the shipped assets).

Reading the slices at runtime is `model.core.dataset`; this module adds what only training and the
`data` command need: the seeded splits, the hub download, the project's split list and its checks.

Run `python -m model.training.data download --dest DIR` to fetch the dataset from the hub
and split it as `assets/split.csv` says (the project's split, not the hub's), or
`python -m model.training.data check [DIR]` to validate a local copy;
`python -m model.training.data split-list [DIR]` writes that list from a local copy.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from model.core.assets import read_model_config, sha256_file
from model.core.constants import (
    CLASS_NAMES,
    DATASET_CARD_COUNTS,
    HF_DATASET_ID,
    METRICS_PATH,
    NUM_CLASSES,
    SPLIT_FILES,
    SPLIT_LIST_PATH,
    default_data_dir,
)
from model.core.dataset import (
    DatasetError,
    decode_image,
    fingerprint,
    load_split,
    load_split_with_keys,
    parquet_records,
    subjects_for,
)


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified split of indices into (keep, held_out).

    Each class gives round(fraction * count) of its items (at least one when the
    class has two or more) to the held-out part.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    gen = torch.Generator().manual_seed(seed)
    keep, held = [], []
    for c in range(NUM_CLASSES):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_held = int(round(fraction * len(idx)))
        if n_held == 0 and len(idx) >= 2:
            n_held = 1
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return torch.sort(torch.cat(keep)).values, torch.sort(torch.cat(held)).values


def grouped_split(labels, groups, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of indices into (keep, held_out) that keeps each group (subject) whole.

    labels, groups: (N,) arrays; a group has one label. Each class gives round(fraction * its groups) of its
    groups to the held-out part, and never its last one. A class of one subject stays in `keep`, and so does
    one of two at fractions up to 0.25 (round(0.5) = 0): Moderate has two brains in all, and training on one
    of them instead of two costs more than validating on it gains.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    labels, groups = np.asarray(labels), np.asarray(groups)
    rng = np.random.default_rng(seed)
    held_groups = []
    for c in range(NUM_CLASSES):
        names = np.array(sorted(set(groups[labels == c].tolist())), dtype=object)
        n_held = min(int(round(fraction * len(names))), len(names) - 1)
        if n_held < 1:
            continue
        held_groups.extend(names[rng.permutation(len(names))[:n_held]].tolist())
    held = np.isin(groups, np.array(held_groups, dtype=object))
    return np.flatnonzero(~held), np.flatnonzero(held)


def slices_with_subjects(split: str, data_dir=None, limit: int | None = None):
    """(slices, their keys, their subject ids (N,)) of one split, in `load_split` order; limit: the first N."""
    data, keys = load_split_with_keys(split, data_dir)
    if limit is not None:
        data, keys = data.subset(range(min(limit, len(data)))), keys.iloc[:limit]
    return data, keys, subjects_for(split, keys.path, keys.sha256)


def shipped_split(labels, groups, train_config: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(trained, held out): indices of the train split the shipped network trained on and of the subjects its
    epoch was chosen on (its `--val-by-subject` split, redrawn from its recorded config); all and none when it
    held out no subjects."""
    tc = read_model_config().get("train_config", {}) if train_config is None else train_config
    if not tc.get("val_by_subject"):
        return np.arange(len(labels)), np.arange(0)
    return grouped_split(np.asarray(labels), groups, tc["val_fraction"], tc.get("split_seed") or tc.get("seed", 0))


def download(dest: str | Path, repo_id: str = HF_DATASET_ID) -> list[Path]:
    """Fetch the dataset's parquet files from the Hugging Face hub into `dest`.

    Needs network access and the `huggingface_hub` package. Whatever the hub's
    file names (they may carry a hash suffix), the splits land as
    `<dest>/train-00000-of-00001.parquet` and `<dest>/test-00000-of-00001.parquet`.
    """
    try:
        from huggingface_hub import snapshot_download  # optional: only `data download` needs it, with this message
    except ImportError as exc:  # optional dependency: only needed for this command
        raise DatasetError("downloading needs `pip install huggingface_hub`") from exc
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        snapshot = Path(snapshot_download(repo_id=repo_id, repo_type="dataset", allow_patterns=["*.parquet"],
                                          local_dir=dest / ".hub"))
    except Exception as exc:  # the hub client raises many kinds (network, auth, offline mode); all mean the same here
        raise DatasetError(f"could not download {repo_id} from the Hugging Face hub "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}). "
                           "Check the network connection, or copy the two parquet files by hand "
                           f"into {dest}") from exc
    paths = []
    for split, name in SPLIT_FILES.items():
        found = sorted(snapshot.rglob(f"{split}-*.parquet"))
        if len(found) != 1:
            raise DatasetError(f"{repo_id}: expected one {split} parquet file on the hub, found {len(found)}")
        target = dest / name
        target.write_bytes(found[0].read_bytes())
        paths.append(target)
    return paths


def describe(data_dir: str | Path | None = None) -> dict:
    """Validate both splits and report their class counts and checksums."""
    report = {}
    for split in SPLIT_FILES:
        data = load_split(split, data_dir)
        report[split] = {"rows": len(data), "class_counts": dict(zip(CLASS_NAMES, data.class_counts()))}
    report["sha256"] = fingerprint(data_dir)
    return report


def differences_from_card(report: dict) -> list[str]:
    """Where a `describe` report's class counts differ from the dataset card's."""
    notes = []
    for split, expected in DATASET_CARD_COUNTS.items():
        got = list(report.get(split, {}).get("class_counts", {}).values())
        if got != expected:
            notes.append(f"{split} class counts {got} differ from the dataset card's {expected}; "
                         "results will not be comparable with the shipped metrics")
    return notes


# --- The project's split, fixed by a committed list of content keys --------------------------------------------
#
# The hub's train/test files are not the project's split (the shared copy's split was redrawn), so the split is a
# list, `assets/split.csv`: one row per slice with its split, origin path, class and two keys. A slice is found in
# the list by the SHA-256 of its bytes, or, when the hub's bytes differ (the images re-encoded), by a difference
# hash of its decoded pixels.

# Bits per side of the difference hash. Measured on the 6,400 slices (which come from a few hundred brains, so
# neighbouring slices look alike): 8 x 8 gives only 2,585 distinct values and 16 x 16 gives 6,397; 24 x 24 is
# unique but, after re-encoding every slice as JPEG at quality 50, pairs two slices with each other's entries;
# 32 x 32 is unique, any two slices differ in at least 36 of its 1,024 bits, a re-encode at quality 50 moves a
# slice by at most 53 bits, and every slice is found again.
DHASH_SIZE = 32
# A slice further than this share of the hash's bits from every list entry is not matched by its pixels at all.
DHASH_MAX_DISTANCE = 0.0625  # 64 of 1,024 bits
SPLIT_LIST_COLUMNS = ("split", "path", "label", "sha256", "dhash")


def dhash(image: np.ndarray, size: int = DHASH_SIZE) -> str:
    """Difference hash of one slice: `size * size` bits, as `size * size / 4` hex characters.

    image: (H, W) uint8 grayscale, H >= size and W > size (a (128, 128) slice from `decode_image`). The image is
    cut into `size` rows of `size + 1` cells (edges at floor(i * H / n)); a bit is 1 where a cell's mean is
    brighter than its right neighbour's. Sums are integers and means are compared by cross-multiplying, so the
    key is exact on every platform: re-encoding the same pixels losslessly keeps it, a lossy re-encode flips a few
    bits (see `DHASH_SIZE`).
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.shape[0] < size or img.shape[1] <= size:
        raise ValueError(f"dhash needs a 2-D image of at least {size} x {size + 1} pixels, got shape {img.shape}")
    h, w = img.shape
    rows = [(i * h) // size for i in range(size)]
    cols = [(i * w) // (size + 1) for i in range(size + 1)]
    sums = np.add.reduceat(np.add.reduceat(img.astype(np.int64), rows, axis=0), cols, axis=1)  # (size, size + 1)
    counts = np.outer(np.diff(rows + [h]), np.diff(cols + [w]))  # pixels per cell, (size, size + 1)
    brighter = sums[:, :-1] * counts[:, 1:] > sums[:, 1:] * counts[:, :-1]  # left mean > right mean
    return np.packbits(brighter.ravel()).tobytes().hex()


def _signs(hashes) -> np.ndarray:
    """(N, bits) float32 of +-1 from N hex hashes, so Hamming distance = (bits - a @ b) / 2."""
    if not len(hashes):
        return np.zeros((0, DHASH_SIZE * DHASH_SIZE), dtype=np.float32)
    packed = np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), dtype=np.uint8).reshape(len(hashes), -1)
    return np.unpackbits(packed, axis=1).astype(np.float32) * 2 - 1


def parquet_slices(paths) -> pd.DataFrame:
    """Every slice of the given parquet files (Hugging Face schema), in file and row order, with its keys.

    Columns: source (`<file name> row <i>`), path (the file's `image.path`, may be empty), label (int), sha256
    (of the image bytes), dhash (of the decoded (128, 128) slice) and bytes. Raises DatasetError naming the file
    and row for a missing file or column, a bad label or an undecodable image.
    """
    rows = []
    for path in paths:
        for where, data, origin, label in parquet_records(path):
            rows.append((where, origin, label, hashlib.sha256(data).hexdigest(),
                         dhash(decode_image(data, name=where)), data))
    return pd.DataFrame(rows, columns=["source", "path", "label", "sha256", "dhash", "bytes"])


def _same_key_note(frame: pd.DataFrame, key: str) -> str | None:
    shared = frame[frame.duplicated(key, keep=False)].groupby(key)["path"].apply(list).tolist()
    if not shared:
        return None
    return f"{len(shared)} {key} value(s) are shared by more than one slice, e.g. {shared[:3]}"


def make_split_list(data_dir: str | Path | None = None) -> pd.DataFrame:
    """The split of the local copy as a list: one row per slice, train then test, each in `load_split` order.

    Columns (`SPLIT_LIST_COLUMNS`): split, path (`<class folder>/<file>`), label (class name), sha256 (of the
    image bytes) and dhash (`dhash` of the decoded slice, hex). Raises DatasetError when either key is shared by
    two slices, since the list could not tell them apart.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    frames = []
    for split, name in SPLIT_FILES.items():
        slices = parquet_slices([data_dir / name])
        slices["path"] = slices["path"].where(slices["path"] != "", slices["source"])
        frames.append(slices.assign(split=split))
    out = pd.concat(frames, ignore_index=True)
    out["label"] = [CLASS_NAMES[i] for i in out["label"]]
    notes = [n for n in (_same_key_note(out, "sha256"), _same_key_note(out, "dhash"), _same_key_note(out, "path"))
             if n]
    if notes:
        raise DatasetError(f"{data_dir}: cannot make a split list: {'; '.join(notes)}")
    return out[list(SPLIT_LIST_COLUMNS)]


def read_split_list(path: str | Path = SPLIT_LIST_PATH) -> pd.DataFrame:
    """Read and check a split list written by `make_split_list` (columns `SPLIT_LIST_COLUMNS`).

    Raises DatasetError naming the file for a missing file or column, an unknown split or class, a key of the
    wrong length, or a key or path listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: split list not found (make one with `python -m model.training.data split-list`)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several parser errors for a damaged file
        raise DatasetError(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [c for c in SPLIT_LIST_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; expected {list(SPLIT_LIST_COLUMNS)}")
    problems = []
    for column, allowed in (("split", set(SPLIT_FILES)), ("label", set(CLASS_NAMES))):
        bad = sorted(set(frame[column]) - allowed)
        if bad:
            problems.append(f"unknown {column} value(s) {bad[:5]}; expected one of {sorted(allowed)}")
    for column, length in (("sha256", 64), ("dhash", DHASH_SIZE * DHASH_SIZE // 4)):
        bad = np.flatnonzero(~frame[column].str.fullmatch(f"[0-9a-f]{{{length}}}").to_numpy(dtype=bool))
        if len(bad):
            problems.append(f"{len(bad)} {column} value(s) are not {length} hex characters (first at row {bad[0]})")
    problems += [n for n in (_same_key_note(frame, "sha256"), _same_key_note(frame, "dhash"),
                             _same_key_note(frame, "path")) if n]
    if problems:
        raise DatasetError(f"{path}: {'; '.join(problems)}")
    return frame[list(SPLIT_LIST_COLUMNS)]


def _examples(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def match_split_list(slices: pd.DataFrame, split_list: pd.DataFrame, *,
                     max_distance: float = DHASH_MAX_DISTANCE) -> np.ndarray:
    """For each slice (a `parquet_slices` row), the row of `split_list` that is the same image: (N,) int64.

    A slice is matched by the SHA-256 of its bytes first, else by an equal dhash, else by its nearest dhash by
    Hamming distance, taken only when that entry's nearest slice is this one too (so one-to-one) and the two
    differ in at most `max_distance` of the hash's bits. Raises DatasetError unless every slice finds one entry,
    every entry is found exactly once and each slice has its entry's class; the message counts and names what
    is missing (an entry no slice matched), extra (a slice that matched none) and mislabelled.
    """
    n, m = len(slices), len(split_list)
    listed = {c: split_list[c].to_numpy() for c in SPLIT_LIST_COLUMNS}
    found = {c: slices[c].to_numpy() for c in ("source", "path", "label", "sha256", "dhash")}
    match = np.full(n, -1, dtype=np.int64)
    taken = np.zeros(m, dtype=bool)
    for key in ("sha256", "dhash"):
        index = {value: row for row, value in enumerate(listed[key])}
        for i, value in enumerate(found[key]):
            row = index.get(value)
            if match[i] < 0 and row is not None and not taken[row]:
                match[i], taken[row] = row, True
    free_slices, free_rows = np.flatnonzero(match < 0), np.flatnonzero(~taken)
    if len(free_slices) and len(free_rows):
        q, r = _signs(found["dhash"][free_slices]), _signs(listed["dhash"][free_rows])
        dist = (q.shape[1] - q @ r.T) / 2  # Hamming distances, (free slices, free entries)
        dist[dist > max_distance * q.shape[1]] = np.inf
        while np.isfinite(dist).any():
            nearest_row, nearest_slice = dist.argmin(1), dist.argmin(0)
            mutual = np.flatnonzero((nearest_slice[nearest_row] == np.arange(len(free_slices)))
                                    & np.isfinite(dist[np.arange(len(free_slices)), nearest_row]))
            if not len(mutual):
                break
            match[free_slices[mutual]] = free_rows[nearest_row[mutual]]
            dist[mutual, :] = np.inf
            dist[:, nearest_row[mutual]] = np.inf
        taken[match[match >= 0]] = True

    problems = []
    missing = [f"{p} ({s})" for p, s in zip(listed["path"][~taken], listed["split"][~taken])]
    if missing:
        problems.append(f"{len(missing)} listed slice(s) missing: {_examples(missing)}")
    by_sha, by_dhash = dict(zip(listed["sha256"], listed["path"])), dict(zip(listed["dhash"], listed["path"]))
    extra = []
    for i in np.flatnonzero(match < 0):
        copy_of = by_sha.get(found["sha256"][i]) or by_dhash.get(found["dhash"][i])
        extra.append(found["source"][i] + (f" ({found['path'][i]})" if found["path"][i] else "")
                     + (f", a second copy of {copy_of}" if copy_of else ""))
    if extra:
        problems.append(f"{len(extra)} slice(s) not in the list: {_examples(extra)}")
    wrong = [f"{found['source'][i]} is {CLASS_NAMES[found['label'][i]]}, listed as {listed['label'][match[i]]} "
             f"({listed['path'][match[i]]})"
             for i in np.flatnonzero(match >= 0) if listed["label"][match[i]] != CLASS_NAMES[found["label"][i]]]
    if wrong:
        problems.append(f"{len(wrong)} slice(s) of another class than listed: {_examples(wrong, 3)}")
    if problems:
        raise DatasetError(f"{n} slices against {m} listed: {'; '.join(problems)}")
    return match


def _write_split(path: Path, images: list[dict], labels: list[int]) -> None:
    """Write one split in the Hugging Face schema the way the shared copy was written (pyarrow's defaults), via a
    temporary file so a failure never leaves half a file under the final name."""
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"image": pa.array(images, type=image_type), "label": pa.array(labels, type=pa.int64())})
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(table, partial)
    partial.replace(path)


def apply_split_list(paths, dest: str | Path, split_list: pd.DataFrame | str | Path = SPLIT_LIST_PATH) -> list[Path]:
    """Re-split the slices of any parquet files (e.g. the hub's) as `split_list` says, into `dest`.

    paths: parquet files in the Hugging Face schema, in any train/test arrangement. Every slice is matched to its
    list entry (`match_split_list`); only when all match are `<dest>/train-00000-of-00001.parquet` and
    `<dest>/test-00000-of-00001.parquet` written, each in the list's order, with the slice's bytes and the list's
    `<class folder>/<file>` as `image.path`. Given the shared copy's bytes (and the pyarrow that wrote it) this
    reproduces its files byte for byte. Returns the two paths; raises DatasetError (see `match_split_list`) and
    writes nothing otherwise.
    """
    split_list = split_list if not isinstance(split_list, (str, Path)) else read_split_list(split_list)
    slices = parquet_slices(paths)
    match = match_split_list(slices, split_list)
    slice_of = np.empty(len(split_list), dtype=np.int64)
    slice_of[match] = np.arange(len(match))  # list row -> slice
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    data, labels, names = slices["bytes"].to_numpy(), slices["label"].to_numpy(), split_list["path"].to_numpy()
    for split, name in SPLIT_FILES.items():
        rows = np.flatnonzero(split_list["split"].to_numpy() == split)
        _write_split(dest / name, [{"bytes": data[slice_of[r]], "path": names[r]} for r in rows],
                     [int(labels[slice_of[r]]) for r in rows])
        out.append(dest / name)
    return out


def check_split(data_dir: str | Path | None = None,
                split_list: pd.DataFrame | str | Path = SPLIT_LIST_PATH) -> None:
    """Check that a local copy holds exactly the listed slices, each in its listed split.

    Raises DatasetError (see `match_split_list`), or naming the slices that sit in the other split.
    """
    split_list = split_list if not isinstance(split_list, (str, Path)) else read_split_list(split_list)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    slices = parquet_slices([data_dir / name for name in SPLIT_FILES.values()])
    match = match_split_list(slices, split_list)
    split_of_file = {name: split for split, name in SPLIT_FILES.items()}
    here = [split_of_file[source.rsplit(" row ", 1)[0]] for source in slices["source"]]
    listed = split_list["split"].to_numpy()
    names = split_list["path"].to_numpy()
    moved = [f"{names[r]} is in {s}, listed in {listed[r]}" for s, r in zip(here, match) if listed[r] != s]
    if moved:
        raise DatasetError(f"{data_dir}: {len(moved)} slice(s) in another split than the split list says: "
                           f"{_examples(moved)}")


def download_split(dest: str | Path, split_list: str | Path = SPLIT_LIST_PATH,
                   repo_id: str = HF_DATASET_ID) -> list[Path]:
    """Fetch the dataset from the hub (`download`) and re-split it as `split_list` says (`apply_split_list`).

    The hub's own files land in `<dest>/.hub` first; only a download in which every listed slice is found once
    reaches `<dest>`. On a mismatch the DatasetError says what is missing or extra and `<dest>/.hub` keeps the
    hub's files for a look.
    """
    listed = read_split_list(split_list)  # a bad list fails before the download, not after
    staging = Path(dest) / ".hub"
    try:
        hub_files = download(staging, repo_id)
    except DatasetError as exc:  # files copied by hand belong in dest, not in the staging folder
        raise DatasetError(str(exc).replace(f"into {staging}", f"into {dest}")) from exc
    try:
        paths = apply_split_list(hub_files, dest, listed)
    except DatasetError as exc:
        raise DatasetError(f"{repo_id} does not hold the slices of {Path(split_list).name} (its files are in "
                           f"{staging}): {exc}") from exc
    for path in hub_files:  # the snapshot under .hub/.hub stays, as `download` leaves it
        path.unlink()
    return paths


def differences_from_shipped(report: dict) -> list[str]:
    """Where a `describe` report's file SHA-256s differ from those the shipped metrics were computed on."""
    if not METRICS_PATH.is_file():
        return []
    shipped = json.loads(METRICS_PATH.read_text()).get("data_sha256") or {}
    return [f"{split} file sha256 {report.get('sha256', {}).get(split, 'missing')[:12]}… is not the "
            f"{digest[:12]}… the shipped metrics were computed on (other slices or split, re-encoded images, or "
            "another pyarrow version wrote the file); tests/model/test_shipped_model.py checks these hashes"
            for split, digest in shipped.items() if report.get("sha256", {}).get(split) != digest]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.training.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help=f"fetch {HF_DATASET_ID} from the Hugging Face hub and split it as the "
                                         "split list says")
    dl.add_argument("--dest", type=Path, default=default_data_dir(), help="target folder (default: %(default)s)")
    dl.add_argument("--split-list", type=Path, default=SPLIT_LIST_PATH,
                    help="the project's split, one row per slice (default: %(default)s)")
    dl.add_argument("--keep-hub-split", action="store_true",
                    help="keep the hub's own train/test files instead; the shipped model and metrics were not "
                         "made on them (default: off)")
    dl.add_argument("--skip-existing", action="store_true",
                    help="if DEST already holds both split files, check them against the split list instead of "
                         "downloading (default: off)")
    ck = sub.add_parser("check", help="validate a local copy and print its class counts")
    ck.add_argument("data_dir", nargs="?", type=Path, default=default_data_dir(), help="default: %(default)s")
    sl = sub.add_parser("split-list", help="write the split list (split, path, class, sha256, dhash per slice) "
                                           "from a local copy")
    sl.add_argument("data_dir", nargs="?", type=Path, default=default_data_dir(), help="default: %(default)s")
    sl.add_argument("--out", type=Path, default=SPLIT_LIST_PATH, help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            if args.skip_existing and all((args.dest / name).is_file() for name in SPLIT_FILES.values()):
                if not args.keep_hub_split:
                    check_split(args.dest, args.split_list)
                print(f"{args.dest}: already there" + ("" if args.keep_hub_split else
                      f", every slice where {args.split_list.name} puts it") + "; not downloaded again")
                paths = [args.dest / name for name in SPLIT_FILES.values()]
            elif args.keep_hub_split:
                paths = download(args.dest)
            else:
                paths = download_split(args.dest, args.split_list)
            for path in paths:
                print(f"{path}  sha256={sha256_file(path)}")
            report = describe(args.dest)  # decodes every image: a bad download fails here, not in training
            print(json.dumps(report, indent=2))
            for note in differences_from_card(report) + differences_from_shipped(report):
                print(f"note: {note}", file=sys.stderr)
        elif args.command == "split-list":
            frame = make_split_list(args.data_dir)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(args.out, index=False)
            counts = frame.groupby("split", sort=False).size().to_dict()
            print(f"{args.out}: {len(frame)} slices {counts}; sha256 and {DHASH_SIZE} x {DHASH_SIZE} dhash each unique")
        else:
            print(json.dumps(describe(args.data_dir), indent=2))
    except DatasetError as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
