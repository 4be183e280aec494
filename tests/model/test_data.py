import io
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from model.constants import CLASS_NAMES, NUM_CLASSES
from model.data import DatasetError, fingerprint, load_image_folder, load_parquet, load_split, stratified_split

README_SHA = {
    "train": "d50b27c943b61afbd0d45cd96dbc5cc4cd5662165f9f42f2e604a93a7404fbb1",
    "test": "96e2528ba7ecc9d138b79a54a94d36480e29826ef45241138635d6f414d84a80",
}


def jpeg(value=100, size=(128, 128)):
    buf = io.BytesIO()
    Image.new("L", size, value).save(buf, format="JPEG")
    return buf.getvalue()


def write_parquet(path, rows):
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_label_order_is_the_datasets():
    assert CLASS_NAMES == ("Mild_Demented", "Moderate_Demented", "Non_Demented", "Very_Mild_Demented")


def test_loads_shared_test_split(test_slices):
    assert test_slices.images.shape == (64, 1, 128, 128)
    assert test_slices.images.dtype == torch.uint8
    assert test_slices.labels.min() >= 0 and test_slices.labels.max() < NUM_CLASSES
    assert all("/" in i for i in test_slices.ids)  # `<class folder>/<file>` origins
    for label, name in zip(test_slices.labels.tolist(), test_slices.ids):
        assert name.split("/")[0].replace(" ", "_").lower().startswith(CLASS_NAMES[label].split("_")[0].lower())


def test_fingerprint_matches_dataset_readme(data_dir):
    assert fingerprint(data_dir) == README_SHA


def test_missing_column_is_named(tmp_path):
    path = write_parquet(tmp_path / "bad.parquet", {"img": [b"x"], "label": [0]})
    with pytest.raises(DatasetError, match=r"bad.parquet.*missing column.*image"):
        load_parquet(path)


def test_label_out_of_range_names_row(tmp_path):
    rows = {"image": [{"bytes": jpeg(), "path": "a.jpg"}, {"bytes": jpeg(), "path": "b.jpg"}], "label": [0, 7]}
    with pytest.raises(DatasetError, match=r"row 1: label 7 is outside 0..3"):
        load_parquet(write_parquet(tmp_path / "l.parquet", rows))


def test_undecodable_image_names_row(tmp_path):
    rows = {"image": [{"bytes": jpeg(), "path": "a.jpg"}, {"bytes": b"not an image", "path": "b.jpg"}],
            "label": [0, 1]}
    with pytest.raises(DatasetError, match=r"row 1: not a readable image"):
        load_parquet(write_parquet(tmp_path / "u.parquet", rows))


def test_missing_dataset_points_to_download(tmp_path):
    with pytest.raises(DatasetError, match="model.data download"):
        load_split("train", tmp_path)


def test_image_folder_layout(tmp_path):
    for label, name in enumerate(CLASS_NAMES):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("L", (176, 208), 40 * label).save(tmp_path / "train" / name / "x.png")
    data = load_split("train", tmp_path)
    assert data.labels.tolist() == [0, 1, 2, 3]
    assert data.images.shape == (4, 1, 128, 128)
    assert data.ids[1] == "Moderate_Demented/x.png"
    # 176x208 is padded to a square like an upload, not stretched: black columns at the sides
    assert data.images[1, 0, :, :4].max() == 0 and data.images[1, 0, 64, 64] == 40
    # the image-folder source is fingerprinted too, and relabelling a file changes the fingerprint
    before = fingerprint(tmp_path)
    assert set(before) == {"train"} and len(before["train"]) == 64
    (tmp_path / "train" / "Mild_Demented" / "x.png").rename(tmp_path / "train" / "Non_Demented" / "y.png")
    assert fingerprint(tmp_path)["train"] != before["train"]


def test_image_folder_rejects_unknown_class(tmp_path):
    (tmp_path / "Alzheimer").mkdir()
    with pytest.raises(DatasetError, match="unknown class folder"):
        load_image_folder(tmp_path)


def test_stratified_split_is_seeded_disjoint_and_proportional():
    labels = torch.tensor([0] * 100 + [1] * 10 + [2] * 500 + [3] * 300)
    keep, held = stratified_split(labels, 0.1, seed=3)
    keep2, held2 = stratified_split(labels, 0.1, seed=3)
    assert torch.equal(held, held2) and torch.equal(keep, keep2)
    assert not set(keep.tolist()) & set(held.tolist())
    assert len(keep) + len(held) == len(labels)
    assert torch.bincount(labels[held], minlength=4).tolist() == [10, 1, 50, 30]
    assert not torch.equal(stratified_split(labels, 0.1, seed=4)[1], held)


def test_download_places_both_splits(tmp_path, monkeypatch):
    """The hub download (no network here): files fetched by name land where load_split looks."""
    import sys
    import types

    calls = []

    def fake_snapshot_download(repo_id, repo_type, allow_patterns, local_dir):
        calls.append((repo_id, repo_type, allow_patterns))
        for split, label in (("train", 0), ("test", 2)):  # hub names carry a hash suffix
            path = Path(local_dir) / "data" / f"{split}-00000-of-00001-abc123.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(path, {"image": [{"bytes": jpeg(), "path": "x/a.jpg"}], "label": [label]})
        return local_dir

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=fake_snapshot_download))
    from model.data import download

    dest = tmp_path / "data"
    paths = download(dest)
    assert [p.name for p in paths] == ["train-00000-of-00001.parquet", "test-00000-of-00001.parquet"]
    assert calls == [("Falah/Alzheimer_MRI", "dataset", ["*.parquet"])]
    assert load_split("train", dest).labels.tolist() == [0]
    assert load_split("test", dest).labels.tolist() == [2]


def test_download_without_hub_package_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    from model.data import download

    with pytest.raises(DatasetError, match="pip install huggingface_hub"):
        download(tmp_path)


def test_download_cli_validates_what_arrived_and_compares_with_the_card(tmp_path, monkeypatch, capsys):
    import sys
    import types

    def fake_snapshot_download(repo_id, repo_type, allow_patterns, local_dir):
        for split in ("train", "test"):
            path = Path(local_dir) / f"{split}-00000-of-00001-abc.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(path, {"image": [{"bytes": jpeg(), "path": "x/a.jpg"}], "label": [1]})
        return local_dir

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=fake_snapshot_download))
    from model.data import main

    assert main(["download", "--dest", str(tmp_path / "data")]) == 0
    out, err = capsys.readouterr()
    assert '"Moderate_Demented": 1' in out and "sha256=" in out
    assert "train class counts [0, 1, 0, 0] differ from the dataset card's [724, 49, 2566, 1781]" in err


def test_download_without_network_is_a_clear_error(tmp_path):
    import os
    import subprocess
    import sys

    from model.constants import PROJECT_ROOT

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "model.data", "download", "--dest", str(tmp_path / "d")],
                          env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert proc.returncode == 2
    assert "could not download Falah/Alzheimer_MRI from the Hugging Face hub" in proc.stderr
    assert "Traceback" not in proc.stderr
