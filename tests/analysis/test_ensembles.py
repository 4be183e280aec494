"""analysis.ensembles: the mean of two members that err on different subjects beats each member."""
import numpy as np
import pytest

from analysis import ensembles
from model.core.constants import CLASS_NAMES

NON, MILD = CLASS_NAMES.index("Non_Demented"), CLASS_NAMES.index("Mild_Demented")


def member(labels: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """Slice probabilities that give each slice its true stage with 0.7, except on `wrong` slices (0.3)."""
    p = np.full((len(labels), 4), 0.0)
    right = np.where(wrong, 0.3, 0.7)
    other = np.where(labels == NON, MILD, NON)
    p[np.arange(len(labels)), labels] = right
    p[np.arange(len(labels)), other] = 1 - right
    return p


def test_an_ensemble_of_members_with_different_errors_beats_both():
    subjects, per = 40, 4
    groups = np.repeat([f"s{i:02d}" for i in range(subjects)], per)
    labels = np.repeat([NON, MILD] * (subjects // 2), per)
    subject = np.repeat(np.arange(subjects), per)
    a = member(labels, subject % 4 == 0)  # wrong on a quarter of the subjects
    b = member(labels, subject % 4 == 1)  # wrong on another quarter
    floor = member(labels, subject % 2 == 0)  # wrong on half
    out = ensembles.score({"a": a, "b": b, "floor": floor}, {"ab": ["a", "b"]}, "a", ["floor"], labels, groups,
                          n_bootstrap=200)
    assert out["members"]["a"]["auc"] == pytest.approx(0.75, abs=0.01)
    ab = out["ensembles"]["ab"]
    assert ab["auc"] > out["members"]["a"]["auc"] and ab["auc"] > out["members"]["b"]["auc"]
    assert ab["paired"]["a"]["auc_difference"] > 0 and ab["paired"]["floor"]["auc_difference_ci95"][0] > 0
    assert set(ab["paired"]) == {"a", "floor"}


def test_pairs_must_be_named():
    assert ensembles.parse_pairs(["x=a+b"], "--ensemble") == {"x": "a+b"}
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        ensembles.parse_pairs(["a+b"], "--ensemble")
