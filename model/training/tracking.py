"""Experiment tracking in MLflow for training and cross-validation runs (training only).

The store is local by default, `sqlite:///<project>/runs/mlflow.db` with artifacts under `runs/mlartifacts`,
so a run is tracked on a laptop with nothing to set up; `MLFLOW_TRACKING_URI` points it at a team's server
instead. `make runs` opens the local store in MLflow's UI. A run records its parameters (the recipe and the
plan), per-epoch metrics (one series per fold), fold results, headline figures and its files as artifacts.
A rerun that resumes an interrupted cross-validation continues the same MLflow run (its id is kept in the
output folder).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from model.core.constants import PROJECT_ROOT

if TYPE_CHECKING:  # the return type only; mlflow imports pandas itself when it builds the table
    import pandas as pd

RUNS_DIR = PROJECT_ROOT / "runs"
DEFAULT_EXPERIMENT = "alzheimer-mri"


def tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else the project's local SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{RUNS_DIR / 'mlflow.db'}"


def _flatten(params: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


class Tracker:
    """One MLflow run. `params` are logged once (nested dicts flattened with dots); metrics may be logged with
    a step. Resumes the run whose id is in `resume_file` when it exists and is still in the store."""

    def __init__(self, run_name: str, params: dict, *, experiment: str = DEFAULT_EXPERIMENT,
                 tags: dict | None = None, resume_file: Path | None = None):
        self.uri = tracking_uri()
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(self.uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            location = (RUNS_DIR / "mlartifacts").as_uri() if self.uri.startswith("sqlite") else None
            experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            experiment_id = found.experiment_id
        self.run_id = None
        if resume_file is not None and Path(resume_file).is_file():
            run_id = Path(resume_file).read_text().strip()
            try:
                self.client.get_run(run_id)
                self.run_id = run_id
                self.client.update_run(run_id, status="RUNNING")
            except mlflow.exceptions.MlflowException:
                self.run_id = None
        if self.run_id is None:
            run = self.client.create_run(experiment_id, run_name=run_name, tags=tags or {})
            self.run_id = run.info.run_id
            flat = _flatten(params)
            for start in range(0, len(flat), 90):  # log_batch takes at most 100 params
                batch = list(flat.items())[start:start + 90]
                self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in batch])
            if resume_file is not None:
                Path(resume_file).parent.mkdir(parents=True, exist_ok=True)
                Path(resume_file).write_text(self.run_id + "\n")

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """Numbers only (None, NaN and non-numbers are skipped)."""
        import time

        now = int(time.time() * 1000)
        rows = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None and math.isfinite(v)]
        for start in range(0, len(rows), 900):
            self.client.log_batch(self.run_id, metrics=rows[start:start + 900])

    def epoch_logger(self, prefix: str):
        """A callback for `train.main(on_epoch=...)`: each epoch's row as `<prefix>_<name>` (or `<name>` with an
        empty prefix) at step epoch."""
        def log(row: dict) -> None:
            self.log_metrics({f"{prefix}_{k}" if prefix else k: v for k, v in row.items() if k != "epoch"},
                             step=int(row["epoch"]))
        return log

    def log_dict(self, data: dict, name: str) -> None:
        self.client.log_text(self.run_id, json.dumps(data, indent=1, default=str), name)

    def log_artifact(self, path: Path) -> None:
        if Path(path).is_file():
            self.client.log_artifact(self.run_id, str(path))

    def set_tags(self, tags: dict) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def finish(self, ok: bool = True) -> None:
        self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED))


def runs_table(experiment: str = DEFAULT_EXPERIMENT, filter_string: str = "") -> "pd.DataFrame":
    """Every finished run of an experiment as a frame (params.*, metrics.*, tags.*), newest first."""
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.search_runs(experiment_names=[experiment], filter_string=filter_string,
                              order_by=["attributes.start_time DESC"])
