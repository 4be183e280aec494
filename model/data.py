"""Loading, validating and splitting the Alzheimer MRI slices.

Two on-disk sources are understood:

* the Hugging Face parquet schema of `Falah/Alzheimer_MRI`: columns `image`
  (a struct with `bytes` and `path`) and `label` (int, see `CLASS_NAMES`);
* an image folder: `<root>/<class name>/<file>` with one folder per class name.

Images are decoded once into a uint8 tensor of shape (N, 1, S, S); training,
evaluation and the dashboard all work from that array, so no epoch pays for JPEG
decoding again.

Run `python -m model.data download --dest DIR` to fetch the dataset from the hub,
or `python -m model.data check [DIR]` to validate a local copy.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    import pandas as pd

from model.constants import (
    CLASS_NAMES,
    DATASET_CARD_COUNTS,
    HF_DATASET_ID,
    IMAGE_SIZE,
    NUM_CLASSES,
    SPLIT_FILES,
    default_data_dir,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class DatasetError(ValueError):
    """The dataset on disk is missing, malformed or holds an unusable record."""


@dataclass(frozen=True)
class SliceSet:
    """Decoded slices of one split.

    images: uint8 tensor (N, 1, S, S), grayscale 0..255.
    labels: int64 tensor (N,), values in 0..NUM_CLASSES-1.
    ids:    N strings naming each slice's origin (`<class>/<file>` or a row).
    """

    images: torch.Tensor
    labels: torch.Tensor
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index) -> "SliceSet":
        index = torch.as_tensor(index, dtype=torch.long)
        return SliceSet(self.images[index], self.labels[index], tuple(self.ids[i] for i in index.tolist()))

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=NUM_CLASSES).tolist()


def decode_image(data: bytes, size: int = IMAGE_SIZE, *, name: str = "image") -> np.ndarray:
    """Decode image bytes to a (size, size) uint8 grayscale array.

    Uses the same grayscale/pad-to-square/resize rule as uploads
    (`scan_io.to_square_slice`), so a non-square training image is not stretched
    where a user's upload would be padded. Raises DatasetError naming `name`
    when the bytes are not a readable image.
    """
    from model.scan_io import to_square_slice

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return to_square_slice(img, size)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{name}: not a readable image ({exc.__class__.__name__}: {exc})") from exc


def _stack(arrays: list[np.ndarray], labels: list[int], ids: list[str]) -> SliceSet:
    images = torch.from_numpy(np.stack(arrays)).unsqueeze(1) if arrays else torch.zeros(0, 1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    return SliceSet(images.contiguous(), torch.tensor(labels, dtype=torch.long), tuple(ids))


def load_parquet(path: str | Path, size: int = IMAGE_SIZE, limit: int | None = None) -> SliceSet:
    """Read and decode a parquet file in the Hugging Face schema.

    Raises DatasetError naming the file (and row) for a missing file, missing
    columns, a label outside 0..3 or an undecodable image.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DatasetError(f"{path}: not a readable parquet file ({exc})") from exc
    missing = {"image", "label"} - set(table.column_names)
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {sorted(missing)}; expected 'image' (struct with 'bytes') and 'label'"
        )
    rows = table.num_rows if limit is None else min(limit, table.num_rows)
    images = table.column("image").slice(0, rows).to_pylist()
    labels = table.column("label").slice(0, rows).to_pylist()
    arrays, ids = [], []
    for row, (image, label) in enumerate(zip(images, labels)):
        where = f"{path.name} row {row}"
        if not isinstance(image, dict) or not image.get("bytes"):
            raise DatasetError(f"{where}: 'image' has no 'bytes'")
        if not isinstance(label, int) or not 0 <= label < NUM_CLASSES:
            raise DatasetError(f"{where}: label {label!r} is outside 0..{NUM_CLASSES - 1}")
        arrays.append(decode_image(image["bytes"], size, name=where))
        ids.append(image.get("path") or where)
    return _stack(arrays, labels, ids)


def slice_keys(split: str, data_dir: str | Path | None = None) -> pd.DataFrame:
    """The key of every slice of `split`, in `load_split` order: columns split, path (origin), sha256 (of its
    bytes). Subject ids (`model.subjects`) are attached to slices by this key."""
    import pandas as pd

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    parquet = data_dir / SPLIT_FILES[split]
    rows = []
    if parquet.is_file():
        import pyarrow.parquet as pq

        for row, image in enumerate(pq.read_table(parquet, columns=["image"]).column("image").to_pylist()):
            rows.append((image.get("path") or f"{parquet.name} row {row}", hashlib.sha256(image["bytes"]).hexdigest()))
    else:
        root = data_dir / split
        for name in CLASS_NAMES:
            folder = root / name
            for file in sorted(folder.iterdir()) if folder.is_dir() else []:
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    rows.append((f"{name}/{file.name}", sha256_file(file)))
    return pd.DataFrame({"split": split, "path": [r[0] for r in rows], "sha256": [r[1] for r in rows]})


def load_split_with_keys(split: str, data_dir: str | Path | None = None):
    """(`load_split`, `slice_keys`) of one split, checked to be in step."""
    data, keys = load_split(split, data_dir), slice_keys(split, data_dir)
    if len(keys) != len(data) or list(keys.path) != list(data.ids):
        raise DatasetError(f"{split}: slice keys and decoded slices are out of step")
    return data, keys


def load_image_folder(root: str | Path, size: int = IMAGE_SIZE) -> SliceSet:
    """Read `<root>/<class name>/<file>` images; folder names must be CLASS_NAMES."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found")
    unknown = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in CLASS_NAMES)
    if unknown:
        raise DatasetError(f"{root}: unknown class folder(s) {unknown}; expected {list(CLASS_NAMES)}")
    arrays, labels, ids = [], [], []
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name
        if not folder.is_dir():
            continue
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            arrays.append(decode_image(file.read_bytes(), size, name=str(file)))
            labels.append(label)
            ids.append(f"{name}/{file.name}")
    if not arrays:
        raise DatasetError(f"{root}: no images found in class folders {list(CLASS_NAMES)}")
    return _stack(arrays, labels, ids)


def load_split(split: str, data_dir: str | Path | None = None, size: int = IMAGE_SIZE,
               limit: int | None = None) -> SliceSet:
    """Load 'train' or 'test' from a parquet folder or an image-folder layout.

    The image-folder layout is `<data_dir>/<split>/<class name>/<file>`.
    """
    if split not in SPLIT_FILES:
        raise DatasetError(f"unknown split {split!r}; choose one of {sorted(SPLIT_FILES)}")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    parquet = data_dir / SPLIT_FILES[split]
    if parquet.is_file():
        return load_parquet(parquet, size, limit)
    if (data_dir / split).is_dir():
        data = load_image_folder(data_dir / split, size)
        return data if limit is None else data.subset(range(min(limit, len(data))))
    raise DatasetError(
        f"{data_dir}: no {SPLIT_FILES[split]} and no {split}/ image folder. "
        f"Download the dataset with `python -m model.data download --dest {data_dir}`."
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
    one of two at fractions under 0.25 (round(0.4) = 0): Moderate has two brains in all, and training on one
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


def fingerprint(data_dir: str | Path | None = None) -> dict[str, str]:
    """SHA-256 of each split present, to record which data made a model.

    A parquet split is its file's hash. An image-folder split (`<split>/<class>/<file>`) is the hash of its
    sorted `<class>/<file>  <file sha256>` lines, so renaming, relabelling or editing any image changes it.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    out = {}
    for split, name in SPLIT_FILES.items():
        path = data_dir / name
        if path.is_file():
            out[split] = sha256_file(path)
        elif (data_dir / split).is_dir():
            lines = sorted(f"{file.relative_to(data_dir / split).as_posix()}  {sha256_file(file)}"
                           for file in (data_dir / split).glob("*/*") if file.suffix.lower() in IMAGE_SUFFIXES)
            out[split] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return out


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download(dest: str | Path, repo_id: str = HF_DATASET_ID) -> list[Path]:
    """Fetch the dataset's parquet files from the Hugging Face hub into `dest`.

    Needs network access and the `huggingface_hub` package. Whatever the hub's
    file names (they may carry a hash suffix), the splits land as
    `<dest>/train-00000-of-00001.parquet` and `<dest>/test-00000-of-00001.parquet`.
    """
    try:
        from huggingface_hub import snapshot_download
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help=f"fetch {HF_DATASET_ID} from the Hugging Face hub")
    dl.add_argument("--dest", type=Path, default=default_data_dir(), help="target folder (default: %(default)s)")
    ck = sub.add_parser("check", help="validate a local copy and print its class counts")
    ck.add_argument("data_dir", nargs="?", type=Path, default=default_data_dir(), help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            for path in download(args.dest):
                print(f"{path}  sha256={sha256_file(path)}")
            report = describe(args.dest)  # decodes every image: a bad download fails here, not in training
            print(json.dumps(report, indent=2))
            for note in differences_from_card(report):
                print(f"note: {note}", file=sys.stderr)
        else:
            print(json.dumps(describe(args.data_dir), indent=2))
    except DatasetError as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
