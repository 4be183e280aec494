"""Reading a user's scan file into the slice format the network expects.

`read_scan(data, filename)` is the one entry point for uploads and the CLI: it
returns a uint8 (S, S) grayscale array or raises `ScanError` with a message a
user can act on. PNG and JPEG (and the other formats Pillow reads) are handled
today; DICOM and NIfTI readers slot in by file suffix in `READERS`.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.constants import IMAGE_SIZE

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a 2D slice is far smaller; bigger is a wrong file
MAX_PIXELS = 8192 * 8192
MIN_SIDE = 32  # smaller than this holds no usable anatomy
IMAGE_TYPES = ("png", "jpg", "jpeg")
# The only decoders Pillow may use: an ICO, PCX, TGA or EPS file renamed .png never reaches its own decoder
# (EPS would run Ghostscript where it is installed).
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")


class ScanError(ValueError):
    """A scan file that cannot be used, with the reason in plain words."""


def to_gray8(img: Image.Image) -> Image.Image:
    """8-bit grayscale. A 16-bit or float image is stretched from its own minimum to maximum, not clipped
    (Pillow's convert("L") would turn most of a 16-bit slice white and a float one black)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(img, dtype=np.float64)
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        scaled = np.zeros_like(values) if hi <= lo else (np.nan_to_num(values, nan=lo) - lo) / (hi - lo) * 255
        return Image.fromarray(np.clip(scaled, 0, 255).round().astype(np.uint8), mode="L")
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


def _read_pillow(data: bytes, name: str, size: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ScanError(f"{name}: {img.width}x{img.height} pixels is too large for a 2D slice")
                img.load()
                if min(img.size) < MIN_SIDE:
                    raise ScanError(f"{name}: {img.width}x{img.height} pixels is too small; "
                                    f"a slice needs at least {MIN_SIDE} pixels a side")
                return to_square_slice(img, size)
    except ScanError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ScanError(f"{name}: the image declares more pixels than a 2D slice can have "
                        f"(over {MAX_PIXELS:,}); it is too large to open") from exc
    except UnidentifiedImageError as exc:
        raise ScanError(f"{name}: not a PNG or JPEG image we can read") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ScanError(f"{name}: the image file is damaged or truncated ({exc})") from exc


READERS = {suffix: _read_pillow for suffix in ("", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")}


def clean_name(filename: str) -> str:
    """A file name safe to show and log: its last path part, without control characters (a NUL included)."""
    name = "".join(ch for ch in str(filename) if ch.isprintable())
    return Path(name.replace("\\", "/")).name or "upload"


def read_scan(data: bytes, filename: str = "upload", size: int = IMAGE_SIZE) -> np.ndarray:
    """Decode one uploaded slice: bytes -> uint8 (size, size) grayscale array."""
    name = clean_name(filename)
    if not data:
        raise ScanError(f"{name}: the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ScanError(f"{name}: {len(data) / 2**20:.1f} MB is over the {MAX_UPLOAD_BYTES // 2**20} MB limit for a slice")
    suffix = Path(name).suffix.lower()
    if suffix in (".dcm", ".nii", ".gz"):
        raise ScanError(f"{name}: DICOM and NIfTI files are not supported yet; export the axial slice as PNG or JPEG")
    reader = READERS.get(suffix, _read_pillow)
    return reader(data, name, size)
