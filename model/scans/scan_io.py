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

import io
import logging
import warnings
import zlib
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.core.constants import IMAGE_SIZE

# nibabel is imported by the functions that read volumes (0.2-0.3 s, with scipy parts): every PNG upload, the app's
# cold start and `alzmri predict` on slices would pay it otherwise (`python -X importtime`, 2026-12-02).

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
# The only decoders Pillow may use: an ICO, PCX, TGA or EPS file renamed .png never reaches its own decoder
# (EPS would run Ghostscript where it is installed).
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
_PERCENTILES = (0.5, 99.5)  # the robust grey-level range of a volume or an unwindowed DICOM frame
_GZIP_CHUNK = 1 << 20
# nibabel reports header problems it fixes to a logger; ours swallows them (the steps say what matters)
_NIBABEL_LOG = logging.getLogger(__name__ + ".nibabel")
_NIBABEL_LOG.addHandler(logging.NullHandler())
_NIBABEL_LOG.propagate = False


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


# ---------------------------------------------------------------- 2D images (Pillow)


def to_gray8(img: Image.Image) -> Image.Image:
    """8-bit grayscale. A 16-bit or float image is stretched from its own minimum to maximum, not clipped
    (Pillow's convert("L") would turn most of a 16-bit slice white and a float one black)."""
    if img.mode.startswith(("I", "F")):
        values = np.asarray(img, dtype=np.float64)
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        scaled = np.zeros_like(values) if hi <= lo else (np.nan_to_num(values, nan=lo) - lo) / (hi - lo) * 255
        return Image.fromarray(np.clip(scaled, 0, 255).round().astype(np.uint8))
    return img.convert("L")


def to_square_slice(img: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Grayscale (`to_gray8`), padded with black to a square (keeps the aspect ratio), resized to size x size."""
    gray = to_gray8(img)
    w, h = gray.size
    if w != h:
        side = max(w, h)
        canvas = Image.new("L", (side, side), 0)
        canvas.paste(gray, ((side - w) // 2, (side - h) // 2))
        gray = canvas
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def _decode_image(data: bytes, name: str) -> tuple[Image.Image, str, int]:
    """(the first frame, loaded; its format; the number of frames). Sizes are checked before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about damaged metadata; the bomb warning is an error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS) as img:
                _check_shape(name, img.width, img.height)
                frames = int(getattr(img, "n_frames", 1))
                img.seek(0)
                img.load()
                return img.copy(), str(img.format), frames
    except ScanError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ScanError(f"{name}: the image declares more pixels than a 2D slice can have "
                        f"(over {MAX_PIXELS:,}); it is too large to open") from exc
    except UnidentifiedImageError as exc:
        raise ScanError(f"{name}: not a PNG or JPEG image we can read (nor a BMP or TIFF one)") from exc
    except MemoryError as exc:
        raise ScanError(f"{name}: the image is too large to open here") from exc
    except Exception as exc:  # Pillow's decoders raise OSError, ValueError, SyntaxError, EOFError, ... on damage
        raise ScanError(f"{name}: the image file is damaged or truncated ({_first_line(exc)})") from exc


def _flatten(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """Palette, CMYK and transparency resolved to RGB (or kept grey); says what was done."""
    steps, mode = [], img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or ("transparency" in img.info and mode in ("1", "L", "P", "RGB")):
        black = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, img.convert("RGBA")).convert("RGB")
        steps.append("Transparent parts were laid on black, the background of the training slices.")
    elif mode == "P":
        img = img.convert("RGB")
        steps.append("Palette colours were looked up to RGB.")
    elif mode == "CMYK":
        img = img.convert("RGB")
        steps.append("CMYK (print) colours were converted to RGB.")
    elif mode not in ("L", "1", "RGB") and not mode.startswith(("I", "F")):
        img = img.convert("RGB")
        steps.append(f"The {mode} colour space was converted to RGB.")
    return img, steps


_SUFFIXES_OF = {"PNG": ("png",), "JPEG": ("jpg", "jpeg"), "MPO": ("jpg", "jpeg"), "BMP": ("bmp",),
                "TIFF": ("tif", "tiff")}


def _image_steps(img: Image.Image, fmt: str, frames: int, name: str) -> list[str]:
    w, h = img.size
    steps = [f"Read a {fmt} image of {w} x {h} pixels."]
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix and suffix not in _SUFFIXES_OF.get(fmt, ()):
        steps.append(f"The file is named .{suffix} but holds a {fmt} image; it was read as {fmt}.")
    if frames > 1:
        what = "an animated PNG" if fmt == "PNG" else f"a {fmt} file with several pages"
        steps.append(f"The file holds {frames} frames ({what}); only the first was used.")
    return steps


def _open_image(data: bytes, name: str, slice_index: int | None, size: int) -> Scan:
    _check_bytes(name, data, MAX_UPLOAD_BYTES)
    _pick(slice_index, 1, name)
    img, fmt, frames = _decode_image(data, name)
    steps = _image_steps(img, fmt, frames, name)
    header = [("Format", fmt), ("Size", f"{img.width} x {img.height} pixels"), ("Pixel mode", img.mode)]
    if frames > 1:
        header.append(("Frames", str(frames)))
    with _parsing(name, "the image could not be converted to grey"):
        img, more = _flatten(img)
        steps += more
        colour = 0.0
        if img.mode == "RGB":
            colour = _chroma(np.asarray(img))
            steps.append(_colour_step("RGB", colour))
        elif img.mode.startswith(("I", "F")):
            depth = "floating-point" if img.mode.startswith("F") else "16-bit" if "16" in img.mode else "32-bit"
            steps.append(f"The {depth} grey levels were stretched from the image's minimum to its maximum "
                         "onto 0-255.")
        array = to_square_slice(img, size)
    w, h = img.size
    if w != h:
        steps.append(f"Padded with black to a {max(w, h)} x {max(w, h)} square, keeping the aspect ratio.")
    steps.append(f"Resized to {size} x {size} (bilinear)." if max(w, h) != size else
                 f"Already {size} x {size}; not resized.")
    return Scan(array, name, f"{fmt} image", tuple(steps), tuple(header), 1, 0, colour)


# ---------------------------------------------------------------- DICOM (pydicom)
# pydicom is imported when a DICOM file is read, not with this module: its import (pydicom.pixels pulls in
# requests) took 0.5 s quiet and 1.3 s loaded on the 2-core machine (`python -X importtime`, 2026-12-02), paid by
# every `alzmri predict` and the app's start-up though most scans are images or NIfTI.
def _pydicom():
    import pydicom
    import pydicom.pixels
    import pydicom.pixels.utils

    return pydicom


_DICOM_FIELDS = (  # an allow-list: technical fields only, nothing that identifies a patient or a site
    ("Modality", "Modality"),
    ("Manufacturer", "Manufacturer"),
    ("ManufacturerModelName", "Scanner model"),
    ("MagneticFieldStrength", "Field strength (T)"),
    ("MRAcquisitionType", "MR acquisition type"),
    ("ScanningSequence", "Scanning sequence"),
    ("RepetitionTime", "Repetition time (ms)"),
    ("EchoTime", "Echo time (ms)"),
    ("SliceThickness", "Slice thickness (mm)"),
    ("PixelSpacing", "Pixel spacing (mm)"),
    ("Rows", "Rows"),
    ("Columns", "Columns"),
    ("NumberOfFrames", "Frames"),
    ("BitsStored", "Bits stored"),
    ("PhotometricInterpretation", "Photometric interpretation"),
)
# Series Description and Protocol Name are left out on purpose: they are free text that sites sometimes fill
# with names, and DICOM's de-identification profile (PS3.15 E.1) removes them.


_PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010) little- and big-endian


def _is_dicom(name: str, data: bytes) -> bool:
    return data[128:132] == b"DICM" or Path(name).suffix.lower() == ".dcm"


def _read_dicom(data: bytes, name: str, *, pixels: bool = True):
    """The parsed dataset (pixel data left encoded), or ScanError for anything that is not DICOM."""
    if data[128:132] != b"DICM":
        raise ScanError(f"{name}: not a DICOM file: it lacks the 'DICM' signature that DICOM files carry "
                        "after their 128-byte preamble; export the images again as DICOM (Part 10) files")
    with _parsing(name, "the DICOM header is damaged"):
        ds = _pydicom().dcmread(io.BytesIO(data), force=False, stop_before_pixels=not pixels)
    if pixels and "PixelData" not in ds and any(data.find(tag, 132) >= 0 for tag in _PIXEL_DATA_TAGS):
        raise ScanError(f"{name}: the DICOM header is damaged: reading stopped before the pixel data")
    return ds


def _dicom_header(ds, extra: Sequence[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
    rows = []
    for keyword, label in _DICOM_FIELDS:
        try:
            value = ds.get(keyword)
            text = "" if value is None else _header_value(value)
        except Exception:  # a damaged value is left out of the summary, not a reason to refuse the file
            continue
        if text:
            rows.append((label, text))
    try:
        rows.append(("Transfer syntax", str(ds.file_meta.TransferSyntaxUID.name)[:64]))
    except Exception:  # no file meta, or no transfer syntax in it: the pixel decoding will say so
        pass
    return tuple(rows) + tuple(extra)


def _dicom_geometry(ds, name: str) -> tuple[int, int, int]:
    """(rows, columns, frames) from the header, checked against the caps before any pixel is decoded."""
    if "PixelData" not in ds:
        sop = str(getattr(ds.get("SOPClassUID"), "name", "") or "")
        what = f"its kind is {sop}" if sop else "it has no Pixel Data"
        raise ScanError(f"{name}: this DICOM file holds no image ({what}; structured reports, RT plans and "
                        "presentation states carry none); upload the image series itself")
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if not rows or not cols:
        raise ScanError(f"{name}: the DICOM header does not give the image size (Rows and Columns)")
    frames, samples = _pydicom().pixels.utils.get_nr_frames(ds, warn=False), int(ds.get("SamplesPerPixel") or 1)
    _check_shape(name, cols, rows)
    if not 1 <= frames or rows * cols * frames * samples > MAX_VOXELS:
        raise ScanError(f"{name}: {frames} frames of {cols}x{rows} pixels is more than one scan can hold "
                        f"here (over {MAX_VOXELS:,} values)")
    return rows, cols, frames


def _decode_frame(ds, name: str, index: int) -> np.ndarray:
    """One frame, (rows, cols) or (rows, cols, samples); YBR already turned to RGB by pydicom."""
    with _parsing(name, "the DICOM file does not say how its pixels are encoded"):
        syntax = ds.file_meta.TransferSyntaxUID
        compressed = syntax.is_compressed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _pydicom().pixels.pixel_array(ds, index=index)
    except MemoryError as exc:
        raise ScanError(f"{name}: the image is too large to decode here") from exc
    except Exception as exc:  # the decoders and plugins raise many unrelated types on damaged data
        if compressed:
            raise ScanError(f"{name}: its pixels are compressed as {syntax.name}, and this compression could "
                            f"not be decoded here ({_first_line(exc)}); export the series uncompressed "
                            "(Explicit VR Little Endian) and upload it again") from exc
        raise ScanError(f"{name}: the pixel data is damaged or truncated ({_first_line(exc)})") from exc


def _window(values: np.ndarray, ds) -> tuple[np.ndarray, str] | None:
    """The header's VOI LUT or window applied, on 0..255; None when the header has no usable one."""
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        if 1 <= bits <= 16:
            out = _pydicom().pixels.apply_voi_lut(values, ds).astype(np.float64) * 255.0 / (2**bits - 1)
            return out, "Applied the header's VOI lookup table, as a DICOM viewer shows the image."
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    # several windows may be given (VM > 1): the first is the one viewers open with
    center = float(np.ravel(np.asarray(ds.WindowCenter, dtype=np.float64))[0])
    width = float(np.ravel(np.asarray(ds.WindowWidth, dtype=np.float64))[0])
    if not (np.isfinite(center) and np.isfinite(width) and width >= 1):
        return None
    view = _pydicom().Dataset()
    # the window alone, on an 8-bit unsigned output range: pydicom then maps it onto 0..255
    view.PhotometricInterpretation, view.BitsStored, view.PixelRepresentation = "MONOCHROME2", 8, 0
    view.WindowCenter, view.WindowWidth = center, width
    view.VOILUTFunction = str(ds.get("VOILUTFunction") or "LINEAR")
    voi = _pydicom().pixels.apply_voi_lut
    return voi(values, view), (f"Applied the header's window (centre {center:g}, width {width:g}), "
                               "as a DICOM viewer shows the image.")


def _dicom_grey(frame: np.ndarray, ds, name: str) -> tuple[np.ndarray, list[str]]:
    """Modality LUT, then window or percentile stretch, then MONOCHROME1 inversion: uint8 (rows, cols)."""
    steps = []
    with _parsing(name, "the DICOM rescale values are damaged"):
        values = np.asarray(_pydicom().pixels.apply_modality_lut(frame, ds), dtype=np.float64)
        if "RescaleSlope" in ds and "RescaleIntercept" in ds:
            steps.append(f"Applied the rescale slope {float(ds.RescaleSlope):g} and intercept "
                         f"{float(ds.RescaleIntercept):g} (the modality LUT).")
        elif ds.get("ModalityLUTSequence"):
            steps.append("Applied the modality lookup table.")
    try:
        windowed = _window(values, ds)
    except Exception:  # a damaged window or VOI LUT: fall back to the percentile stretch, as with none
        windowed = None
    if windowed is not None:
        gray, step = np.clip(np.nan_to_num(windowed[0]), 0, 255).round().astype(np.uint8), windowed[1]
    else:
        lo, hi = _robust_range(values)
        if hi <= lo:
            raise ScanError(f"{name}: every pixel of this image has the same value; there is nothing to see")
        gray = _to_uint8(values, lo, hi)
        step = (f"The header gives no usable window, so grey levels were stretched from {lo:.4g} (0.5th "
                f"percentile of the non-zero pixels) to {hi:.4g} (99.5th) onto 0-255.")
    steps.append(step)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        gray = 255 - gray
        steps.append("Inverted the grey levels: MONOCHROME1 stores white as the lowest value.")
    return gray, steps


def _dicom_colour(frame: np.ndarray, ds, name: str) -> tuple[np.ndarray, list[str], float]:
    """An RGB or palette frame -> grey uint8 (rows, cols), the steps, and how colourful it was."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    steps = []
    with _parsing(name, "the DICOM colour data are damaged"):
        if photometric == "PALETTE COLOR":
            frame = _pydicom().pixels.apply_color_lut(frame, ds)
            steps.append("Looked the pixel values up in the file's colour palette (PALETTE COLOR).")
            full = 255.0 if frame.dtype.itemsize == 1 else 65535.0
        else:
            bits = int(ds.get("BitsStored") or 8)
            full = float(2 ** bits - 1) if 1 <= bits <= 32 else float(max(frame.max(), 1))
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ScanError(f"{name}: the {photometric} pixel data do not have three colour samples")
    rgb = np.clip(frame.astype(np.float64) * (255.0 / full), 0, 255)
    colour = _chroma(rgb)
    gray = rgb @ np.array([0.299, 0.587, 0.114])
    steps.append(_colour_step(photometric, colour))
    return np.clip(gray, 0, 255).round().astype(np.uint8), steps, colour


def _dicom_orientation(ds, frame: int) -> np.ndarray | None:
    """Image Orientation (Patient), six direction cosines (LPS), from the file or its functional groups."""
    places = (lambda: ds.ImageOrientationPatient,
              lambda: ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient,
              lambda: ds.PerFrameFunctionalGroupsSequence[frame].PlaneOrientationSequence[0].ImageOrientationPatient)
    for place in places:
        try:
            cosines = np.array([float(v) for v in place()], dtype=np.float64)
        except Exception:  # absent or damaged here: look in the next place
            continue
        if cosines.shape == (6,) and np.isfinite(cosines).all() and np.linalg.norm(
                np.cross(cosines[:3], cosines[3:])) > 0.5:  # two unit vectors at right angles, roughly
            return cosines
    return None


def _radiological_view(gray: np.ndarray, cosines: np.ndarray | None) -> tuple[np.ndarray, str]:
    """A DICOM frame laid out in the radiological view: anterior at the top, the subject's left on the image's
    right. DICOM's patient axes (LPS): x grows toward the subject's left, y toward the back."""
    if cosines is None:
        return gray, ("The file gives no slice orientation; it was taken to be an axial slice in the usual "
                      "radiological view (front of the head at the top, the subject's left on the right).")
    row, col = cosines[:3], cosines[3:]
    plane = int(np.argmax(np.abs(np.cross(row, col))))
    if plane != 2:
        return gray, (f"This is a {('sagittal', 'coronal')[plane]} slice, not an axial one: the network was "
                      "trained on axial slices only, so its answer here means little.")
    changed = []
    if abs(row[1]) > abs(row[0]):  # the columns run front to back: swap the axes
        gray, row, col = gray.T, col, row
        changed.append("transposed")
    if row[0] < 0:  # LPS x grows toward the subject's left, which belongs on the image's right
        gray = gray[:, ::-1]
        changed.append("flipped left-right")
    if col[1] < 0:  # LPS y grows toward the back, which belongs at the bottom
        gray = gray[::-1, :]
        changed.append("flipped top-bottom")
    how = f" (the stored image was {' and '.join(changed)})" if changed else ""
    return gray, ("The slice is axial and was laid out in the radiological view: front of the head at the "
                  f"top, the subject's left on the image's right{how}.")


def _dicom_scan(ds, name: str, kind: str, size: int, *, frame: int, n: int, index: int,
                pick: str) -> Scan:
    """One decoded frame of `ds` in the training look. `n` and `index` are what the slice picker shows: the
    frames of a multi-frame file, or the files of a series."""
    with _parsing(name, "the DICOM header is damaged"):
        rows, cols, _ = _dicom_geometry(ds, name)
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()
        modality = str(ds.get("Modality") or "").strip()
    steps = [f"Read a DICOM {modality + ' ' if modality else ''}image of {cols} x {rows} pixels."]
    steps += [pick] if pick else []
    pixels = _decode_frame(ds, name, frame)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        (gray, more), colour = _dicom_grey(pixels, ds, name), 0.0
    elif photometric in ("RGB", "PALETTE COLOR") or photometric.startswith("YBR"):
        gray, more, colour = _dicom_colour(pixels, ds, name)
    else:
        raise ScanError(f"{name}: the photometric interpretation {photometric or '(none)'} is not one this tool "
                        "reads (MONOCHROME1, MONOCHROME2, RGB, YBR or PALETTE COLOR)")
    view, step = _radiological_view(gray, _dicom_orientation(ds, frame))
    image, last = _training_look(view, size)
    extra = [("Files in series", str(n))] if kind == "DICOM series" else []
    return Scan(image, name, kind, (*steps, *more, step, *last), _dicom_header(ds, extra), n, index, colour)


def _slice_position(ds) -> tuple[float, float]:
    """(position along the slice normal, instance number) for ordering a series; NaN where unknown."""
    try:
        cosines = [float(v) for v in ds.ImageOrientationPatient]
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        normal = np.cross(cosines[:3], cosines[3:])
        along = float(position @ normal)
    except Exception:  # no or damaged geometry: fall back to the instance number
        along = float("nan")
    try:
        number = float(ds.InstanceNumber)
    except Exception:  # no instance number either
        number = float("nan")
    return along, number


def _series_order(headers: list) -> list[int]:
    """Indices of `headers` sorted along the slice normal, else by instance number, else as given."""
    keys = [_slice_position(ds) for ds in headers]
    for part in (0, 1):
        values = [k[part] for k in keys]
        if all(np.isfinite(values)) and len(set(values)) == len(values):
            return sorted(range(len(headers)), key=values.__getitem__)
    return list(range(len(headers)))


def _open_dicom(data: bytes, name: str, slice_index: int | None, size: int) -> Scan:
    _check_bytes(name, data, MAX_VOLUME_BYTES)
    ds = _read_dicom(data, name)
    with _parsing(name, "the DICOM header is damaged"):
        frames = _dicom_geometry(ds, name)[2]
    index, pick = _pick(slice_index, frames, name, "frame")
    return _dicom_scan(ds, name, "DICOM", size, frame=index, n=frames, index=index,
                       pick=pick if frames > 1 else "")


def _open_dicom_series(files: list[tuple[str, bytes]], slice_index: int | None, size: int) -> Scan:
    first = files[0][0]
    for name, data in files:
        _check_bytes(name, data, MAX_VOLUME_BYTES)
    if sum(len(data) for _, data in files) > MAX_VOLUME_BYTES:
        raise ScanError(f"{first}: the series is over the {MAX_VOLUME_BYTES // 2**20} MB limit for a scan")
    headers = [_read_dicom(data, name, pixels=False) for name, data in files]
    with _parsing(first, "the DICOM header is damaged"):
        series = {str(ds.get("SeriesInstanceUID") or "") for ds in headers}
    if len(series) != 1 or series == {""}:
        raise ScanError(f"{first}: these {len(files)} DICOM files are not one series; "
                        "upload the files of one series together, or each file on its own")
    order = _series_order(headers)
    index, _ = _pick(slice_index, len(files), first, "file")
    name, data = files[order[index]]
    ds = _read_dicom(data, name)
    with _parsing(name, "the DICOM header is damaged"):
        if _dicom_geometry(ds, name)[2] > 1:
            raise ScanError(f"{name}: a multi-frame file inside a series; upload it on its own")
    which = " (the middle one; pick another with the slice picker)" if slice_index is None else ""
    pick = (f"The series holds {len(files)} files, ordered along the slice normal (else by instance number); "
            f"used {name}, file {index + 1} of {len(files)}{which}.")
    scan = _dicom_scan(ds, name, "DICOM series", size, frame=0, n=len(files), index=index, pick=pick)
    return replace(scan, name=files[order[0]][0])  # the series is known by its first file


# ---------------------------------------------------------------- NIfTI and Analyze (nibabel)


def _gunzip(data: bytes, name: str) -> bytes:
    """Decompress in chunks, refusing as soon as the output passes what the NIfTI header in its first chunk
    declares (or MAX_VOLUME_BYTES): a gzip bomb costs a megabyte or two, never its inflated size."""
    if data[:2] != b"\x1f\x8b":
        raise ScanError(f"{name}: named .gz but not gzip-compressed; a .nii.gz file is a gzip-compressed NIfTI")
    inflater, parts, total, tail, limit = zlib.decompressobj(16 + zlib.MAX_WBITS), [], 0, data, MAX_VOLUME_BYTES
    try:
        while not inflater.eof:
            chunk = inflater.decompress(tail, _GZIP_CHUNK)
            tail = inflater.unconsumed_tail
            if not chunk and not tail:
                break
            parts.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ScanError(f"{name}: decompresses to more than {limit / 2**20:.0f} MB, more than its header "
                                "declares or a brain volume holds; refused without unpacking it")
            if len(parts) == 1:
                limit = min(limit, _declared_bytes(chunk) + _GZIP_CHUNK)
    except zlib.error as exc:
        raise ScanError(f"{name}: the gzip compression is damaged ({_first_line(exc)})") from exc
    if not inflater.eof:
        raise ScanError(f"{name}: the compressed file is truncated (it ends before its data do)")
    return b"".join(parts)


def _declared_bytes(head: bytes) -> int:
    """Header plus voxel bytes that a NIfTI header at the start of `head` declares; MAX_VOLUME_BYTES when
    `head` does not start with a readable one."""
    if head[344:348] != b"n+1\x00" and head[4:8] != b"n+2\x00":
        return MAX_VOLUME_BYTES
    import nibabel as nib

    try:
        klass = nib.Nifti2Header if head[4:8] == b"n+2\x00" else nib.Nifti1Header
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdr = klass.from_fileobj(io.BytesIO(head[:klass.sizeof_hdr]), check=False)
            voxels = int(np.prod([int(d) for d in hdr.get_data_shape()], dtype=object))
            return max(int(hdr.get_data_offset()), 0) + voxels * hdr.get_data_dtype().itemsize
    except Exception:  # not a NIfTI header: the general cap applies, and the reader will say what is wrong
        return MAX_VOLUME_BYTES


def _nifti_class(header: bytes, name: str, pair: bool):
    """(nibabel header class, kind) from the header's signature."""
    import nibabel as nib

    if header[344:348] in (b"n+1\x00", b"ni1\x00"):
        if (header[344:348] == b"ni1\x00") != pair:
            other = "a .hdr/.img pair; upload both files" if not pair else "a single .nii file"
            raise ScanError(f"{name}: the header says the volume is {other}")
        return (nib.nifti1.Nifti1PairHeader, "NIfTI-1 pair") if pair else (nib.Nifti1Header, "NIfTI-1")
    if header[4:8] == b"n+2\x00" and not pair:
        return nib.Nifti2Header, "NIfTI-2"
    if pair and header[:4] in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c"):  # sizeof_hdr 348, either byte order
        return nib.AnalyzeHeader, "Analyze 7.5"
    what = "an Analyze 7.5 header" if pair else "a NIfTI file"
    raise ScanError(f"{name}: not {what} (its header lacks the signature)")


def _volume_shape(hdr, name: str) -> tuple[int, int, int]:
    """The 3D shape, checked from the header alone: one volume, not too many voxels, numeric voxels."""
    shape = [int(d) for d in hdr.get_data_shape()]
    if not shape or min(shape) < 1:
        raise ScanError(f"{name}: the header declares the impossible size {shape}")
    extra = int(np.prod(shape[3:], dtype=object)) if len(shape) > 3 else 1
    if extra > 1:
        raise ScanError(f"{name}: a 4D series ({extra} volumes of {' x '.join(map(str, shape[:3]))}); "
                        "upload one 3D volume")
    xyz = (shape + [1, 1])[:3]
    if int(np.prod(xyz, dtype=object)) > MAX_VOXELS:
        raise ScanError(f"{name}: {' x '.join(map(str, xyz))} voxels is more than one brain volume "
                        f"(over {MAX_VOXELS:,}); it is too large to open")
    dtype = hdr.get_data_dtype()
    if dtype.fields is not None or dtype.kind not in "uif":
        what = "RGB colour triples" if dtype.fields is not None else f"{dtype} values"
        raise ScanError(f"{name}: the voxels are stored as {what}, not as one grey value each; "
                        "a structural MRI volume has one number per voxel")
    return xyz[0], xyz[1], xyz[2]


def _nifti_header(hdr, kind: str, shape, affine) -> tuple[tuple[str, str], ...]:
    import nibabel as nib

    zooms = [float(z) for z in hdr.get_zooms()[:3]]
    rows = [("Format", kind), ("Dimensions", " x ".join(map(str, shape))),
            ("Voxel size (mm)", " x ".join(f"{z:g}" for z in zooms)), ("Data type", str(hdr.get_data_dtype())),
            ("Orientation", "".join(str(c) for c in nib.aff2axcodes(affine)))]
    if "qform_code" in hdr:  # NIfTI; Analyze has no orientation codes
        rows.append(("qform / sform code", f"{int(hdr['qform_code'])} / {int(hdr['sform_code'])}"))
    return tuple(rows)


def _load_volume(header_class, header: bytes, image: bytes, name: str):
    """(stored voxels as an (X, Y, Z) array in the file's axes and type, header, affine, (slope, intercept)).
    The header is checked, and the sizes from it, before any voxel is read; the data must be as long as the
    header says. Voxels stay in their stored type: only the sample for the grey scale and the slice shown
    are turned to float, so a volume costs its own size in memory, not four times it."""
    with _parsing(name, "the header is damaged"):
        hdr = header_class.from_fileobj(io.BytesIO(header), check=False)
        hdr.check_fix(logger=_NIBABEL_LOG, error_level=40)  # fixes the harmless, raises on the rest
        shape = _volume_shape(hdr, name)
        offset = int(hdr.get_data_offset())
        needed = offset + int(np.prod(shape, dtype=object)) * hdr.get_data_dtype().itemsize
    if offset < 0 or needed > len(image):
        raise ScanError(f"{name}: the file is truncated or its header is wrong: the header declares "
                        f"{needed:,} bytes of voxels but the file holds {len(image):,}")
    with _parsing(name, "the voxel data could not be read"):
        volume = np.asarray(hdr.raw_data_from_fileobj(io.BytesIO(image))).reshape(shape)
        slope, inter = hdr.get_slope_inter() if hasattr(hdr, "get_slope_inter") else (None, None)
        affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
    scale = (1.0, 0.0) if slope is None else (float(slope), float(inter or 0.0))
    return volume, hdr, affine, scale


def _scaled(voxels: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Stored voxels -> float32 values (NIfTI's scl_slope and scl_inter applied)."""
    slope, inter = scale
    values = voxels.astype(np.float32)
    return values if (slope, inter) == (1.0, 0.0) else values * np.float32(slope) + np.float32(inter)


def _canonical(volume: np.ndarray, affine: np.ndarray, name: str) -> tuple[np.ndarray, str]:
    """The volume turned to the closest RAS orientation (what nibabel's `as_closest_canonical` does, applied to
    the array so that 2D-in-3D and (X, Y, Z, 1) files take the same path)."""
    from nibabel.orientations import apply_orientation, io_orientation, ornt2axcodes

    with _parsing(name, "the header's orientation (affine) is broken"):
        ornt = io_orientation(affine) if np.isfinite(affine).all() else None
    if ornt is None or np.isnan(ornt).any():
        raise ScanError(f"{name}: the header's orientation (affine) is broken, so the axial plane is unknown")
    codes = "".join(ornt2axcodes(ornt))
    volume = apply_orientation(volume, ornt)
    if codes == "RAS":
        return volume, "The volume is stored in RAS orientation; axial slices run from the bottom of the head up."
    return volume, (f"Reoriented the volume from {codes} to RAS, its closest canonical orientation, so that "
                    "axial slices run from the bottom of the head up.")


def _volume_scan(volume: np.ndarray, scale: tuple[float, float], hdr, affine, kind: str, name: str,
                 slice_index: int | None, size: int) -> Scan:
    shape = volume.shape
    article = "an" if kind.startswith("A") else "a"
    dims = " x ".join(map(str, shape))
    steps = [f"Read {article} {kind} volume of {dims} voxels, stored as {hdr.get_data_dtype()}."]
    if "qform_code" not in hdr or int(hdr["qform_code"]) == int(hdr["sform_code"]) == 0:
        steps.append("The header states no orientation; the usual storage with left and right swapped "
                     "(radiological) was assumed, so left and right may be mirrored.")
    volume, step = _canonical(volume, affine, name)
    steps.append(step)
    _check_axial(volume.shape, name)
    sample = _scaled(_sample(volume), scale)
    lo, hi = _robust_range(sample)
    if hi <= lo:
        what = "no finite values (all NaN or infinite)" if not np.isfinite(sample).any() else "a single value"
        raise ScanError(f"{name}: the volume holds {what}; there is no image in it")
    index, pick = _pick(slice_index, volume.shape[2], name, "axial slice")
    view = _scaled(volume[:, :, index], scale).T[::-1, ::-1]  # rows: front to back; columns: right to left
    image, last = _training_look(_to_uint8(view, lo, hi), size)
    steps += [pick, ("Laid the slice out in the radiological view: front of the head at the top, the subject's "
                     "left on the image's right (as OASIS shows axial slices)."),
              (f"Scaled grey levels so that {lo:.4g} (0.5th percentile of the volume's non-zero voxels) is black "
               f"and {hi:.4g} (99.5th) is white; every slice of this volume gets the same scale."), *last]
    return Scan(image, name, kind, tuple(steps), _nifti_header(hdr, kind, shape, affine),
                volume.shape[2], index, 0.0)


def _check_axial(shape: tuple[int, int, int], name: str) -> None:
    """An axial slice of this RAS volume must itself be a plausible slice (a one-voxel-thick sagittal or
    coronal file is not)."""
    for axis, plane in ((0, "sagittal"), (1, "coronal")):
        if shape[axis] == 1:
            raise ScanError(f"{name}: the volume is one voxel thick along the "
                            f"{('left-right', 'front-back')[axis]} axis, so it holds one {plane} slice; "
                            "the network needs axial slices")
    _check_shape(name, shape[0], shape[1])


def _sample(volume: np.ndarray, limit: int = 1 << 22) -> np.ndarray:
    """A regular subsample of at most about `limit` voxels (every voxel of a volume up to 160^3), for the
    percentiles of a large volume."""
    step = max(1, int(np.ceil((volume.size / limit) ** (1 / 3))))
    return volume[::step, ::step, ::step]


def _open_nifti(data: bytes, name: str, slice_index: int | None, size: int) -> Scan:
    _check_bytes(name, data, MAX_VOLUME_BYTES)
    if name.lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = _gunzip(data, name)
    klass, kind = _nifti_class(data, name, pair=False)
    volume, hdr, affine, scale = _load_volume(klass, data, data, name)
    return _volume_scan(volume, scale, hdr, affine, kind, name, slice_index, size)


def _open_analyze(hdr_file: tuple[str, bytes], img_file: tuple[str, bytes], slice_index: int | None,
                  size: int) -> Scan:
    (name, header), (img_name, image) = hdr_file, img_file
    _check_bytes(name, header, MAX_VOLUME_BYTES)
    _check_bytes(img_name, image, MAX_VOLUME_BYTES)
    klass, kind = _nifti_class(header, name, pair=True)
    volume, hdr, affine, scale = _load_volume(klass, header, image, name)
    return _volume_scan(volume, scale, hdr, affine, kind, name, slice_index, size)


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
