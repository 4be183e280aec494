"""Evaluating a cohort the user brings: true stages from folders or a CSV, figures checked against scikit-learn."""
import numpy as np
import pytest
from sklearn import metrics as skm

from model.core.constants import CLASS_NAMES, STAGE_ORDER
from model.reports.record import Failed, Result
from model.serve.batch import stage_folder
from model.serve.cohort import TruthError, evaluate_cohort, stage_label, truth_from_csv, truth_from_folders

MILD, MODERATE, NON, VERY_MILD = range(4)


def result(name: str, probs, flags=(), agreement: float = 1.0) -> Result:
    probs = np.asarray(probs, dtype=np.float64) / np.sum(probs)
    label = int(probs.argmax())
    return Result(file=name, files=[name], kind="PNG image", slice=1, n_slices=1, prediction=CLASS_NAMES[label],
                  display_name=CLASS_NAMES[label], label=label, confidence=float(probs[label]),
                  probabilities={n: float(v) for n, v in zip(CLASS_NAMES, probs)},
                  uncertainty={"spread": 0.01, "agreement": agreement, "level": None}, flags=list(flags),
                  reliable=not flags, guard=None, steps=[], header={}, model_sha256="ab" * 32,
                  calibration_temperature=1.25)


def cohort(seed: int = 0, per_subject: int = 3):
    """12 subjects (4 no, 4 very mild, 3 mild, 1 moderate) of `per_subject` slices each, in class-named folders
    of a zip, with noisy probabilities leaning to the truth; plus one file in no stage folder."""
    rng = np.random.default_rng(seed)
    stages = [NON] * 4 + [VERY_MILD] * 4 + [MILD] * 3 + [MODERATE]
    folders = {NON: "Non_Demented", VERY_MILD: "very mild demented", MILD: "Mild-Demented",
               MODERATE: "MODERATE_DEMENTED"}
    results = []
    for s, stage in enumerate(stages):
        for k in range(per_subject):
            p = rng.dirichlet(np.ones(4))
            p[stage] += rng.uniform(0.0, 0.8)
            flags = ["out of distribution"] if (s + k) % 7 == 0 else []
            results.append(result(f"cohort.zip/{folders[stage]}/S{s:02d}/slice_{k}.png", p, flags,
                                  agreement=0.5 if k == 0 else 1.0))
    results.append(result("cohort.zip/unsorted/extra.png", [0.1, 0.1, 0.7, 0.1]))
    results.append(Failed.of(["cohort.zip/Non_Demented/S99/broken.png"], "cannot be read"))
    return results


def test_a_stage_is_read_in_any_spelling():
    assert stage_label("Mild_Demented") == MILD
    assert stage_label("very mild demented") == VERY_MILD == stage_label("Very-Mild  Demented")
    assert stage_label("No dementia") == NON == stage_label("non_demented") == stage_label("2")
    assert stage_label("Severe") is None and stage_label("") is None
    # a label index as a spreadsheet exports a number column; a fraction or an index out of range is no stage
    assert stage_label("2.0") == NON == stage_label(" 2.00 ") and stage_label("0.") == MILD
    assert stage_label("2.5") is None and stage_label("4.0") is None and stage_label("1e0") is None
    assert stage_folder("Non_Demented") and not stage_folder("2") and not stage_folder("2.0")  # numbers: subjects


def test_folders_give_stages_and_subjects_and_leave_the_rest_unlabelled():
    names = ["c.zip/Mild_Demented/OAS1_0001/s1.png", "c.zip/very mild demented/s2.png", "c.zip/other/s3.png"]
    truth = truth_from_folders(names)
    assert truth.labels == {names[0]: MILD, names[1]: VERY_MILD}
    assert truth.subjects == {names[0]: "OAS1_0001"}
    with pytest.raises(TruthError, match="No file is in a folder named after a stage.*Mild_Demented"):
        truth_from_folders(["c.zip/scans/a.png", "b.png"])


def test_a_csv_matches_paths_by_their_end_and_takes_names_or_label_indices():
    names = ["cohort.zip/OAS1_0001/a.png", "cohort.zip/OAS1_0002/a.png", "cohort.zip/b.png"]
    text = "File,Stage,Subject\nOAS1_0001/a.png,Very_Mild_Demented,S1\nOAS1_0002/a.png,2,\nb.png,mild dementia,S3\n"
    truth = truth_from_csv(text.encode(), names)
    assert truth.labels == {names[0]: VERY_MILD, names[1]: NON, names[2]: MILD}
    assert truth.subjects == {names[0]: "S1", names[2]: "S3"}


@pytest.mark.parametrize("text, message", [
    ("name,label\na.png,0\n", r"needs the columns file and stage .*it has 'name', 'label'"),
    ("file,stage\na.png,Severe\nb.png,\n", r"unknown stages \('line 2: Severe', 'line 3: \(empty\)'\).*label index"),
    ("file,stage\na.png,0\nmissing.png,1\ngone/x.png,2\n", r"2 files named in the CSV were not given "
                                                          r"\('missing.png', 'gone/x.png'\)"),
    ("file,stage\nx.png,0\n", r"match more than one given file \('x.png'\)"),
    ("file,stage\na.png,0\na.png,1\n", r"given two different stages \('a.png'\)"),
    ("file,stage\n", "has no rows"),
])
def test_a_bad_truth_csv_says_what_is_wrong(text, message):
    with pytest.raises(TruthError, match=message):
        truth_from_csv(text, ["c.zip/a.png", "c.zip/b.png", "c.zip/s1/x.png", "c.zip/s2/x.png"])


def test_cohort_figures_match_scikit_learn_per_slice_and_per_subject():
    results = cohort()
    evaluation = evaluate_cohort(results, truth_from_folders([r.file for r in results]), n_bootstrap=20)
    assert (evaluation["labelled"], evaluation["unlabelled"], evaluation["failed"]) == (36, 1, 1)
    assert evaluation["unlabelled_files"] == ["cohort.zip/unsorted/extra.png"]
    rows = evaluation["rows"]
    y = np.array([CLASS_NAMES.index(r["true_label"]) for r in rows])
    probs = np.array([[r[f"p_{n}"] for n in CLASS_NAMES] for r in rows])
    subjects = np.array([r["subject"] for r in rows])
    ids = sorted(set(subjects))
    sy = np.array([y[subjects == s][0] for s in ids])
    sp = np.array([probs[subjects == s].mean(0) for s in ids])  # the subject rule: mean calibrated probabilities
    for level, (yy, pp) in {"slice": (y, probs), "subject": (sy, sp)}.items():
        m, pred = evaluation[level], pp.argmax(1)
        assert m["n"] == len(yy)
        assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(yy, pred))
        assert m["confusion_matrix"] == skm.confusion_matrix(yy, pred, labels=range(4)).tolist()
        assert m["quadratic_weighted_kappa"] == pytest.approx(
            skm.cohen_kappa_score(yy, pred, weights="quadratic", labels=list(STAGE_ORDER)))  # stages in order
        assert m["any_dementia_auc"] == pytest.approx(skm.roc_auc_score(yy != NON, 1 - pp[:, NON]))
        for c, name in enumerate(CLASS_NAMES):
            assert m["per_class"][name]["roc_auc"] == pytest.approx(skm.roc_auc_score(yy == c, pp[:, c]))
            assert m["per_class"][name]["pr_auc"] == pytest.approx(skm.average_precision_score(yy == c, pp[:, c]))
        assert m["bootstrap"]["resamples"] == 20
        lo, hi = m["ci95"]["balanced_accuracy"]
        assert lo <= m["balanced_accuracy"] <= hi
        assert m["calibration"]["temperature"] == 1.25 and m["calibration"]["ece_after"] == pytest.approx(m["ece"])
    assert evaluation["slice"]["bootstrap"]["unit"] == "subject"  # slices of one brain resampled together
    assert [r["subject"] for r in evaluation["subject_rows"]] == ids
    assert evaluation["subjects"] == 12 and evaluation["notes"] == []
    flags = evaluation["flags"]
    flagged = np.array(["out of distribution" in r["flags"] for r in rows])
    assert flags["out of distribution"] == flags["flagged"] == flagged.sum() > 0
    assert flags["low agreement"] == 12  # the first slice of each subject: half the variants agree
    assert flags["accuracy_flagged"] == pytest.approx((probs.argmax(1) == y)[flagged].mean())


def test_a_small_cohort_says_which_figures_are_undefined():
    results = [result(f"c.zip/No dementia/s{i}.png", [0.2, 0.1, 0.6, 0.1]) for i in range(3)]
    results += [result(f"c.zip/Mild_Demented/s{i}.png", [0.6, 0.1, 0.2, 0.1]) for i in range(2)]
    evaluation = evaluate_cohort(results, truth_from_folders([r.file for r in results]), n_bootstrap=10)
    assert evaluation["subject"] is None  # every file its own subject: no subject level
    assert np.isnan(evaluation["slice"]["per_class"]["Moderate_Demented"]["roc_auc"])
    assert any("No slices of moderate dementia, very mild dementia" in n and "undefined" in n
               for n in evaluation["notes"])
    only = [result(f"c.zip/Non_Demented/s{i}.png", [0.2, 0.1, 0.6, 0.1]) for i in range(3)]
    notes = evaluate_cohort(only, truth_from_folders([r.file for r in only]), n_bootstrap=5)["notes"]
    assert any("Every slice is no dementia: no ROC or PR curve" in n for n in notes)


def test_a_subject_with_two_stages_or_nothing_labelled_is_refused():
    results = [result("c.zip/Non_Demented/S1/a.png", [0.1, 0.1, 0.7, 0.1]),
               result("c.zip/Mild_Demented/S1/b.png", [0.7, 0.1, 0.1, 0.1])]
    with pytest.raises(TruthError, match=r"different true stages \('S1'\)"):
        evaluate_cohort(results, truth_from_folders([r.file for r in results]), n_bootstrap=5)
    with pytest.raises(TruthError, match="None of the classified files has a true stage"):
        evaluate_cohort([results[0]], truth_from_csv("file,stage\nb.png,0\n", ["c.zip/Mild_Demented/S1/b.png"]))


def test_the_cohort_report_states_figures_flags_and_choices_in_pdf_and_html():
    import io

    from pypdf import PdfReader

    from model.reports.documents import cohort_report

    results = cohort()
    evaluation = evaluate_cohort(results, truth_from_folders([r.file for r in results]), n_bootstrap=10)
    choices = {"referral": {"share": 20, "threshold": 0.512, "kept": 29, "of": 36, "unit": "slices",
                            "accuracy": 0.9, "balanced_accuracy": 0.8}}
    pdf = cohort_report(evaluation, stamp={}, fmt="pdf", choices=choices)
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).replace("\n", " ")
    for wanted in ("Evaluation on your cohort", "36 labelled slices of 12 subjects", "per subject", "per slice",
                   "flagged out of distribution", "least confident 20%", "at least 0.512",
                   "not for the diagnosis of any patient", "cohort.zip/unsorted/extra.png"):
        assert wanted in text, wanted
    page = cohort_report(evaluation, stamp={}, fmt="html").decode()
    assert page.startswith("<!doctype html>") and "Calibration (subjects)" in page and "least confident" not in page
