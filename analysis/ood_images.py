"""Images that are not training-like slices, for measuring the out-of-distribution guard (model.qualify.trust).

`made_images(seed, brains)` draws synthetic ones (noise, flat, gradients, patterns, a text page, shapes,
and, given real brain slices, the same brains inverted, rotated, upside down, saturated, drowned in
noise, cropped or tiled); `shipped_pictures()` reads pictures that installed packages carry (photos from
scikit-learn and Matplotlib, Matplotlib's MRI slice and terrain, pydicom's CT and MR). Every image goes
through the app's own decoder as a PNG, so it reaches the guard as an upload would.

    python -m analysis.guard_rates     # hit rate per kind with the shipped bank -> assets/guard_rates.json
"""
from __future__ import annotations

import gzip
import io
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from model.scans.scan_io import ScanError, read_scan


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _decoded(array, name: str = "made.png") -> np.ndarray:
    return read_scan(_png(np.clip(np.asarray(array, dtype=np.float64), 0, 255)), name)


def made_images(seed: int, brains: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Synthetic out-of-distribution slices: {kind: uint8 (128, 128)}. brains: uint8 (N, 128, 128) real slices
    to derive the brain kinds from (left out when None)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:128, :128]
    out = {
        "uniform noise": _decoded(rng.integers(0, 256, (128, 128))),
        "gaussian noise": _decoded(rng.normal(rng.uniform(40, 120), rng.uniform(20, 60), (128, 128))),
        "black": _decoded(np.zeros((128, 128))),
        "white": _decoded(np.full((128, 128), 255)),
        "grey": _decoded(np.full((128, 128), rng.integers(20, 236))),
        "gradient": _decoded(xx * rng.uniform(1, 2) if rng.random() < 0.5 else yy * rng.uniform(1, 2)),
        "checkerboard": _decoded(((xx // rng.integers(4, 20) + yy // rng.integers(4, 20)) % 2) * 255),
        "stripes": _decoded((np.sin(xx / rng.uniform(2, 8)) > 0) * 200),
    }
    page = Image.new("L", (256, 256), int(rng.integers(200, 256)))
    draw = ImageDraw.Draw(page)
    for line in range(10):
        draw.text((10, 10 + 24 * line), f"Lorem ipsum dolor sit amet {rng.integers(1000)}", fill=0)
    out["text page"] = read_scan(_png(np.asarray(page)), "page.png")
    shapes = Image.new("L", (128, 128), 0)
    draw = ImageDraw.Draw(shapes)
    for _ in range(6):
        x, y, r = rng.integers(0, 128, 3)
        draw.ellipse([x, y, x + r // 2 + 5, y + r // 2 + 5], fill=int(rng.integers(50, 256)))
    out["shapes"] = np.asarray(shapes)
    if brains is not None and len(brains):
        b = brains[rng.integers(len(brains))].astype(np.float64)
        out |= {
            "brain, inverted contrast": _decoded(255 - b),
            "brain, rotated 90 degrees": _decoded(np.rot90(b)),
            "brain, upside down": _decoded(np.flipud(b)),
            "brain, saturated (x3)": _decoded(b * 3),
            "brain, heavy noise": _decoded(b + rng.normal(0, 60, b.shape)),
            "brain, one quarter enlarged": np.asarray(Image.fromarray(b[:64, :64].astype(np.uint8)).resize((128, 128))),
            "brain, tiled 2x2": np.asarray(Image.fromarray(np.tile(b, (2, 2)).astype(np.uint8)).resize((128, 128))),
        }
    return out


def _package_file(package: str, *parts: str) -> Path | None:
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    return path if path.is_file() else None


def shipped_pictures(refused: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Pictures that installed packages carry, decoded as uploads: {kind: uint8 (128, 128)}; missing ones are
    left out, and ones the decoder refuses (a 542x130 logo is no slice shape) go to `refused` with the reason."""
    out = {}
    for kind, package, parts in (("photo: Grace Hopper (matplotlib)", "matplotlib", ("mpl-data", "sample_data", "grace_hopper.jpg")),
                                 ("picture: logo (matplotlib)", "matplotlib", ("mpl-data", "sample_data", "logo2.png")),
                                 ("picture: Minduka (matplotlib)", "matplotlib", ("mpl-data", "sample_data", "Minduka_Present_Blue_Pack.png")),
                                 ("photo: China (scikit-learn)", "sklearn", ("datasets", "images", "china.jpg")),
                                 ("photo: flower (scikit-learn)", "sklearn", ("datasets", "images", "flower.jpg"))):
        path = _package_file(package, *parts)
        if path:
            try:
                out[kind] = read_scan(path.read_bytes(), path.name)
            except ScanError as exc:
                if refused is not None:
                    refused[kind] = str(exc)
    mri = _package_file("matplotlib", "mpl-data", "sample_data", "s1045.ima.gz")
    if mri:  # a 256x256 16-bit MRI slice of another scanner and protocol
        a = np.frombuffer(gzip.decompress(mri.read_bytes()), np.uint16).reshape(256, 256).astype(np.float64)
        out["MRI of another protocol (matplotlib s1045)"] = _decoded(a / a.max() * 255)
    terrain = _package_file("matplotlib", "mpl-data", "sample_data", "jacksboro_fault_dem.npz")
    if terrain:
        dem = np.load(terrain)["elevation"].astype(np.float64)
        out["terrain map (matplotlib)"] = _decoded((dem - dem.min()) / np.ptp(dem) * 255)
    for name in ("CT_small.dcm", "MR_small.dcm", "liver_1frame.dcm"):
        path = _package_file("pydicom", "data", "test_files", name)
        if path is None:
            continue
        import pydicom

        a = pydicom.dcmread(path).pixel_array.astype(np.float64)
        a = a[0] if a.ndim == 3 else a
        lo, hi = np.percentile(a, [0.5, 99.5])
        out[f"DICOM of another body part or protocol (pydicom {name})"] = _decoded((a - lo) / max(hi - lo, 1e-9) * 255)
    return out
