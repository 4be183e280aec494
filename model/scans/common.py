"""What every scan reader shares: the limits, `ScanError`, `Scan`, and the helpers that check sizes and bring
grey levels and shapes to the training look. The readers are `images` (Pillow), `dicom` and `nifti`;
`scan_io` chooses among them and is the public entry point (its docstring describes the formats)."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # one 2D image file: a slice is far smaller; bigger is a wrong file
MAX_VOLUME_BYTES = 200 * 1024 * 1024  # one volume file, a whole DICOM series, or a .nii.gz once decompressed
# One 2D image or one DICOM frame, checked from the header before decoding: a brain slice is at most a few
# thousand pixels a side, and a 20 MB float TIFF declaring 8192 x 8192 would cost gigabytes to convert.
MAX_PIXELS = 4096 * 4096
MAX_VOXELS = 512**3  # a whole volume or multi-frame file, checked from the header before reading voxels
MIN_SIDE = 32  # smaller than this holds no usable anatomy
MAX_ASPECT = 4.0  # a head is roughly round; a longer side over 4x the shorter one is no brain slice
IMAGE_TYPES = ("png", "jpg", "jpeg", "bmp", "tif", "tiff")  # 2D images (the training images' types too)
VOLUME_TYPES = ("dcm", "nii", "gz", "hdr", "img")  # DICOM, NIfTI (.nii, .nii.gz), Analyze (.hdr + .img)
SCAN_SUFFIXES = IMAGE_TYPES + VOLUME_TYPES  # every upload suffix, without dots (st.file_uploader's `type=`)
ACCEPTED = (".png, .jpg, .jpeg, .bmp, .tif and .tiff images, DICOM (.dcm, or a DICOM file without a suffix), "
            "NIfTI (.nii, .nii.gz) and Analyze 7.5 pairs (.hdr with its .img)")  # SCAN_SUFFIXES, in words
_PERCENTILES = (0.5, 99.5)  # the robust grey-level range of a volume or an unwindowed DICOM frame


class ScanError(ValueError):
    """A scan file that cannot be used, with the reason in plain words."""


@dataclass(frozen=True, eq=False)  # eq would compare arrays element-wise
class Scan:
    """One slice brought to the training look, and what was done to get it.

    image:       uint8 (size, size), grey levels 0..255.
    name:        `clean_name` of the (first) file.
    kind:        "PNG image", "JPEG image", "BMP image", "TIFF image", "DICOM", "DICOM series",
                 "NIfTI-1", "NIfTI-2", "NIfTI-1 pair" or "Analyze 7.5".
    steps:       one plain sentence per step taken (slice, orientation, grey scaling, resizing).
    header:      (field, value) pairs read from the header: technical fields from an allow-list only,
                 never a patient, physician, institution, date or UID.
    n_slices:    slices (volume), frames (multi-frame DICOM) or files (DICOM series) to pick from; 1 for 2D.
    slice_index: the one used, 0-based.
    colour:      0..1, how colourful the original was (mean chroma, max - min of R, G, B, over 255);
                 0 for grey input.
    """

    image: np.ndarray
    name: str
    kind: str
    steps: tuple[str, ...]
    header: tuple[tuple[str, str], ...]
    n_slices: int = 1
    slice_index: int = 0
    colour: float = 0.0


# ---------------------------------------------------------------- shared helpers


def clean_name(filename: str) -> str:
    """A file name safe to show and log: its last path part, without control characters (a NUL included)."""
    return Path(printable(filename)).name or "upload"


def printable(filename: str) -> str:
    """A file's name as given, folders kept (for grouping by subject), without control characters: how results
    name their files."""
    return "".join(ch for ch in str(filename) if ch.isprintable()).replace("\\", "/") or "upload"


def _first_line(exc: BaseException) -> str:
    """An exception's message as one short line, for the end of a ScanError."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= 160 else text[:157] + "..."


@contextmanager
def _parsing(name: str, what: str):
    """Turn whatever a third-party parser raises on hostile bytes into a ScanError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except ScanError:
        raise
    except MemoryError as exc:
        raise ScanError(f"{name}: too large to open here") from exc
    except Exception as exc:  # pydicom, nibabel and Pillow raise many unrelated types on damaged files
        raise ScanError(f"{name}: {what} ({_first_line(exc)})") from exc


def _check_bytes(name: str, data: bytes, limit: int) -> None:
    if not data:
        raise ScanError(f"{name}: the file is empty")
    if len(data) > limit:
        what = "a slice" if limit == MAX_UPLOAD_BYTES else "a scan"
        raise ScanError(f"{name}: {len(data) / 2**20:.1f} MB is over the {limit // 2**20} MB limit for {what}")


def _check_shape(name: str, width: int, height: int) -> None:
    """Refuse a slice whose declared size cannot be a brain slice, before anything is decoded."""
    if width * height > MAX_PIXELS:
        raise ScanError(f"{name}: {width}x{height} pixels is too large for a 2D slice "
                        f"(over {MAX_PIXELS:,} pixels)")
    if min(width, height) < 1:
        raise ScanError(f"{name}: the image declares {width}x{height} pixels; it holds no image")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ScanError(f"{name}: {width}x{height} pixels is not a brain slice shape (one side is over "
                        f"{MAX_ASPECT:g} times the other); export the axial slice itself")
    if min(width, height) < MIN_SIDE:
        raise ScanError(f"{name}: {width}x{height} pixels is too small; "
                        f"a slice needs at least {MIN_SIDE} pixels a side")


def _pick(slice_index: int | None, n: int, name: str, what: str = "slice") -> tuple[int, str]:
    """The 0-based index to use and a sentence saying which one it is (1-based, as people count)."""
    if slice_index is None:
        index, why = n // 2, " (the middle one; pick another with the slice picker)"
    elif 0 <= slice_index < n:
        index, why = int(slice_index), ""
    else:
        raise ScanError(f"{name}: there is no {what} {slice_index}; this scan has {n} {what}"
                        f"{'s' if n != 1 else ''}, numbered from 0 to {n - 1}")
    return index, f"Used {what} {index + 1} of {n}{why}."


def _robust_range(values: np.ndarray) -> tuple[float, float]:
    """The 0.5th and 99.5th percentiles of the finite non-zero values; their min and max where those
    percentiles coincide (a mask, a nearly flat image); (v, v) when every finite value is v."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 0.0
    nonzero = finite[finite != 0]
    lo, hi = np.percentile(nonzero if nonzero.size else finite, _PERCENTILES)
    if hi <= lo:
        lo, hi = finite.min(), finite.max()
    return float(lo), float(hi)


def _to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of [lo, hi] onto 0..255, clipped; NaN becomes black. hi > lo."""
    clean = np.nan_to_num(values.astype(np.float64), nan=lo, posinf=hi, neginf=lo)
    return np.clip((clean - lo) / (hi - lo) * 255.0, 0, 255).round().astype(np.uint8)


def _chroma(rgb: np.ndarray, full_scale: float = 255.0) -> float:
    """Mean chroma (max - min of the three channels) of an (H, W, 3) image, over `full_scale`: 0..1."""
    rgb = rgb.astype(np.float32)
    return float(np.clip((rgb.max(axis=-1) - rgb.min(axis=-1)).mean() / full_scale, 0.0, 1.0))


def _colour_step(kind: str, colour: float) -> str:
    if colour < 0.01:
        return f"The {kind} image has no colour to speak of; its grey levels were kept."
    return (f"The image is in colour ({kind}, colourfulness {colour:.2f} on 0-1); it was turned to grey "
            "with the ITU-R 601 luma weights. The network was trained on grey MRI, so check that this "
            "is an MRI slice and not a photograph or a coloured map.")


def _training_look(view: np.ndarray, size: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """A uint8 slice in the radiological view -> rotated 180 degrees and resized straight to size x size."""
    rotated = np.ascontiguousarray(np.rot90(view, 2))
    height, width = rotated.shape
    out = Image.fromarray(rotated).resize((size, size), Image.Resampling.BICUBIC)
    rotate = ("Then rotated it 180 degrees, as the training slices were made from OASIS' images: in the slice the "
              "network reads, the front of the head is at the bottom and the subject's left on the image's left.")
    if (width, height) == (size, size):
        return np.asarray(out, dtype=np.uint8), (rotate,)  # already the training slices' size: nothing resized
    resize = (f"Resized {width} x {height} to {size} x {size} (bicubic) without keeping the aspect ratio, as the "
              "training slices were.")
    return np.asarray(out, dtype=np.uint8), (rotate, resize)


def _header_value(value) -> str:
    """A header value as short printable text: several values joined by ' x '."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = " x ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    elif isinstance(value, float):
        value = f"{value:g}"
    return "".join(ch for ch in str(value) if ch.isprintable())[:64]


