"""How much data is on disk, read without torch: what the app's first page may show while the model loads.

`slice_count` reads the parquet footers (or counts an image folder's files); nothing is decoded. The decoding and
the tensors are `model.core.dataset`'s.
"""
from __future__ import annotations

from pathlib import Path

from model.core.constants import SPLIT_FILES, default_data_dir
from model.scans.scan_io import IMAGE_TYPES

IMAGE_SUFFIXES = {f".{t}" for t in IMAGE_TYPES}  # the 2D image types an upload may also be


def slice_count(data_dir: str | Path | None = None) -> int:
    """Slices in every split present, read from the parquet footers (or by counting an image folder's files):
    nothing is decoded."""
    import pyarrow.parquet as pq  # 0.2-0.3 s; only when a parquet split is there

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    total = 0
    for split, name in SPLIT_FILES.items():
        if (data_dir / name).is_file():
            total += pq.ParquetFile(data_dir / name).metadata.num_rows
        elif (data_dir / split).is_dir():
            total += sum(1 for f in (data_dir / split).glob("*/*") if f.suffix.lower() in IMAGE_SUFFIXES)
    return total
