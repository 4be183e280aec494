"""MLflow tracking of training runs, into a temporary local store."""
import pytest
from mlflow.tracking import MlflowClient

from model.training import tracking


@pytest.fixture()
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_a_run_records_params_epoch_series_and_artifacts(store, tmp_path):
    run = tracking.Tracker("cv-test", {"image_size": 48, "plan": {"folds": 5}}, experiment="t",
                           resume_file=tmp_path / "run_id")
    log = run.epoch_logger("fold0")
    for epoch, auc in [(1, 0.6), (2, 0.7), (3, 0.65)]:
        log({"epoch": epoch, "val_subject_auc": auc, "note": "text is skipped", "bad": float("nan")})
    (tmp_path / "figures.json").write_text("{}")
    run.log_artifact(tmp_path / "figures.json")
    run.finish()
    client = MlflowClient(store)
    got = client.get_run(run.run_id)
    assert got.data.params == {"image_size": "48", "plan.folds": "5"}
    assert got.info.status == "FINISHED"
    history = client.get_metric_history(run.run_id, "fold0_val_subject_auc")
    assert [(m.step, m.value) for m in history] == [(1, 0.6), (2, 0.7), (3, 0.65)]
    assert "fold0_bad" not in got.data.metrics and "fold0_note" not in got.data.metrics
    assert [a.path for a in client.list_artifacts(run.run_id)] == ["figures.json"]


def test_an_interrupted_run_is_continued_not_duplicated(store, tmp_path):
    first = tracking.Tracker("cv", {"a": 1}, experiment="t", resume_file=tmp_path / "run_id")
    again = tracking.Tracker("cv", {"a": 1}, experiment="t", resume_file=tmp_path / "run_id")
    assert again.run_id == first.run_id
    assert len(tracking.runs_table("t")) == 1


def test_the_local_store_is_the_default(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri() == f"sqlite:///{tracking.RUNS_DIR / 'mlflow.db'}"


def test_a_training_run_is_tracked_and_a_resumed_one_continues_it(store, tmp_path, data_dir):
    from model.training import train

    flags = ["--data-dir", str(data_dir), "--output-dir", str(tmp_path / "run"), "--image-size", "32",
             "--batch-size", "16", "--limit", "96", "--eval-batch-size", "64", "--threads", "1"]
    assert train.cli([*flags, "--epochs", "1", "--run-name", "tiny"]) == 0
    assert train.cli([*flags, "--epochs", "2", "--resume"]) == 0  # continues the same MLflow run
    runs = tracking.runs_table()
    assert len(runs) == 1 and runs["tags.mlflow.runName"][0] == "tiny" and runs["tags.kind"][0] == "train"
    assert runs["params.image_size"][0] == "32" and runs["params.epochs"][0] == "1"  # the recipe it started with
    client = MlflowClient(store)
    run_id = runs["run_id"][0]
    assert [m.step for m in client.get_metric_history(run_id, "val_acc")] == [1, 2]
    assert runs["metrics.selected_epoch"][0] in (1, 2) and runs["metrics.temperature"][0] > 0
    assert [a.path for a in client.list_artifacts(run_id)] == ["log.csv"]
    assert client.get_run(run_id).info.status == "FINISHED"

    assert train.cli([*flags, "--epochs", "1", "--output-dir", str(tmp_path / "quiet"), "--no-track"]) == 0
    assert len(tracking.runs_table()) == 1  # --no-track records nothing
