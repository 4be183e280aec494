"""NIfTI-1/-2 (`.nii`, `.nii.gz`) and Analyze 7.5 pairs through nibabel (see `scan_io`).

nibabel is imported by the functions that read volumes (0.2-0.3 s, with scipy parts): every PNG upload, the app's
cold start and `alzmri predict` on slices would pay it otherwise (`python -X importtime`, 2026-12-02).
"""
from __future__ import annotations

import io
import logging
import warnings
import zlib

import numpy as np

from model.scans.common import (MAX_VOLUME_BYTES, MAX_VOXELS, Scan, ScanError, _check_bytes, _check_shape,
                                _first_line, _parsing, _pick, _robust_range, _to_uint8, _training_look)

_GZIP_CHUNK = 1 << 20
# nibabel reports header problems it fixes to a logger; ours swallows them (the steps say what matters)
_NIBABEL_LOG = logging.getLogger(__name__ + ".nibabel")
_NIBABEL_LOG.addHandler(logging.NullHandler())
_NIBABEL_LOG.propagate = False


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


