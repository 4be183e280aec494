"""The slice window of analysis.pooling is chosen on each fold's inner subjects alone."""
import numpy as np

from analysis import pooling
from model.core.constants import CLASS_NAMES

NON, MILD = CLASS_NAMES.index("Non_Demented"), CLASS_NAMES.index("Mild_Demented")


def test_the_window_follows_where_the_inner_subjects_signal_is(tmp_path):
    """Inner subjects whose late slices carry the stage and early slices mislead: a late window is chosen."""
    rng = np.random.default_rng(0)
    subjects, per = 12, 32
    groups = np.repeat([f"s{i}" for i in range(subjects)], per)
    labels = np.repeat([NON, MILD] * (subjects // 2), per)
    positions = np.tile(np.arange(per), subjects)
    logits = rng.normal(0, 1, (len(labels), 4))
    late = positions >= 16
    logits[late, MILD] += np.where(labels[late] == MILD, 2.0, -2.0)
    logits[~late, MILD] += np.where(labels[~late] == MILD, -2.5, 2.5)  # early slices mislead
    (tmp_path / "fold0").mkdir()
    np.savez(tmp_path / "fold0" / "inner.npz", index=np.arange(len(labels)), logits=logits)
    chosen = pooling.choose_windows(tmp_path, labels, groups, positions, 1)
    assert chosen[0] in (16, 22)
    assert pooling.window_auc(__import__("torch").softmax(__import__("torch").from_numpy(logits), 1).numpy(),
                              labels, groups, positions, 16) > 0.9
