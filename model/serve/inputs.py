"""What a cohort run reads, decided before a scan is read, then read one shard at a time (`model.serve.predict`).

* **listing**: `iter_inputs` walks files, folders, zip archives and parquet files without reading a scan (a
  parquet file's footer only), giving `LazyFile`s, `ParquetInput`s and an error row for what cannot be listed;
* **grouping**: `group_inputs` decides which inputs make one scan (an Analyze pair, a DICOM series) from names
  and DICOM headers alone;
* **reading**: a `Plan` yields its shard's scans (`index % world == rank`) as `Read`s, each read and opened through
  `model.serve.pipeline` only when its turn comes, so at most one scan's bytes are held.

The module docstring of `model.serve.predict` explains the streaming and sharding these serve.
"""
from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from model.reports.record import ErrorDetail, Failed, Result
from model.scans.scan_io import MAX_VOLUME_BYTES, ScanError, clean_name, scan_groups
from model.serve.batch import LazyFile, iter_zip
from model.serve.pipeline import Opened, open_item

BATCH_SIZE = 64  # slices classified together, and the most decoded slices held at once


def stderr_line(message: str) -> None:
    """Say something to the user on standard error (the default `say` of the listing)."""
    print(message, file=sys.stderr)


# ---------------------------------------------------------------- inputs, listed without being read
@dataclass(frozen=True)
class ParquetInput:
    """A parquet file in the Hugging Face schema, checked but not read: `rows` slices, one scan each."""

    path: Path
    rows: int

    @classmethod
    def open(cls, path: Path) -> ParquetInput:
        """Reads only the footer. Raises ScanError for a file that is no parquet, or has no image bytes."""
        import pyarrow as pa  # here, not at the top: 0.3-0.7 s of every `alzmri predict`, needed for parquet only
        import pyarrow.parquet as pq

        try:
            with pq.ParquetFile(path) as meta:
                schema, rows = meta.schema_arrow, meta.metadata.num_rows
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise ScanError(f"{path.name}: not a readable parquet file ({exc})") from exc
        image = schema.field("image").type if "image" in schema.names else None
        if image is None or not (pa.types.is_struct(image) and image.get_field_index("bytes") >= 0):
            raise ScanError(f"{path.name}: no 'image' column with 'bytes'; a parquet file is read in the Hugging "
                            "Face schema (image: struct of bytes and path)")
        return cls(path, rows)

    def batches(self, rows: int) -> Iterator[tuple[list, list]]:
        """(image bytes, image paths) of `rows` rows at a time, as pyarrow arrays (nothing copied to Python)."""
        import pyarrow.parquet as pq  # see `open`

        with pq.ParquetFile(self.path) as parquet:
            for batch in parquet.iter_batches(batch_size=rows, columns=["image"]):
                images = batch.column(0)
                paths = images.field("path") if images.type.get_field_index("path") >= 0 else [None] * len(batch)
                yield images.field("bytes"), paths


Input = LazyFile | ParquetInput | dict  # a dict is an error row for something that cannot be read at all


def iter_inputs(paths: Iterable[Path], say: Callable[[str], None] = stderr_line) -> Iterator[Input]:
    """Everything named, in order, without reading a scan: files and archive members as `LazyFile`s, parquet
    files as `ParquetInput`s, and an error row for an archive or parquet file that cannot be opened or a file too
    large to be a scan. Folders are walked depth-first in sorted order (the order of `sorted(rglob('*'))`);
    hidden files are left out, each said through `say`."""
    for path in map(Path, paths):
        for found in (_walk(path, say) if path.is_dir() else [path]):
            yield from (_input(found) if isinstance(found, Path) else [found])


def _walk(folder: Path, say: Callable[[str], None], hidden: bool = False) -> Iterator[Path | dict]:
    """Files under `folder` in sorted order, and an error row for a folder that cannot be listed."""
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        yield {"file": str(folder), "error": f"{folder.name}: the folder cannot be read ({exc.strerror or exc})"}
        return
    for entry in entries:
        inside = hidden or entry.name.startswith(".")
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), say, inside)
        elif entry.is_file():
            if inside:
                say(f"skipped hidden file {entry.path}")
            else:
                yield Path(entry.path)


def _input(path: Path) -> Iterator[Input]:
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            yield from [replace(m, name=str(path.parent / m.name)) for m in iter_zip(path, str(path))]
        elif name.endswith(".parquet"):
            yield ParquetInput.open(path)
        elif (size := path.stat().st_size) > MAX_VOLUME_BYTES:
            raise ScanError(f"{path.name}: {size / 2**20:.0f} MB is over the {MAX_VOLUME_BYTES // 2**20} MB limit "
                            "for a scan")
        else:
            yield LazyFile(str(path), size)
    except ScanError as exc:
        yield {"file": str(path), "error": str(exc)}
    except OSError as exc:
        yield {"file": str(path), "error": f"{path.name}: cannot be read ({exc.strerror or exc})"}


def collect_files(paths: list[Path]) -> list[Path]:
    """Every regular file named or found (recursively, sorted) in a named folder. Hidden files and folders
    inside a folder are left out, each said on standard error; files named explicitly are always kept."""
    return [found for path in paths for found in (_walk(path, stderr_line) if path.is_dir() else [path])
            if isinstance(found, Path)]


# ---------------------------------------------------------------- grouping: which inputs make one scan
def group_inputs(inputs: list[Input]) -> list[tuple[int, ...]]:
    """Indices into `inputs`, one tuple per scan, ordered by their first member: `scan_io.scan_groups`, the rule
    uploads are grouped by, decided from names and DICOM headers alone (no scan bytes read). A parquet file or an error row is an entry of its own."""
    def series_uid(i: int) -> str:
        item = inputs[i]
        return _series_uid(item) if isinstance(item, LazyFile) and item.size <= MAX_VOLUME_BYTES else ""

    names = [item.name if isinstance(item, LazyFile) else "" for item in inputs]
    return scan_groups(names, series_uid)


def _series_uid(file: LazyFile) -> str:
    """The SeriesInstanceUID of a DICOM file, read from its header without the pixels; '' for anything else."""
    try:
        with file.open() as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fh.read(132)[128:132] != b"DICM":
                return ""
            fh.seek(0)
            import pydicom  # only for a DICOM file (model.scans.dicom says why it is not imported at the top)

            return str(pydicom.dcmread(fh, force=False, stop_before_pixels=True).get("SeriesInstanceUID") or "")
    except Exception:  # unreadable or damaged: the file stays on its own, and its turn says what is wrong
        return ""


# ---------------------------------------------------------------- reading one shard's scans, one at a time
class Read(NamedTuple):
    """One scan. index: its place among all scans (the same in every process); opened: its files and the scan read
    from them (`model.serve.pipeline.Opened`, or why it could not be); files: how many files it took; result: the
    classified result, once `classify` has run (the decoded slice is dropped then)."""

    index: int
    opened: Opened | None
    files: int
    result: Result | Failed | None = None


@dataclass
class Plan:
    """What a run reads, decided before any scan is read: the inputs in order and which of them make one scan."""

    inputs: list[Input]
    groups: list[tuple[int, ...]]

    @classmethod
    def of(cls, paths: Iterable[Path], say: Callable[[str], None] = stderr_line) -> Plan:
        inputs = list(iter_inputs(paths, say))
        return cls(inputs, group_inputs(inputs))

    def _spans(self) -> Iterator[tuple[int, int, tuple[int, ...]]]:
        """(index of the first scan, number of scans, group) per group: a parquet file spans one scan a row."""
        start = 0
        for group in self.groups:
            first = self.inputs[group[0]]
            count = first.rows if isinstance(first, ParquetInput) else 1
            yield start, count, group
            start += count

    def files(self, rank: int = 0, world: int = 1) -> int:
        """How many files (a parquet row and an error row count one) the shard `rank` of `world` reads."""
        total = 0
        for start, count, group in self._spans():
            mine = len(range(start + (rank - start) % world, start + count, world))  # its indices in the span
            total += mine * (1 if isinstance(self.inputs[group[0]], ParquetInput) else len(group))
        return total

    def scans(self, rank: int = 0, world: int = 1, parquet_rows: int = BATCH_SIZE) -> Iterator[Read]:
        """The shard's scans (index % world == rank), read and decoded one at a time in input order."""
        for start, count, group in self._spans():
            first = self.inputs[group[0]]
            if isinstance(first, ParquetInput):
                yield from _parquet_scans(first, start, rank, world, parquet_rows)
            elif start % world == rank:
                yield _read_group(start, [self.inputs[i] for i in group])


def _unreadable(index: int, name: str, message: str, files: int = 1) -> Read:
    return Read(index, Opened([name], error=ErrorDetail(code="unreadable_scan", message=message)), files)


def _read_group(index: int, members: list[Input]) -> Read:
    """Read the bytes of one planned group (grouped once, by the plan) and open it through the pipeline."""
    if isinstance(members[0], dict):
        return _unreadable(index, members[0]["file"], members[0]["error"])
    names = [m.name for m in members]
    files = []
    for member in members:
        try:
            files.append((member.name, member.read()))
        except ScanError as exc:
            return Read(index, Opened(names, error=ErrorDetail(code="unreadable_scan", message=str(exc))), len(names))
        except OSError as exc:
            error = f"{clean_name(member.name)}: cannot be read ({exc.strerror or exc})"
            return Read(index, Opened(names, error=ErrorDetail(code="unreadable_scan", message=error)), len(names))
    return Read(index, open_item(files), len(members))


def _parquet_scans(source: ParquetInput, start: int, rank: int, world: int, rows: int) -> Iterator[Read]:
    """The shard's rows of a parquet file; the bytes of other shards' rows are never copied out of pyarrow."""
    batches, row = source.batches(rows), 0
    while True:
        try:
            blobs, paths = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # a damaged row group: the rest of the file is one error row, in every process
            if row < source.rows and (start + row) % world == rank:
                yield _unreadable(start + row, f"{source.path} rows {row}-{source.rows - 1}",
                                  f"{source.path.name}: cannot be read from row {row} ({exc})", source.rows - row)
            return
        for j in range(len(blobs)):
            if (start + row) % world == rank:
                origin, data = paths[j].as_py() if paths[j] is not None else None, blobs[j].as_py()
                name = f"{source.path} row {row}" + (f" ({origin})" if origin else "")
                if data:  # a name without a suffix is sniffed as an image
                    opened = open_item([(origin or f"row {row}", data)])
                    opened.files = [name]
                    yield Read(start + row, opened, 1)
                else:
                    yield _unreadable(start + row, name, f"{name}: the row has no image bytes")
            row += 1


