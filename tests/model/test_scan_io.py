"""The public API of scan_io and its 2D image path (PNG, JPEG, BMP, TIFF through Pillow)."""
import io

import numpy as np
import pytest
from PIL import Image

from model.scans import scan_io
from model.scans.scan_io import (
    IMAGE_TYPES,
    SCAN_SUFFIXES,
    ScanError,
    clean_name,
    open_scan,
    open_upload,
    read_scan,
)
from tests.conftest import png_bytes
from tests.model.hostile import brain_volume, bundled, encoded, head, nifti_bytes


def test_one_list_of_suffixes():
    assert SCAN_SUFFIXES == ("png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm", "nii", "gz", "hdr", "img")
    assert all("." not in s for s in SCAN_SUFFIXES) and set(IMAGE_TYPES) <= set(SCAN_SUFFIXES)
    from model.core.dataset import IMAGE_SUFFIXES

    assert IMAGE_SUFFIXES == {f".{t}" for t in IMAGE_TYPES}
    for suffix in SCAN_SUFFIXES:  # every accepted suffix goes to a reader (which may then refuse the bytes)
        with pytest.raises(ScanError) as caught:
            open_scan(b"\x00" * 400, f"x.{suffix}")
        assert "not a scan type this tool reads" not in str(caught.value)


def test_an_unknown_type_is_refused_naming_the_accepted_ones():
    with pytest.raises(ScanError) as caught:
        open_scan(b"hello", "notes.txt")
    message = str(caught.value)
    assert message.startswith("notes.txt: not a scan type this tool reads (a .txt file")
    for suffix in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz", ".hdr", ".img"):
        assert suffix in message


def test_read_scan_is_open_scan_image():
    for name, data in [("a.png", png_bytes(head())), ("b.dcm", bundled("MR_small.dcm")),
                       ("c.nii", nifti_bytes(brain_volume()))]:
        assert np.array_equal(read_scan(data, name), open_scan(data, name).image)


def test_read_scan_accepts_png_and_pads_non_square():
    wide = np.zeros((100, 200), np.uint8)
    wide[:, 50:150] = 255
    out = read_scan(png_bytes(wide), "wide.png")
    assert out.shape == (128, 128) and out.dtype == np.uint8
    assert out[:30].max() == 0  # black padding above the image keeps its aspect ratio
    scan = open_scan(png_bytes(wide), "wide.png")
    assert any("Padded with black to a 200 x 200 square" in s for s in scan.steps)


def test_rgb_becomes_grey_and_says_how_colourful():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 1] = 200
    assert read_scan(png_bytes(rgb), "rgb.png").std() == 0
    assert open_scan(png_bytes(rgb), "green.png").colour == pytest.approx(200 / 255, abs=1e-3)
    grey = np.repeat(head()[..., None], 3, axis=2)
    scan = open_scan(png_bytes(grey), "grey-rgb.png")
    assert scan.colour == 0 and np.array_equal(scan.image, read_scan(png_bytes(head()), "grey.png"))
    assert open_scan(png_bytes(head()), "grey.png").colour == 0


@pytest.mark.parametrize("data,name,message", [
    (b"", "empty.png", "the file is empty"),
    (b"%PDF-1.4 not an image", "report.pdf", "not a scan type this tool reads"),
    (png_bytes(np.zeros((10, 10), np.uint8)), "tiny.png", "too small"),
    (png_bytes(np.zeros((64, 64), np.uint8))[:60], "cut.png", "damaged or truncated"),
    (b"x" * (21 * 2**20), "huge.png", "over the 20 MB limit"),
    (b"DICM", "scan.dcm", "not a DICOM file"),
    (png_bytes(np.zeros((40, 200), np.uint8)), "strip.png", "not a brain slice shape"),
])
def test_read_scan_errors_are_specific(data, name, message):
    with pytest.raises(ScanError, match=message):
        read_scan(data, name)


def test_volumes_have_a_larger_limit_than_slices():
    with pytest.raises(ScanError) as caught:
        open_scan(b"x" * (21 * 2**20), "big.nii")
    assert "limit" not in str(caught.value)


def test_sixteen_bit_and_float_images_are_stretched_not_clipped():
    ramp = np.tile(np.linspace(0, 40000, 64), (64, 1)).astype(np.uint16)  # a 16-bit slice, values to 40000
    out = read_scan(encoded(ramp, "PNG"), "deep.png")
    assert (out == 255).mean() < 0.05 and out.min() == 0 and out.max() == 255
    assert abs(float(out.mean()) - 127.5) < 10  # the ramp stays a ramp
    values = np.tile(np.linspace(-0.5, 0.5, 64, dtype=np.float32), (64, 1))  # a float TIFF in [-0.5, 0.5]
    out = read_scan(encoded(values, "TIFF"), "float.tif")
    assert out.max() == 255 and out.min() == 0  # not all black


def test_other_formats_renamed_png_are_refused():
    ico = encoded(np.zeros((64, 64), np.uint8), "ICO")
    with pytest.raises(ScanError, match="not a PNG or JPEG image"):
        read_scan(ico, "icon.png")


def test_a_decompression_bomb_is_called_too_large(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the same path a 12000x12000 PNG takes, in kilobytes
    with pytest.raises(ScanError, match="too large"):
        read_scan(encoded(np.zeros((64, 64), np.uint8), "PNG"), "bomb.png")


def test_file_names_lose_control_characters_and_folders():
    assert clean_name("scan\x00.png") == "scan.png"
    assert clean_name("C:\\\\data\\\\slice.png") == "slice.png" and clean_name("../../etc/x.png") == "x.png"
    with pytest.raises(ScanError, match="^scan.png: the file is empty"):
        read_scan(b"", "scan\x00.png")


def test_transparency_is_laid_on_black():
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere ...
    rgba[16:48, 16:48, 3] = 255  # ... but opaque only in the middle
    scan = open_scan(encoded(rgba, "PNG"), "alpha.png")
    assert scan.image[:20].max() == 0 and scan.image[64, 64] == 255
    assert any("laid on black" in s for s in scan.steps)


def test_only_the_first_frame_of_an_animation_is_used():
    frames = [Image.fromarray(head(seed=s)) for s in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    scan = open_scan(buf.getvalue(), "movie.png")
    assert np.array_equal(scan.image, read_scan(encoded(frames[0], "PNG"), "first.png"))
    assert scan.n_slices == 1 and any("holds 3 frames" in s for s in scan.steps)
    with pytest.raises(ScanError, match="there is no slice 1"):
        open_scan(buf.getvalue(), "movie.png", slice_index=1)


def test_a_jpeg_named_png_is_read_as_jpeg_and_said():
    jpeg = encoded(head(), "JPEG")
    scan = open_scan(jpeg, "slice.png")
    assert scan.kind == "JPEG image" and np.array_equal(scan.image, read_scan(jpeg, "slice.jpg"))
    assert any("named .png but holds a JPEG image" in s for s in scan.steps)


def test_palette_and_cmyk_images_convert_like_their_rgb():
    rgb = np.stack([head(), head() // 2, 255 - head()], axis=-1)
    palette = Image.fromarray(rgb).convert("P")
    assert np.array_equal(read_scan(encoded(palette, "PNG"), "p.png"),
                          read_scan(encoded(palette.convert("RGB"), "PNG"), "rgb.png"))
    cmyk = read_scan(encoded(Image.fromarray(head()).convert("CMYK"), "JPEG", quality=95), "print.jpg")
    plain = read_scan(encoded(head(), "PNG"), "plain.png")
    assert np.corrcoef(cmyk.ravel(), plain.ravel())[0, 1] > 0.95


def test_a_file_without_suffix_is_read_by_its_content():
    assert open_scan(png_bytes(head()), "slice").kind == "PNG image"
    assert open_scan(bundled("MR_small.dcm"), "IM0001").kind == "DICOM"
    assert open_scan(nifti_bytes(brain_volume()), "volume").kind == "NIfTI-1"


def test_open_upload_needs_a_file():
    with pytest.raises(ScanError, match="no file"):
        open_upload([])


def test_size_is_honoured():
    assert open_scan(png_bytes(head()), "a.png", size=48).image.shape == (48, 48)
    assert open_scan(nifti_bytes(brain_volume()), "a.nii", size=64).image.shape == (64, 64)
    assert scan_io.MAX_UPLOAD_BYTES == 20 * 2**20


def test_a_slice_already_at_the_training_size_is_not_said_to_be_resized(test_slices):
    from model.scans.scan_io import open_scan
    from tests.conftest import png_bytes

    steps = open_scan(png_bytes(test_slices.images[0, 0].numpy()), "slice.png").steps
    assert not [s for s in steps if "Resized 128 x 128 to 128 x 128" in s]
    wide = open_scan(png_bytes(np.zeros((100, 160), np.uint8) + 50), "wide.png").steps
    assert any("Resized" in s or "Padded" in s or "padded" in s for s in wide), wide
