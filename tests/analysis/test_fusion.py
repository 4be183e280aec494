"""analysis.fusion: image probabilities plus age and sex, fitted out of fold, against each part (F1, issue 18)."""
import numpy as np

from analysis.fusion import fuse
from model.training.floors import logistic_out_of_fold as out_of_fold


def cohort(n=300, seed=0, age_informative=True):
    rng = np.random.default_rng(seed)
    y = rng.choice([0, 2, 3], n, p=[0.2, 0.5, 0.3])  # mild, none, very mild
    demented = (y != 2).astype(float)
    image = rng.dirichlet(np.ones(4), n) * 0.7
    image[:, 2] += 0.3 * (1 - demented) * rng.random(n)  # a weak image signal
    image /= image.sum(1, keepdims=True)
    age = 75 + (8 * demented if age_informative else 0) + rng.normal(0, 3, n)
    clinical = np.column_stack([age, rng.integers(0, 2, n).astype(float)])
    return image, clinical, y, np.arange(n) % 5


def test_out_of_fold_probabilities_come_from_models_that_never_saw_the_row():
    image, clinical, y, folds = cohort()
    probs = out_of_fold(clinical, y, folds)
    assert np.allclose(probs.sum(1), 1) and (probs[:, 1] == 0).all()  # a stage with no subjects gets nothing
    moved = y.copy()
    moved[folds == 0] = 2  # fold 0's own labels changed:
    again = out_of_fold(clinical, moved, folds)
    assert np.allclose(again[folds == 0], probs[folds == 0])  # its predictions do not move
    assert not np.allclose(again[folds == 1], probs[folds == 1])  # fold 1's model did learn from fold 0


def test_fusion_beats_the_image_only_when_age_carries_signal():
    informative = fuse(*cohort(age_informative=True), n_bootstrap=300)
    assert informative["fusion_minus_image"]["auc_difference_ci95"][0] > 0  # age adds what the image lacks
    assert informative["figures"]["age_sex"]["auc"] > 0.8
    matched = fuse(*cohort(age_informative=False), n_bootstrap=300)  # an age-matched cohort, as OASIS here
    assert matched["figures"]["age_sex"]["auc"] < 0.65
    assert matched["fusion_minus_image"]["auc_difference_ci95"][0] < 0 < \
        matched["fusion_minus_age_sex"]["auc_difference_ci95"][1]
    assert matched["subjects"] == 300
