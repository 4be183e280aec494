"""A volume staged as a subject: reading every axial slice, finding the training slab, staging it."""
import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from model.core import slab
from model.scans import scan_io
from model.training.build_slab_template import build

H, W = 208, 176  # an OASIS axial slice in the radiological view: rows front to back, columns right to left


def synthetic_stack(n: int, seed: int, size: int = 128) -> np.ndarray:
    """n slices of a synthetic head whose outline shrinks and whose ventricles move with the position."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    out = []
    for p in range(n):
        t = p / max(1, n - 1)
        a, b = 0.55 + 0.3 * np.sin(np.pi * t), 0.65 + 0.25 * np.sin(np.pi * t)
        r = (x / a) ** 2 + (y / b) ** 2
        img = np.where(r < 1, 110.0, 0.0) + np.where((r > 0.8) & (r < 1), 60.0, 0.0)
        img = np.where(((np.abs(x) - 0.1) / 0.08) ** 2 + ((y - 0.5 + t) / 0.25) ** 2 < 1, 20.0, img)
        out.append(np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


def undo_dataset_look(slice128: np.ndarray) -> np.ndarray:
    """A 128 px dataset-look slice -> the RAS volume plane (X=176, Y=208) it came from (rotation undone,
    resized back)."""
    view = np.asarray(Image.fromarray(np.rot90(slice128, 2).copy()).resize((W, H), Image.Resampling.BICUBIC))
    return view[::-1, ::-1].T


def as_volume(slices128: np.ndarray, below: int, above: int, filler) -> np.ndarray:
    planes = [filler(i) for i in range(below)] + [undo_dataset_look(s) for s in slices128] + \
             [filler(below + i) for i in range(above)]
    return np.stack(planes, axis=2).astype(np.int16)  # (X, Y, Z)


def nifti_bytes(volume: np.ndarray) -> bytes:
    return nib.Nifti1Image(volume, np.eye(4)).to_bytes()


def analyze_pair(volume: np.ndarray) -> list[tuple[str, bytes]]:
    img = nib.AnalyzeImage(volume, np.diag([-1, 1, 1, 1]))  # Analyze is stored left-right swapped
    hdr, data = io.BytesIO(), io.BytesIO()
    img.to_file_map({"header": nib.FileHolder(fileobj=hdr), "image": nib.FileHolder(fileobj=data)})
    return [("head.hdr", hdr.getvalue()), ("head.img", data.getvalue())]


@pytest.fixture(scope="module")
def synthetic_template():
    subjects = [synthetic_stack(32, seed) for seed in range(6)]
    images = np.concatenate(subjects)
    groups = np.repeat([f"s{i}" for i in range(6)], 32)
    positions = np.tile(np.arange(32), 6)
    template, record = build(images, groups, positions)
    return template, record


def test_the_slab_of_a_synthetic_subject_is_found_in_a_nifti_and_an_analyze_volume(synthetic_template):
    template, record = synthetic_template
    subject = synthetic_stack(32, seed=99)
    rng = np.random.default_rng(5)
    noise = lambda i: rng.integers(0, 30, (W, H))  # noisy background above and below the slab
    volume = as_volume(subject, below=7, above=11, filler=noise)
    for item in ([("head.nii", nifti_bytes(volume))], analyze_pair(volume)):
        read = scan_io.open_volume(item)
        assert read.slices.shape == (50, 128, 128)
        match = template.locate(read.slices)
        assert (match.start, match.stop) == (7, 39)
        others = np.delete(np.array(match.scores), match.start)
        assert match.score < 0.5 * others.min()  # every other start fits far worse
        # the slab read back is the subject's slices, up to the two resamplings and the volume's grey scale
        assert np.corrcoef(read.slices[7:39].ravel(), subject.ravel())[0, 1] > 0.98


def test_short_volumes_and_non_volumes_get_a_clear_message(synthetic_template):
    template, _ = synthetic_template
    with pytest.raises(slab.SlabError, match="has 20 axial slices"):
        template.locate(synthetic_stack(20, 0))
    png = io.BytesIO()
    Image.fromarray(synthetic_stack(1, 0)[0]).save(png, format="PNG")
    with pytest.raises(scan_io.ScanError, match="NIfTI file"):
        scan_io.open_volume([("slice.png", png.getvalue())])


def test_an_unaligned_volume_is_flagged(synthetic_template):
    template, _ = synthetic_template
    rng = np.random.default_rng(1)
    match = template.locate(rng.integers(0, 255, (40, 128, 128)).astype(np.uint8))
    assert not match.aligned


def test_the_shipped_template_is_checked_against_its_hash(tmp_path):
    template = slab.SlabTemplate.load()
    assert template.means.shape == (32, slab.TEMPLATE_SIZE ** 2) and template.typical > 0
    blob = slab.SLAB_TEMPLATE_PATH.read_bytes()
    middle = len(blob) // 2
    (tmp_path / "t.safetensors").write_bytes(blob[:middle] + bytes([blob[middle] ^ 1]) + blob[middle + 1:])
    with pytest.raises(slab.SlabError, match="does not match"):
        slab.SlabTemplate.load(tmp_path / "t.safetensors", slab.SLAB_RECORD_PATH)


def test_a_real_subjects_slab_is_found_between_other_slices(data_dir):
    """Three dataset subjects, each written as a volume with blank slices below and another subject's slices
    in shuffled order above: the shipped template finds the 32."""
    from model.training.crossval import load_everything, slice_positions

    data, groups, splits = load_everything(data_dir)
    positions = slice_positions(splits, data.ids)
    template = slab.SlabTemplate.load()
    rng = np.random.default_rng(0)
    names = np.unique(groups)
    for subject in rng.choice(names, 3, replace=False):
        own = np.flatnonzero(groups == subject)
        own = own[np.argsort(positions[own])]
        other = np.flatnonzero(groups == rng.choice(names[names != subject]))
        shuffled = data.images[rng.permutation(other)[:9], 0].numpy()
        volume = as_volume(data.images[own, 0].numpy(), below=5, above=9,
                           filler=lambda i: np.zeros((W, H)) if i < 5 else undo_dataset_look(shuffled[i - 5]))
        read = scan_io.open_volume([("subject.nii", nifti_bytes(volume))])
        match = template.locate(read.slices)
        assert (match.start, match.aligned) == (5, True), subject


def test_the_pipeline_stages_a_volume_as_a_subject_with_one_record(synthetic_template, tiny_predictor):
    """model.serve.pipeline.stage_volume: the slab, 32 slice results and the subject's mean, in one schema."""
    from model.reports.record import Failed, SubjectResult
    from model.serve.pipeline import stage_volume

    subject = synthetic_stack(32, seed=7)
    volume = as_volume(subject, below=4, above=6, filler=lambda i: np.zeros((W, H)))
    result = stage_volume([("brain.nii", nifti_bytes(volume))], predictor=tiny_predictor,
                          template=synthetic_template[0])
    assert isinstance(result, SubjectResult)
    assert (result.slab.start, result.slab.stop, result.n_slices, len(result.slices)) == (5, 36, 42, 32)
    assert result.subject == "brain.nii" and result.kind == "NIfTI-1"
    assert [r.slice for r in result.slices] == list(range(5, 37))
    mean = np.mean([[r.probabilities[c] for c in result.probabilities] for r in result.slices], axis=0)
    assert np.allclose(list(result.probabilities.values()), mean, atol=1e-6)
    assert result.prediction == list(result.probabilities)[int(mean.argmax())]
    record = result.record()
    assert record["schema_version"] and record["slab"]["start"] == 5 and len(record["slices"]) == 32
    rows = result.rows()
    assert len(rows) == 33 and rows[0]["kind"] == "subject: NIfTI-1 (slices 5-36)"
    short = stage_volume([("short.nii", nifti_bytes(volume[:, :, :20]))], predictor=tiny_predictor,
                         template=synthetic_template[0])
    assert isinstance(short, Failed) and "has 20 axial slices" in short.error.message


def test_the_cli_stages_a_volume_as_a_subject(tmp_path, monkeypatch, tiny_assets):
    """`python -m model.predict --volume-as-subject`: the subject's row, then its 32 slab slices, in the one CSV."""
    import csv

    from model.serve import predict

    volume = as_volume(synthetic_stack(32, seed=3), below=2, above=2, filler=lambda i: np.zeros((W, H)))
    (tmp_path / "brain.nii").write_bytes(nifti_bytes(volume))
    (tmp_path / "notes.txt").write_text("not a scan")
    argv = [str(tmp_path / "brain.nii"), str(tmp_path / "notes.txt"), "--volume-as-subject", "--no-guard",
            "--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
            "--config", str(tiny_assets / "model_config.json"), "--device", "cpu", "--quiet",
            "--out", str(tmp_path / "out.csv")]
    assert predict.main(argv) == 1  # the text file fails, with its reason; the volume is staged
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert rows[0]["kind"].startswith("subject: NIfTI-1") and rows[0]["slice"] == ""
    first = int(rows[1]["slice"])
    assert 1 <= first <= 5 and [r["slice"] for r in rows[1:33]] == [str(z) for z in range(first, first + 32)]
    assert rows[-1]["file"].endswith("notes.txt") and rows[-1]["error_code"] == "not_a_subject_volume"


def test_the_api_stages_a_volume_as_a_subject(tiny_predictor):
    from fastapi.testclient import TestClient

    from model.serve.api import create_app

    volume = as_volume(synthetic_stack(32, seed=4), below=3, above=1, filler=lambda i: np.zeros((W, H)))
    with TestClient(create_app(tiny_predictor, None)) as client:
        ok = client.post("/v1/predict/subject", files={"file": ("brain.nii", nifti_bytes(volume))})
        short = client.post("/v1/predict/subject", files={"file": ("short.nii", nifti_bytes(volume[:, :, :10]))})
        pair = client.post("/v1/predict/subject", files=[("file", f) for f in analyze_pair(volume)])
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert len(body["slices"]) == 32 and body["n_slices"] == 36 and body["schema_version"]
    assert body["slab"]["stop"] - body["slab"]["start"] == 31
    assert short.status_code == 422 and short.json()["error"]["code"] == "not_a_subject_volume"
    assert "has 10 axial slices" in short.json()["error"]["message"]
    assert pair.status_code == 200 and pair.json()["kind"] == "Analyze 7.5"


def test_the_api_stages_several_slices_as_one_subject_when_asked(tiny_predictor, test_slices):
    from fastapi.testclient import TestClient

    from model.serve.api import create_app
    from tests.conftest import png_bytes

    files = [("files", (f"s{i}.png", png_bytes(test_slices.images[i, 0].numpy()))) for i in range(3)]
    with TestClient(create_app(tiny_predictor, None)) as client:
        body = client.post("/v1/predict/subject?subject=S-9", files=files + [("files", ("x.png", b"junk"))]).json()
        none = client.post("/v1/predict/subject", files=[("files", ("x.png", b"junk"))])
    assert body["subject"] == "S-9" and body["kind"] == "slices" and body["slab"] is None
    assert [s["file"] for s in body["slices"]] == ["s0.png", "s1.png", "s2.png"]
    assert [f["file"] for f in body["skipped"]] == ["x.png"] and "1 files could not be read" in body["flags"]
    mean = np.mean([[s["probabilities"][c] for c in body["probabilities"]] for s in body["slices"]], axis=0)
    assert np.allclose(list(body["probabilities"].values()), mean, atol=1e-5)
    assert none.status_code == 422


def test_the_cli_stages_subjects_by_folder(tmp_path, tiny_assets, test_slices):
    import csv

    from model.serve import predict
    from tests.conftest import png_bytes

    for subject, rows in (("S1", (0, 1)), ("S2", (2, 3, 4))):
        (tmp_path / "cohort" / subject).mkdir(parents=True)
        for i in rows:
            (tmp_path / "cohort" / subject / f"slice_{i}.png").write_bytes(png_bytes(test_slices.images[i, 0].numpy()))
    argv = [str(tmp_path / "cohort"), "--subject-by", "folder", "--no-guard", "--quiet", "--device", "cpu",
            "--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
            "--config", str(tiny_assets / "model_config.json"), "--out", str(tmp_path / "subjects.csv")]
    assert predict.main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "subjects.csv").open()))
    heads = [r for r in rows if r["kind"].startswith("subject")]
    assert [h["file"].rsplit("/", 1)[-1] for h in heads] == ["S1", "S2"] and [h["n_slices"] for h in heads] == ["2", "3"]
    assert len(rows) == 2 + 5
    s2 = [r for r in rows[rows.index(heads[1]) + 1:]]
    mean = np.mean([float(r["p_Non_Demented"]) for r in s2])
    assert float(heads[1]["p_Non_Demented"]) == pytest.approx(mean, abs=1e-5)
