"""Batch prediction that streams and scales out (model.serve.predict): the grouping pass agrees with
`scan_io.group_uploads`, at most --batch-size decoded slices are held whatever the input's size, archives and
parquet files are read a member or a batch of rows at a time, and a torchrun run with two CPU processes writes
the same table as one process."""
import csv
import io
import json
import os
import socket
import subprocess
import sys
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pytest

import model.serve.batch
import model.serve.pipeline
from model.serve.batch import iter_zip
from model.core.prediction import Prediction
from model.serve.inputs import Plan
from model.serve.predict import FORMATS, format_rows, main
from model.scans.scan_io import ScanError, group_uploads
from model.qualify.trust import Assessment
from tests.conftest import ROOT, png_bytes
from tests.model.hostile import analyze_pair, brain_volume, bundled, dicom_bytes


def hf_parquet(path: Path, blobs: list[bytes | None], origins: list[str | None], row_group_size: int = 64) -> Path:
    """A parquet file in the Hugging Face schema (image: struct<bytes, path>, label: int64)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.StructArray.from_arrays([pa.array(blobs, pa.binary()), pa.array(origins, pa.string())],
                                       names=["bytes", "path"])
    pq.write_table(pa.table({"image": image, "label": pa.array([i % 4 for i in range(len(blobs))], pa.int64())}),
                   path, row_group_size=row_group_size)
    return path


def model_args(tiny_assets: Path) -> list[str]:
    return ["--weights", str(tiny_assets / "resnet34_alzheimer.safetensors"),
            "--config", str(tiny_assets / "model_config.json"), "--device", "cpu"]


def mixed_folder(folder: Path, test_slices) -> Path:
    """Three slices, a broken file, an Analyze pair, a second header of its stem, a DICOM series of three out of
    order and a lone DICOM file."""
    (folder / "series").mkdir(parents=True)
    for i in range(3):
        (folder / f"s{i}.png").write_bytes(png_bytes(test_slices.images[i, 0].numpy()))
    (folder / "broken.png").write_bytes(b"not really a png")
    hdr, img = analyze_pair(brain_volume())
    (folder / "e.hdr").write_bytes(hdr)
    (folder / "e.img").write_bytes(img)
    (folder / "series" / "e.hdr").write_bytes(hdr)  # a second header of stem 'e': the first pairs, this one is alone
    square = np.zeros((64, 64), np.uint16)
    square[16:48, 16:48] = 500
    for name, k in (("IM0", 2), ("IM1", 0), ("IM2", 1)):  # along the slice normal: IM1, IM2, IM0
        (folder / "series" / name).write_bytes(dicom_bytes(
            square + 100 * k, SeriesInstanceUID="1.2.3",
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0], ImagePositionPatient=[0, 0, float(k)]))
    (folder / "x.dcm").write_bytes(bundled("MR_small.dcm"))
    return folder


# ---------------------------------------------------------------- grouping without reading
def test_grouping_pass_agrees_with_group_uploads(test_slices, tmp_path):
    folder = mixed_folder(tmp_path / "mixed", test_slices)
    plan = Plan.of([folder], say=lambda message: None)
    planned = [" + ".join(plan.inputs[i].name for i in group) for group in plan.groups]
    files = [(str(p), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]
    expected = [" + ".join(name for name, _ in item) for item in group_uploads(files)]
    # the plan groups once, keeping folder order inside a scan; reading puts a series along its normal itself
    assert [sorted(g.split(" + ")) for g in planned] == [sorted(g.split(" + ")) for g in expected]
    read = [r.opened for r in plan.scans()]
    assert [" + ".join(o.files) for o in read] == planned
    series = next(o for o in read if o.scan is not None and o.scan.kind == "DICOM series")
    assert series.scan.name == "IM1" and series.files[0] == f"{folder}/series/IM0"  # IM1 is first along the normal


def test_parquet_and_zip_failures_are_rows_and_nothing_is_read_to_plan(test_slices, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"label": [1, 2]}), tmp_path / "no_images.parquet")
    (tmp_path / "not.parquet").write_bytes(b"PAR1 nope")
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as zf:
        for name in "abc":
            zf.writestr(f"{name}.png", b"x")
    (tmp_path / "scan.png").write_bytes(png_bytes(test_slices.images[0, 0].numpy()))
    monkeypatch.setattr(model.serve.batch, "MAX_ARCHIVE_FILES", 2)
    reads, real_read = [], model.serve.batch._read_path
    monkeypatch.setattr(model.serve.batch, "_read_path", lambda path: reads.append(path) or real_read(path))
    plan = Plan.of([tmp_path / "many.zip", tmp_path / "no_images.parquet", tmp_path / "not.parquet",
                    tmp_path / "scan.png"])
    assert reads == [] and plan.files() == 4  # planning opened scan.png for its first bytes, never read it
    opened = [r.opened for r in plan.scans()]
    assert reads == [str(tmp_path / "scan.png")] and opened[3].error is None
    assert "3 files is over the limit of 2" in opened[0].error.message
    assert "no 'image' column with 'bytes'" in opened[1].error.message
    assert "not a readable parquet file" in opened[2].error.message


def test_iter_zip_reads_one_member_at_a_time_within_the_archive_cap(monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("a.png", "b.png", "c.png"):
            zf.writestr(name, b"\0" * 400)
    monkeypatch.setattr(model.serve.batch, "MAX_ARCHIVE_BYTES", 1000)  # declared 1,200 bytes would be refused ...
    with pytest.raises(ScanError, match="unpacks to"):
        next(iter_zip(buf.getvalue(), "all.zip"))
    monkeypatch.setattr(model.serve.batch, "MAX_ARCHIVE_BYTES", 1200)  # ... and reading counts towards one total
    members = list(iter_zip(buf.getvalue(), "all.zip"))
    assert [m.name for m in members] == ["all.zip/a.png", "all.zip/b.png", "all.zip/c.png"]
    assert members[2].read() == b"\0" * 400 and members[0].open().read(3) == b"\0\0\0"
    members = list(iter_zip(buf.getvalue(), "all.zip"))
    monkeypatch.setattr(model.serve.batch, "MAX_ARCHIVE_BYTES", 1000)  # as for an archive that lies: reads stop at the cap
    members[0].read(), members[1].read()
    with pytest.raises(ScanError, match="more than its archive declares or than the limits allow"):
        members[2].read()


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips(fmt):
    rows = [{"file": "a.png", "prediction": "Non_Demented", "p_Non_Demented": 0.5}, {"file": "b", "error": "x, y"}]
    text = format_rows(rows, fmt)
    if fmt == "csv":
        back = [{k: v for k, v in r.items() if v} for r in csv.DictReader(io.StringIO(text))]
        assert back == [{k: str(v) for k, v in r.items()} for r in rows]
    else:
        assert (json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]) == rows
    assert format_rows([], "json") == "[]\n"


# ---------------------------------------------------------------- the streaming bound
def fake_assess(calls: list, live: list):
    """A stand-in for model.qualify.trust.assess that records the batch it got and the decoded slices alive then."""
    def assess(predictor, images, bank=None, colour=None, k=3):
        calls.append((len(images), live[0]))
        return [Assessment(Prediction((0.1, 0.2, 0.6, 0.1), 2), 0.0, 1.0, None) for _ in images]
    return assess


@pytest.mark.parametrize("source", ["folder", "zip", "parquet"])
def test_decoded_slices_held_never_exceed_the_batch_size(source, tiny_assets, test_slices, tmp_path, monkeypatch):
    n, batch = 300, 16
    blobs = [png_bytes(test_slices.images[i % 8, 0].numpy()) for i in range(n)]
    blobs[7] = b"broken"
    if source == "folder":
        (tmp_path / "in").mkdir()
        for i, data in enumerate(blobs):
            (tmp_path / "in" / f"{i:03d}.png").write_bytes(data)
        target = tmp_path / "in"
    elif source == "zip":
        target = tmp_path / "in.zip"
        with zipfile.ZipFile(target, "w") as zf:
            for i, data in enumerate(blobs):
                zf.writestr(f"{i:03d}.png", data)
    else:
        target = hf_parquet(tmp_path / "in.parquet", blobs, [f"{i:03d}.png" for i in range(n)], row_group_size=50)

    live, peak, decoded, calls = [0], [0], [0], []
    real_open = model.serve.pipeline.open_upload

    def counting_open(item, **kw):  # every decoded slice counted from its decoding until it is freed
        scan = real_open(item, **kw)
        live[0] += 1
        decoded[0] += 1
        peak[0] = max(peak[0], live[0])
        weakref.finalize(scan.image, lambda: live.__setitem__(0, live[0] - 1))
        return scan

    monkeypatch.setattr(model.serve.pipeline, "open_upload", counting_open)
    monkeypatch.setattr(model.serve.pipeline, "assess", fake_assess(calls, live))
    out = tmp_path / "rows.jsonl"
    code = main([str(target), "--out", str(out), "--batch-size", str(batch), "--no-guard", "--quiet",
                 *model_args(tiny_assets)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 1 and len(rows) == n and decoded[0] == n - 1
    assert [r["file"].split("/")[-1].split(" (")[0] for r in rows] == \
        [f"{i:03d}.png" if source != "parquet" else f"in.parquet row {i}" for i in range(n)]
    assert "error" in rows[7] and all("prediction" in r for i, r in enumerate(rows) if i != 7)
    assert peak[0] <= batch, f"{peak[0]} decoded slices held at once"
    assert all(size <= batch and alive <= batch for size, alive in calls)
    assert calls[0] == (batch - 1, batch - 1)  # only the first batch had been read when it was classified


# ---------------------------------------------------------------- torchrun
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_with_two_cpu_processes_writes_the_single_process_table(tiny_assets, test_slices, tmp_path):
    folder = mixed_folder(tmp_path / "mixed", test_slices)
    (folder / "more").mkdir()
    for i in range(3, 8):
        (folder / "more" / f"s{i}.png").write_bytes(png_bytes(test_slices.images[i, 0].numpy()))
    one, two = tmp_path / "one.csv", tmp_path / "out" / "two.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                            "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                            "-m", "model.predict", str(folder), "--out", str(two), "--no-guard",
                            *model_args(tiny_assets)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:  # the single-process table, while the two processes start
        assert main([str(folder), "--out", str(one), "--no-guard", "--quiet", *model_args(tiny_assets)]) == 1
        _, stderr = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 1 and "13 scans from 16 files" in stderr and "over 2 processes" in stderr, stderr[-3000:]
    single, sharded = (list(csv.DictReader(path.open())) for path in (one, two))
    assert [r["file"] for r in sharded] == [r["file"] for r in single] and len(single) == 13
    for a, b in zip(single, sharded):
        assert {k: v for k, v in a.items() if not k.startswith("p_") and k not in ("confidence", "spread")} == \
               {k: v for k, v in b.items() if not k.startswith("p_") and k not in ("confidence", "spread")}
        for key in (k for k in a if k.startswith("p_") or k in ("confidence", "spread")):
            assert (a[key] == b[key] == "") or abs(float(a[key]) - float(b[key])) <= 1e-5, (a["file"], key)
    assert sorted(p.name for p in two.parent.iterdir()) == ["two.csv"]  # the parts are gone


def test_every_process_exits_1_when_a_file_of_another_shard_failed(tiny_assets, test_slices, tmp_path):
    """torchrun stops the other processes once one exits non-zero, so each one's own exit code is seen here by
    starting the two processes the way torchrun does (its environment variables) and waiting for both."""
    (tmp_path / "a.png").write_bytes(png_bytes(test_slices.images[0, 0].numpy()))  # scan 0: rank 0
    (tmp_path / "b.png").write_bytes(b"broken")  # scan 1: rank 1
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-m", "model.predict", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                               "--no-guard", "--quiet", *model_args(tiny_assets)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "RANK": str(r),
                                   "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                   "MASTER_PORT": port}) for r in (0, 1)]
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [1, 1], [err[-2000:] for _, err in outputs]
    rows = list(csv.DictReader(io.StringIO(outputs[0][0])))  # rank 0 prints the merged table
    assert [r["file"].split("/")[-1] for r in rows] == ["a.png", "b.png"] and rows[1]["error"] and not outputs[1][0]
    assert "skipped" in outputs[1][1] and "skipped" not in outputs[0][1]  # each process says its own failures
