import json

import numpy as np
import pytest

from model.serve.predict import main
from tests.conftest import png_bytes


def test_cli_classifies_a_folder_and_reports_bad_files(tiny_assets, test_slices, tmp_path, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(3):
        (folder / f"s{i}.png").write_bytes(png_bytes(test_slices.images[i, 0].numpy()))
    (folder / "broken.png").write_bytes(b"not really a png")
    out = tmp_path / "result.json"
    code = main([str(folder), "--out", str(out), "--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
                 "--config", str(tiny_assets / "model_config.json"), "--device", "cpu"])
    rows = json.loads(out.read_text())
    assert code == 1  # one file failed
    assert [r["file"].split("/")[-1] for r in rows] == ["broken.png", "s0.png", "s1.png", "s2.png"]
    assert "not a PNG or JPEG" in rows[0]["error"]["message"] and rows[0]["error"]["code"] == "unreadable_scan"
    good = rows[1]
    assert good["prediction"] in {"Mild_Demented", "Moderate_Demented", "Non_Demented", "Very_Mild_Demented"}
    assert np.isclose(sum(good["probabilities"].values()), 1, atol=1e-4) and good["schema_version"] == "1"
    assert "skipped" in capsys.readouterr().err


def test_cli_csv_to_stdout(tiny_assets, test_slices, tmp_path, capsys):
    path = tmp_path / "one.png"
    path.write_bytes(png_bytes(test_slices.images[0, 0].numpy()))
    code = main([str(path), "--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
                 "--config", str(tiny_assets / "model_config.json")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[0].startswith("schema_version,file,files,kind,slice,n_slices,prediction")
    assert len(lines) == 2


def test_cli_missing_path_is_a_clear_error(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "nope.png")])
    assert exc.value.code == 2 and "not found" in capsys.readouterr().err


def test_cli_bad_device_and_new_output_folder(tiny_assets, test_slices, tmp_path, capsys):
    import pytest

    path = tmp_path / "one.png"
    path.write_bytes(png_bytes(test_slices.images[0, 0].numpy()))
    model_args = ["--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
                  "--config", str(tiny_assets / "model_config.json")]
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--device", "gpu", *model_args])
    assert exc.value.code == 2 and "unknown device 'gpu'" in capsys.readouterr().err
    out = tmp_path / "new" / "folder" / "result.csv"
    assert main([str(path), "--out", str(out), "--device", "cpu", *model_args]) == 0
    assert out.read_text().startswith("schema_version,file,files")


def test_cli_gives_every_file_a_row_and_opens_clinical_formats(tiny_assets, test_slices, tmp_path, capsys):
    import csv
    import io

    from tests.model.hostile import analyze_pair, brain_volume, bundled, dicom_bytes, nifti_bytes

    folder = tmp_path / "mixed"
    (folder / "series").mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes(test_slices.images[0, 0].numpy()))
    (folder / "b.dcm").write_bytes(bundled("MR_small.dcm"))
    (folder / "c.txt").write_text("not a scan")
    (folder / "d.nii").write_bytes(nifti_bytes(brain_volume()))
    hdr, img = analyze_pair(brain_volume())
    (folder / "e.hdr").write_bytes(hdr)
    (folder / "e.img").write_bytes(img)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    square = np.zeros((64, 64), np.uint16)
    square[16:48, 16:48] = 500
    for k in range(3):
        (folder / "series" / f"IM{k}").write_bytes(dicom_bytes(
            square + 100 * k, SeriesInstanceUID="1.2.3",
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0], ImagePositionPatient=[0, 0, float(k)]))
    code = main([str(folder), "--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
                 "--config", str(tiny_assets / "model_config.json"), "--device", "cpu"])
    out, err = capsys.readouterr()
    rows = {row["files"].replace(str(folder) + "/", ""): row for row in csv.DictReader(io.StringIO(out))}
    assert list(rows) == ["a.png", "b.dcm", "c.txt", "d.nii", "e.hdr + e.img",
                          "series/IM0 + series/IM1 + series/IM2"]
    assert code == 1 and "skipped hidden file" in err and ".DS_Store" in err
    assert "not a scan type this tool reads" in rows["c.txt"]["error"] and not rows["c.txt"]["prediction"]
    for name in ("a.png", "b.dcm", "d.nii", "e.hdr + e.img", "series/IM0 + series/IM1 + series/IM2"):
        assert rows[name]["prediction"] and not rows[name]["error"], name
    assert (rows["d.nii"]["slice"], rows["d.nii"]["n_slices"]) == ("7", "12")
    assert (rows["e.hdr + e.img"]["slice"], rows["e.hdr + e.img"]["n_slices"]) == ("7", "12")
    assert (rows["series/IM0 + series/IM1 + series/IM2"]["slice"], rows["series/IM0 + series/IM1 + series/IM2"]["n_slices"]) == ("2", "3")
    assert rows["a.png"]["n_slices"] == "1" and rows["b.dcm"]["n_slices"] == "1"
    assert rows["c.txt"]["error_code"] == "unsupported_type"


def test_cli_rows_carry_the_guards_flags_and_the_spread(tiny_assets, test_slices, tmp_path):
    import pytest

    from model.qualify.trust import TRUST_BANK_PATH

    if not TRUST_BANK_PATH.is_file():
        pytest.skip("no shipped trust bank")
    rng = np.random.default_rng(0)
    (tmp_path / "noise.png").write_bytes(png_bytes(rng.integers(0, 256, (128, 128), dtype=np.uint8)))
    out = tmp_path / "rows.csv"
    weights = ["--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
               "--config", str(tiny_assets / "model_config.json")]
    assert main([str(tmp_path / "noise.png"), "--out", str(out), *weights]) == 0
    import csv

    row = next(csv.DictReader(out.open()))
    assert row["flags"] == "out of distribution" and "unlike every training slice" in row["reasons"]
    assert 0 <= float(row["spread"]) <= 1 and row["nearest_subject"] and row["reliable"] == "False"
    record = tmp_path / "rows.json"
    assert main([str(tmp_path / "noise.png"), "--out", str(record), "--no-guard", *weights]) == 0
    assert json.loads(record.read_text())[0]["flags"] == ["no guard"]


def test_cli_reads_a_folder_a_zip_and_a_parquet_file_in_input_order(tiny_assets, test_slices, tmp_path, capsys,
                                                                     monkeypatch):
    import sys
    import zipfile

    from tests.model.test_predict_stream import hf_parquet

    slices = [png_bytes(test_slices.images[i, 0].numpy()) for i in range(8)]
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "b.png").write_bytes(slices[0])
    (folder / "a.png").write_bytes(slices[1])
    with zipfile.ZipFile(tmp_path / "cohort.zip", "w") as zf:
        zf.writestr("subj2/z.png", slices[2])
        zf.writestr("subj1/y.png", slices[3])
        zf.writestr("__MACOSX/subj1/._y.png", b"resource fork")
    hf_parquet(tmp_path / "test.parquet", [slices[4], None, slices[5]], ["Non_Demented/n1.jpg", None, None],
               row_group_size=2)
    out = tmp_path / "rows.json"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # the progress bar shows on a terminal
    code = main([str(folder), str(tmp_path / "cohort.zip"), str(tmp_path / "test.parquet"), "--out", str(out),
                 "--batch-size", "2", "--no-guard", "--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
                 "--config", str(tiny_assets / "model_config.json"), "--device", "cpu"])
    rows = json.loads(out.read_text())
    assert [r["file"].replace(str(tmp_path) + "/", "") for r in rows] == [
        "scans/a.png", "scans/b.png", "cohort.zip/subj2/z.png", "cohort.zip/subj1/y.png",
        "test.parquet row 0 (Non_Demented/n1.jpg)", "test.parquet row 1", "test.parquet row 2"]
    assert code == 1 and "no image bytes" in rows[5]["error"]["message"]
    assert all(r["prediction"] and r["flags"] == ["no guard"] for i, r in enumerate(rows) if i != 5)
    err = capsys.readouterr().err
    assert "7/7 [" in err and " files/s]" in err  # tqdm's bar: files done of all, and the rate
    assert "7 scans from 7 files in" in err and "files/s" in err.splitlines()[-1]


def test_cli_quiet_streams_json_lines(tiny_assets, test_slices, tmp_path, capsys):
    path = tmp_path / "one.png"
    path.write_bytes(png_bytes(test_slices.images[0, 0].numpy()))
    code = main([str(path), str(path), "--format", "jsonl", "--quiet", "--no-guard",
                 "--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
                 "--config", str(tiny_assets / "model_config.json"), "--device", "cpu"])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 2 and rows[0]["probabilities"] == rows[1]["probabilities"]
    assert err == ""  # no bar, no rate line


def _labelled_cohort(test_slices, root):
    """Two slices per stage in class-named folders (one subject folder each), and one file in no stage folder."""
    folders = ["Mild_Demented", "moderate demented", "Non_Demented", "Very-Mild-Demented"]
    for i in range(8):
        folder = root / folders[int(test_slices.labels[i])] / f"S{i // 2}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"s{i}.png").write_bytes(png_bytes(test_slices.images[i, 0].numpy()))
    (root / "loose.png").write_bytes(png_bytes(test_slices.images[0, 0].numpy()))
    return root


def test_cli_evaluates_a_cohort_in_class_named_folders(tiny_assets, test_slices, tmp_path, capsys):
    from sklearn import metrics as skm

    from model.core.constants import CLASS_NAMES

    cohort = _labelled_cohort(test_slices, tmp_path / "cohort")
    rows_out, report = tmp_path / "rows.json", tmp_path / "evaluation.json"
    assets = ["--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
              "--config", str(tiny_assets / "model_config.json"), "--device", "cpu", "--no-guard"]
    code = main([str(cohort), "--truth-from-folders", "--evaluation-out", str(report), "--bootstrap", "10",
                 "--out", str(rows_out), *assets])
    assert code == 0
    rows, evaluation = json.loads(rows_out.read_text()), json.loads(report.read_text())
    assert len(rows) == 9 and evaluation["labelled"] == 8 and evaluation["unlabelled"] == 1
    assert evaluation["subjects"] == 4 and evaluation["subject"]["n"] == 4  # S0..S3, two slices each
    truth = {r["file"]: CLASS_NAMES[int(test_slices.labels[int(r["file"][-5])])] for r in rows
             if "loose" not in r["file"]}
    y = np.array([CLASS_NAMES.index(truth[r["file"]]) for r in rows if r["file"] in truth])
    probs = np.array([[r["probabilities"][n] for n in CLASS_NAMES] for r in rows if r["file"] in truth])
    assert evaluation["slice"]["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, probs.argmax(1)))
    assert evaluation["slice"]["any_dementia_auc"] == pytest.approx(skm.roc_auc_score(y != 2, 1 - probs[:, 2]),
                                                                    abs=1e-5)
    assert evaluation["flags"]["no guard"] == 8
    assert "evaluated 8 labelled slices (4 subjects; 1 without a true stage left out)" in capsys.readouterr().err

    html = tmp_path / "evaluation.html"
    assert main([str(cohort), "--truth-from-folders", "--evaluation-out", str(html), "--bootstrap", "5",
                 "--out", str(rows_out), *assets]) == 0
    assert html.read_text().startswith("<!doctype html>") and "Evaluation on your cohort" in html.read_text()


def test_cli_truth_problems_are_specific_errors(tiny_assets, test_slices, tmp_path, capsys):
    cohort = _labelled_cohort(test_slices, tmp_path / "cohort")
    assets = ["--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
              "--config", str(tiny_assets / "model_config.json"), "--device", "cpu", "--no-guard"]
    bad = tmp_path / "truth.csv"
    bad.write_text("file,stage\nS0/s0.png,Severe\nnot_here.png,0\n")
    cases = [([str(cohort), "--truth", str(bad), "--out", str(tmp_path / "r.csv")],
              ["unknown stages ('line 2: Severe')", "1 file named in the CSV was not given ('not_here.png')"]),
             ([str(cohort), "--evaluation-out", str(tmp_path / "e.pdf")], ["--evaluation-out needs true stages"]),
             ([str(cohort), "--truth-from-folders", "--evaluation-out", str(tmp_path / "e.docx")],
              ["--evaluation-out must end in .pdf, .html, .json"]),
             ([str(cohort), "--truth", str(tmp_path / "nope.csv")], ["--truth: no such file"])]
    for argv, messages in cases:
        with pytest.raises(SystemExit) as exit_:
            main(argv + assets)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and all(m in err for m in messages), err
        assert "Traceback" not in err
