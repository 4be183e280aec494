"""The dataset's slices as the runtime reads them: decoding, the two on-disk layouts, slice keys, subject ids.

Two on-disk sources are understood:

* the Hugging Face parquet schema of `Falah/Alzheimer_MRI`: columns `image`
  (a struct with `bytes` and `path`) and `label` (int, see `CLASS_NAMES`);
* an image folder: `<root>/<class name>/<file>` with one folder per class name.

Images are decoded once into a uint8 tensor of shape (N, 1, S, S); training,
evaluation and the dashboard all work from that array, so no epoch pays for JPEG
decoding again. Fetching, splitting and checking the dataset is training's job
(`model.training.data`); recovering the subject ids is `model.training.subjects`.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from PIL import Image, UnidentifiedImageError

from model.core.assets import sha256_file
from model.core.constants import CLASS_NAMES, IMAGE_SIZE, NUM_CLASSES, SPLIT_FILES, SUBJECTS_PATH, default_data_dir
from model.core.datafiles import IMAGE_SUFFIXES
from model.scans.scan_io import to_square_slice


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
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return to_square_slice(img, size)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{name}: not a readable image ({exc.__class__.__name__}: {exc})") from exc


def _stack(arrays: list[np.ndarray], labels: list[int], ids: list[str]) -> SliceSet:
    images = torch.from_numpy(np.stack(arrays)).unsqueeze(1) if arrays else torch.zeros(0, 1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    return SliceSet(images.contiguous(), torch.tensor(labels, dtype=torch.long), tuple(ids))


def parquet_records(path: str | Path, limit: int | None = None):
    """Yield (where, image bytes, path, label) for each row of a parquet file in the Hugging Face schema.

    `where` is `<file name> row <i>`. Raises DatasetError naming the file (and row) for a missing file,
    missing columns, a label outside 0..3 or a row without image bytes.
    """
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
    for row, (image, label) in enumerate(zip(images, labels)):
        where = f"{path.name} row {row}"
        if not isinstance(image, dict) or not image.get("bytes"):
            raise DatasetError(f"{where}: 'image' has no 'bytes'")
        if not isinstance(label, int) or not 0 <= label < NUM_CLASSES:
            raise DatasetError(f"{where}: label {label!r} is outside 0..{NUM_CLASSES - 1}")
        yield where, image["bytes"], image.get("path") or "", label


def load_parquet(path: str | Path, size: int = IMAGE_SIZE, limit: int | None = None) -> SliceSet:
    """Read and decode a parquet file in the Hugging Face schema (see `parquet_records` for its errors)."""
    arrays, labels, ids = [], [], []
    for where, data, origin, label in parquet_records(path, limit):
        arrays.append(decode_image(data, size, name=where))
        labels.append(label)
        ids.append(origin or where)
    return _stack(arrays, labels, ids)


def slice_keys(split: str, data_dir: str | Path | None = None) -> pd.DataFrame:
    """The key of every slice of `split`, in `load_split` order: columns split, path (origin), sha256 (of its
    bytes). Subject ids (`model.training.subjects`) are attached to slices by this key."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    parquet = data_dir / SPLIT_FILES[split]
    rows = []
    if parquet.is_file():
        for where, data, origin, _ in parquet_records(parquet):
            rows.append((origin or where, hashlib.sha256(data).hexdigest()))
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
        f"Download the dataset with `python -m model.training.data download --dest {data_dir}`."
    )


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



# ---------------------------------------------------------------- subject ids (assets/subjects.csv)
def read_subjects(path: Path = SUBJECTS_PATH) -> pd.DataFrame:
    """The shipped per-slice subject table (see `recover`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no subject table; run `alzmri-train data subjects`")
    return pd.read_csv(path)


def subjects_for(split: str, ids, sha256s, table: pd.DataFrame | None = None) -> np.ndarray:
    """Subject id of each slice of `split`, matched on origin path and SHA-256 of its bytes.

    Raises ValueError naming the first slice the table does not know (other data than the shipped ids').
    """
    table = read_subjects() if table is None else table
    known = dict(zip(zip(table.split, table.path, table.sha256), table.subject))
    out = []
    for path, sha in zip(ids, sha256s):
        key = (split, path, sha)
        if key not in known:
            raise ValueError(f"{split} slice {path} (sha256 {sha[:12]}…) is not in the subject table; "
                             "these are other data than the ids were derived from: rerun `alzmri-train data subjects`")
        out.append(known[key])
    return np.array(out, dtype=object)


def class_summary(subjects: pd.DataFrame) -> pd.DataFrame:
    """Per class (stage order as in label order): subjects, slices, subjects with an OASIS row, age (mean,
    range) and share of women among those, from the per-subject table."""
    rows = []
    for name in CLASS_NAMES:
        part = subjects[subjects.label == name]
        known = part[part.age.notna()] if "age" in part else part.iloc[:0]
        rows.append({"stage": name, "subjects": len(part), "slices": int(part.slices.sum()),
                     "with clinical row": len(known),
                     "age mean": round(float(known.age.mean()), 1) if len(known) else None,
                     "age range": f"{known.age.min():.0f}-{known.age.max():.0f}" if len(known) else "",
                     "women": f"{(known.sex == 'F').mean():.0%}" if len(known) else ""})
    return pd.DataFrame(rows)
