"""What every page shares: cached loaders and the sidebar.

The model is loaded once per process (`st.cache_resource`) and never mutated;
metrics and config are plain data (`st.cache_data`). Pages call these and
`model/`; they hold no model logic of their own.
"""
from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from model.constants import (
    BASELINE_PATH,
    BUFFERED_VALIDATION_PATH,
    DATA_ENV_VAR,
    METRICS_PATH,
    MODEL_CONFIG_PATH,
    SPLIT_FILES,
    TRAIN_LOG_PATH,
    default_data_dir,
)

RESEARCH_NOTICE = ("**Research use only.** Not a medical device and not for the diagnosis of any patient. "
                   "Trained on one public dataset of 2D axial slices of Alzheimer's disease; "
                   "other brain diseases and other kinds of scans are out of scope.")


@st.cache_resource(show_spinner="Loading and verifying the model…")
def get_predictor():
    """The shared, verified Predictor (raises if the weights are missing or corrupt)."""
    from model.inference import Predictor

    return Predictor.from_assets()


def predictor_or_none():
    """(predictor, None) or (None, message) so pages can explain a missing model."""
    from model.checkpoint import ModelLoadError

    try:
        return get_predictor(), None
    except (FileNotFoundError, ModelLoadError, ValueError) as exc:
        return None, str(exc)


@st.cache_data
def read_json(path: str) -> dict | None:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else None


def shipped_metrics() -> dict | None:
    return read_json(str(METRICS_PATH))


def shipped_baseline() -> dict | None:
    return read_json(str(BASELINE_PATH))


def shipped_buffered_validation() -> dict | None:
    return read_json(str(BUFFERED_VALIDATION_PATH))


def shipped_config() -> dict | None:
    return read_json(str(MODEL_CONFIG_PATH))


@st.cache_data
def training_log(path: str = str(TRAIN_LOG_PATH)) -> list[dict]:
    import csv

    if not Path(path).is_file():
        return []
    with open(path) as fh:
        return [{k: float(v) if k != "epoch" else int(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def dataset_dir() -> Path | None:
    """The configured dataset folder ($ALZ_MRI_DATA or ../shared/data/alzheimer_mri), if it holds the test split."""
    path = default_data_dir()
    if (path / SPLIT_FILES["test"]).is_file() or (path / "test").is_dir():
        return path
    return None


@st.cache_resource(show_spinner="Reading the test split…")
def test_split(path: str):
    """The decoded test split, shared read-only by every session."""
    from model.data import load_split

    return load_split("test", path)


def render_sidebar() -> None:
    with st.sidebar:
        st.markdown("### Alzheimer MRI staging")
        predictor, error = predictor_or_none()
        if predictor is None:
            st.error(f"No usable model: {error}")
        else:
            st.caption(f"ResNet-34 · `{predictor.sha256[:12]}` · {predictor.image_size}px")
            st.caption(f"Running on **{predictor.device_name()}**")
        metrics = shipped_metrics()
        if metrics:
            c1, c2 = st.columns(2)
            c1.metric("Test accuracy", f"{metrics['accuracy']:.1%}")
            c2.metric("Macro-F1", f"{metrics['macro_f1']:.3f}")
            st.caption(f"On {metrics['n']:,} test slices; slice-level split, see the Evaluation page's caveat.")
        data = dataset_dir()
        st.caption(f"Dataset: `{data}`" if data else f"No local dataset (set ${DATA_ENV_VAR} to enable examples).")
        st.warning(RESEARCH_NOTICE, icon="⚠️")




@st.cache_data(max_entries=64, show_spinner=False)
def cached_prediction(image):
    """Prediction for one uint8 (S, S) slice; keyed on the pixels."""
    return get_predictor().predict_one(image)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_explanation(image, target: int, layer: str):
    """Grad-CAM Explanation for one slice, target class and layer."""
    from model.explain import explain

    return explain(get_predictor(), image, target=target, layer=layer)
