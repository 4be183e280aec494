"""The prediction API (model.serve.api): every endpoint, every refusal, the limits, concurrency, and a real uvicorn.

Most tests drive the app in-process with FastAPI's TestClient and the tiny untrained predictor; the limits that
must hold before a body is read are checked by calling the ASGI app directly, counting what it reads.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from model.serve.api import API_KEY_ENV_VAR, Limits, create_app, new_subject_sentence
from model.core.constants import CLASS_NAMES, CONFIG_FILES_PRESENT, CROSSVAL_PATH, DISPLAY_NAMES
from model.core.recipe import floors_of
from model.scans.scan_io import open_upload
from model.qualify.trust import TrustBank, TrustBankError, assess
from tests.conftest import png_bytes
from tests.model.hostile import analyze_pair, nifti_bytes

NO_FLAGS = {"residual": 1e9, "histogram": 1e9, "near_copy": 0.0, "spread_low": 0.01, "spread_high": 0.05}


@pytest.fixture(scope="module")
def bank(test_slices):
    """A guard fitted on the eight synthetic slices, with thresholds that flag only flat or colour images."""
    images = test_slices.images[:, 0].numpy()
    return TrustBank.fit(images, test_slices.labels.numpy(), [f"s{i}" for i in range(8)], list(test_slices.ids),
                         n_components=4, thresholds=NO_FLAGS)


@pytest.fixture(scope="module")
def client(tiny_predictor, bank):
    with TestClient(create_app(tiny_predictor, bank, api_key="")) as c:
        yield c


@pytest.fixture(scope="module")
def scans(test_slices) -> list[bytes]:
    """Twenty different PNG slices: the eight synthetic heads, mirrored, shifted and darkened."""
    images = list(test_slices.images[:, 0].numpy())
    images += [im[:, ::-1].copy() for im in images[:8]]
    images += [np.roll(im, 3, axis=0) for im in images[:2]] + [(im * 0.8).astype(np.uint8) for im in images[2:4]]
    return [png_bytes(im) for im in images]


def expected(predictor, data: bytes, name: str = "scan.png", slice_index: int | None = None):
    """What the Predictor itself says for this file, read as the app reads it."""
    return predictor.predict_one(open_upload([(name, data)], slice_index=slice_index).image)


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert "Traceback" not in response.text
    return body["error"]


def call_asgi(app, path: str, headers: dict[str, str], chunks: list[bytes],
              pause: float = 0.0) -> tuple[int, dict, int]:
    """POST to the ASGI app with the body in chunks, `pause` seconds apart; returns (status, JSON body, chunks the
    app read)."""
    read = 0

    async def run():
        messages, remaining = [], iter(chunks)

        async def receive():
            nonlocal read
            chunk = next(remaining, None)
            await asyncio.sleep(pause)
            if chunk is None:
                return {"type": "http.request", "body": b"", "more_body": False}
            read += 1
            return {"type": "http.request", "body": chunk, "more_body": True}

        async def send(message):
            messages.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                 "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
        await app(scope, receive, send)
        return messages

    messages = asyncio.run(run())
    status = messages[0]["status"]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return status, json.loads(body), read


def multipart(files: list[tuple[str, bytes]], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, data in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


# ---------------------------------------------------------------------------------------------- happy paths


def test_predict_a_png_gives_the_predictors_answer_with_its_checks(client, tiny_predictor, bank, scans):
    r = client.post("/v1/predict", files={"file": ("head.png", scans[3], "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    mine = expected(tiny_predictor, scans[3])
    assert body["prediction"] == mine.class_name and body["display_name"] == mine.display_name
    assert body["label"] == mine.label and body["confidence"] == round(mine.confidence, 6)  # the schema's rounding
    assert [body["probabilities"][n] for n in CLASS_NAMES] == [round(p, 6) for p in mine.probabilities]
    assert body["schema_version"] == "1"
    app_view = assess(tiny_predictor, open_upload([("head.png", scans[3])]).image, bank, [0.0])[0].as_dict()
    assert body["uncertainty"] == app_view["uncertainty"] and body["guard"] == app_view["guard"]
    assert body["flags"] == [] and body["reliable"] is True
    assert body["uncertainty"]["level"] in ("low", "typical", "high")
    assert len(body["guard"]["nearest_training_slices"]) == 3
    assert (body["file"], body["files"], body["kind"], body["slice"], body["n_slices"]) == \
           ("head.png", ["head.png"], "PNG image", 1, 1)
    assert body["steps"] and body["header"]["Format"] == "PNG"
    assert body["model_sha256"] == tiny_predictor.sha256
    assert body["calibration_temperature"] == round(tiny_predictor.temperature, 4)


def test_a_flat_image_is_flagged_unreliable_with_the_reason(client):
    r = client.post("/v1/predict", files={"file": ("grey.png", png_bytes(np.full((96, 96), 120, np.uint8)))})
    body = r.json()
    assert r.status_code == 200 and body["flags"] == ["out of distribution"] and body["reliable"] is False
    assert any("flat" in reason for reason in body["guard"]["reasons"])


def test_predict_a_dicom_file(client, tiny_predictor):
    from pydicom.data import get_testdata_file

    data = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    body = client.post("/v1/predict", files={"file": ("MR_small.dcm", data)}).json()
    assert body["kind"] == "DICOM" and body["header"]["Modality"] == "MR"
    assert body["probabilities"] == {n: round(p, 6) for n, p in zip(CLASS_NAMES, expected(tiny_predictor, data, "MR_small.dcm").probabilities)}


def test_predict_a_nifti_volume_at_a_chosen_slice(client, tiny_predictor, test_slices):
    volume = np.stack([np.roll(test_slices.images[i % 8, 0].numpy(), i, axis=1) for i in range(10)], axis=-1)
    data = nifti_bytes(volume)
    body = client.post("/v1/predict?slice=3", files={"file": ("brain.nii", data)}).json()
    assert (body["kind"], body["slice"], body["n_slices"]) == ("NIfTI-1", 3, 10)
    mine = expected(tiny_predictor, data, "brain.nii", slice_index=2)
    assert body["probabilities"] == {n: round(p, 6) for n, p in zip(CLASS_NAMES, mine.probabilities)}
    assert client.post("/v1/predict", files={"file": ("brain.nii", data)}).json()["slice"] == 6  # the middle one
    r = client.post("/v1/predict?slice=11", files={"file": ("brain.nii", data)})
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_slice"
    assert "numbered from 1 to 10" in error_of(r)["message"]


def test_predict_an_analyze_pair_sent_as_two_files(client, test_slices):
    header, image = analyze_pair(np.stack([test_slices.images[i, 0].numpy() for i in range(4)], axis=-1))
    r = client.post("/v1/predict", files=[("file", ("brain.img", image)), ("file", ("brain.hdr", header))])
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "Analyze 7.5" and r.json()["files"] == ["brain.hdr", "brain.img"]


def test_explain_gives_the_overlay_and_the_map(client, tiny_predictor, scans):
    from model.qualify.explain import explain

    r = client.post("/v1/explain?colormap=viridis&alpha=0.3", files={"file": ("head.png", scans[0])})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(r.content)))
    assert picture.shape == (128, 128, 3)
    predicted = expected(tiny_predictor, scans[0]).class_name
    assert r.headers["x-target"] == predicted and r.headers["x-layer"] == "layer2"  # the default at 64 px
    from model.qualify.faithfulness import default_method, read_table
    assert r.headers["x-method"] == default_method(read_table())[0]  # the page's default: the table's pick

    r = client.post("/v1/explain?format=json&target=Non_Demented&layer=layer3&method=gradcam",
                    files={"file": ("h.png", scans[0])})
    body = r.json()
    assert (body["target"], body["target_display_name"], body["layer"], body["shape"]) == \
           ("Non_Demented", DISPLAY_NAMES[2], "layer3", [128, 128])
    mine = explain(tiny_predictor, open_upload([("h.png", scans[0])]).image, target=2, layer="layer3").heatmap
    assert np.allclose(body["map"], mine, atol=6e-4) and 0 <= np.min(body["map"]) <= np.max(body["map"]) <= 1
    by_index = client.post("/v1/explain?format=json&target=2&layer=layer3&method=gradcam",
                           files={"file": ("h.png", scans[0])})
    assert by_index.json()["map"] == body["map"]


def test_batch_keeps_every_file_in_order_with_results_or_errors(client, tiny_predictor, scans, test_slices):
    from pydicom.data import get_testdata_file

    header, image = analyze_pair(np.stack([test_slices.images[i, 0].numpy() for i in range(4)], axis=-1))
    files = [("a.png", scans[0]), ("notes.txt", b"not a scan"), ("vol.hdr", header), ("broken.png", b"\x89PNG junk"),
             ("MR_small.dcm", Path(get_testdata_file("MR_small.dcm")).read_bytes()), ("empty.png", b""),
             ("vol.img", image), ("b.png", scans[5])]
    r = client.post("/v1/predict/batch", files=[("files", f) for f in files])
    assert r.status_code == 200, r.text
    entries = r.json()
    assert [e["file"] for e in entries] == ["a.png", "notes.txt", "vol.hdr", "broken.png", "MR_small.dcm",
                                            "empty.png", "b.png"]
    assert sorted(name for e in entries for name in e["files"]) == sorted(name for name, _ in files)
    errors = {e["file"]: e["error"]["code"] for e in entries if "error" in e}
    assert errors == {"notes.txt": "unsupported_type", "broken.png": "unreadable_scan", "empty.png": "unreadable_scan"}
    assert entries[2]["kind"] == "Analyze 7.5" and entries[4]["kind"] == "DICOM"
    for entry, data in ((entries[0], scans[0]), (entries[6], scans[5])):  # batched, so equal to float precision
        mine = expected(tiny_predictor, data)
        assert entry["label"] == mine.label
        assert np.allclose([entry["probabilities"][n] for n in CLASS_NAMES], mine.probabilities, atol=1e-5)


def test_model_info_and_health(client, tiny_predictor):
    info = client.get("/v1/model").json()
    assert info["classes"] == list(CLASS_NAMES) and info["display_names"] == list(DISPLAY_NAMES)
    assert (info["model_sha256"], info["temperature"], info["image_size"]) == \
           (tiny_predictor.sha256, tiny_predictor.temperature, 64)
    assert "not for the diagnosis" in info["intended_use"]["not_for"]
    assert "other brain diseases" in info["intended_use"]["out_of_scope"]
    assert info["guard"]["loaded"] is True
    figures = info["figures"]
    if "published_test_split" in figures:  # the shipped figures, which do not describe the tiny model
        assert figures["published_test_split"]["describes_this_model"] is False
        assert "seen brain" in figures["published_test_split"]["caveat"]
    if "new_subjects" in figures:
        assert 0.5 < figures["new_subjects"]["any_dementia_auc"] < 1
        assert len(figures["new_subjects"]["balanced_accuracy_ci95"]) == 2
        floors = figures["new_subjects"]["floors"]  # the floors beside, best first, with the paired difference
        assert [f["method"] for f in floors] == [f["key"] for f in floors_of(json.loads(CROSSVAL_PATH.read_text()))]
        assert all(0.5 < f["any_dementia_auc"] < 1 and "auc_difference" in f for f in floors)
    assert client.get("/healthz").json() == {"status": "ok", "model_loaded": True, "device": "CPU", "guard": True}
    docs = client.get("/openapi.json").json()
    assert new_subject_sentence() in docs["info"]["description"]  # the figure from the shipped file, not typed
    assert {"/v1/predict", "/v1/explain", "/v1/predict/batch", "/v1/model", "/healthz"} <= set(docs["paths"])
    assert "multipart/form-data" in docs["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_without_the_trust_bank_it_still_predicts_and_says_no_guard(tiny_predictor, scans, monkeypatch):
    def missing(*args, **kwargs):
        raise TrustBankError("trust_bank.safetensors is missing")

    monkeypatch.setattr(TrustBank, "load", missing)
    with TestClient(create_app(tiny_predictor, api_key="")) as c:
        body = c.post("/v1/predict", files={"file": ("a.png", scans[0])}).json()
        assert body["flags"] == ["no guard"] and body["guard"] is None and body["reliable"] is True
        assert body["uncertainty"]["level"] is None
        assert c.get("/healthz").json()["guard"] is False
        assert c.get("/v1/model").json()["guard"] == {"loaded": False}


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("files, status, code", [
    ([("empty.png", b"")], 400, "unreadable_scan"),
    ([("noise.png", os.urandom(2000))], 400, "unreadable_scan"),
    ([("scan.dcm", b"\0" * 128 + b"DICM" + b"garbage" * 20)], 400, "unreadable_scan"),
    ([("notes.txt", b"hello")], 415, "unsupported_type"),
    ([("archive.zip", b"PK\x03\x04")], 415, "unsupported_type"),
])
def test_bad_files_get_a_clear_json_error(client, files, status, code):
    r = client.post("/v1/predict", files=[("file", f) for f in files])
    assert r.status_code == status and error_of(r)["code"] == code
    assert files[0][0] in error_of(r)["message"]  # says which file


def test_requests_that_are_not_one_scan(client, scans):
    form = {"content-type": "multipart/form-data; boundary=b0undary"}
    r = client.post("/v1/predict", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 415 and error_of(r)["code"] == "unsupported_media_type"
    field_only = b'--b0undary\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--b0undary--\r\n'
    for body in (field_only, multipart([]), b""):
        r = client.post("/v1/predict", content=body, headers=form)
        assert r.status_code == 400 and error_of(r)["code"] == "no_file"
    r = client.post("/v1/predict", content=b"garbage", headers=form)
    assert r.status_code == 400 and error_of(r)["code"] == "bad_multipart"
    r = client.post("/v1/predict", content=multipart([("a.png", scans[0])])[:-40], headers=form)  # cut off
    assert r.status_code == 400 and error_of(r)["code"] == "bad_multipart" and "cut off" in error_of(r)["message"]
    r = client.post("/v1/predict", files=[("file", ("a.png", scans[0])), ("file", ("b.png", scans[1]))])
    assert r.status_code == 400 and error_of(r)["code"] == "not_one_scan" and "batch" in error_of(r)["message"]


@pytest.mark.parametrize("query, field", [
    ("target=Alzheimer", "invalid_target"), ("target=7", "invalid_target"), ("layer=fc", "layer"),
    ("format=gif", "format"), ("colormap=rainbow", "colormap"), ("alpha=1.5", "alpha"), ("slice=0", "slice"),
    ("slice=two", "slice"),
])
def test_bad_query_values_are_422_in_the_same_shape(client, scans, query, field):
    r = client.post(f"/v1/explain?{query}", files={"file": ("a.png", scans[0])})
    assert r.status_code == 422
    error = error_of(r)
    assert error["code"] == field or (error["code"] == "invalid_parameter" and error["message"].startswith(field))


def test_unknown_paths_and_methods(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = client.get("/v1/predict")
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed" and r.headers["allow"] == "POST"
    assert client.delete("/healthz").status_code == 405


def test_a_declared_size_over_the_cap_is_refused_before_reading(tiny_predictor, bank):
    app = create_app(tiny_predictor, bank, api_key="")
    huge = str(Limits().request_bytes + 1)
    status, body, read = call_asgi(app, "/v1/predict", {"content-type": "multipart/form-data; boundary=b0undary",
                                                       "content-length": huge}, [b"x" * 1000] * 5)
    assert (status, body["error"]["code"], read) == (413, "too_large", 0)


def test_an_undeclared_body_is_counted_and_cut_off(tiny_predictor, bank, scans):
    app = create_app(tiny_predictor, bank, api_key="", limits=Limits(request_bytes=20_000))
    body = multipart([("big.png", os.urandom(100_000))])
    chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)]
    status, answer, read = call_asgi(app, "/v1/predict", {"content-type": "multipart/form-data; boundary=b0undary"},
                                     chunks)
    assert (status, answer["error"]["code"]) == (413, "too_large") and read <= 21  # stopped at the cap
    app = create_app(tiny_predictor, bank, api_key="", limits=Limits(file_bytes=5_000))
    status, answer, read = call_asgi(app, "/v1/predict", {"content-type": "multipart/form-data; boundary=b0undary"},
                                     chunks)
    assert status == 413 and answer["error"]["message"].startswith("big.png: over") and read <= 7


def test_a_slow_upload_times_out(tiny_predictor, bank):
    app = create_app(tiny_predictor, bank, api_key="", limits=Limits(upload_seconds=0.3))
    body = multipart([("slow.png", b"x" * 1000)])
    status, answer, read = call_asgi(app, "/v1/predict", {"content-type": "multipart/form-data; boundary=b0undary"},
                                     [body[:100], body[100:500], body[500:]], pause=0.2)
    assert (status, answer["error"]["code"]) == (408, "upload_timeout") and read < 3


def test_too_many_files_in_a_batch(tiny_predictor, bank, scans):
    with TestClient(create_app(tiny_predictor, bank, api_key="", limits=Limits(max_files=3))) as c:
        r = c.post("/v1/predict/batch", files=[("files", (f"{i}.png", scans[i])) for i in range(4)])
        assert r.status_code == 413 and error_of(r)["code"] == "too_many_files"
        three = [("files", (f"{i}.png", scans[i])) for i in range(3)]
        assert c.post("/v1/predict/batch", files=three).status_code == 200


def test_the_api_key(tiny_predictor, bank, scans, monkeypatch):
    with TestClient(create_app(tiny_predictor, bank, api_key="s3cret")) as c:
        upload = {"file": ("a.png", scans[0])}
        r = c.post("/v1/predict", files=upload)
        assert r.status_code == 401 and error_of(r)["code"] == "missing_api_key"
        r = c.post("/v1/predict", files=upload, headers={"X-API-Key": "s3cret!"})
        assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"
        assert c.get("/v1/model", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/predict", files=upload, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/v1/model", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200  # open, for load balancers
    monkeypatch.setenv(API_KEY_ENV_VAR, "from-env")
    with TestClient(create_app(tiny_predictor, bank)) as c:
        assert c.get("/v1/model").status_code == 401
        assert c.get("/v1/model", headers={"X-API-Key": "from-env"}).status_code == 200


def test_a_crash_is_a_generic_500_and_the_log_holds_only_its_type(tiny_predictor, bank, scans, caplog):
    class Broken:
        sha256, temperature, image_size = "0" * 64, 1.0, 64

        def device_name(self):
            return "CPU"

        def probabilities(self, images, batch_size=128):
            raise RuntimeError("secret patient detail")

    with TestClient(create_app(Broken(), bank, api_key="")) as c:
        r = c.post("/v1/predict", files={"file": ("private_name.png", scans[0])})
    assert r.status_code == 500 and error_of(r)["code"] == "internal_error"
    assert "secret" not in r.text and "private_name" not in r.text
    assert "RuntimeError" in caplog.text and "secret" not in caplog.text and "private_name" not in caplog.text


def test_no_upload_touches_the_disk(client, tiny_predictor, test_slices, monkeypatch, tmp_path):
    import starlette.formparsers

    def refuse(*args, **kwargs):
        raise AssertionError("an upload was about to be written to a temporary file")

    for module, name in ((tempfile, "SpooledTemporaryFile"), (tempfile, "TemporaryFile"),
                         (tempfile, "NamedTemporaryFile"), (tempfile, "mkstemp"),
                         (starlette.formparsers, "SpooledTemporaryFile")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    volume = np.stack([test_slices.images[i % 8, 0].numpy() for i in range(120)], axis=-1)  # 1.9 MB
    data = nifti_bytes(volume)
    assert len(data) > 1 << 20  # over Starlette's 1 MB spool size
    r = client.post("/v1/predict", files={"file": ("brain.nii", data)})
    assert r.status_code == 200, r.text
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- concurrency


def test_twenty_concurrent_clients_each_get_their_own_answer(tiny_predictor, bank, scans):
    truth = [expected(tiny_predictor, data) for data in scans]
    with TestClient(create_app(tiny_predictor, bank, api_key="", max_in_flight=len(scans))) as c:
        def post(i):
            return c.post("/v1/predict", files={"file": (f"scan_{i}.png", scans[i])}).json()

        with ThreadPoolExecutor(len(scans)) as pool:
            answers = list(pool.map(post, range(len(scans))))
    assert len({tuple(t.probabilities) for t in truth}) == len(scans)  # twenty different answers
    for i, (answer, mine) in enumerate(zip(answers, truth)):
        assert answer["file"] == f"scan_{i}.png" and answer["label"] == mine.label
        assert [answer["probabilities"][n] for n in CLASS_NAMES] == [round(p, 6) for p in mine.probabilities]


def test_past_the_in_flight_limit_a_request_is_refused_at_once(bank, scans):
    release, entered = threading.Event(), threading.Semaphore(0)

    class Blocking:
        sha256, temperature, image_size = "0" * 64, 1.0, 64

        def device_name(self):
            return "CPU"

        def probabilities(self, images, batch_size=128):
            entered.release()
            assert release.wait(30)
            return torch.full((len(images), 4), 0.25)

    with TestClient(create_app(Blocking(), bank, api_key="", max_in_flight=2)) as c:
        def post():
            return c.post("/v1/predict", files={"file": ("a.png", scans[0])})

        with ThreadPoolExecutor(2) as pool:
            busy = [pool.submit(post) for _ in range(2)]
            for _ in range(2):
                assert entered.acquire(timeout=30)  # both are inside the model
            t0 = time.perf_counter()
            r = post()
            assert r.status_code == 503 and error_of(r)["code"] == "busy" and r.headers["retry-after"] == "1"
            assert time.perf_counter() - t0 < 5  # refused, not queued
            assert c.get("/healthz").status_code == 200  # the event loop still answers
            release.set()
            assert [f.result().status_code for f in busy] == [200, 200]
        assert post().status_code == 200  # the places are free again


# ---------------------------------------------------------------------------------------------- a real server


@pytest.mark.slow
@pytest.mark.skipif(not CONFIG_FILES_PRESENT(), reason="no shipped model in assets/")
def test_a_real_uvicorn_server_with_the_shipped_model(test_slices, tmp_path):
    """`uvicorn model.serve.api:app` as `make api` starts it: health, one PNG, and the load test's API clients."""
    import httpx

    from benchmarks.load_test import api_clients, api_server, expected_answers
    from model.core.inference import Predictor

    log = tmp_path / "server.log"
    with api_server({API_KEY_ENV_VAR: ""}, log_path=log) as (url, _, _):
        assert httpx.get(url + "/healthz").json()["guard"] is True
        data = png_bytes(test_slices.images[5, 0].numpy())
        r = httpx.post(url + "/v1/predict", files={"file": ("private_name.png", data)}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        predictor = Predictor.from_assets(device="cpu")
        mine = expected(predictor, data)
        assert body["model_sha256"] == predictor.sha256 and body["label"] == mine.label
        assert np.allclose([body["probabilities"][n] for n in CLASS_NAMES], mine.probabilities, atol=1e-6)
        assert body["kind"] == "PNG image" and body["guard"] is not None

        scans = [png_bytes(test_slices.images[i, 0].numpy()) for i in range(3)]
        result = api_clients(url, scans, expected_answers(predictor, scans), clients=3, requests_per_client=1)
        assert result["errors"] == 0 and result["wrong"] == 0 and result["requests"] == 3
    assert "private_name" not in log.read_text()  # uploads are never logged


def test_explain_takes_any_method_of_model_explain(client, scans):
    from model.qualify.explain import METHODS

    png_scan = scans[0]
    for method in ("guided_gradcam", "occlusion"):
        response = client.post(f"/v1/explain?format=json&method={method}", files={"file": ("s.png", png_scan, "image/png")})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["method"] == method and body["settings"]["method"] == method
    bad = client.post("/v1/explain?method=lime", files={"file": ("s.png", png_scan, "image/png")})
    assert bad.status_code == 422 and bad.json()["error"]["code"]
    assert client.get("/v1/model").json()["explain"]["methods"] == list(METHODS)


def test_docs_and_redoc_are_served_offline(tiny_predictor):
    """No external host in /docs or /redoc: every script, style and icon comes from this server."""
    import re

    from fastapi.testclient import TestClient

    from model.serve.api import create_app

    with TestClient(create_app(tiny_predictor, None, api_key="secret")) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200 and "text/html" in html.headers["content-type"]
            links = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', html.text) + re.findall(r"url:\s*'([^']+)'",
                                                                                        html.text)
            assert links, page
            assert not [u for u in links if re.match(r"(https?:)?//", u)], (page, links)
            for url in links:
                assert client.get(url).status_code == 200, (page, url)  # the key guards /v1 only
        assert "openapi" in client.get("/openapi.json").json()
