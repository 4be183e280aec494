"""The out-of-distribution guard, near-copy flag, nearest slices and uncertainty (model.qualify.trust)."""
import json

import numpy as np
import pytest

from analysis.ood_images import made_images, shipped_pictures
from model.qualify.trust import (
    TRUST_BANK_PATH,
    TRUST_PATH,
    TrustBank,
    TrustBankError,
    assess,
    spread_sentence,
    tta_views,
    uncertainty,
)
from model.training.build_guard import out_of_fold_scores, thresholds_from


def heads(n: int, seed: int, subjects: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n synthetic axial slices (n, 128, 128) of `subjects` heads (each head a fixed shape, slices differ by
    noise and a small shift of the ventricles)."""
    rng = np.random.default_rng(seed)
    subjects = subjects or n
    y, x = np.mgrid[-1:1:128j, -1:1:128j]
    shapes = [(rng.uniform(0.75, 0.88), rng.uniform(0.86, 0.95), rng.uniform(0.08, 0.2)) for _ in range(subjects)]
    out, group = [], []
    for i in range(n):
        a, b, w = shapes[i % subjects]
        r = (x / a) ** 2 + (y / b) ** 2
        img = np.where(r < 1, 90.0, 0.0) + np.where((r > 0.82) & (r < 1), 90.0, 0.0)
        dy = rng.uniform(-0.05, 0.05)
        img = np.where(((np.abs(x) - 0.12) / w) ** 2 + ((y - dy) / 0.35) ** 2 < 1, 15.0, img)
        out.append(np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8))
        group.append(f"s{i % subjects}")
    return np.stack(out), np.array(group, dtype=object)


@pytest.fixture(scope="module")
def bank():
    images, groups = heads(120, 0, subjects=30)
    scores, fold = out_of_fold_scores(images, groups, np.ones(len(images), bool), n_folds=5)
    b = TrustBank.fit(images, np.zeros(len(images), int), list(groups), [f"p{i}" for i in range(len(images))],
                      n_components=16, thresholds=thresholds_from(scores))
    b.thresholds |= {"spread_low": 0.01, "spread_high": 0.05}
    return b


def test_heads_pass_and_other_pictures_are_flagged(bank):
    new_heads, _ = heads(40, 1)
    assert np.mean([r.out_of_distribution for r in bank.check(new_heads)]) <= 0.1
    others = np.stack(list(made_images(3).values()))
    reports = bank.check(others)
    assert all(r.out_of_distribution and r.reasons for r in reports)
    flat = bank.check(np.full((1, 128, 128), 0, np.uint8))[0]
    assert any("flat" in reason for reason in flat.reasons)


def test_colour_pictures_say_so(bank):
    image = heads(1, 5)[0]
    assert not bank.check(image, colour=[0.0])[0].out_of_distribution
    report = bank.check(image, colour=[0.3])[0]
    assert report.out_of_distribution and any("colour" in r for r in report.reasons)


def test_a_training_slice_is_a_near_copy_with_its_own_subject_nearest(bank):
    images, groups = heads(120, 0, subjects=30)  # the bank's own slices
    reports = bank.check(images[:10], k=3)
    assert all(r.near_copy for r in reports)
    assert [r.neighbours[0].subject for r in reports] == list(groups[:10])
    assert all(len(r.neighbours) == 3 and r.neighbours[0].distance <= r.neighbours[1].distance for r in reports)


def test_out_of_fold_scores_score_every_slice_without_its_subject():
    images, groups = heads(60, 2, subjects=12)
    scores, fold = out_of_fold_scores(images, groups, np.ones(60, bool), n_folds=3)
    assert scores.shape == (60, 3) and set(fold) == {0, 1, 2}
    for g in set(groups):  # a subject sits in one fold
        assert len(set(fold[groups == g])) == 1
    assert (scores[:, 2] > 0).all()  # no slice finds itself in its bank


def test_save_load_roundtrip_and_tampering_refused(bank, tmp_path):
    path, record = tmp_path / "bank.safetensors", tmp_path / "trust.json"
    sha = bank.save(path, {"note": "test"}, record)
    loaded = TrustBank.load(path, record)
    images = heads(5, 7)[0]
    a, b = bank.check(images), loaded.check(images)
    assert [r.out_of_distribution for r in a] == [r.out_of_distribution for r in b]
    assert np.allclose([r.residual for r in a], [r.residual for r in b], atol=0.2)  # float16 components
    assert json.loads(record.read_text())["bank_sha256"] == sha
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(TrustBankError, match="altered"):
        TrustBank.load(path, record)
    with pytest.raises(TrustBankError, match="missing"):
        TrustBank.load(tmp_path / "none.safetensors", record)


def test_tta_views_are_small_changes():
    image = heads(1, 3)[0][0]
    views = tta_views(image)
    assert views.shape == (8, 128, 128) and views.dtype == np.uint8
    assert np.array_equal(views[0], image) and np.array_equal(views[1], image[:, ::-1])
    assert all(np.abs(v.astype(int) - image).mean() < 20 for v in views)


def test_uncertainty_and_assess_with_a_tiny_network(tiny_predictor, bank):
    images = heads(3, 4)[0]
    spread, agreement = uncertainty(tiny_predictor, images)
    views = tiny_predictor.probabilities(tta_views(images[1])).numpy()  # (8, C): the 8 variants of one slice
    label = views[0].argmax()
    assert spread.shape == (3,) and spread[1] == pytest.approx(views[:, label].std(), abs=1e-6)
    assert agreement[1] == pytest.approx((views.argmax(1) == label).mean())
    still, same = uncertainty(tiny_predictor, np.zeros((1, 64, 64), np.uint8))  # every variant of black is black
    assert still[0] == pytest.approx(0.0, abs=1e-6) and same[0] == 1.0
    results = assess(tiny_predictor, images, bank)
    assert [r.prediction.label for r in results] == tiny_predictor.probabilities(images).argmax(1).tolist()
    record = results[0].as_dict()
    assert set(record) >= {"prediction", "probabilities", "uncertainty", "flags", "reliable", "guard"}
    assert record["uncertainty"]["level"] in ("low", "typical", "high")
    noise = np.random.default_rng(0).integers(0, 256, (1, 128, 128), dtype=np.uint8)
    flagged = assess(tiny_predictor, noise, bank)[0]
    assert not flagged.reliable and flagged.flags() == ["out of distribution"]
    assert assess(tiny_predictor, images[:1])[0].flags() == ["no guard"]
    assert "8 variants" in spread_sentence(0.03, 0.75, bank.thresholds)
    assert "AUROC" not in spread_sentence(0.03, 0.75, bank.thresholds)  # nothing measured, nothing claimed
    assert "does not mark wrong answers (AUROC 0.49" in spread_sentence(0.03, 0.75, bank.thresholds, 0.494)
    assert "only weakly (AUROC 0.57" in spread_sentence(0.03, 0.75, bank.thresholds, 0.566)


# ------------------------------------------------------------------ the shipped guard
shipped = pytest.mark.skipif(not TRUST_BANK_PATH.is_file(), reason="no shipped trust bank")


@shipped
def test_shipped_guard_flags_at_least_95_percent_of_other_images():
    """Images drawn with seeds the guard's exploration never used, and pictures installed packages carry."""
    bank = TrustBank.load()
    images = [im for seed in (30, 31, 32) for im in made_images(seed).values()] + list(shipped_pictures().values())
    flagged = [r.out_of_distribution for r in bank.check(np.stack(images))]
    assert len(images) >= 35 and np.mean(flagged) >= 0.95


@shipped
def test_shipped_record_meets_the_targets():
    record = json.loads(TRUST_PATH.read_text())
    assert record["false_alarms"]["cross_fitted"] <= 0.02
    assert record["seen_brains"]["near_copy"] >= 0.9
    assert record["never_trained_subjects"]["near_copy"] <= 0.02


@shipped
def test_shipped_guard_on_real_slices(data_dir):
    """Never-trained subjects' slices pass (<= 2% flagged); seen brains' test slices are near-copies; real
    brains turned, inverted or saturated are flagged."""
    from model.core.dataset import load_split_with_keys
    from model.core.dataset import subjects_for

    record = json.loads(TRUST_PATH.read_text())
    unseen = set(record["built_with"]["unseen_subjects"]) if "unseen_subjects" in record["built_with"] else None
    test, keys = load_split_with_keys("test", data_dir)
    groups = subjects_for("test", keys.path, keys.sha256)
    bank = TrustBank.load()
    never = np.isin(groups, list(set(groups) - set(bank.subjects))) if unseen is None else np.isin(groups, list(unseen))
    reports = bank.check(test.images[never, 0].numpy())
    assert never.sum() >= 100 and np.mean([r.out_of_distribution for r in reports]) <= 0.02
    seen = bank.check(test.images[~never, 0].numpy()[:300])
    assert np.mean([r.near_copy for r in seen]) >= 0.9
    brains = test.images[:, 0].numpy()
    turned = np.stack([im for seed in (40, 41) for k, im in made_images(seed, brains).items() if k.startswith("brain")])
    assert np.mean([r.out_of_distribution for r in bank.check(turned)]) >= 0.95
