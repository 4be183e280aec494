"""What the pages share that needs the model: the shared Predictor and guard, cached model calls, panels.

The model is loaded once per process (`model.core.inference.shared_predictor`) and never mutated; data is cached
with `st.cache_data`. Pages call these and `model/`; they hold no model logic of their own. What the first page
needs before the model is loaded (the sidebar, the shipped result files, the warm-up) is `dashboard.shell`'s,
re-exported here.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.shell import WARMUP, crossval_describes_shipped_model, plain, shipped_crossval
from model.core.assets import ModelLoadError
from model.core.constants import (
    CLASS_NAMES,
    CROSSVAL_PREDICTIONS_PATH,
    DISPLAY_NAMES,
    STAGE_ORDER,
    SUBJECT_TABLE_PATH,
    TRAIN_LOG_PATH,
)
from model.core.dataset import load_split, read_subjects
from model.core.inference import THREADS_ENV_VAR, shared_predictor
from model.core.prediction import subject_prediction
from model.qualify.ahead import MapsAhead
from model.qualify.explain import HOOK_FREE, explain
from model.qualify.faithfulness import faithfulness, randomised_copy, rank_correlation
from model.qualify.trust import TrustBank, TrustBankError
from model.reports.record import ROW_COLUMNS
from model.serve.pipeline import classify, classify_slices, stage_volume


def load_model():
    """The process's shared, verified Predictor (raises if the weights are missing or corrupt), with the API's
    engine ($ALZ_MRI_ENGINE, OpenVINO by default on a CPU): the prediction, the guard's test-time variants and the
    faithfulness scores run the fused exported network; Grad-CAM runs in PyTorch. One intra-op thread unless
    $ALZ_MRI_THREADS says otherwise (model.core.inference.THREADS_ENV_VAR says why): sessions run side by side.
    The sidebar learns its device from here, whoever loaded it."""
    predictor = shared_predictor(threads=int(os.environ.get(THREADS_ENV_VAR, "1")))
    WARMUP.device = predictor.device_name()
    return predictor


@st.cache_resource(show_spinner="Loading and verifying the model…")
def get_predictor():
    """`load_model()` behind the page's spinner: at once when the warm-up thread has loaded it."""
    return load_model()


def predictor_or_none():
    """(predictor, None) or (None, message) so pages can explain a missing model."""
    try:
        return get_predictor(), None
    except (FileNotFoundError, ModelLoadError, ValueError) as exc:
        return None, str(exc)


@st.cache_data(max_entries=4)
def read_csv(path: str):
    return pd.read_csv(path) if Path(path).is_file() else None


def subject_table():
    """assets/subject_table.csv: one row per recovered subject, with its OASIS clinical columns."""
    return read_csv(str(SUBJECT_TABLE_PATH))


@st.cache_data(max_entries=1)
def crossval_subjects():
    """The out-of-fold predictions per subject, joined with the clinical table (None if not shipped);
    computed once per process, not on every rerun of the page."""
    # model.qualify.evaluate brings scikit-learn and scipy.stats (1.2 s under load, `python -X importtime`): only the
    # pages that evaluate need it, so the first page is not kept waiting for it
    from model.qualify.evaluate import subject_predictions

    slices = read_csv(str(CROSSVAL_PREDICTIONS_PATH))
    return None if slices is None else subject_predictions(slices, subject_table())


@st.cache_data(max_entries=1)
def slice_positions():
    """Each slice's place in its subject's block, keyed by (split, path), from assets/subjects.csv."""
    return read_subjects().set_index(["split", "path"]).position


def crossval_slices():
    return read_csv(str(CROSSVAL_PREDICTIONS_PATH))


@st.cache_data
def training_log(path: str = str(TRAIN_LOG_PATH)) -> list[dict]:
    if not Path(path).is_file():
        return []
    with open(path) as fh:
        return [{k: float(v) if k != "epoch" else int(v) for k, v in row.items()} for row in csv.DictReader(fh)]


@st.cache_resource(show_spinner="Reading the test split…")
def test_split(path: str):
    """The decoded test split, shared read-only by every session."""
    return load_split("test", path)


@st.cache_resource(show_spinner="Reading both splits…")
def split_images(path: str, split: str):
    """One decoded split, shared read-only by every session (the test split reuses `test_split`)."""
    return test_split(path) if split == "test" else load_split(split, path)


@st.cache_resource(show_spinner="Loading the out-of-distribution guard…")
def get_trust_bank():
    """The shared, checksum-verified guard (model.qualify.trust.TrustBank); raises TrustBankError when missing."""
    return TrustBank.load()


def trust_bank_or_none():
    """(bank, None) or (None, message): pages still predict without the guard, and say so."""
    try:
        return get_trust_bank(), None
    except TrustBankError as exc:
        return None, str(exc)


@st.cache_data(max_entries=16, show_spinner="Reading and classifying…")
def classified(files: tuple[tuple[str, bytes], ...], slice_number: int | None = None) -> list:
    """`model.serve.pipeline.classify` of uploaded files (one result per scan); keyed on the files' names and bytes,
    so a rerun of the page does not read or assess them again."""
    bank, _ = trust_bank_or_none()
    return classify(list(files), predictor=get_predictor(), bank=bank, slice=slice_number)


@st.cache_data(max_entries=4, show_spinner="Finding the training slab and staging the subject…")
def staged_volume(files: tuple[tuple[str, bytes], ...]):
    """`model.serve.pipeline.stage_volume` of one uploaded volume: a SubjectResult, or a Failed with the reason."""
    bank, _ = trust_bank_or_none()
    return stage_volume(list(files), predictor=get_predictor(), bank=bank)


def volume_subject_panel(result) -> int:
    """A volume staged as a subject (`model.reports.record.SubjectResult`): the subject's stage, where the slab lies
    and whether it lines up with the training slices, and the slab's per-slice table. Returns the 1-based slice of the
    volume to show below (the slab slice nearest the subject's stage)."""
    slab = result.slab
    left, right = st.columns([2, 3])
    with left:
        st.metric("Subject-level stage (32-slice slab)", result.display_name)
        agree = sum(r.label == result.label for r in result.slices)
        st.caption(f"Mean of the calibrated probabilities of axial slices {slab.start}–{slab.stop} of "
                   f"{result.n_slices}: {result.confidence:.1%}. {agree} of 32 slices agree with it on their own.")
        if slab.aligned:
            st.success(f"The slab lines up with the training slices' 32 positions (fit {slab.score:.1f}; the training "
                       f"subjects' own slabs fit up to {slab.typical:.1f}).")
        else:
            st.warning(f"No 32 slices of this volume line up with the training slices' positions (best fit "
                       f"{slab.score:.1f}, against up to {slab.typical:.1f} for the training subjects): the subject's "
                       "stage is unreliable. The volume may be of another protocol, not atlas-registered, or cut "
                       "at other levels.")
        for flag in result.flags:
            if "guard" in flag:
                st.warning(f"{flag}; the subject's stage includes them.")
    right.plotly_chart(charts.probability_bars([result.probabilities[n] for n in CLASS_NAMES],
                                               title="Subject: mean calibrated probability"),
                       key="classify_volume_subject_probs")
    table = pd.DataFrame({"slice": [r.slice for r in result.slices],
                          "predicted stage": [r.display_name for r in result.slices],
                          **{DISPLAY_NAMES[c]: [round(r.probabilities[CLASS_NAMES[c]], 3) for r in result.slices]
                             for c in STAGE_ORDER},
                          "flags": [", ".join(r.flags) for r in result.slices]})
    st.dataframe(table, hide_index=True, key="classify_volume_subject_table", height=220)
    stem = result.file.rsplit("/", 1)[-1].split(".", 1)[0] or "volume"
    d1, d2 = st.columns(2)
    d1.download_button("Download subject result (JSON)", json.dumps(result.record(), indent=2),
                       f"{stem}_subject.json", "application/json", key="classify_volume_subject_json", width="stretch")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_COLUMNS)
    writer.writeheader()
    writer.writerows(result.rows())
    d2.download_button("Download subject result (CSV)", buf.getvalue(), f"{stem}_subject.csv", "text/csv",
                       key="classify_volume_subject_csv", width="stretch")
    best = max(result.slices, key=lambda r: r.probabilities[result.prediction])
    return best.slice


@st.cache_data(max_entries=64, show_spinner=False)
def classified_slice(image, name: str):
    """`model.serve.pipeline.classify_slices` of one decoded uint8 (S, S) slice (a test-split example)."""
    bank, _ = trust_bank_or_none()
    return classify_slices([image], [name], predictor=get_predictor(), bank=bank)[0]


@st.cache_resource(show_spinner="Reading the training slices…")
def train_images_by_path(path: str) -> dict:
    """{dataset path: uint8 (S, S)} of the train split, to show the nearest training slices."""
    data = split_images(path, "train")
    return {name: data.images[i, 0].numpy() for i, name in enumerate(data.ids)}


@st.cache_resource
def maps_ahead() -> MapsAhead:
    """The process's store of saliency maps by content, which a low-priority worker fills ahead of the question
    (model.qualify.ahead): the other classes' maps of the slice on screen, so a change of class is answered at once."""
    predictor = get_predictor()
    return MapsAhead(lambda image, target, layer, method: explain(predictor, image, target=target, layer=layer,
                                                                  method=method))


@st.cache_data(max_entries=64, show_spinner=False)
def cached_explanation(image, target: int, layer: str, method: str = "gradcam"):
    """Explanation (model.qualify.explain) for one slice, target class, layer and method."""
    return maps_ahead().get(image, target, layer, method)


def explain_others_ahead(image, shown: int, layer: str, method: str) -> None:
    """Queue the maps of the classes not shown for the low-priority worker. Only the methods that need no hook on
    the network (HOOK_FREE): a hooked one takes the Predictor's lock, and a foreground map would then wait for a
    thread that runs at the lowest priority."""
    if method in HOOK_FREE:
        maps_ahead().ahead(image, [c for c in range(len(CLASS_NAMES)) if c != shown], layer, method)


@st.cache_data(max_entries=64, show_spinner="Scoring the map against a random and an edge map…")
def cached_faithfulness(image, heatmap, target: int):
    """Deletion and insertion scores of a map, beside a random map's and an edge map's (model.qualify.faithfulness)."""
    return faithfulness(get_predictor(), image, heatmap, target)


@st.cache_resource(show_spinner="Randomising the network's last blocks…")
def get_randomised_predictor():
    """The shipped network with layer4 and the classifier re-initialised, for the randomisation check."""
    return randomised_copy(get_predictor())


@st.cache_data(max_entries=32, show_spinner=False)
def cached_randomisation(image, target: int, layer: str, method: str):
    """(the map on the randomised network, its Spearman correlation with the real map)."""
    real = cached_explanation(image, target, layer, method).heatmap
    rand = explain(get_randomised_predictor(), image, target=target, layer=layer, method=method).heatmap
    return rand, rank_correlation(real, rand)


def mixed_subjects_warning(results: list) -> None:
    """Warn when slices said to be one subject are recognised (near-copies) as different training subjects."""
    seen = {}
    for r in results:
        trust = r.assessment.trust
        if trust is not None and trust.near_copy and trust.neighbours:
            seen.setdefault(trust.neighbours[0].subject, []).append(r.file)
    if len(seen) > 1:
        listed = "; ".join(f"{plain(s)}: {', '.join(plain(f) for f in files)}" for s, files in seen.items())
        st.warning(f"**These slices look like {len(seen)} different people.** The guard recognises them as "
                   f"near-copies of different training subjects ({listed}). Averaging them mixes brains: stage "
                   "them as separate scans unless you know they are one subject.", icon=":material/group:")


def scans_table(results: list) -> None:
    """Separate scans: one row each (file, stage, confidence, flags); nothing is averaged."""
    st.dataframe(pd.DataFrame({"file": [r.file for r in results],
                               "predicted stage": [r.display_name for r in results],
                               "confidence": [round(r.confidence, 3) for r in results],
                               "flags": [", ".join(r.flags) for r in results]}),
                 hide_index=True, key="classify_scans_table")


def subject_panel(results: list):
    """Several slices of one subject (`model.reports.record.Result`s): the per-slice predictions with their flags,
    and the subject's (their mean probabilities, as the cross-validation scored subjects). Returns (index of the
    slice the user picks to explain, the subject's Prediction)."""
    slices, names = results, [r.file for r in results]
    assessments = [r.assessment for r in results]
    predictions = [a.prediction for a in assessments]
    subject = subject_prediction(predictions)
    left, right = st.columns([2, 3])
    with left:
        st.metric(f"Subject-level stage ({len(slices)} slices)", subject.display_name)
        agree = sum(p.label == subject.label for p in predictions)
        st.caption(f"Mean of the {len(slices)} slices' calibrated probabilities: {subject.confidence:.1%}. "
                   f"{agree} of {len(slices)} slices agree with it on their own.")
        flagged = sum(not a.reliable for a in assessments)
        if flagged:
            st.warning(f"{flagged} of {len(slices)} slices are flagged (out of distribution or a near-copy of a "
                       "training slice); the subject's stage includes them.")
        crossval = shipped_crossval()
        if crossval and crossval_describes_shipped_model():
            net = crossval["network"]["subject"]
            st.caption(f"Averaging all 32 slices of a subject the model had never seen was right for "
                       f"{net['accuracy']:.0%} of the 200 cross-validated subjects (balanced accuracy "
                       f"{net['balanced_accuracy']:.0%}); fewer slices carry less evidence.")
    right.plotly_chart(charts.probability_bars(subject.probabilities, title="Subject: mean calibrated probability"),
                       key="classify_subject_probs")
    table = pd.DataFrame({"file": names, "predicted stage": [p.display_name for p in predictions],
                          **{DISPLAY_NAMES[c]: [round(p.probabilities[c], 3) for p in predictions] for c in STAGE_ORDER},
                          "spread": [round(a.spread, 3) for a in assessments],
                          "flags": [", ".join(a.flags()) for a in assessments]})
    st.dataframe(table, hide_index=True, key="classify_subject_table")
    pick = st.selectbox("Slice to explain", range(len(slices)), format_func=names.__getitem__, key="classify_slice")
    return pick, subject
