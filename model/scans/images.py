"""2D images (PNG, JPEG, BMP, TIFF) through Pillow, restricted to those four decoders (see `scan_io`)."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.core.constants import IMAGE_SIZE
from model.scans.common import (MAX_PIXELS, MAX_UPLOAD_BYTES, Scan, ScanError, _check_bytes, _check_shape, _chroma,
                                _colour_step, _first_line, _parsing, _pick)

# The only decoders Pillow may use: an ICO, PCX, TGA or EPS file renamed .png never reaches its own decoder
# (EPS would run Ghostscript where it is installed).
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")


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


