import json

import numpy as np

from model.predict import main
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
    assert "not a PNG or JPEG" in rows[0]["error"]
    good = rows[1]
    assert good["prediction"] in {"Mild_Demented", "Moderate_Demented", "Non_Demented", "Very_Mild_Demented"}
    assert np.isclose(sum(v for k, v in good.items() if k.startswith("p_")), 1, atol=1e-4)
    assert "skipped" in capsys.readouterr().err


def test_cli_csv_to_stdout(tiny_assets, test_slices, tmp_path, capsys):
    path = tmp_path / "one.png"
    path.write_bytes(png_bytes(test_slices.images[0, 0].numpy()))
    code = main([str(path), "--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
                 "--config", str(tiny_assets / "model_config.json")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[0].startswith("file,prediction,confidence,p_Mild_Demented")
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
    assert out.read_text().startswith("file,prediction")
