"""Many scans at once: unpack uploads (zip archives included) and group classified scans by subject.

    files = expand_uploads([(name, bytes), ...])           # a zip becomes its members; limits checked first
    for member in iter_zip(path, name): ...                  # or one member at a time, read when wanted
    results = model.serve.pipeline.classify(files, ...)      # one result per scan (the one serving path)
    subjects = subject_table(results, group_by="folder")     # one row per subject: mean calibrated probabilities

Used by the Batch page and the CLI; every file appears in some result, as a stage or with the reason it has none.
"""
from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import IO

from model.core.constants import CLASS_NAMES, DISPLAY_NAMES
from model.reports.record import Failed, Result, SubjectResult
from model.scans.scan_io import MAX_VOLUME_BYTES, ScanError, clean_name, printable

MAX_ARCHIVE_FILES = 2000  # members of one zip
MAX_ARCHIVE_BYTES = 1 << 30  # all members of one zip, uncompressed, as declared and as read
GROUPINGS = ("none", "folder", "name prefix")


def _member_name(archive: str, member: str) -> str:
    """'archive.zip/sub/file.png' with any '..', drive or absolute part dropped."""
    parts = [p for p in PurePosixPath(member.replace("\\", "/")).parts if p not in ("..", ".", "/") and ":" not in p]
    return "/".join([clean_name(archive), *(clean_name(p) for p in parts)])


@dataclass(frozen=True, slots=True)
class LazyFile:
    """A file named but not read yet: the archive member or file on disk that a batch reads at its turn.

    name: as shown in a table ('cohort.zip/sub/file.png' for an archive member; for a file on disk its path);
    size: bytes, as declared; opener and reader: how to open and read it, None for the file on disk at `name`
    (so that a listing of a million files holds little more than their names).
    """

    name: str
    size: int
    opener: Callable[[], IO[bytes]] | None = None
    reader: Callable[[], bytes] | None = None

    def open(self) -> IO[bytes]:
        """A fresh binary stream from the file's start (for sniffing a header)."""
        return self.opener() if self.opener else open(self.name, "rb")

    def read(self) -> bytes:
        """All its bytes, within the limits: raises ScanError, or OSError for a file on disk that cannot be read."""
        return self.reader() if self.reader else _read_path(self.name)


def _read_path(path: str) -> bytes:
    """A file's bytes, refusing one that has grown past the volume limit since it was listed."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_VOLUME_BYTES + 1)
    if len(data) > MAX_VOLUME_BYTES:
        raise ScanError(f"{clean_name(path)}: over the {MAX_VOLUME_BYTES // 2**20} MB limit for one scan")
    return data


def iter_zip(source: bytes | str | PathLike | IO[bytes], name: str) -> Iterator[LazyFile]:
    """The files inside a zip archive, one `LazyFile` at a time, in archive order; directories and hidden files
    skipped. source: the archive's bytes, its path, or a seekable binary stream.

    Member counts and declared sizes are checked before the first member is yielded (a ScanError then), and
    every `read()` counts towards the archive's total and stops at the cap, so a zip bomb is refused without
    being inflated. Nothing is decompressed until a member is read; the archive stays open while any of its
    members may still be read.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
        infos = [i for i in archive.infolist() if not i.is_dir()
                 and not PurePosixPath(i.filename).name.startswith((".", "__MACOSX"))
                 and "__MACOSX" not in i.filename]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ScanError(f"{clean_name(name)}: not a zip archive that can be read ({exc})") from exc
    if len(infos) > MAX_ARCHIVE_FILES:
        raise ScanError(f"{clean_name(name)}: {len(infos):,} files is over the limit of {MAX_ARCHIVE_FILES:,} per archive")
    declared = sum(i.file_size for i in infos)
    if declared > MAX_ARCHIVE_BYTES:
        raise ScanError(f"{clean_name(name)}: unpacks to {declared / 2**20:,.0f} MB, over the "
                        f"{MAX_ARCHIVE_BYTES // 2**20:,} MB limit for one archive")
    inflated = [0]  # bytes read so far from all members: one count per archive, shared by the readers

    def read(info: zipfile.ZipInfo, member: str) -> bytes:
        try:
            with archive.open(info) as fh:
                blob = fh.read(min(MAX_VOLUME_BYTES, MAX_ARCHIVE_BYTES - inflated[0]) + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as exc:
            raise ScanError(f"{member}: cannot be unpacked ({exc})") from exc
        inflated[0] += len(blob)
        if len(blob) > MAX_VOLUME_BYTES or inflated[0] > MAX_ARCHIVE_BYTES:
            raise ScanError(f"{member}: unpacks to more than its archive declares or than the limits allow")
        return blob

    for info in infos:
        member = _member_name(name, info.filename)
        yield LazyFile(member, info.file_size, partial(archive.open, info), partial(read, info, member))


def expand_zip(data: bytes, name: str) -> list[tuple[str, bytes]]:
    """The files inside a zip archive, as (archive/member path, bytes); directories and hidden files skipped.

    Member counts and declared sizes are checked before anything is decompressed, and reading stops at the
    total cap, so a zip bomb is refused without being inflated (see `iter_zip`, which reads one at a time).
    """
    return [(member.name, member.read()) for member in iter_zip(data, name)]


def expand_uploads(files: Sequence[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[Failed]]:
    """Uploads -> (files, a `Failed` result for each archive that could not be opened). A .zip becomes its
    members. Names keep their folders (for grouping by subject) without control characters."""
    out, failed = [], []
    for name, data in files:
        if clean_name(name).lower().endswith(".zip"):
            try:
                out.extend((printable(member), member_data) for member, member_data in expand_zip(data, name))
            except ScanError as exc:
                failed.append(Failed.of([clean_name(name)], str(exc)))
        else:
            out.append((printable(name), data))
    return out, failed


def server_files(root, folder: str = "", limit: int = MAX_ARCHIVE_FILES) -> tuple[list[tuple[str, bytes]], list[Failed]]:
    """The files under `root/folder` (recursively, hidden ones skipped): ((path relative to root, bytes), ...)
    and a `Failed` result for each file too large to read.

    `folder` must stay inside `root`: a '..' or an absolute path is refused. Raises ScanError when the folder
    holds more than `limit` files or a file is over the volume size limit.
    """
    root = Path(root).resolve()
    base = (root / folder).resolve()
    if base != root and root not in base.parents:
        raise ScanError(f"{folder}: not a folder inside the configured batch folder")
    paths = sorted(p for p in base.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if len(paths) > limit:
        raise ScanError(f"{folder or root.name}: {len(paths):,} files is over the limit of {limit:,} per batch")
    out, failed = [], []
    for path in paths:
        name = printable(path.relative_to(root))
        if path.stat().st_size > MAX_VOLUME_BYTES:
            failed.append(Failed.of([name], f"{name}: {path.stat().st_size / 2**20:,.0f} MB is over the "
                                            f"{MAX_VOLUME_BYTES // 2**20} MB limit for one scan"))
        else:
            out.append((name, path.read_bytes()))
    return out, failed


def _normal(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(text)).strip().lower()


# every spelling a stage is known by, normalised: class names, display names and the label index
_STAGES = {**{_normal(n): i for i, n in enumerate(CLASS_NAMES)}, **{_normal(n): i for i, n in enumerate(DISPLAY_NAMES)},
           **{str(i): i for i in range(len(CLASS_NAMES))}}
STAGE_HELP = (f"a stage is one of {', '.join(CLASS_NAMES)} (any case; spaces, '_' or '-' between words) or its "
              f"label index 0-{len(CLASS_NAMES) - 1} in that order")


def stage_label(text) -> int | None:
    """The label id of a stage written as a class name, display name or label index; None when it is none.
    An index written as a whole float ('2.0', as spreadsheets export a number column) is that index."""
    key = _normal(text)
    whole = re.fullmatch(r"(\d+)\.0*", key)
    return _STAGES.get(whole.group(1) if whole else key)


def stage_folder(part: str) -> bool:
    """Whether a folder name is a stage (a class or display name; a bare number is a subject's, not a stage's)."""
    return stage_label(part) is not None and not re.fullmatch(r"\d+(\.0*)?", part.strip())


def subject_key(name: str, group_by: str) -> str:
    """The subject a file belongs to: its folder ('folder'; below a folder named after a stage, as a labelled
    cohort is sorted, the folders inside it, or the file itself when it lies loose in the stage folder), the part of its name before the last '_' or '-'
    ('name prefix'), or itself ('none')."""
    if group_by not in GROUPINGS:
        raise ValueError(f"unknown grouping {group_by!r}; choose one of {', '.join(GROUPINGS)}")
    path = PurePosixPath(name)
    if group_by == "folder":
        folder = path.parent
        if len(folder.parts) > 1 and folder.parts[0].lower().endswith(".zip"):  # 'batch.zip/OAS1_0001' -> 'OAS1_0001'
            folder = PurePosixPath(*folder.parts[1:])
        stages = [k for k, part in enumerate(folder.parts) if stage_folder(part)]
        if stages:  # a cohort sorted into stage folders: 'Mild_Demented/OAS1_0001/x.png' -> 'OAS1_0001'
            inner = folder.parts[stages[-1] + 1:]
            return "/".join(inner) if inner else name  # a file loose in a stage folder is a subject of its own
        return str(folder) if str(folder) != "." else "(no folder)"
    if group_by == "name prefix":
        stem = path.name.split(".")[0]
        head = re.split(r"[_-](?=[^_-]*$)", stem)[0]
        return head or stem
    return name


def subject_results(results, group_by: str) -> list[SubjectResult]:
    """The classified results (`model.reports.record.Result`; failed ones are left out) grouped into subjects by
    `subject_key`, each a SubjectResult: the subject's stage and mean calibrated probabilities (the aggregation
    the subject-level cross-validation was scored with) over its files, in order of first appearance."""
    groups: dict[str, list] = {}
    for r in results:
        if isinstance(r, Result):
            groups.setdefault(subject_key(r.file, group_by), []).append(r)
    return [SubjectResult.of(members, subject=subject, files=[m.file for m in members],
                             model_sha256=members[0].model_sha256, temperature=members[0].calibration_temperature)
            for subject, members in groups.items()]


def subject_table(results, group_by: str) -> list[dict]:
    """One row per subject (`subject_results`): files, stage, mean probabilities, how many slices agree and how
    many are flagged."""
    return [{"subject": s.subject, "files": len(s.slices), "stage": s.display_name,
             **{f"p_{n}": s.probabilities[n] for n in CLASS_NAMES},
             "slices agreeing": sum(m.label == s.label for m in s.slices),
             "slices flagged": sum(not m.reliable for m in s.slices)} for s in subject_results(results, group_by)]
