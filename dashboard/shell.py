"""What the app shows before the model is loaded: the sidebar, the shipped result files, and the warm-up.

Nothing here imports torch. The router (`app.py`) draws the sidebar and the first page from this module alone, and
`start_warmup` imports the model's modules and loads the shared Predictor on a thread meanwhile, so a cold server's
first page is usable while the model loads (issue 20 item 5; torch, the model's modules and the verified weights
take 3-5 s on these cores). `dashboard.common` holds the model-backed helpers and re-exports these.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import streamlit as st

from model.core.constants import (
    BASELINE_PATH,
    CROSSVAL_PATH,
    DATA_ENV_VAR,
    HF_DATASET_ID,
    METRICS_PATH,
    MODEL_CONFIG_PATH,
    SPLIT_FILES,
    default_data_dir,
)
from model.core.datafiles import slice_count
from model.core.recipe import crossval_describes, floors_of

MARKDOWN_SPECIALS = set("\\`*_{}[]()#+-.!|<>~$:")


def plain(text: str) -> str:
    """Text that Streamlit's Markdown shows literally: a file name such as `[x](https://...) **b**.png` stays
    a name, not a link in bold."""
    return "".join("\\" + ch if ch in MARKDOWN_SPECIALS else ch for ch in str(text))


RESEARCH_NOTICE = ("**Research use only.** Not a medical device and not for the diagnosis of any patient. "
                   "Trained on one public dataset of 2D axial slices of Alzheimer's disease; "
                   "other brain diseases and other kinds of scans are out of scope.")


# ---------------------------------------------------------------- the shipped result files
@st.cache_data
def read_json(path: str) -> dict | None:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else None


def shipped_metrics() -> dict | None:
    return read_json(str(METRICS_PATH))


def shipped_baseline() -> dict | None:
    return read_json(str(BASELINE_PATH))


def shipped_config() -> dict | None:
    return read_json(str(MODEL_CONFIG_PATH))


def shipped_crossval() -> dict | None:
    """assets/crossval.json: the subject-grouped cross-validation's figures (None if not shipped)."""
    return read_json(str(CROSSVAL_PATH))


def crossval_describes_shipped_model() -> bool:
    """Whether the shipped network was trained with the cross-validated recipe and carries its temperature,
    so the new-subject figures are this network's."""
    return crossval_describes(shipped_config(), shipped_crossval())


@st.cache_data(max_entries=2)
def local_slices(path: str) -> int:
    return slice_count(path)


def dataset_dir() -> Path | None:
    """The configured dataset folder ($ALZ_MRI_DATA or ../shared/data/alzheimer_mri), if it holds the test split."""
    path = default_data_dir()
    if (path / SPLIT_FILES["test"]).is_file() or (path / "test").is_dir():
        return path
    return None


# ---------------------------------------------------------------- the warm-up
class Warmup:
    """Once per process: import the model's modules and load the shared Predictor on a thread. `error` is the
    reason the model could not be loaded, once known; `device` the device it runs on, once loaded."""

    def __init__(self):
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.done = threading.Event()
        self.error: str | None = None
        self.device: str | None = None

    def start(self) -> None:
        with self._lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="model-warm-up", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        try:
            from dashboard.common import load_model  # torch, the model's modules, Plotly: the slow imports

            self.device = load_model().device_name()
            import importlib

            importlib.import_module("captum.attr")  # the first map would import it (0.5 s)
        except Exception as exc:  # noqa: BLE001 - any failure is the page's to explain; the pages try again
            self.error = str(exc) or type(exc).__name__
        finally:
            self.done.set()


WARMUP = Warmup()


def start_warmup() -> None:
    """Load the model on a thread unless that has begun (`$ALZ_MRI_NO_WARMUP=1` leaves it to the first page
    that needs it)."""
    if os.environ.get("ALZ_MRI_NO_WARMUP") != "1":
        WARMUP.start()


# ---------------------------------------------------------------- the sidebar
def model_status() -> str:
    """The sidebar's line on the model: its device once loaded, else that it is loading or loads with a scan."""
    return (f"Running on **{WARMUP.device}**" if WARMUP.device else
            "Loading and verifying the model…" if WARMUP.thread else "The model loads with the first scan.")


def render_sidebar():
    """Model, figures on new subjects, the published split's caveat, the dataset, the research-use notice. The
    model lines come from its config until the warm-up has loaded it (then its device is known). Returns the
    placeholder of the model's status line, so that the router can refresh it after the page has run (a page
    that waited for the model would otherwise leave "Loading…" beside its answer), or None."""
    status = None
    with st.sidebar:
        st.markdown("### Alzheimer MRI staging")
        config = shipped_config()
        if WARMUP.error:
            st.error(f"No usable model: {WARMUP.error}")
        elif config is None:
            st.error(f"No usable model: {MODEL_CONFIG_PATH.name} is missing from assets/")
        else:
            st.caption(f"ResNet-34 · `{str(config.get('weights_sha256', ''))[:12]}` · {config.get('image_size')}px")
            status = st.empty()
            status.caption(model_status())
        crossval, metrics = shipped_crossval(), shipped_metrics()
        if crossval:
            net = crossval["network"]["subject"]
            st.caption("On new subjects (cross-validated):")
            c1, c2 = st.columns(2)
            c1.metric("Balanced acc.", f"{net['balanced_accuracy']:.0%}",
                      help="Balanced accuracy (the mean recall of the four stages; chance is 25%) over 200 "
                           "subjects, each staged by a network that never saw that brain (5-fold "
                           "cross-validation by subject)")
            c2.metric("Dementia AUC", f"{net['any_dementia_auc']:.2f}",
                      help="ROC AUC of any dementia against none, per new subject")
            floors = floors_of(crossval)
            if floors:
                st.caption(f"The best floor, a {floors[0]['name']} with no deep learning, scores AUC "
                           f"{floors[0]['any_dementia_auc']:.2f} on the same subjects.")
            if not crossval_describes_shipped_model():
                st.caption("These are the cross-validated recipe's figures; the shipped network was trained "
                           "with another recipe or temperature.")
        if metrics:
            lookup = shipped_baseline()
            lookup = f", a lookup that learns nothing {lookup['test']['accuracy']:.1%}" if lookup else ""
            st.caption(f"Published test split (slices of brains also in training): {metrics['accuracy']:.1%} "
                       f"accuracy{lookup}. It rewards recognising a seen brain. See the Evaluation page.")
        data = dataset_dir()  # named, not shown by its path: a screenshot says nothing of the machine it was taken on
        st.caption(f"Dataset: {HF_DATASET_ID}, {local_slices(str(data)):,} slices here" if data else
                   f"No local dataset (`make data`, or set ${DATA_ENV_VAR}, to enable examples).")
        st.warning(RESEARCH_NOTICE, icon="⚠️")
    return status
