import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from model.core.constants import CLASS_NAMES, NUM_CLASSES
from model.core.dataset import DatasetError, fingerprint, load_image_folder, load_parquet, load_split
from model.training.data import stratified_split

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


def assert_real_slices(data, n):
    assert data.images.shape == (n, 1, 128, 128)
    assert data.images.dtype == torch.uint8
    assert data.labels.min() >= 0 and data.labels.max() < NUM_CLASSES
    assert all("/" in i for i in data.ids)  # `<class folder>/<file>` origins
    for label, name in zip(data.labels.tolist(), data.ids):
        assert name.split("/")[0].replace(" ", "_").lower().startswith(CLASS_NAMES[label].split("_")[0].lower())


def test_loads_a_parquet_file_in_the_hub_schema(test_slices, tmp_path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rows = []
    for i, (img, label) in enumerate(zip(test_slices.images[:, 0].numpy(), test_slices.labels.tolist())):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        rows.append({"bytes": buf.getvalue(), "path": f"{CLASS_NAMES[label]}/slice_{i}.png"})
    pq.write_table(pa.table({"image": rows, "label": test_slices.labels.tolist()}), tmp_path / "s.parquet")
    data = load_parquet(tmp_path / "s.parquet")
    assert_real_slices(data, 8)
    assert data.class_counts() == [2, 2, 2, 2] and torch.equal(data.images, test_slices.images)


@pytest.mark.data
def test_loads_shared_test_split(data_dir):
    assert_real_slices(load_split("test", data_dir, limit=64), 64)


@pytest.mark.data
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
    with pytest.raises(DatasetError, match="model.training.data download"):
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
    from model.training.data import download

    dest = tmp_path / "data"
    paths = download(dest)
    assert [p.name for p in paths] == ["train-00000-of-00001.parquet", "test-00000-of-00001.parquet"]
    assert calls == [("Falah/Alzheimer_MRI", "dataset", ["*.parquet"])]
    assert load_split("train", dest).labels.tolist() == [0]
    assert load_split("test", dest).labels.tolist() == [2]


def test_download_without_hub_package_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    from model.training.data import download

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
    from model.training.data import main

    assert main(["download", "--dest", str(tmp_path / "data"), "--keep-hub-split"]) == 0
    out, err = capsys.readouterr()
    assert '"Moderate_Demented": 1' in out and "sha256=" in out
    assert "train class counts [0, 1, 0, 0] differ from the dataset card's [724, 49, 2566, 1781]" in err
    assert "the shipped metrics were computed on" in err  # and the files are not those of the shipped metrics


def test_download_without_network_is_a_clear_error(tmp_path):
    import os
    import subprocess
    import sys

    from model.core.constants import PROJECT_ROOT

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "model.training.data", "download", "--dest", str(tmp_path / "d")],
                          env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert proc.returncode == 2
    assert "could not download Falah/Alzheimer_MRI from the Hugging Face hub" in proc.stderr
    assert proc.stderr.rstrip().endswith(f"copy the two parquet files by hand into {tmp_path / 'd'}")
    assert "Traceback" not in proc.stderr


# --- the project's split, by a list of content keys ------------------------------------------------------------

def smooth_slice(seed: int) -> np.ndarray:
    """A (128, 128) uint8 image of smooth random blobs, different for every seed."""
    small = np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((128, 128), Image.BICUBIC))


def encode(array: np.ndarray, fmt: str = "JPEG", **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **options)
    return buf.getvalue()


LABELS = [0, 0, 1, 2, 2, 2, 3, 3, 0, 2]  # ten slices: the first seven are train, the last three test
PIXELS = [smooth_slice(i) for i in range(len(LABELS))]
ORIGINALS = [encode(p, quality=95) for p in PIXELS]
NAMES = [f"{CLASS_NAMES[label]}/s{i}.jpg" for i, label in enumerate(LABELS)]


def write_hf(path, images, labels):
    """A parquet file in the Hugging Face schema: images are (bytes, path or None) pairs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"image": pa.array([{"bytes": b, "path": p} for b, p in images], type=image_type),
                             "label": pa.array(labels, type=pa.int64())}), path)
    return path


@pytest.fixture
def local_copy(tmp_path):
    """The project's copy of the ten slices, its split list, and a folder to download into."""
    from model.training.data import make_split_list

    shared = tmp_path / "shared"
    for split, rows in (("train", range(7)), ("test", range(7, 10))):
        write_hf(shared / f"{split}-00000-of-00001.parquet", [(ORIGINALS[i], NAMES[i]) for i in rows],
                 [LABELS[i] for i in rows])
    listed = tmp_path / "split.csv"
    make_split_list(shared).to_csv(listed, index=False)
    return shared, listed, tmp_path / "fresh"


def stub_hub(monkeypatch, files):
    """Make `huggingface_hub.snapshot_download` lay out `files` ({name: (images, labels)}); returns its calls."""
    import sys
    import types

    calls = []

    def fake_snapshot_download(repo_id, repo_type, allow_patterns, local_dir):
        calls.append(repo_id)
        for name, (images, labels) in files.items():
            write_hf(Path(local_dir) / "data" / name, images, labels)
        return local_dir

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=fake_snapshot_download))
    return calls


def test_dhash_keeps_lossless_copies_and_moves_little_under_jpeg():
    from model.training.data import DHASH_SIZE, _signs, dhash

    key = dhash(PIXELS[0])
    assert len(key) == DHASH_SIZE * DHASH_SIZE // 4
    png = np.asarray(Image.open(io.BytesIO(encode(PIXELS[0], "PNG"))))
    assert dhash(png) == key  # same pixels, other bytes: same key
    q = _signs([key, dhash(np.asarray(Image.open(io.BytesIO(encode(PIXELS[0], quality=50))))), dhash(PIXELS[1])])
    hamming = (q.shape[1] - q @ q.T) / 2
    assert hamming[0, 1] < 0.03 * q.shape[1] < 0.3 * q.shape[1] < hamming[0, 2]
    with pytest.raises(ValueError, match="at least 32 x 33"):
        dhash(np.zeros((16, 16), np.uint8))


def test_split_list_has_one_row_per_slice_and_round_trips(local_copy, tmp_path, capsys):
    from model.training.data import SPLIT_LIST_COLUMNS, main, read_split_list

    shared, listed, _ = local_copy
    frame = read_split_list(listed)
    assert tuple(frame.columns) == SPLIT_LIST_COLUMNS
    assert frame.split.tolist() == ["train"] * 7 + ["test"] * 3
    assert frame.path.tolist() == NAMES and frame.label.tolist() == [CLASS_NAMES[i] for i in LABELS]
    assert main(["split-list", str(shared), "--out", str(tmp_path / "again.csv")]) == 0
    assert (tmp_path / "again.csv").read_text() == listed.read_text()  # reproducible
    assert "10 slices {'train': 7, 'test': 3}" in capsys.readouterr().out


def test_split_list_refuses_slices_it_cannot_tell_apart(tmp_path):
    from model.training.data import make_split_list

    write_hf(tmp_path / "train-00000-of-00001.parquet", [(ORIGINALS[0], "a/x.jpg"), (ORIGINALS[0], "a/y.jpg")], [0, 0])
    write_hf(tmp_path / "test-00000-of-00001.parquet", [(ORIGINALS[1], "a/z.jpg")], [0])
    with pytest.raises(DatasetError, match=r"sha256 value\(s\) are shared.*a/x.jpg', 'a/y.jpg"):
        make_split_list(tmp_path)


def test_a_damaged_split_list_is_named(local_copy, tmp_path):
    from model.training.data import read_split_list

    _, listed, _ = local_copy
    frame = pd.read_csv(listed, dtype=str)
    for damage, message in ((frame.drop(columns="dhash"), r"missing column\(s\) \['dhash'\]"),
                            (frame.assign(split="validation"), r"unknown split value\(s\) \['validation'\]"),
                            (frame.assign(dhash=frame.dhash.str[:16]), r"10 dhash value\(s\) are not 256 hex"),
                            (pd.concat([frame, frame.iloc[[2]]]), r"sha256 value\(s\) are shared")):
        damage.to_csv(tmp_path / "bad.csv", index=False)
        with pytest.raises(DatasetError, match=message):
            read_split_list(tmp_path / "bad.csv")
    with pytest.raises(DatasetError, match="split list not found.*split-list"):
        read_split_list(tmp_path / "none.csv")


def test_download_resplits_the_hubs_arrangement_as_listed(local_copy, monkeypatch, capsys):
    """The hub holds the same bytes split 5/5 in another order and without paths: the project's files come back."""
    from model.training.data import main
    from model.core.assets import sha256_file

    shared, listed, dest = local_copy
    order = [9, 3, 0, 7, 5, 1, 8, 2, 6, 4]
    calls = stub_hub(monkeypatch, {
        "train-00000-of-00001-abc.parquet": ([(ORIGINALS[i], None) for i in order[:5]], [LABELS[i] for i in order[:5]]),
        "test-00000-of-00001-abc.parquet": ([(ORIGINALS[i], None) for i in order[5:]], [LABELS[i] for i in order[5:]]),
    })
    assert main(["download", "--dest", str(dest), "--split-list", str(listed)]) == 0
    assert calls == ["Falah/Alzheimer_MRI"]
    for name in ("train-00000-of-00001.parquet", "test-00000-of-00001.parquet"):
        assert sha256_file(dest / name) == sha256_file(shared / name)  # byte for byte the project's files
        assert not (dest / ".hub" / name).exists()  # the staged hub copies are cleared
    assert load_split("test", dest).ids == tuple(NAMES[7:])
    assert '"Moderate_Demented": 1' in capsys.readouterr().out


def test_download_finds_reencoded_slices_by_their_pixels(local_copy, monkeypatch):
    """Bytes differ (PNG, or JPEG again at quality 75) and the split differs: the dhash still finds every slice."""
    from model.training.data import main

    shared, listed, dest = local_copy
    decoded = [np.asarray(Image.open(io.BytesIO(b))) for b in ORIGINALS]
    again = [encode(a, "PNG") if i % 2 else encode(a, quality=75) for i, a in enumerate(decoded)]
    order = [4, 8, 1, 6, 0, 9, 2, 7, 5, 3]
    stub_hub(monkeypatch, {"train-00000-of-00001.parquet": ([(again[i], f"x/{i}.png") for i in order],
                                                            [LABELS[i] for i in order]),
                           "test-00000-of-00001.parquet": ([], [])})
    assert main(["download", "--dest", str(dest), "--split-list", str(listed)]) == 0
    for split in ("train", "test"):
        got, want = load_split(split, dest), load_split(split, shared)
        assert got.ids == want.ids and torch.equal(got.labels, want.labels)
        assert (got.images.float() - want.images.float()).abs().mean() < 3  # the same slices, re-encoded
    assert load_parquet(dest / "train-00000-of-00001.parquet").ids[0] == "Mild_Demented/s0.jpg"


def test_download_with_a_slice_missing_names_it_and_writes_nothing(local_copy, monkeypatch, capsys):
    from model.training.data import main

    _, listed, dest = local_copy
    kept = [i for i in range(10) if i != 2]
    stub_hub(monkeypatch, {"train-00000-of-00001.parquet": ([(ORIGINALS[i], None) for i in kept],
                                                            [LABELS[i] for i in kept]),
                           "test-00000-of-00001.parquet": ([], [])})
    with pytest.raises(SystemExit) as exc:
        main(["download", "--dest", str(dest), "--split-list", str(listed)])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "does not hold the slices of split.csv" in err and str(dest / ".hub") in err
    assert "9 slices against 10 listed: 1 listed slice(s) missing: Moderate_Demented/s2.jpg (train)" in err
    assert not (dest / "train-00000-of-00001.parquet").exists() and not (dest / "test-00000-of-00001.parquet").exists()


def test_extra_copies_and_relabelled_slices_are_named(local_copy, tmp_path):
    from model.training.data import apply_split_list

    _, listed, dest = local_copy
    images = [(b, None) for b in ORIGINALS] + [(ORIGINALS[4], "dup.jpg"), (encode(smooth_slice(99)), "new.jpg")]
    labels = LABELS[:5] + [3] + LABELS[6:] + [LABELS[4], 0]  # slice 5 relabelled Non -> Very mild
    hub = write_hf(tmp_path / "hub.parquet", images, labels)
    with pytest.raises(DatasetError) as exc:
        apply_split_list([hub], dest, listed)
    message = str(exc.value)
    assert message.startswith("12 slices against 10 listed: 2 slice(s) not in the list: ")
    assert "hub.parquet row 10 (dup.jpg), a second copy of Non_Demented/s4.jpg" in message
    assert "hub.parquet row 11 (new.jpg)" in message
    assert ("1 slice(s) of another class than listed: hub.parquet row 5 is Very_Mild_Demented, listed as "
            "Non_Demented (Non_Demented/s5.jpg)") in message
    assert not dest.exists()


def test_skip_existing_checks_the_copy_instead_of_downloading(local_copy, monkeypatch, capsys):
    import shutil

    from model.training.data import main

    shared, listed, _ = local_copy
    calls = stub_hub(monkeypatch, {})
    assert main(["download", "--dest", str(shared), "--split-list", str(listed), "--skip-existing"]) == 0
    assert calls == [] and "already there, every slice where split.csv puts it" in capsys.readouterr().out
    moved = shared.parent / "moved"  # slice 6 (train) sits in test
    shutil.copytree(shared, moved)
    write_hf(moved / "train-00000-of-00001.parquet", [(ORIGINALS[i], NAMES[i]) for i in range(6)], LABELS[:6])
    write_hf(moved / "test-00000-of-00001.parquet", [(ORIGINALS[i], NAMES[i]) for i in range(6, 10)], LABELS[6:])
    with pytest.raises(SystemExit):
        main(["download", "--dest", str(moved), "--split-list", str(listed), "--skip-existing"])
    assert "1 slice(s) in another split than the split list says: Very_Mild_Demented/s6.jpg is in test, listed in " \
           "train" in capsys.readouterr().err
    assert calls == []


@pytest.mark.data
def test_real_test_slices_are_listed_as_test_slices(data_dir):
    """The committed list knows real test-split slices by their bytes, and a part of the data is refused."""
    from model.training.data import match_split_list, parquet_slices, read_split_list

    listed = read_split_list()
    slices = parquet_slices([data_dir / "test-00000-of-00001.parquet"]).head(8)
    rows = [listed.sha256.tolist().index(sha) for sha in slices.sha256]
    assert listed.split.iloc[rows].tolist() == ["test"] * 8
    assert listed.path.iloc[rows].tolist() == slices.path.tolist()
    with pytest.raises(DatasetError, match=r"8 slices against 6400 listed: 6392 listed slice\(s\) missing"):
        match_split_list(slices, listed)  # a part of the data is not the data


@pytest.mark.data
def test_committed_split_list_is_the_shared_copys_split(data_dir):
    from model.core.constants import DATASET_CARD_COUNTS, SPLIT_LIST_PATH
    from model.training.data import make_split_list, read_split_list

    listed = read_split_list(SPLIT_LIST_PATH)  # checks both keys and the paths are unique
    assert len(listed) == 6400 and listed.sha256.nunique() == listed.dhash.nunique() == 6400
    for split, counts in DATASET_CARD_COUNTS.items():
        assert listed[listed.split == split].label.value_counts().reindex(CLASS_NAMES).tolist() == counts
    pd.testing.assert_frame_equal(make_split_list(data_dir), listed)  # `split-list` reproduces it


@pytest.mark.data
def test_the_shared_slices_in_another_arrangement_rebuild_the_shared_files(data_dir, tmp_path):
    """What `make data` does with a hub that holds the same bytes: files with the dataset README's SHA-256s."""
    import pyarrow.parquet as pq

    from model.core.constants import SPLIT_FILES
    from model.training.data import apply_split_list

    tables = [pq.read_table(data_dir / name) for name in SPLIT_FILES.values()]
    images = tables[0].column("image").to_pylist() + tables[1].column("image").to_pylist()
    labels = tables[0].column("label").to_pylist() + tables[1].column("label").to_pylist()
    order = np.random.default_rng(0).permutation(len(images))
    hub = write_hf(tmp_path / "hub.parquet", [(images[i]["bytes"], None) for i in order], [labels[i] for i in order])
    apply_split_list([hub], tmp_path / "out")
    assert fingerprint(tmp_path / "out") == README_SHA
