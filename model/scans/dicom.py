"""DICOM files, multi-frame files and series through pydicom (see `scan_io`)."""
from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from model.scans.common import (MAX_VOLUME_BYTES, MAX_VOXELS, Scan, ScanError, _check_bytes, _check_shape, _chroma,
                                _colour_step, _first_line, _header_value, _parsing, _pick, _robust_range, _to_uint8,
                                _training_look)

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


