"""Property: whatever the bytes, `open_scan` returns a valid Scan or raises ScanError, nothing else."""
import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.scans.scan_io import SCAN_SUFFIXES, Scan, ScanError, open_scan
from tests.model.hostile import brain_volume, bundled, nifti_bytes

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"II*\x00", b"MM\x00*", b"\x1f\x8b\x08\x00",
         b"\x00" * 128 + b"DICM", b"\x5c\x01\x00\x00", b"\x1c\x02\x00\x00n+2\x00"]


def opened_or_refused(data: bytes, name: str) -> None:
    try:
        scan = open_scan(data, name)
    except ScanError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    assert isinstance(scan, Scan) and scan.image.dtype == np.uint8 and scan.image.shape == (128, 128)
    assert 0 <= scan.slice_index < scan.n_slices and 0 <= scan.colour <= 1


@FUZZ
@given(st.sampled_from(MAGIC), st.binary(max_size=3000),
       st.sampled_from([*SCAN_SUFFIXES, "nii.gz", "", "txt", "DCM"]))
def test_random_bytes_with_every_suffix(magic, body, suffix):
    opened_or_refused(magic + body, f"fuzz.{suffix}" if suffix else "fuzz")


NIFTI = nifti_bytes(brain_volume((40, 44, 6)))
NIFTI_FIELDS = {  # field -> strategy for the raw value written into the header struct
    "dim": st.lists(st.integers(-3, 32767), min_size=8, max_size=8),
    "datatype": st.sampled_from([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048,
                                 2304, 9999, -1]),
    "bitpix": st.integers(-10, 300),
    "vox_offset": st.floats(allow_nan=True, allow_infinity=True, width=32),
    "scl_slope": st.floats(allow_nan=True, allow_infinity=True, width=32),
    "scl_inter": st.floats(allow_nan=True, allow_infinity=True, width=32),
    "pixdim": st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=8, max_size=8),
    "qform_code": st.integers(-5, 5),
    "sform_code": st.integers(-5, 5),
    "srow_x": st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=4, max_size=4),
    "quatern_b": st.floats(allow_nan=True, allow_infinity=True, width=32),
    "sizeof_hdr": st.integers(-2**31, 2**31 - 1),
    "magic": st.sampled_from([b"n+1", b"ni1", b"n+2", b"xyz", b""]),
}


@FUZZ
@given(st.data())
def test_mutated_nifti_headers(data):
    import nibabel as nib

    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(NIFTI), check=False)
    for field in data.draw(st.lists(st.sampled_from(sorted(NIFTI_FIELDS)), min_size=1, max_size=3, unique=True)):
        hdr.structarr[field] = data.draw(NIFTI_FIELDS[field])
    body = NIFTI[348:]
    if data.draw(st.booleans()):
        body = body[: data.draw(st.integers(0, len(body)))]
    opened_or_refused(hdr.binaryblock + body, data.draw(st.sampled_from(["m.nii", "m"])))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=12))
def test_nifti_header_byte_flips(flips):
    data = bytearray(NIFTI)
    for where, value in flips:
        data[where] = value
    opened_or_refused(bytes(data), "flipped.nii")


DICOM = bundled("MR_small.dcm")
PIXELS_AT = DICOM.index(b"\xe0\x7f\x10\x00")


def element_value(data: bytes, group: int, element: int) -> tuple[int, int]:
    """(offset, length) of an explicit-VR little-endian element's value with a 2-byte length."""
    at = data.index(struct.pack("<HH", group, element), 132)
    return at + 8, struct.unpack("<H", data[at + 6: at + 8])[0]


# Rows, Columns, Bits Allocated / Stored, High Bit, Pixel Representation, Samples, Photometric, Window, Orientation
DICOM_ELEMENTS = [(0x0028, 0x0010), (0x0028, 0x0011), (0x0028, 0x0100), (0x0028, 0x0101), (0x0028, 0x0102),
                  (0x0028, 0x0103), (0x0028, 0x0002), (0x0028, 0x0004), (0x0028, 0x1050), (0x0028, 0x1051),
                  (0x0020, 0x0037), (0x0020, 0x0032), (0x0002, 0x0010)]


@FUZZ
@given(st.data())
def test_mutated_dicom_values(data):
    mutated = bytearray(DICOM)
    for tag in data.draw(st.lists(st.sampled_from(DICOM_ELEMENTS), min_size=1, max_size=4, unique=True)):
        offset, length = element_value(DICOM, *tag)
        mutated[offset: offset + length] = data.draw(st.binary(min_size=length, max_size=length))
    opened_or_refused(bytes(mutated), "mutated.dcm")


@FUZZ
@given(st.lists(st.tuples(st.integers(132, PIXELS_AT + 11), st.integers(0, 255)), min_size=1, max_size=12),
       st.integers(0, 200))
def test_dicom_header_byte_flips_and_truncation(flips, cut):
    data = bytearray(DICOM)
    for where, value in flips:
        data[where] = value
    opened_or_refused(bytes(data[: len(data) - cut]), "flipped.dcm")


@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm", "SC_rgb_rle_2frame.dcm"])
def test_every_truncation_of_a_real_dicom(name):
    data = bundled(name)
    for end in range(0, len(data), max(1, len(data) // 300)):
        opened_or_refused(data[:end], name)
