"""The never-seen answer: the out-of-fold prediction for a training subject, from the cross-validation table."""
import numpy as np
import pandas as pd
import pytest

from model.core.constants import CLASS_NAMES, CROSSVAL_PREDICTIONS_PATH
from model.qualify.unseen import never_seen


def test_the_subject_answer_is_the_mean_of_its_out_of_fold_slices(tmp_path):
    rows = []
    for i, p_non in enumerate([0.9, 0.5, 0.1]):
        rows.append({"split": "train", "id": f"Non_Demented/s{i}.jpg", "subject": "OAS1_X", "fold": 3,
                     "true_label": "Non_Demented", "p_Mild_Demented": (1 - p_non) / 2, "p_Moderate_Demented": 0.0,
                     "p_Non_Demented": p_non, "p_Very_Mild_Demented": (1 - p_non) / 2})
    rows.append({**rows[0], "subject": "OAS1_Y", "id": "other.jpg"})
    path = tmp_path / "oof.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    answer = never_seen("OAS1_X", "Non_Demented/s2.jpg", path)
    assert answer.fold == 3 and answer.true_label == CLASS_NAMES.index("Non_Demented")
    assert answer.probabilities[CLASS_NAMES.index("Non_Demented")] == pytest.approx(0.5)
    assert answer.slice_probabilities[CLASS_NAMES.index("Non_Demented")] == pytest.approx(0.1)
    assert answer.slice_label != answer.label or answer.label == CLASS_NAMES.index("Non_Demented")
    assert never_seen("OAS1_X", "not/its/slice.jpg", path).slice_probabilities is None
    assert never_seen("OAS1_Z", None, path) is None
    assert never_seen("OAS1_X", None, tmp_path / "missing.csv") is None


def test_every_shipped_subject_has_a_never_seen_answer():
    table = pd.read_csv(CROSSVAL_PREDICTIONS_PATH)
    subject = table.subject.iloc[0]
    answer = never_seen(subject, table.id.iloc[0])
    assert answer is not None and np.isclose(sum(answer.probabilities), 1, atol=1e-4)
    assert answer.slice_probabilities is not None


def test_a_near_copy_carries_the_never_seen_answer_in_its_record(tiny_predictor, test_slices):
    """Every output of a near-copy (the API, the CLI, the pages' downloads) carries what the fold network that never
    saw the recognised subject said of it; a slice that is no near-copy carries none."""
    from model.qualify.trust import TrustBank
    from model.serve.pipeline import classify_slices

    table = pd.read_csv(CROSSVAL_PREDICTIONS_PATH)
    firsts = table.groupby("subject").head(1).iloc[:8]  # one real slice id of 8 shipped subjects
    images = test_slices.images[:, 0].numpy()
    everything_near = {"residual": 1e9, "histogram": 1e9, "near_copy": 1e9, "spread_low": 0.01, "spread_high": 0.05}
    bank = TrustBank.fit(images, test_slices.labels.numpy(), list(firsts.subject), list(firsts.id), n_components=4,
                         thresholds=everything_near)
    result = classify_slices(images[:2], ["a.png", "b.png"], predictor=tiny_predictor, bank=bank)[1]
    nearest = result.guard.nearest_training_slices[0]
    assert result.guard.near_copy and nearest.subject == firsts.subject.iloc[1]
    expected = never_seen(nearest.subject, nearest.path)
    record = result.record()["never_seen"]
    assert record["subject"] == nearest.subject and record["fold"] == expected.fold + 1
    assert record["prediction"] == CLASS_NAMES[expected.label] == result.row()["never_seen_prediction"]
    assert record["probabilities"][record["prediction"]] == pytest.approx(max(expected.probabilities), abs=1e-6)
    assert record["true_stage"] == CLASS_NAMES[expected.true_label]
    assert record["slice_prediction"] == CLASS_NAMES[expected.slice_label]

    not_near = TrustBank.fit(images, test_slices.labels.numpy(), list(firsts.subject), list(firsts.id),
                             n_components=4, thresholds={**everything_near, "near_copy": 0.0})
    alone = classify_slices(images[:1], ["a.png"], predictor=tiny_predictor, bank=not_near)[0]
    assert not alone.guard.near_copy and alone.never_seen is None and alone.row()["never_seen_prediction"] == ""
