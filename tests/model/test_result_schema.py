"""One path, one shape: every entry point gives the same record for the same file (model.serve.pipeline and
model.reports.record), and the record, the CSV row and the API's response model agree on the fields."""
import csv
import json

import pytest
from fastapi.testclient import TestClient

from model.core.constants import CLASS_NAMES
from model.core.inference import Predictor
from model.qualify.trust import TRUST_BANK_PATH, TrustBank
from model.reports.record import ROW_COLUMNS, SCHEMA_VERSION, Failed, Result
from model.serve.api import create_app
from model.serve.pipeline import classify
from model.serve.predict import main, predict_files
from tests.conftest import png_bytes


@pytest.fixture(scope="module")
def shipped():
    if not TRUST_BANK_PATH.is_file():
        pytest.skip("no shipped guard")
    return Predictor.from_assets(device="cpu"), TrustBank.load()


def test_every_entry_point_gives_the_same_record(shipped, test_slices, tmp_path, monkeypatch):
    from dashboard.common import classified  # the Classify page's helper (a cached call of the pipeline)

    predictor, bank = shipped
    name, data = "slice.png", png_bytes(test_slices.images[5, 0].numpy())
    (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)  # the CLI names a file as it was given

    page = classified(((name, data),))[0].record()
    batch_page = classify([(name, data)], predictor=predictor, bank=bank)[0].record()
    with TestClient(create_app(predictor, bank)) as client:
        api = client.post("/v1/predict", files={"file": (name, data)}).json()
        api_batch = client.post("/v1/predict/batch", files=[("files", (name, data))]).json()[0]
    assert main([name, "--out", "cli.json", "--device", "cpu", "--quiet"]) == 0
    cli = json.loads((tmp_path / "cli.json").read_text())[0]
    streamed = predict_files(predictor, [tmp_path / name], bank=bank)[0].record()

    assert page["schema_version"] == SCHEMA_VERSION and page["guard"] is not None
    for other in (batch_page, api, api_batch, cli):
        assert same_record(other, page)
    assert same_record({**streamed, "file": name, "files": [name]}, page)  # predict_files names a file by its path


def same_record(a: dict, b: dict, tolerance: float = 1e-5) -> bool:
    """Equal records, up to the engine: the dashboard and `make api` predict with the exported network (OpenVINO on
    a CPU), this test's Predictor and the CLI with PyTorch; their probabilities differ in the 6th decimal (9e-7 at
    most on benchmarks/bench_serving.py's scans; tests/model/test_engine.py holds the logits to 1e-4)."""
    def numbers(r):
        return [r["confidence"], *r["probabilities"].values()]

    def rest(r):
        return {k: v for k, v in r.items() if k not in ("confidence", "probabilities")}

    return (rest(a) == rest(b) and list(a["probabilities"]) == list(b["probabilities"])
            and all(abs(x - y) <= tolerance for x, y in zip(numbers(a), numbers(b))))


def test_the_csv_row_is_the_record_flattened(shipped, test_slices, tmp_path, monkeypatch):
    predictor, bank = shipped
    files = [("a.png", png_bytes(test_slices.images[0, 0].numpy())), ("notes.txt", b"not a scan")]
    good, bad = classify(files, predictor=predictor, bank=bank)
    assert isinstance(good, Result) and isinstance(bad, Failed) and bad.error.code == "unsupported_type"
    row, record = good.row(), good.record()
    assert list(row) == list(ROW_COLUMNS) == list(bad.row())
    assert [row[f"p_{n}"] for n in CLASS_NAMES] == [record["probabilities"][n] for n in CLASS_NAMES]
    assert (row["spread"], row["flags"], row["nearest_subject"]) == (
        record["uncertainty"]["spread"], "; ".join(record["flags"]), record["guard"]["nearest_training_slices"][0]["subject"])
    assert bad.record() == {"schema_version": SCHEMA_VERSION, "file": "notes.txt", "files": ["notes.txt"],
                            "error": {"code": "unsupported_type", "message": bad.error.message}}
    # the CLI's CSV is these rows
    for path, data in files:
        (tmp_path / path).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    assert main(["a.png", "notes.txt", "--out", "rows.csv", "--device", "cpu", "--quiet"]) == 1
    written = list(csv.DictReader((tmp_path / "rows.csv").open()))
    assert written == [{k: str(v) for k, v in r.row().items()} for r in (good, bad)]


def test_the_api_documents_the_one_schema(shipped):
    predictor, bank = shipped
    with TestClient(create_app(predictor, bank)) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(Result.model_fields) <= set(schemas["Result"]["properties"])
    assert set(schemas["Failed"]["properties"]) == {"schema_version", "file", "files", "error"}
