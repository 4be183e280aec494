"""DICOM, NIfTI and Analyze reading: grey levels, orientation, slice pickers, series, and no identifiers."""
import gzip
import io
import random

import numpy as np
import pytest

from model.scans.scan_io import ScanError, group_uploads, open_scan, open_upload
from tests.model.hostile import analyze_pair, brain_volume, bundled, dicom_bytes, encoded, head, nifti_bytes

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # LPS: columns toward the subject's left, rows toward the back


def quadrants(a, b, c, d, size=64) -> np.ndarray:
    """uint16 (size, size): a top-left, b top-right, c bottom-left, d bottom-right."""
    half = size // 2
    out = np.empty((size, size), np.uint16)
    out[:half, :half], out[:half, half:], out[half:, :half], out[half:, half:] = a, b, c, d
    return out


def centres(image: np.ndarray) -> tuple[int, ...]:
    """Grey level at the centre of each quadrant of a 128 x 128 output: top-left, top-right, bottom-left,
    bottom-right."""
    return tuple(int(image[r, c]) for r, c in ((32, 32), (32, 96), (96, 32), (96, 96)))


def linear_window(x: float, centre: float, width: float) -> int:
    """DICOM PS3.3 C.11.2.1.2.1 on an 8-bit output."""
    y = ((x - (centre - 0.5)) / (width - 1) + 0.5) * 255
    return round(min(max(y, 0), 255))


# ---------------------------------------------------------------- DICOM grey levels


def test_modality_lut_then_window_then_rotation():
    raw = quadrants(150, 200, 230, 250)  # rescaled x2 - 100: 200, 300, 360, 400
    data = dicom_bytes(raw, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=300, WindowWidth=201,
                       ImageOrientationPatient=AXIAL)
    scan = open_scan(data, "mr.dcm")
    expected = [linear_window(v, 300, 201) for v in (200, 300, 360, 400)]
    assert expected[0] <= 1 and expected[-1] == 255 and 0 < expected[1] < expected[2] < 255
    # rotated 180 degrees: the stored top-left quadrant ends bottom-right
    assert centres(scan.image) == (expected[3], expected[2], expected[1], expected[0])
    assert any("slope 2 and intercept -100" in s for s in scan.steps)
    assert any("window (centre 300, width 201)" in s for s in scan.steps)
    assert scan.kind == "DICOM" and scan.n_slices == 1 and scan.colour == 0


def test_without_a_window_grey_levels_are_a_percentile_stretch():
    rng = np.random.default_rng(0)
    raw = (rng.random((64, 64)) * 1000).astype(np.uint16)
    raw[0, 0] = 60000  # one hot pixel must not darken the rest
    scan = open_scan(dicom_bytes(raw), "plain.dcm")
    assert any("0.5th" in s and "99.5th" in s for s in scan.steps)
    assert 100 < scan.image.mean() < 160


def test_monochrome1_is_inverted():
    raw = quadrants(100, 400, 700, 1000)
    kw = {"WindowCenter": 550, "WindowWidth": 1000, "ImageOrientationPatient": AXIAL}
    normal = open_scan(dicom_bytes(raw, **kw), "m2.dcm")
    inverted = open_scan(dicom_bytes(raw, photometric="MONOCHROME1", **kw), "m1.dcm")
    assert np.abs(inverted.image.astype(int) - (255 - normal.image.astype(int))).max() <= 1
    assert any("MONOCHROME1" in s for s in inverted.steps)


def test_a_broken_window_falls_back_to_the_stretch():
    raw = quadrants(100, 400, 700, 1000)
    scan = open_scan(dicom_bytes(raw, WindowCenter=500, WindowWidth=0), "zero-width.dcm")
    assert any("no usable window" in s for s in scan.steps)
    assert scan.image.max() == 255 and scan.image.min() == 0


def test_orientation_is_brought_to_the_radiological_view():
    raw = quadrants(100, 400, 700, 1000)
    kw = {"WindowCenter": 550, "WindowWidth": 1000}
    standard = open_scan(dicom_bytes(raw, ImageOrientationPatient=AXIAL, **kw), "a.dcm")
    # the same slice stored mirrored (rows toward the subject's right) and upside down (columns toward the front)
    mirrored = open_scan(dicom_bytes(np.ascontiguousarray(raw[::-1, ::-1]),
                                     ImageOrientationPatient=[-1, 0, 0, 0, -1, 0], **kw), "b.dcm")
    transposed = open_scan(dicom_bytes(np.ascontiguousarray(raw.T), ImageOrientationPatient=[0, 1, 0, 1, 0, 0], **kw),
                           "c.dcm")
    assert np.array_equal(standard.image, mirrored.image) and np.array_equal(standard.image, transposed.image)
    assert any("flipped left-right and flipped top-bottom" in s for s in mirrored.steps)
    sagittal = open_scan(dicom_bytes(raw, ImageOrientationPatient=[0, 1, 0, 0, 0, -1], **kw), "s.dcm")
    assert any("sagittal slice, not an axial one" in s for s in sagittal.steps)
    unknown = open_scan(dicom_bytes(raw, **kw), "u.dcm")
    assert any("gives no slice orientation" in s for s in unknown.steps)


def test_multi_frame_picker():
    frames = np.zeros((5, 64, 64), np.uint16)
    for k in range(5):
        frames[k, 16:48, 16:48] = 100 * (k + 1)
    data = dicom_bytes(frames, WindowCenter=250, WindowWidth=500)
    middle = open_scan(data, "cine.dcm")
    assert (middle.n_slices, middle.slice_index) == (5, 2)
    means = [open_scan(data, "cine.dcm", slice_index=k).image.mean() for k in range(5)]
    assert means == sorted(means) and means[0] < means[-1]
    assert any("frame 3 of 5 (the middle one" in s for s in middle.steps)
    with pytest.raises(ScanError, match="there is no frame 5; this scan has 5 frames"):
        open_scan(data, "cine.dcm", slice_index=5)


def series_file(k: int, uid: str, *, position: bool = True, number: int | None = None) -> bytes:
    image = np.zeros((64, 64), np.uint16)
    image[16:48, 16:48] = 100 * (k + 1)
    fields = {"SeriesInstanceUID": uid, "WindowCenter": 300, "WindowWidth": 600, "ImageOrientationPatient": AXIAL,
              "InstanceNumber": number if number is not None else 5 - k}  # numbers run against positions
    if position:
        fields["ImagePositionPatient"] = [0.0, 0.0, 2.0 * k]
    return dicom_bytes(image, **fields)


def test_a_shuffled_series_is_grouped_and_ordered_along_the_normal():
    series = [(f"IM{k}.dcm", series_file(k, "1.2.3.4")) for k in range(5)]
    shuffled = series[:]
    random.Random(1).shuffle(shuffled)
    other = ("other.dcm", series_file(0, "1.2.3.5"))
    png = ("slice.png", encoded(head(), "PNG"))
    files = [png, shuffled[0], other, *shuffled[1:], ("junk.dcm", b"\0" * 128 + b"DICM" + b"\xff" * 50)]
    items = group_uploads(files)
    assert [len(item) for item in items] == [1, 5, 1, 1]
    assert items[0] == (png,) and items[2] == (other,)
    assert [name for name, _ in items[1]] == [f"IM{k}.dcm" for k in range(5)]  # by position, not number
    scans = [open_upload(list(reversed(items[1])), slice_index=k) for k in range(5)]  # order given is redone
    assert {s.name for s in scans} == {"IM0.dcm"}  # a series is known by its first file
    assert [f"used IM{k}.dcm, file {k + 1} of 5" in s.steps[1] for k, s in enumerate(scans)] == [True] * 5
    assert [s.image.mean() for s in scans] == sorted(s.image.mean() for s in scans)
    middle = open_upload(items[1])
    assert (middle.kind, middle.n_slices, middle.slice_index) == ("DICOM series", 5, 2)
    assert ("Files in series", "5") in middle.header


def test_a_series_without_positions_is_ordered_by_instance_number():
    files = [(f"x{k}.dcm", series_file(k, "9.9", position=False, number=k + 1)) for k in (3, 0, 4, 1, 2)]
    (item,) = group_uploads(files)
    assert [name for name, _ in item] == [f"x{k}.dcm" for k in range(5)]


def test_files_of_two_series_are_not_opened_together():
    with pytest.raises(ScanError, match="not one series"):
        open_upload([("a.dcm", series_file(0, "1.1")), ("b.dcm", series_file(1, "2.2"))])
    with pytest.raises(ScanError, match="do not make one scan"):
        open_upload([("a.dcm", series_file(0, "1.1")), ("b.png", encoded(head(), "PNG"))])


def test_group_uploads_never_raises_on_garbage():
    rng = np.random.default_rng(0)
    files = [("", b""), ("a.hdr", b"x"), ("A.IMG", b"y"), ("b.hdr", b"z"), ("\x00/..", rng.bytes(300)),
             ("d.dcm", b"\0" * 128 + b"DICM" + rng.bytes(500)), ("e", b"\0" * 128 + b"DICM")]
    items = group_uploads(files)
    assert sum(len(item) for item in items) == len(files)
    assert (("a.hdr", b"x"), ("A.IMG", b"y")) in items  # same stem, whatever the case of the suffix


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_compressed_and_other_encodings_decode_like_the_plain_file(name):
    plain = open_scan(bundled("MR_small.dcm"), "MR_small.dcm")
    other = open_scan(bundled(name), name)
    assert np.array_equal(plain.image, other.image)
    assert dict(other.header)["Transfer syntax"] != dict(plain.header)["Transfer syntax"]


def test_colour_dicoms_are_turned_grey_and_say_how_colourful():
    scan = open_scan(bundled("SC_rgb_rle_2frame.dcm"), "rgb.dcm")
    assert scan.colour > 0.3 and scan.n_slices == 2 and any("in colour" in s for s in scan.steps)
    palette = open_scan(bundled("examples_palette.dcm"), "palette.dcm")
    assert any("PALETTE COLOR" in s for s in palette.steps)


def test_dicom_header_shows_no_identifiers():
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(bundled("MR_small.dcm")))
    secrets = {str(ds.PatientName), str(ds.PatientID), str(ds.SOPInstanceUID),
               str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.StudyDate)} - {""}
    scan = open_scan(bundled("MR_small.dcm"), "MR_small.dcm")
    text = " ".join([*(f"{k} {v}" for k, v in scan.header), *scan.steps])
    assert str(ds.PatientName) == "CompressedSamples^MR1" and "CompressedSamples" not in text
    assert not [s for s in secrets if s in text]
    assert dict(scan.header)["Modality"] == "MR" and dict(scan.header)["Rows"] == "64"
    synthetic = open_scan(dicom_bytes(quadrants(1, 2, 3, 4)), "s.dcm")
    text = " ".join([*(v for _, v in synthetic.header), *synthetic.steps])
    assert not any(s in text for s in ("Doe", "Jane", "PID-0042", "Nowhere", "1940"))


def test_messages_name_the_transfer_syntax_that_cannot_be_decoded():
    with pytest.raises(ScanError, match=r"JPEG-lossy\.dcm: its pixels are compressed as JPEG Extended .*export"):
        open_scan(bundled("JPEG-lossy.dcm"), "JPEG-lossy.dcm")


# ---------------------------------------------------------------- NIfTI and Analyze


def marked_volume(shape=(48, 56, 12)) -> np.ndarray:
    """RAS int16: a head, a bright block at the front (high y) and a mid-grey block on the subject's left
    (low x), through every slice."""
    volume = brain_volume(shape)
    volume[20:28, -10:-4, :] = 2000  # anterior
    volume[3:9, 24:32, :] = 1000  # subject's left
    return volume


def test_orientation_markers_follow_the_training_look():
    scan = open_scan(nifti_bytes(marked_volume()), "marked.nii")
    image = scan.image.astype(int)
    front = np.argwhere(image > 240)
    assert front.size and front[:, 0].min() >= 64  # anterior ends in the bottom half (rotated 180 degrees)
    left = np.argwhere((image > 100) & (image < 200) & (np.arange(128)[None, :] < 20))
    assert left.size and left[:, 1].max() < 32  # the subject's left ends on the image's left
    assert any("radiological view" in s for s in scan.steps) and any("180 degrees" in s for s in scan.steps)


@pytest.mark.parametrize("flip, affine", [
    ((0,), np.diag([-1.0, 1, 1, 1])),  # LAS: the usual radiological storage
    ((1, 2), np.diag([1.0, -1, -1, 1])),  # RPI
])
def test_any_stored_orientation_gives_the_same_slice(flip, affine):
    volume = marked_volume()
    reference = open_scan(nifti_bytes(volume), "ras.nii")
    stored = open_scan(nifti_bytes(np.ascontiguousarray(np.flip(volume, flip)), affine), "other.nii")
    assert np.array_equal(reference.image, stored.image)
    assert any("Reoriented the volume from" in s for s in stored.steps)


def test_permuted_axes_are_put_back():
    volume = marked_volume()
    swapped = np.ascontiguousarray(volume.transpose(1, 0, 2))  # stored (y, x, z)
    affine = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    assert np.array_equal(open_scan(nifti_bytes(swapped, affine), "pas.nii").image,
                          open_scan(nifti_bytes(volume), "ras.nii").image)


def test_axial_slice_picker_and_one_scale_per_volume():
    volume = brain_volume()
    data = nifti_bytes(volume)
    middle = open_scan(data, "head.nii")
    assert (middle.n_slices, middle.slice_index, middle.kind) == (12, 6, "NIfTI-1")
    first = open_scan(data, "head.nii", slice_index=0)
    assert first.slice_index == 0 and not np.array_equal(first.image, middle.image)
    scale = [s for s in middle.steps if "percentile" in s]
    assert scale and scale == [s for s in first.steps if "percentile" in s]  # the volume's scale, not the slice's
    with pytest.raises(ScanError, match="there is no axial slice 12; this scan has 12 axial slices"):
        open_scan(data, "head.nii", slice_index=12)
    header = dict(middle.header)
    assert header["Dimensions"] == "48 x 56 x 12" and header["Orientation"] == "RAS"


def test_nii_gz_and_nifti2_read_like_nifti1():
    volume = brain_volume()
    plain = open_scan(nifti_bytes(volume), "a.nii").image
    assert np.array_equal(open_scan(gzip.compress(nifti_bytes(volume)), "a.nii.gz").image, plain)
    assert np.array_equal(open_scan(nifti_bytes(volume, version=2), "a.nii").image, plain)
    assert np.array_equal(open_scan(gzip.compress(nifti_bytes(volume, version=2)), "a.nii.gz").image, plain)


def test_gzip_is_refused_past_the_general_cap_when_no_header_declares_less(monkeypatch):
    from model.scans import nifti

    monkeypatch.setattr(nifti, "MAX_VOLUME_BYTES", 2 * 2**20)  # the cap the gzip reader holds a .nii.gz to
    with pytest.raises(ScanError, match="decompresses to more than 2 MB"):
        open_scan(gzip.compress(bytes(5 * 2**20)), "zeros.nii.gz")


def test_analyze_pair_is_grouped_and_read():
    volume = marked_volume()
    hdr, img = analyze_pair(volume)
    items = group_uploads([("x.png", encoded(head(), "PNG")), ("brain.img", img), ("brain.hdr", hdr)])
    assert [[name for name, _ in item] for item in items] == [["x.png"], ["brain.hdr", "brain.img"]]
    scan = open_upload(items[1])
    assert scan.kind == "Analyze 7.5" and scan.n_slices == 12 and scan.name == "brain.hdr"
    assert any("states no orientation" in s for s in scan.steps)
    # Analyze stores left-right flipped (LAS): the same voxels as a NIfTI saying LAS give the same slice
    assert np.array_equal(scan.image, open_scan(nifti_bytes(volume, np.diag([-1.0, 1, 1, 1])), "las.nii").image)
    assert open_upload([("brain.img", img), ("brain.hdr", hdr)]).kind == "Analyze 7.5"
    with pytest.raises(ScanError, match="are not one Analyze volume"):
        open_upload([("brain.hdr", hdr), ("other.img", img)])


def test_nifti1_pair_is_read():
    import nibabel as nib

    image = nib.Nifti1Pair(brain_volume(), np.eye(4))
    files = image.make_file_map()
    for holder in files.values():
        holder.fileobj = io.BytesIO()
    image.to_file_map(files)
    scan = open_upload([("p.hdr", files["header"].fileobj.getvalue()), ("p.img", files["image"].fileobj.getvalue())])
    assert scan.kind == "NIfTI-1 pair"


def test_4d_refused_and_single_volume_4d_and_2d_in_3d_accepted():
    with pytest.raises(ScanError, match=r"a 4D series \(3 volumes of 40 x 40 x 4\); upload one 3D volume"):
        open_scan(nifti_bytes(np.zeros((40, 40, 4, 3), np.int16)), "bold.nii")
    one = open_scan(nifti_bytes(brain_volume()[..., None]), "one-volume.nii")
    assert one.n_slices == 12
    flat = open_scan(nifti_bytes(brain_volume()[:, :, 6:7]), "flat.nii")
    assert (flat.n_slices, flat.slice_index) == (1, 0)


def test_nifti_header_shows_no_free_text():
    import nibabel as nib

    image = nib.Nifti1Image(brain_volume(), np.eye(4))
    image.header["descrip"] = b"Jane Doe 1940-01-01"
    image.header["aux_file"] = b"PID-0042"
    scan = open_scan(image.to_bytes(), "named.nii")
    text = " ".join([*(f"{k} {v}" for k, v in scan.header), *scan.steps])
    assert "Jane" not in text and "PID-0042" not in text


def test_volumes_reach_the_look_the_dataset_made_from_oasis_images():
    """An OASIS axial image as displayed (208 rows from the front of the head back, 176 columns from the
    subject's right to left) stored as a RAS NIfTI volume, or as an axial DICOM, comes out as the dataset made
    its slices from such images (model.training.subjects.reference_to_dataset_look: rotate 180, resize bicubic)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    display = np.zeros((208, 176), np.uint8)
    display[20:190, 15:160] = rng.integers(1, 200, (170, 145))  # tissue from near black, so the stretch is linear
    display[30:60, 100:150] = 250  # an asymmetric landmark: front of the head, subject's left
    expected = np.asarray(Image.fromarray(display).rotate(180).resize((128, 128), Image.Resampling.BICUBIC), float)
    volume = np.repeat(display[::-1, ::-1].T[:, :, None], 3, axis=2).astype(np.int16)  # (x, y, z) in RAS
    from_nifti = open_scan(nifti_bytes(volume), "oasis.nii").image.astype(float)
    from_dicom = open_scan(dicom_bytes(display.astype(np.uint16), ImageOrientationPatient=AXIAL), "oasis.dcm").image
    for image in (from_nifti, from_dicom.astype(float)):
        assert np.corrcoef(image.ravel(), expected.ravel())[0, 1] > 0.995
        assert np.corrcoef(image[:, ::-1].ravel(), expected.ravel())[0, 1] < 0.95  # mirrored would not match
