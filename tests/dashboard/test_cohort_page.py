"""The Batch page's "Evaluate on your cohort", through AppTest: a labelled zip of test-split slices in class-named
folders, figures checked against scikit-learn, a bad truth CSV, and the report carrying the user's choices."""
import io
import zipfile

import numpy as np
import pytest
from pypdf import PdfReader
from sklearn import metrics as skm

from model.core.constants import CLASS_NAMES, CONFIG_FILES_PRESENT
from model.core.dataset import load_split
from model.reports.record import png_bytes
from tests.dashboard.test_app import start

pytestmark = pytest.mark.skipif(not CONFIG_FILES_PRESENT(), reason="no shipped model in assets/")
FOLDERS = {0: "Mild_Demented", 1: "moderate demented", 2: "Non_Demented", 3: "Very-Mild-Demented"}


def labelled_zip(data_dir, per_class: int = 3) -> bytes:
    """`per_class` test-split slices per stage: the first two in a subject folder inside the stage folder, the
    rest loose in it (each its own subject), and one file in no stage folder."""
    test = load_split("test", data_dir)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c, folder in FOLDERS.items():
            for k, i in enumerate(np.flatnonzero(test.labels.numpy() == c)[:per_class]):
                where = f"{folder}/P{c}/" if k < 2 else f"{folder}/"
                zf.writestr(f"{where}slice_{k}.png", png_bytes(test.images[i, 0].numpy()))
        zf.writestr("unsorted/extra.png", png_bytes(test.images[0, 0].numpy()))
    return buf.getvalue()


def classified(data_dir):
    at = start("views/batch.py")
    at.file_uploader(key="batch_upload").set_value([("cohort.zip", labelled_zip(data_dir), "application/zip")]).run()
    at.button(key="batch_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def truth_of(table):
    """(y, probs, subjects) of the labelled rows of the Batch table, from their folders."""
    index = {FOLDERS[c]: c for c in FOLDERS}
    rows = table[[f.split("/")[1] in index for f in table.file]]
    y = np.array([index[f.split("/")[1]] for f in rows.file])
    subjects = np.array([f.rsplit("/", 1)[0] if f.count("/") == 3 else f for f in rows.file])
    return y, rows[[f"p_{n}" for n in CLASS_NAMES]].to_numpy(np.float64), subjects


def metric(at, label: str) -> str:
    return next(m.value for m in at.main.metric if m.label == label)


def test_a_labelled_zip_is_evaluated_per_subject_and_per_slice_like_scikit_learn(data_dir):
    at = classified(data_dir)
    assert any(h.value == "Evaluate on your cohort" for h in at.header)
    assert at.button_group(key="batch_cohort_source").value == "class-named folders"  # seen in the folder names
    assert at.button(key="batch_cohort_run").label == "Evaluate on 12 labelled files"
    at.button(key="batch_cohort_run").click().run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    assert metric(at, "Labelled slices") == "12" and metric(at, "Without a true stage") == "1"
    assert metric(at, "Subjects") == "8"  # four subject folders of two, four loose slices
    y, probs, subjects = truth_of(at.dataframe[0].value)
    ids = sorted(set(subjects))
    sy = np.array([y[subjects == s][0] for s in ids])
    sp = np.array([probs[subjects == s].mean(0) for s in ids])
    for level, (yy, pp) in (("per subject", (sy, sp)), ("per slice", (y, probs))):
        at.button_group(key="batch_cohort_level").set_value(level).run()
        assert not at.exception, [e.value for e in at.exception]
        assert metric(at, "Balanced accuracy") == f"{skm.balanced_accuracy_score(yy, pp.argmax(1)):.1%}"
        auc = skm.roc_auc_score(yy != 2, 1 - pp[:, 2])
        assert metric(at, "Any-dementia AUC") == f"{auc:.3f}"
        flat = at.session_state["batch_cohort"][1]["subject" if level == "per subject" else "slice"]
        assert flat["confusion_matrix"] == skm.confusion_matrix(yy, pp.argmax(1), labels=range(4)).tolist()
    assert any(s.value == "The guard's flags" for s in at.subheader)
    # the published test split's slices are near-copies of training brains: the page says what that does to them
    near = at.session_state["batch_cohort"][1]["flags"]["near-copy of a training slice"]
    assert near > 0 and any(f"{near} of 12 labelled slices are near-copies" in w.value for w in at.warning)


def test_a_bad_truth_csv_is_named_on_the_page(data_dir):
    at = classified(data_dir)
    at.button_group(key="batch_cohort_source").set_value("a CSV of file, stage, subject").run()
    at.file_uploader(key="batch_cohort_csv").set_value(
        ("truth.csv", b"file,stage\nMild_Demented/P0/slice_0.png,Severe\nnowhere.png,0\n", "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    message = at.error[0].value.replace("\\", "")  # shown literally: Markdown escaped
    assert "unknown stages ('line 2: Severe')" in message and "'nowhere.png'" in message
    assert not [b for b in at.button if b.key == "batch_cohort_run"]  # nothing to evaluate until it is right


def test_the_cohort_report_carries_the_class_mix_referral_and_opened_cell(data_dir):
    at = classified(data_dir)
    at.button(key="batch_cohort_run").click().run(timeout=300)
    at.button_group(key="batch_cohort_level").set_value("per slice").run()
    at.selectbox(key="batch_cohort_mix_preset").set_value("memory clinic (illustrative)").run()
    at.slider(key="batch_cohort_refer").set_value(30).run()
    at.selectbox(key="batch_cohort_cell_true").set_value(2).run()
    at.selectbox(key="batch_cohort_cell_pred").set_value(2).run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="batch_cohort_build").click().run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    assert at.get("download_button")[-1].label == "Download the evaluation (PDF)"
    pdf = at.session_state["batch_cohort_report"][1]
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).replace("\n", " ")
    count = at.session_state["batch_cohort_cell_result"]["count"]
    for wanted in ("Evaluation on your cohort", "12 labelled slices of 8 subjects", "Assumed class mix: memory "
                   "clinic (illustrative)", "least confident 30% of the slices",
                   f"truly No dementia, predicted No dementia: {count} slices", "not for the diagnosis"):
        assert wanted in text, wanted
