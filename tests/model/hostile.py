"""Files a user (or an attacker) may upload, built in code, and what `scan_io` must make of each.

`hostile_corpus()` returns (kind, filename, bytes, expected) with expected "ok" (a valid `Scan`) or "error"
(a `ScanError` with a plain message). `MESSAGE_FRAGMENTS[kind]` is a phrase the error must contain. The
builders (`dicom_bytes`, `nifti_bytes`, `png_chunks`, ...) are shared with the format and fuzz tests.
Nothing here allocates a large image: the bombs declare their size in a header and carry a few bytes.
"""
from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

TEST_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"  # bundled with pydicom


def bundled(name: str) -> bytes:
    """A DICOM file shipped inside pydicom (read from the package folder; nothing is downloaded)."""
    return (TEST_FILES / name).read_bytes()


def head(size: int = 96, seed: int = 0) -> np.ndarray:
    """A small synthetic axial slice: uint8 (size, size), an ellipse with darker ventricles and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    img = np.where((x / 0.8) ** 2 + (y / 0.9) ** 2 < 1, 150.0, 0.0)
    img = np.where(((np.abs(x) - 0.12) / 0.1) ** 2 + (y / 0.3) ** 2 < 1, 40.0, img)
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


def encoded(image: Image.Image | np.ndarray, fmt: str, **kw) -> bytes:
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_chunks(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A PNG whose header declares width x height but whose data is one compressed row: a bomb's shape."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
            + chunk(b"IEND", b""))


def dicom_bytes(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                syntax: str | None = None, **fields) -> bytes:
    """A DICOM Part 10 file (Explicit VR Little Endian unless `syntax` names a compressed one) holding `pixels`
    ((rows, cols) or (frames, rows, cols), or (..., 3) for RGB), with a made-up patient and extra `fields`."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "MR", "Doe^Jane", "PID-0042"
    ds.InstitutionName, ds.PatientBirthDate = "Hospital of Nowhere", "19400101"
    bits = bits_stored or pixels.dtype.itemsize * 8
    ds.set_pixel_data(pixels, photometric, bits)
    for key, value in fields.items():
        setattr(ds, key, value)
    if syntax:  # a compressed syntax: the frame is encapsulated as is (a decoder would find it garbage)
        from pydicom.encaps import encapsulate

        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def nifti_bytes(volume: np.ndarray, affine: np.ndarray | None = None, *, version: int = 1) -> bytes:
    import nibabel as nib

    klass = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    return klass(volume, np.eye(4) if affine is None else affine).to_bytes()


def analyze_pair(volume: np.ndarray) -> tuple[bytes, bytes]:
    """(.hdr bytes, .img bytes) of an Analyze 7.5 volume."""
    import nibabel as nib

    img = nib.AnalyzeImage(volume, np.eye(4))
    files = img.make_file_map()
    for holder in files.values():
        holder.fileobj = io.BytesIO()
    img.to_file_map(files)
    return files["header"].fileobj.getvalue(), files["image"].fileobj.getvalue()


def brain_volume(shape=(48, 56, 12), seed: int = 0) -> np.ndarray:
    """A small int16 head: an ellipsoid of 'tissue' with noise, zero outside."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    inside = (x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 1.2) ** 2 < 1
    return np.where(inside, 400 + rng.normal(0, 20, shape), 0).astype(np.int16)


def _gzip_bomb(inflated_mib: int = 256) -> bytes:
    """A valid .nii.gz of 265 kB that inflates to a small NIfTI header followed by `inflated_mib` MiB of zeros.
    Built without holding the inflated bytes: after a full flush, deflate emits the same block for the same
    1 MiB of zeros, so one block is repeated and the gzip trailer (CRC, length) is computed alongside."""
    header = nifti_bytes(np.zeros((8, 8, 8), np.int16))[:352]
    zeros = bytes(1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    start = packer.compress(header) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    end = packer.flush()[:-8]  # the final empty block, without the trailer of what was really compressed
    crc = zlib.crc32(header)
    for _ in range(inflated_mib):
        crc = zlib.crc32(zeros, crc)
    size = (len(header) + inflated_mib * len(zeros)) & 0xFFFFFFFF
    return start + block * inflated_mib + end + struct.pack("<II", crc, size)


def _broken_header_dicom() -> bytes:
    """MR_small.dcm with 48 bytes of its main header (just after the file meta) overwritten with 0xFF."""
    data = bytearray(bundled("MR_small.dcm"))
    meta_end = 132 + 12 + struct.unpack("<I", data[140:144])[0]
    data[meta_end:meta_end + 48] = b"\xff" * 48
    return bytes(data)


def _nifti_with(field: str, value) -> bytes:
    import nibabel as nib

    data = nifti_bytes(brain_volume())
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(data), check=False)
    hdr.structarr[field] = value
    return hdr.binaryblock + data[348:]


def _markdown_name() -> str:
    return "**Bold** [click](http://example.com) `x` <b>y</b> # h.png"


MESSAGE_FRAGMENTS = {
    "truncated PNG": "damaged or truncated",
    "truncated JPEG": "damaged or truncated",
    "empty file": "the file is empty",
    "random bytes .png": "not a PNG or JPEG image",
    "random bytes .dcm": "not a DICOM file",
    "text named .png": "not a PNG or JPEG image",
    "1x1 PNG": "too small",
    "extreme aspect PNG": "not a brain slice shape",
    "bomb PNG 12000x12000": "too large",
    "PNG declaring 9000x9000": "too large",
    "ICO renamed .png": "not a PNG or JPEG image",
    "PCX renamed .png": "not a PNG or JPEG image",
    "TGA renamed .png": "not a PNG or JPEG image",
    "EPS renamed .png": "not a PNG or JPEG image",
    "PDF": "not a scan type this tool reads",
    "text file .txt": "not a scan type this tool reads",
    "gzip bomb .nii.gz": "refused without unpacking",
    "truncated .nii.gz": "truncated",
    "random bytes .nii.gz": "not gzip-compressed",
    "random bytes .nii": "not a NIfTI file",
    "NIfTI bad datatype": "header is damaged",
    "NIfTI declaring 4096^3 voxels": "too large",
    "NIfTI truncated voxels": "truncated",
    "NIfTI negative dimension": "impossible size",
    "4D NIfTI": "a 4D series (3 volumes",
    "NaN NIfTI": "no finite values",
    "RGB NIfTI": "one grey value",
    "sagittal single-slice NIfTI": "sagittal",
    "lone .hdr": "upload a.img together",
    "lone .img": "upload a.hdr together",
    "DICOM without pixels (rtplan.dcm)": "holds no image",
    "DICOM structured report": "holds no image",
    "truncated DICOM (MR_truncated.dcm)": "damaged or truncated",
    "broken-header DICOM": "DICOM header is damaged",
    "undecodable JPEG DICOM (JPEG-lossy.dcm)": "JPEG Extended",
    "DICOM in MPEG-2 (no decoder)": "MPEG2",
    "DICOM without preamble (no_meta.dcm)": "'DICM' signature",
    "DICOM declaring 65535x65535 x 1000 frames": "too large",
    "DICOM 10x10 dose grid (rtdose.dcm)": "too small",
    "DICOM declaring 4000 frames of 256x256": "more than one scan can hold",
    "Markdown name, broken file": "damaged or truncated",
}


def _images() -> list[tuple[str, str, bytes, str]]:
    slice_ = head()
    rgb = np.stack([slice_, slice_ // 2, 255 - slice_], axis=-1)
    rgba = np.dstack([rgb, np.where(slice_ > 0, 255, 0).astype(np.uint8)])
    frames = [Image.fromarray(head(seed=s)) for s in range(3)]
    apng = io.BytesIO()
    frames[0].save(apng, format="PNG", save_all=True, append_images=frames[1:])
    tiff = io.BytesIO()
    frames[0].save(tiff, format="TIFF", save_all=True, append_images=frames[1:])
    png = encoded(slice_, "PNG")
    return [
        ("valid PNG", "slice.png", png, "ok"),
        ("truncated PNG", "cut.png", png[: len(png) // 2], "error"),
        ("truncated JPEG", "cut.jpg", encoded(slice_, "JPEG")[:300], "error"),
        ("empty file", "empty.png", b"", "error"),
        ("random bytes .png", "noise.png", np.random.default_rng(1).bytes(4000), "error"),
        ("random bytes .dcm", "noise.dcm", np.random.default_rng(2).bytes(4000), "error"),
        ("JPEG named .png", "photo.png", encoded(slice_, "JPEG"), "ok"),
        ("text named .png", "notes.png", b"Patient notes: nothing to see here.\n" * 20, "error"),
        ("animated PNG", "movie.png", apng.getvalue(), "ok"),
        ("multi-page TIFF", "pages.tif", tiff.getvalue(), "ok"),
        ("16-bit PNG", "deep.png", encoded(slice_.astype(np.uint16) * 200, "PNG"), "ok"),
        ("float TIFF", "float.tif", encoded(slice_.astype(np.float32) / 255 - 0.5, "TIFF"), "ok"),
        ("RGBA PNG", "alpha.png", encoded(rgba, "PNG"), "ok"),
        ("palette PNG", "palette.png", encoded(Image.fromarray(rgb).convert("P"), "PNG"), "ok"),
        ("CMYK JPEG", "print.jpg", encoded(Image.fromarray(rgb).convert("CMYK"), "JPEG"), "ok"),
        ("BMP", "slice.bmp", encoded(slice_, "BMP"), "ok"),
        ("1x1 PNG", "dot.png", encoded(np.zeros((1, 1), np.uint8), "PNG"), "error"),
        ("extreme aspect PNG", "strip.png", encoded(np.zeros((10, 2000), np.uint8), "PNG"), "error"),
        ("bomb PNG 12000x12000", "bomb.png", png_chunks(12000, 12000), "error"),
        ("PNG declaring 9000x9000", "huge.png", png_chunks(9000, 9000), "error"),
        ("ICO renamed .png", "icon.png", encoded(slice_[:64, :64], "ICO"), "error"),
        ("PCX renamed .png", "pcx.png", encoded(slice_, "PCX"), "error"),
        ("TGA renamed .png", "tga.png", encoded(slice_, "TGA"), "error"),
        ("EPS renamed .png", "eps.png", encoded(Image.fromarray(slice_).convert("RGB"), "EPS"), "error"),
        ("PDF", "report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "error"),
        ("text file .txt", "readme.txt", b"hello", "error"),
        ("Markdown file name", _markdown_name(), png, "ok"),
        ("NUL byte in name", "scan\x00.png", png, "ok"),
        ("path separators in name", "../../etc/..\\windows\\slice.png", png, "ok"),
        ("Markdown name, broken file", "**bad** [x](y).png", png[:100], "error"),
    ]


def _volumes() -> list[tuple[str, str, bytes, str]]:
    volume = brain_volume()
    nii = nifti_bytes(volume)
    hdr, img = analyze_pair(volume)
    rgb = np.zeros((40, 40, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return [
        ("valid NIfTI", "head.nii", nii, "ok"),
        ("valid .nii.gz", "head.nii.gz", gzip.compress(nii), "ok"),
        ("NIfTI-2", "head2.nii", nifti_bytes(volume, version=2), "ok"),
        ("2D-in-3D NIfTI", "one.nii", nifti_bytes(volume[:, :, 5:6]), "ok"),
        ("gzip bomb .nii.gz", "bomb.nii.gz", _gzip_bomb(), "error"),
        ("truncated .nii.gz", "cut.nii.gz", gzip.compress(nii)[:400], "error"),
        ("random bytes .nii.gz", "noise.nii.gz", np.random.default_rng(3).bytes(2000), "error"),
        ("random bytes .nii", "noise.nii", np.random.default_rng(4).bytes(2000), "error"),
        ("NIfTI bad datatype", "badtype.nii", _nifti_with("datatype", 9999), "error"),
        ("NIfTI declaring 4096^3 voxels", "big.nii", _nifti_with("dim", [3, 4096, 4096, 4096, 1, 1, 1, 1]),
         "error"),
        ("NIfTI truncated voxels", "short.nii", nii[:2000], "error"),
        ("NIfTI negative dimension", "neg.nii", _nifti_with("dim", [3, 48, -56, 12, 1, 1, 1, 1]), "error"),
        ("4D NIfTI", "fmri.nii", nifti_bytes(np.zeros((40, 40, 4, 3), np.int16)), "error"),
        ("NaN NIfTI", "nan.nii", nifti_bytes(np.full((40, 40, 4), np.nan, np.float32)), "error"),
        ("RGB NIfTI", "rgb.nii", nifti_bytes(rgb), "error"),
        ("sagittal single-slice NIfTI", "sag.nii", nifti_bytes(np.ones((1, 40, 40), np.int16)), "error"),
        ("lone .hdr", "a.hdr", hdr, "error"),
        ("lone .img", "a.img", img, "error"),
    ]


def _dicoms() -> list[tuple[str, str, bytes, str]]:
    from pydicom.uid import MPEG2MPML

    frame = head(64).astype(np.uint16)
    return [
        ("DICOM MR", "MR_small.dcm", bundled("MR_small.dcm"), "ok"),
        ("DICOM RLE", "MR_small_RLE.dcm", bundled("MR_small_RLE.dcm"), "ok"),
        ("DICOM JPEG 2000", "MR_small_jp2klossless.dcm", bundled("MR_small_jp2klossless.dcm"), "ok"),
        ("DICOM big endian", "MR_small_bigendian.dcm", bundled("MR_small_bigendian.dcm"), "ok"),
        ("DICOM palette colour", "examples_palette.dcm", bundled("examples_palette.dcm"), "ok"),
        ("DICOM RGB two frames", "SC_rgb_rle_2frame.dcm", bundled("SC_rgb_rle_2frame.dcm"), "ok"),
        ("DICOM without a suffix", "IM000001", bundled("MR_small.dcm"), "ok"),
        ("DICOM without pixels (rtplan.dcm)", "rtplan.dcm", bundled("rtplan.dcm"), "error"),
        ("DICOM structured report", "test-SR.dcm", bundled("test-SR.dcm"), "error"),
        ("truncated DICOM (MR_truncated.dcm)", "MR_truncated.dcm", bundled("MR_truncated.dcm"), "error"),
        ("broken-header DICOM", "broken.dcm", _broken_header_dicom(), "error"),
        ("undecodable JPEG DICOM (JPEG-lossy.dcm)", "JPEG-lossy.dcm", bundled("JPEG-lossy.dcm"), "error"),
        ("DICOM in MPEG-2 (no decoder)", "mpeg.dcm", dicom_bytes(frame, syntax=MPEG2MPML), "error"),
        ("DICOM without preamble (no_meta.dcm)", "no_meta.dcm", bundled("no_meta.dcm"), "error"),
        ("DICOM declaring 65535x65535 x 1000 frames", "giant.dcm",
         dicom_bytes(frame, Rows=65535, Columns=65535, NumberOfFrames=1000), "error"),
        ("DICOM 10x10 dose grid (rtdose.dcm)", "rtdose.dcm", bundled("rtdose.dcm"), "error"),
        ("DICOM declaring 4000 frames of 256x256", "frames.dcm",
         dicom_bytes(frame, Rows=256, Columns=256, NumberOfFrames=4000), "error"),
    ]


def hostile_corpus() -> list[tuple[str, str, bytes, str]]:
    """(kind, filename, bytes, expected) for every file above; expected is "ok" or "error"."""
    return _images() + _volumes() + _dicoms()
