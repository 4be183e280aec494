"""Subject recovery on synthetic brains: smooth 3D phantoms cut into blocks of consecutive slices."""
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from model.core.dataset import read_subjects, subjects_for
from model.training import subjects as sj


def phantom(seed: int, depth: int, size: int) -> np.ndarray:
    """A smooth 3D 'head' (depth, size, size) in 0..255: an ellipsoid with random smooth blobs inside."""
    rng = np.random.default_rng(seed)
    span = 0.025 * depth  # thin slices: neighbours differ far less than two heads do
    z, y, x = np.meshgrid(np.linspace(-span, span, depth), np.linspace(-1, 1, size), np.linspace(-1, 1, size),
                          indexing="ij")
    head = ((x / 0.8) ** 2 + (y / 0.9) ** 2) < 1  # the same outline on every slice: no edge pixel flips
    vol = np.zeros_like(x)
    for _ in range(12):
        c = rng.uniform(-0.6, 0.6, 3) * [span / 0.6, 1, 1]
        s = rng.uniform(0.15, 0.4)
        vol += rng.uniform(-1, 1) * np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * s * s))
    vol = (vol - vol.min()) / (np.ptp(vol) + 1e-9)
    return np.where(head, 60 + 150 * vol, 0).astype(np.uint8)


def jpeg_roundtrip(img: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def synthetic(n_subjects=6, block=8, size=32, labels=(0, 0, 2, 2, 2, 3), seed=0):
    """Shuffled JPEG slices of `n_subjects` phantoms, block consecutive slices each: (images, labels, truth)."""
    slices, y, subject, position = [], [], [], []
    for s in range(n_subjects):
        vol = phantom(seed * 100 + s, block, size)
        for p in range(block):
            slices.append(jpeg_roundtrip(vol[p]))
            y.append(labels[s])
            subject.append(s)
            position.append(p)
    order = np.random.default_rng(seed).permutation(len(slices))
    images = torch.from_numpy(np.stack(slices)[order]).unsqueeze(1)
    return images, np.array(y)[order], np.array(subject)[order], np.array(position)[order]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


def test_fitted_rms_ignores_a_linear_change_of_grey_levels():
    img = torch.from_numpy(phantom(1, 2, 32)[:1]).unsqueeze(1)
    darker = (img.double() * 0.7 + 10).round().to(torch.uint8)
    other = torch.from_numpy(phantom(2, 2, 32)[:1]).unsqueeze(1)
    d = sj.pairwise_fitted_rms(torch.cat([img, darker, other]))
    assert d[0, 1] < 1.0 < 10 * d[0, 1] < d[0, 2]
    assert sj.pairwise_rms(torch.cat([img, darker]))[0, 1] > 10  # raw RMS would call them different


def test_shuffled_jpeg_blocks_are_regrouped_and_reordered_exactly():
    images, labels, subject, position = synthetic()
    rec = sj.group_and_order(images, labels, cap=8)
    assert same_partition(rec.group, subject)
    for g in np.unique(rec.group):  # order recovered up to direction
        members = rec.group == g
        truth, found = position[members], rec.position[members]
        assert (found == truth).all() or (found == 7 - truth).all()


def test_the_size_cap_splits_subjects_that_touch():
    images, labels, subject, _ = synthetic(n_subjects=3, labels=(2, 2, 2))
    loose = sj.group_and_order(images, labels, cap=10_000)  # no cap: one chain eventually swallows all
    assert len(np.unique(loose.group)) == 1
    assert same_partition(sj.group_and_order(images, labels, cap=8).group, subject)


def test_recover_names_subjects_from_reference_slices_and_orients_them(tmp_path):
    # Three 32-slice subjects; subject 0 has a reference slice (its position 13) and a clinical row.
    vols = [phantom(10 + s, 32, 48) for s in range(3)]
    ref_dir = tmp_path / "ref"
    (ref_dir / "axial").mkdir(parents=True)
    # the dataset slice is the reference rotated 180 degrees, resized, and scaled 0.92x - 0.9
    reference = np.asarray(Image.fromarray(vols[0][13]).resize((176, 208), Image.Resampling.BICUBIC).rotate(180))
    Image.fromarray(reference).save(ref_dir / "axial" / "OAS1_0042_MR1_a.jpg", quality=95)
    Image.fromarray(phantom(99, 1, 48)[0]).save(ref_dir / "axial" / "OAS1_0099_MR1_a.jpg")  # nobody's
    pd.DataFrame({"ID": ["OAS1_0042_MR1", "OAS1_0099_MR1"], "M/F": ["F", "M"], "Hand": "R", "Age": [77, 70],
                  "Educ": [3, 2], "eTIV": [1400, 1500], "nWBV": [0.71, 0.75], "ASF": 1.2, "Delay": "N/A",
                  "MMSE": [24, 30], "CDR": [1.0, 0.0], "SES": 2}).to_csv(ref_dir / "oasis_cross-sectional.csv",
                                                                       index=False, encoding="utf-8-sig")
    slices, labels, truth_subject, truth_position = [], [], [], []
    for s, vol in enumerate(vols):
        for p in range(32):
            img = np.asarray(Image.fromarray(vol[p]).resize((128, 128), Image.Resampling.BICUBIC), dtype=float)
            slices.append(jpeg_roundtrip(np.clip(0.92 * img - 0.9, 0, 255).astype(np.uint8)))
            labels.append(0 if s == 0 else 2)
            truth_subject.append(s)
            truth_position.append(p)
    order = np.random.default_rng(3).permutation(len(slices))
    images = torch.from_numpy(np.stack(slices)[order]).unsqueeze(1)
    labels = np.array(labels)[order]
    keys = pd.DataFrame({"split": "train", "path": [f"x/{i}.jpg" for i in range(len(order))],
                         "sha256": [f"{i:064x}" for i in order]})
    table, subjects, report = sj.recover(images, labels, keys, ref_dir)

    named = table.subject[np.array(truth_subject)[order] == 0]
    assert set(named) == {"OAS1_0042_MR1"}
    assert (table.position[np.array(truth_subject)[order] == 0].to_numpy()
            == np.array(truth_position)[order][np.array(truth_subject)[order] == 0]).all()
    assert table.subject.nunique() == 3 and table.groupby("subject").size().eq(32).all()
    row = subjects.set_index("subject").loc["OAS1_0042_MR1"]
    assert (row.age, row.sex, row.cdr) == (77, "F", 1.0)
    assert report["references"]["matched"] == 1 and report["references"]["unmatched"] == 1
    assert report["references"]["at_reference_position"] == 1
    assert report["cdr_agreement"] == "1/1"
    # pseudo ids are stable: the same slices give the same ids whatever their order
    again, _, _ = sj.recover(images.flip(0), labels[::-1].copy(), keys.iloc[::-1].reset_index(drop=True), ref_dir)
    assert set(again.subject) == set(table.subject)


def test_subjects_for_refuses_unknown_slices():
    table = pd.DataFrame({"split": ["train"], "path": ["a.jpg"], "sha256": ["ab" * 32], "subject": ["s1"]})
    assert subjects_for("train", ["a.jpg"], ["ab" * 32], table).tolist() == ["s1"]
    with pytest.raises(ValueError, match="not in the subject table"):
        subjects_for("train", ["a.jpg"], ["cd" * 32], table)


def write_parquet(path, images, labels, names):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=92)
        rows.append(buf.getvalue())
    table = pa.table({"image": [{"bytes": b, "path": n} for b, n in zip(rows, names)], "label": labels})
    pq.write_table(table, path)


def test_cli_groups_without_references_and_says_what_it_wrote(tmp_path, capsys):
    vols = [phantom(40 + s, 32, 128) for s in range(2)]
    images = [vols[s][p] for s in range(2) for p in range(32)]
    labels = [2] * 32 + [3] * 32
    order = np.random.default_rng(0).permutation(64)
    data = tmp_path / "data"
    data.mkdir()
    train, test = order[:48], order[48:]
    write_parquet(data / "train-00000-of-00001.parquet", [images[i] for i in train], [labels[i] for i in train],
                  [f"x/train_{i}.jpg" for i in train])
    write_parquet(data / "test-00000-of-00001.parquet", [images[i] for i in test], [labels[i] for i in test],
                  [f"x/test_{i}.jpg" for i in test])
    out = tmp_path / "out"
    assert sj.main(["--data-dir", str(data), "--reference-dir", "none", "--out-dir", str(out)]) == 0
    table = pd.read_csv(out / "subjects.csv")
    assert len(table) == 64 and table.groupby("subject").size().tolist() == [32, 32]
    assert set(table.subject.str.split("-").str[0]) == {"non", "verymild"}  # pseudo ids name the class
    assert sorted(table.position[table.label == "Non_Demented"]) == list(range(32))
    assert "2 subjects from 64 slices" in capsys.readouterr().out
    assert sj.main(["--data-dir", str(data), "--reference-dir", str(tmp_path / "nowhere"), "--out-dir", str(out)]) == 2


@pytest.mark.data
def test_shipped_subject_ids_fit_the_real_slices(data_dir):
    from model.core.constants import SUBJECTS_PATH, SUBJECTS_REPORT_PATH
    from model.core.dataset import load_split, slice_keys

    table = read_subjects(SUBJECTS_PATH)
    per_subject = table.groupby("subject")
    assert len(per_subject) == 200 and per_subject.size().eq(32).all()
    assert per_subject.label.nunique().eq(1).all()
    assert per_subject.position.apply(lambda p: sorted(p) == list(range(32))).all()
    counts = per_subject.label.first().value_counts().to_dict()
    assert counts == {"Non_Demented": 100, "Very_Mild_Demented": 70, "Mild_Demented": 28, "Moderate_Demented": 2}
    for split in ("train", "test"):  # every real slice is in the table, under its own label
        keys = slice_keys(split, data_dir)
        labels = load_split(split, data_dir).labels.numpy()
        subject = subjects_for(split, keys.path, keys.sha256, table)
        label_of = per_subject.label.first()
        from model.core.constants import CLASS_NAMES

        assert [label_of[s] for s in subject] == [CLASS_NAMES[v] for v in labels]
    report = json.loads(SUBJECTS_REPORT_PATH.read_text())
    assert all(report["checks"].values()) and report["references"]["matched"] == 170
