"""Trust at the point of use, through AppTest: the guard's verdict, uncertainty, nearest slices, DICOM and NIfTI
uploads with their pickers, and the Batch page."""
import io
import json
import zipfile

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from model.core.constants import CONFIG_FILES_PRESENT, DISPLAY_NAMES
from model.reports.record import png_bytes
from model.qualify.trust import TRUST_BANK_PATH
from tests.dashboard.test_app import start

pytestmark = pytest.mark.skipif(not (CONFIG_FILES_PRESENT() and TRUST_BANK_PATH.is_file()),
                                reason="no shipped model or trust bank in assets/")


def upload(at: AppTest, *files, key: str = "classify_upload") -> AppTest:
    value = [(name, data, "application/octet-stream") for name, data in files]
    at.file_uploader(key=key).set_value(value if len(value) > 1 or key != "classify_upload" else value[0]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def photo() -> bytes:
    """A colourful 'photo': smooth colour gradients and a bright disc."""
    y, x = np.mgrid[0:160, 0:200]
    rgb = np.stack([x * 255 / 200, y * 255 / 160, 255 - x * 255 / 200], -1)
    rgb[(x - 100) ** 2 + (y - 80) ** 2 < 40 ** 2] = (250, 220, 40)
    return png_bytes(rgb.astype(np.uint8))


def dicom_file(name: str = "MR_small.dcm") -> bytes:
    from pydicom.data import get_testdata_file

    return open(get_testdata_file(name), "rb").read()


def nifti_volume(slices: int = 9) -> bytes:
    import nibabel as nib

    volume = np.zeros((64, 72, slices), np.int16)
    yy, xx = np.mgrid[:64, :72]
    for k in range(slices):
        volume[..., k] = ((xx - 36) ** 2 / 28 ** 2 + (yy - 32) ** 2 / 24 ** 2 < 1) * (300 + 40 * k)
    return nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0])).to_bytes()


def test_a_photo_is_marked_unreliable_with_its_reasons():
    at = upload(start(), ("holiday.png", photo()))
    banner = at.error[0].value
    assert banner.startswith("**Unreliable") and "colour picture" in banner
    assert at.metric[0].label == "Predicted stage (unreliable)" and at.metric[0].value in DISPLAY_NAMES
    assert any("8 variants" in c.value for c in at.caption)  # the uncertainty sentence


def test_a_dicom_upload_says_what_was_read_and_hides_identifiers():
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    at = upload(start(), ("MR_small.dcm", dicom_file()))
    assert at.metric[0].label.startswith("Predicted stage")
    expander = at.expander[0]
    assert expander.label.startswith("How MR_small.dcm was read (DICOM)")
    shown = " ".join(str(e.value) for e in at.get("text")) + json.dumps(
        [str(d.value.to_dict()) for d in at.dataframe])
    patient = str(dcmread(get_testdata_file("MR_small.dcm")).PatientName)
    assert patient and patient not in shown
    assert "MR" in shown  # the modality is technical, so it is shown


def test_a_nifti_volume_opens_on_an_axial_slice_picker():
    at = upload(start(), ("head.nii", nifti_volume(9)))
    slider = at.slider(key="classify_volume_0")
    assert slider.value == 5 and slider.max == 9  # the middle slice, 1-based
    steps = at.get("text")[0].value
    slider.set_value(2).run()
    assert not at.exception
    assert at.get("text")[0].value != steps and "2" in at.get("text")[0].value


def test_explain_class_keeps_its_label_after_a_second_upload(test_slices):
    at = upload(start(), ("one.png", png_bytes(test_slices.images[0, 0].numpy())))
    upload(at, ("two.png", png_bytes(test_slices.images[7, 0].numpy())))
    box = at.selectbox(key="classify_target")
    assert box.value == "predicted" and box.format_func(box.value) == "The predicted stage"


def test_a_refused_file_leaves_no_earlier_result_on_screen(test_slices):
    at = upload(start(), ("good.png", png_bytes(test_slices.images[0, 0].numpy())))
    assert at.main.metric
    upload(at, ("bad.png", b"\x89PNG\r\n\x1a\n truncated"))
    assert not at.main.metric and "bad\\.png" in at.error[0].value


def test_a_nul_byte_in_a_file_name_is_harmless(test_slices):
    at = upload(start(), ("a\x00b.png", png_bytes(test_slices.images[0, 0].numpy())))
    assert at.metric and any(c.value == "ab\\.png" for c in at.caption)


@pytest.mark.data
def test_a_test_split_slice_is_flagged_as_a_near_copy():
    at = start()
    at.button_group(key="classify_source").set_value("Test-split example").run()
    assert not at.exception
    assert "Near-copy of a training slice" in at.warning[0].value
    assert any("Nearest training slices" in m.value for m in at.markdown)
    assert len(at.get("image")) == 2 + 3  # the slice, its overlay, three nearest training slices
    # beside it, the answer of the cross-validation network that never saw that subject, and which one to read
    seen = at.warning[0].value.split("subject ")[1].split(",")[0]
    info = [i.value for i in at.info if "never saw" in i.value]
    assert info and seen in info[0] and "Read this one" in info[0]


@pytest.mark.data
def test_a_never_trained_subjects_slice_passes_the_guard(data_dir):
    from model.core.dataset import load_split_with_keys
    from model.core.dataset import subjects_for
    from model.qualify.trust import TrustBank

    test, keys = load_split_with_keys("test", data_dir)
    groups = subjects_for("test", keys.path, keys.sha256)
    new = np.flatnonzero(~np.isin(groups, list(set(TrustBank.load().subjects))))
    at = upload(start(), ("new_subject.png", png_bytes(test.images[new[0], 0].numpy())))
    assert any("has not seen this brain" in s.value for s in at.success)
    assert at.metric[0].label == "Predicted stage"


# ------------------------------------------------------------------ the Batch page
def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_batch_page_classifies_uploads_and_archives_and_names_every_failure(test_slices):
    slices = {f"subj{s}/slice_{i}.png": png_bytes(test_slices.images[2 * s + i, 0].numpy())
              for s in range(2) for i in range(2)}
    at = start("views/batch.py")
    assert at.title[0].value == "Batch"
    at.file_uploader(key="batch_upload").set_value([
        ("cohort.zip", zip_of({**slices, "readme.txt": b"notes"}), "application/zip"),
        ("MR_small.dcm", dicom_file(), "application/dicom"),
        ("broken.zip", b"PK\x03\x04 not really", "application/zip"),
    ]).run()
    assert at.radio(key="batch_group").value == "folder"  # the subjects table shows without a click
    at.button(key="batch_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert len(table) == 4 + 1 + 1 + 1  # four slices, the note, the DICOM, the broken archive
    assert set(table[table.error == ""].display_name) <= set(DISPLAY_NAMES)
    assert set(table.schema_version) == {"1"}  # the CSV's rows: model.reports.record
    errors = table[table.error != ""]
    assert any("readme.txt" in e for e in errors.error) and any("broken.zip" in e for e in errors.error)
    assert [m.value for m in at.main.metric] == ["5", at.main.metric[1].value, "2"]
    subjects = at.dataframe[1].value
    assert set(subjects.subject) >= {"subj0", "subj1"}  # the archive name is not part of the subject id
    assert subjects.set_index("subject").loc["subj0", "files"] == 2
    csv = at.get("download_button")[0]
    assert csv.label == "Download the table (CSV)"


def test_a_batch_row_opens_on_the_classify_page(test_slices, tiny_predictor):
    from model.serve.pipeline import classify

    at = start()
    [result] = classify([("cohort/s3.png", png_bytes(test_slices.images[3, 0].numpy()))], predictor=tiny_predictor)
    at.session_state["classify_from_batch"] = result
    at.session_state["classify_open_batch"] = True
    at.run()
    assert not at.exception
    assert any("Opened from the Batch page: cohort/s3\\.png" in c.value for c in at.caption)
    assert at.metric[0].value in DISPLAY_NAMES and len(at.get("image")) >= 2


def test_batch_server_folder_stays_inside_its_root(tmp_path, monkeypatch, test_slices):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.png").write_bytes(png_bytes(test_slices.images[0, 0].numpy()))
    (tmp_path / "secret.png").write_bytes(b"outside")
    monkeypatch.setenv("ALZ_MRI_BATCH_DIR", str(tmp_path / "site"))
    at = start("views/batch.py")
    at.button_group(key="batch_source").set_value("Server folder ($ALZ_MRI_BATCH_DIR)").run()
    at.text_input(key="batch_folder").input("../").run()
    assert "not a folder inside" in at.error[0].value
    at.text_input(key="batch_folder").input("").run()
    at.button(key="batch_run").click().run()
    assert not at.exception and list(at.dataframe[0].value.file) == ["a.png"]


def test_a_volume_can_be_staged_as_a_subject_on_the_classify_page():
    """A 40-slice NIfTI: the toggle stages its 32-slice slab as a subject, with the slab's table and downloads;
    a 9-slice volume offers no toggle."""
    at = upload(start(), ("short.nii", nifti_volume(9)))
    assert not [t for t in at.toggle if t.key == "classify_volume_as_subject"]
    at = upload(start(), ("head.nii", nifti_volume(40)))
    at.toggle(key="classify_volume_as_subject").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = [m.label for m in at.metric]
    assert "Subject-level stage (32-slice slab)" in metrics
    table = next(d.value for d in at.dataframe if "slice" in d.value.columns)
    assert len(table) == 32 and table["slice"].diff().dropna().eq(1).all()
    # a synthetic ellipse is no brain: the guard flags every slab slice, and the page says the stage includes them
    assert any("32 of 32 slices flagged by the guard" in w.value for w in at.warning), [w.value for w in at.warning]
    assert 1 <= at.slider(key="classify_volume_0").value <= 40
