"""Batch work (model.serve.batch, model.serve.pipeline): archives unpacked within limits, every file in the results,
subjects grouped."""
import io
import zipfile

import numpy as np
import pytest

from model.serve import batch
from model.serve.batch import expand_uploads, expand_zip, server_files, subject_key, subject_table
from model.serve.pipeline import classify
from model.scans.scan_io import ScanError
from tests.conftest import png_bytes


def zip_of(files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_zip_becomes_its_files_without_folders_escaping_or_hidden_files():
    data = zip_of({"a/one.png": b"1", "../../etc/passwd": b"2", "__MACOSX/a/._one.png": b"3", ".DS_Store": b"4",
                   "C:\\win\\two.png": b"5"})
    names = [n for n, _ in expand_zip(data, "cohort.zip")]
    assert names == ["cohort.zip/a/one.png", "cohort.zip/etc/passwd", "cohort.zip/win/two.png"]


def test_zip_limits_are_checked_before_inflating(monkeypatch):
    bomb = zip_of({"big.nii": b"\0" * 5_000_000})  # a few kB on disk
    monkeypatch.setattr(batch, "MAX_ARCHIVE_BYTES", 1_000_000)
    with pytest.raises(ScanError, match="unpacks to 5 MB"):
        expand_zip(bomb, "bomb.zip")
    monkeypatch.setattr(batch, "MAX_ARCHIVE_FILES", 2)
    with pytest.raises(ScanError, match="3 files is over the limit of 2"):
        expand_zip(zip_of({"a": b"", "b": b"", "c": b""}), "many.zip")
    with pytest.raises(ScanError, match="not a zip archive"):
        expand_zip(b"PK\x03\x04garbage", "bad.zip")


def test_expand_uploads_keeps_failures_as_rows():
    files, failed = expand_uploads([("x.zip", zip_of({"s.png": b"1"})), ("bad.zip", b"nope"), ("t.png", b"2")])
    assert [n for n, _ in files] == ["x.zip/s.png", "t.png"]
    assert failed[0].file == "bad.zip" and "not a zip archive" in failed[0].error.message


def test_subject_keys():
    assert subject_key("cohort.zip/OAS1_0001/s3.png", "folder") == "OAS1_0001"  # not 'cohort.zip/...'
    assert subject_key("cohort.zip/s3.png", "folder") == "cohort.zip"  # the archive itself is the folder
    assert subject_key("scans/OAS1_0001/s3.png", "folder") == "scans/OAS1_0001"
    assert subject_key("s3.png", "folder") == "(no folder)"
    # a labelled cohort sorted into stage folders: the stage folder is no subject
    assert subject_key("cohort.zip/Mild_Demented/OAS1_0001/s3.png", "folder") == "OAS1_0001"
    assert subject_key("cohort.zip/very mild demented/s3.png", "folder") == "cohort.zip/very mild demented/s3.png"
    assert subject_key("cohort.zip/2/s3.png", "folder") == "2"  # a number names a subject, not a stage
    assert subject_key("dir/OAS1_0001_s12.png", "name prefix") == "OAS1_0001"
    assert subject_key("sub-01-slice-4.nii.gz", "name prefix") == "sub-01-slice"
    assert subject_key("a/b.png", "none") == "a/b.png"
    with pytest.raises(ValueError, match="choose one of none, folder, name prefix"):
        subject_key("a", "age")


def test_every_file_is_a_row_in_input_order_and_subjects_average(tiny_predictor, test_slices):
    files = [(f"subj{i // 2}/s{i}.png", png_bytes(test_slices.images[i, 0].numpy())) for i in range(4)]
    files.insert(2, ("subj0/notes.txt", b"hello"))
    seen = []
    results = classify(files, predictor=tiny_predictor, chunk=2, progress=lambda done, total: seen.append((done, total)))
    assert [r.file for r in results] == [n for n, _ in files]
    assert results[2].error.code == "unsupported_type" and "not a scan type" in results[2].error.message
    assert seen == [(2, 5), (4, 5), (5, 5)]  # one call a chunk, counted in scans
    ok = [r for r in results if not hasattr(r, "error")]
    assert all(r.flags == ["no guard"] for r in ok)
    subjects = {s["subject"]: s for s in subject_table(results, "folder")}
    assert set(subjects) == {"subj0", "subj1"} and subjects["subj0"]["files"] == 2
    probs = np.array([[r.probabilities[n] for n in ("Mild_Demented", "Moderate_Demented", "Non_Demented",
                                                     "Very_Mild_Demented")] for r in ok[:2]]).mean(0)
    assert subjects["subj0"]["p_Non_Demented"] == pytest.approx(probs[2], abs=1e-6)


def test_server_files_stay_inside_the_root(tmp_path, monkeypatch):
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "root" / "a" / "x.png").write_bytes(b"1")
    (tmp_path / "root" / ".hidden.png").write_bytes(b"2")
    (tmp_path / "outside.png").write_bytes(b"3")
    files, failed = server_files(tmp_path / "root")
    assert [n for n, _ in files] == ["a/x.png"] and not failed
    with pytest.raises(ScanError, match="not a folder inside"):
        server_files(tmp_path / "root", "..")
    monkeypatch.setattr(batch, "MAX_VOLUME_BYTES", 0)
    files, failed = server_files(tmp_path / "root")
    assert not files and "over the" in failed[0].error.message
