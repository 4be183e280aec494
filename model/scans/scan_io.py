"""Reading a user's scan file and bringing it to the look of the training slices.

Entry points (the page and the CLI call the same ones):

* `open_scan(data, filename)` opens one file; `open_upload(item)` opens one group of files as
  `group_uploads(files)` makes them (a single file, an Analyze `.hdr` + `.img` pair, or the files of
  one DICOM series). Both return a `Scan`: the slice as a uint8 (S, S) array, what kind of file it was,
  a plain sentence for every step taken, a few identifier-free header fields, and the slice picker's
  range. `read_scan(data, filename)` returns only the array.
* Everything a user can get wrong raises `ScanError` with the file's name and a reason a clinician can
  act on; hostile bytes never raise anything else.

Formats (suffixes in `SCAN_SUFFIXES`):

* 2D images, PNG, JPEG, BMP and TIFF, through Pillow restricted to those four decoders (an ICO, PCX, TGA
  or EPS file renamed .png never reaches its own decoder). Sizes are checked from the header before any
  pixel is decoded. The image is taken to be a slice exported like the training data: it is turned to
  grey (transparency laid on black; 16-bit and float images stretched from their minimum to maximum),
  padded with black to a square and resized, exactly as `model.training.data` decodes training images. Only the
  first frame of an animated PNG or a multi-page TIFF is used.
* DICOM, through pydicom (compressed transfer syntaxes through the pylibjpeg plugins): one file, a
  multi-frame file (one frame picked) or a series of single-frame files (one file picked, ordered along
  the slice normal). The modality LUT (rescale) is applied, then the header's window (or VOI LUT), else
  a 0.5-99.5 percentile stretch; MONOCHROME1 is inverted; colour images are turned to grey.
* NIfTI-1 and NIfTI-2 (`.nii`, `.nii.gz`) and Analyze 7.5 pairs (`.hdr` + `.img`), through nibabel: a
  3D volume from which one axial slice is picked (the middle one by default).

The training look of a volume slice. The dataset's slices are OASIS-1 axial images as OASIS displays them
(anterior at the top, the subject's left on the image's right: the radiological view, 176 x 208 pixels)
rotated 180 degrees and resized straight to 128 x 128 without keeping the aspect ratio. So a slice of a
DICOM or NIfTI volume is

1. laid out in that radiological view (NIfTI: reoriented to RAS, slice k = data[:, :, k], rows running
   from anterior to posterior and columns from the subject's right to left; DICOM: the same view from
   Image Orientation (Patient), which is how DICOM viewers show an axial slice),
2. scaled to 0-255 (NIfTI: the 0.5th to 99.5th percentile of the volume's non-zero voxels, the same
   scale for every slice of a volume; DICOM: the window, as above),
3. rotated 180 degrees, which leaves the subject's left on the image's LEFT and anterior at the BOTTOM,
4. resized straight to S x S with bicubic resampling.

Limits, all checked before pixels are decoded: MAX_UPLOAD_BYTES for a 2D image file, MAX_VOLUME_BYTES for a
volume file, a DICOM series or a decompressed .nii.gz (inflated in chunks and stopped at what its header
declares, so a gzip bomb is never unpacked), MAX_PIXELS per image or frame, MAX_VOXELS per volume, and a
shape that can be a brain slice (MIN_SIDE, MAX_ASPECT). Header summaries come from an allow-list of
technical fields; nothing that identifies a patient, a site or a study is ever read out.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.core.constants import IMAGE_SIZE
from model.scans.common import (ACCEPTED, IMAGE_TYPES, MAX_ASPECT, MAX_PIXELS, MAX_UPLOAD_BYTES, MAX_VOLUME_BYTES,
                                 MAX_VOXELS, MIN_SIDE, SCAN_SUFFIXES, VOLUME_TYPES, Scan, ScanError, _check_bytes,
                                 _robust_range, _to_uint8, _training_look, clean_name, printable)
from model.scans.dicom import _is_dicom, _open_dicom, _open_dicom_series, _read_dicom, _series_order
from model.scans.images import PILLOW_FORMATS, _open_image, to_gray8, to_square_slice
from model.scans.nifti import (_canonical, _gunzip, _load_volume, _nifti_class, _open_analyze, _open_nifti, _sample,
                               _scaled, _volume_scan)

# The public names: the readers live in model.scans.common, .images, .dicom and .nifti; this module chooses among
# them, groups uploads and reads whole volumes, and is where every caller imports from.
__all__ = ["ACCEPTED", "IMAGE_TYPES", "MAX_ASPECT", "MAX_PIXELS", "MAX_UPLOAD_BYTES", "MAX_VOLUME_BYTES", "MAX_VOXELS",
           "MIN_SIDE", "PILLOW_FORMATS", "SCAN_SUFFIXES", "VOLUME_TYPES", "Scan", "ScanError", "Volume", "clean_name",
           "group_uploads", "open_scan", "open_upload", "open_volume", "printable", "read_scan", "scan_groups",
           "to_gray8", "to_square_slice"]

# ---------------------------------------------------------------- choosing the reader, grouping uploads


def _stem_suffix(name: str) -> tuple[str, str]:
    lower = name.lower()
    if lower.endswith(".nii.gz"):
        return name[:-7], "nii.gz"
    path = Path(name)
    return path.stem if path.suffix else name, path.suffix.lower().lstrip(".")


def _reader(name: str, data: bytes):
    """The reader for one file: by content where the content says (DICOM's 'DICM'; NIfTI's signature or gzip
    for a file without a suffix), else by suffix."""
    _, suffix = _stem_suffix(name)
    if data[128:132] == b"DICM" or suffix == "dcm":
        return _open_dicom
    nifti_content = data[344:348] == b"n+1\x00" or data[4:8] == b"n+2\x00" or data[:2] == b"\x1f\x8b"
    if suffix in ("nii", "nii.gz", "gz") or not suffix and nifti_content:
        return _open_nifti
    if suffix in ("hdr", "img"):
        return _lone_half
    if suffix in IMAGE_TYPES or not suffix:
        return _open_image
    raise ScanError(f"{name}: not a scan type this tool reads (a .{suffix} file is not a PNG or JPEG image, nor "
                    f"DICOM, NIfTI or Analyze); it reads {ACCEPTED}")


def _lone_half(data: bytes, name: str, slice_index: int | None, size: int) -> Scan:
    stem, suffix = _stem_suffix(name)
    other = "img" if suffix == "hdr" else "hdr"
    raise ScanError(f"{name}: an Analyze volume comes as two files, {stem}.hdr (the header) and {stem}.img "
                    f"(the voxels); upload {stem}.{other} together with this one")


def open_scan(data: bytes, filename: str, *, slice_index: int | None = None, size: int = IMAGE_SIZE) -> Scan:
    """One file -> `Scan`. `slice_index` (0-based) picks the slice of a volume or the frame of a multi-frame
    DICOM; None takes the middle one. Raises ScanError for anything unusable."""
    return open_upload([(filename, data)], slice_index=slice_index, size=size)


def open_upload(item: Sequence[tuple[str, bytes]], *, slice_index: int | None = None,
                size: int = IMAGE_SIZE) -> Scan:
    """One item of `group_uploads` -> `Scan`: a single file, an Analyze .hdr + .img pair, or the files of one
    DICOM series (then `n_slices` is the number of files and `slice_index` picks one)."""
    files = [(clean_name(name), bytes(data)) for name, data in item]
    if not files:
        raise ScanError("no file was given")
    with warnings.catch_warnings():  # the parsers warn about every oddity of a damaged file; the steps say enough
        warnings.simplefilter("ignore")
        return _open_files(files, slice_index, size)


def _open_files(files: list[tuple[str, bytes]], slice_index: int | None, size: int) -> Scan:
    if len(files) == 1:
        name, data = files[0]
        _check_bytes(name, data, MAX_VOLUME_BYTES)
        return _reader(name, data)(data, name, slice_index, size)
    parts = sorted((_stem_suffix(name)[1], _stem_suffix(name)[0].lower(), (name, data)) for name, data in files)
    if [suffix for suffix, _, _ in parts] == ["hdr", "img"]:
        (_, stem, hdr_file), (_, other, img_file) = parts
        if stem != other:
            raise ScanError(f"{hdr_file[0]}: {hdr_file[0]} and {img_file[0]} are not one Analyze volume: the "
                            "header and the voxels of a volume share one name (brain.hdr, brain.img)")
        return _open_analyze(hdr_file, img_file, slice_index, size)
    if all(_is_dicom(name, data) for name, data in files):
        return _open_dicom_series(files, slice_index, size)
    raise ScanError(f"{files[0][0]}: these {len(files)} files do not make one scan; only an Analyze .hdr + .img "
                    "pair or the files of one DICOM series are opened together")


def _dicom_header_or_none(name: str, data: bytes):
    """A DICOM file's header without its pixels; None for anything else or anything unreadable."""
    if data[128:132] != b"DICM":
        return None
    try:
        return _read_dicom(data, clean_name(name), pixels=False)
    except ScanError:  # unreadable files stay on their own; open_upload says what is wrong with them
        return None


def group_uploads(files: Sequence[tuple[str, bytes]]) -> list[tuple[tuple[str, bytes], ...]]:
    """Files -> items for `open_upload`, in input order (an item sits where its first file was).

    An Analyze .hdr and .img of the same stem become one item (header first); DICOM files of one series (same
    SeriesInstanceUID, read without pixels) become one item ordered along the slice normal, else by instance
    number; everything else, unreadable files included, is an item of its own. Never raises.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _group(list(files))


def scan_groups(names: Sequence[str], series_uid) -> list[tuple[int, ...]]:
    """Which files make one scan, as index tuples in input order (a tuple sits where its first file was): an
    Analyze .hdr and .img of one stem, the DICOM files of one SeriesInstanceUID; every other file alone.

    names: the files' names; series_uid(i): file i's SeriesInstanceUID, '' when it is no readable DICOM (asked
    only for files that are not Analyze halves). The one grouping rule of uploads and of model.serve.predict.
    """
    keys: list[tuple | None] = [None] * len(names)
    halves: dict[str, dict[str, int]] = {}
    for i, name in enumerate(names):
        stem, suffix = _stem_suffix(clean_name(name))
        if suffix in ("hdr", "img"):
            halves.setdefault(stem.lower(), {}).setdefault(suffix, i)
        elif uid := series_uid(i):
            keys[i] = ("dicom", uid)
    for stem, pair in halves.items():
        if len(pair) == 2:
            keys[pair["hdr"]] = keys[pair["img"]] = ("analyze", stem)
    groups: dict[tuple, list[int]] = {}
    items: list[list[int]] = []
    for i, key in enumerate(keys):
        if key is None:
            items.append([i])
        elif key in groups:
            groups[key].append(i)
        else:
            items.append(groups.setdefault(key, [i]))
    return [tuple(members) for members in items]


def _group(files: list[tuple[str, bytes]]) -> list[tuple[tuple[str, bytes], ...]]:
    headers: dict[int, object] = {}

    def series_uid(i: int) -> str:
        ds = _dicom_header_or_none(*files[i])
        try:
            uid = str(ds.get("SeriesInstanceUID") or "") if ds is not None else ""
        except Exception:  # a damaged UID: the file stays on its own
            uid = ""
        if uid:
            headers[i] = ds
        return uid

    items = scan_groups([name for name, _ in files], series_uid)
    ordered = []
    for members in items:
        if len(members) > 1 and members[0] in headers:  # a DICOM series
            members = [members[j] for j in _series_order([headers[i] for i in members])]
        elif len(members) > 1:  # an Analyze pair: the header first
            members = sorted(members, key=lambda i: _stem_suffix(clean_name(files[i][0]))[1])
        ordered.append(tuple(files[i] for i in members))
    return ordered


def read_scan(data: bytes, filename: str = "upload", size: int = IMAGE_SIZE) -> np.ndarray:
    """Decode one uploaded file (its middle slice for a volume): bytes -> uint8 (size, size) grayscale array."""
    return open_scan(data, filename, size=size).image



# ---------------------------------------------------------------- a whole volume, every axial slice


@dataclass(frozen=True, eq=False)
class Volume:
    """Every axial slice of a NIfTI or Analyze volume in the training look, and how they were made.

    slices: uint8 (Z, size, size), bottom of the head first; one grey scale for the whole volume.
    name, kind, steps, header: as in `Scan` (steps describe the volume, not one slice).
    """

    slices: np.ndarray
    name: str
    kind: str
    steps: tuple[str, ...]
    header: tuple[tuple[str, str], ...]


def open_volume(item: Sequence[tuple[str, bytes]], *, size: int = IMAGE_SIZE) -> Volume:
    """A NIfTI file (.nii, .nii.gz) or an Analyze .hdr + .img pair -> `Volume` with every axial slice, brought
    to the training look exactly as `open_upload` brings the one slice it picks. Raises ScanError for anything
    else (a 2D image or a DICOM file is not a volume here) or anything unusable."""
    files = sorted(((clean_name(name), bytes(data)) for name, data in item), key=lambda f: _stem_suffix(f[0])[1])
    if not files:
        raise ScanError("no file was given")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suffixes = [_stem_suffix(name)[1] for name, _ in files]
        if suffixes == ["hdr", "img"]:
            (name, header), (img_name, image) = files
            _check_bytes(name, header, MAX_VOLUME_BYTES)
            _check_bytes(img_name, image, MAX_VOLUME_BYTES)
            klass, kind = _nifti_class(header, name, pair=True)
            volume, hdr, affine, scale = _load_volume(klass, header, image, name)
        elif len(files) == 1 and _reader(*files[0]) is _open_nifti:
            name, data = files[0]
            _check_bytes(name, data, MAX_VOLUME_BYTES)
            if name.lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
                data = _gunzip(data, name)
            klass, kind = _nifti_class(data, name, pair=False)
            volume, hdr, affine, scale = _load_volume(klass, data, data, name)
        else:
            raise ScanError(f"{files[0][0]}: a subject is staged from a NIfTI file (.nii, .nii.gz) or an Analyze "
                            ".hdr + .img pair; this is not one")
        first = _volume_scan(volume, scale, hdr, affine, kind, name, 0, size)  # checks and the steps, once
        canonical, _ = _canonical(volume, affine, name)
        lo, hi = _robust_range(_scaled(_sample(canonical), scale))
        slices = np.stack([_training_look(_to_uint8(_scaled(canonical[:, :, z], scale).T[::-1, ::-1], lo, hi),
                                          size)[0] for z in range(canonical.shape[2])])
    steps = tuple(s for s in first.steps if not s.startswith("Used axial slice"))
    return Volume(slices, name, kind, steps, first.header)
