"""The finished folds committed in docs/runs/ give back the figures their summary states: the summaries there are
computed from the committed logits, not typed, and a later session that resumes a run starts from the same numbers."""
import json

import numpy as np
import pytest

from analysis.folds import fold_logits
from analysis.partial_folds import compare
from model.core.constants import PROJECT_ROOT
from model.training.crossval import load_everything

RUNS = PROJECT_ROOT / "docs" / "runs"
FINISHED = sorted(p.parent.name for p in RUNS.glob("*/summary.json"))


@pytest.fixture(scope="module")
def everything(data_dir):
    data, groups, _ = load_everything(data_dir)
    return data.labels.numpy(), groups


def test_there_is_a_finished_run_to_check():
    assert "r5" in FINISHED


@pytest.mark.parametrize("run", FINISHED)
def test_a_finished_runs_folds_cover_every_slice_once_and_give_its_figures(run, everything):
    labels, groups = everything
    plan = json.loads((RUNS / run / "plan.json").read_text())
    logits, fold = fold_logits(RUNS / run, len(labels))
    assert (fold >= 0).all() and set(fold) == set(range(plan["folds"])) and not np.isnan(logits).any()
    for k in range(plan["folds"]):  # a subject's slices never straddle two folds
        assert not set(groups[fold == k]) & set(groups[(fold != k)])
    figures = compare({run: logits}, fold, labels, groups, n_bootstrap=0)["runs"][run]
    network = next(r for r in json.loads((RUNS / run / "summary.json").read_text())["summary"]["subject"]
                   if r["method"] == "network")
    assert figures["subjects"] == network["n"] == 200
    assert figures["auc"] == pytest.approx(network["any_dementia_auc"], abs=1e-9)
    assert figures["balanced_accuracy"] == pytest.approx(network["balanced_accuracy"], abs=1e-9)


REPEATS = sorted(p for p in (RUNS / "c1").glob("*_s*") if (p / "plan.json").is_file())


def test_the_repeated_cross_validation_pairs_its_recipes_on_the_same_folds(everything):
    """C1 (docs/runs/c1): each recipe's folds at a fold seed hold the same subjects as every other recipe's at that
    seed, so the repeats are paired; a fold never splits a subject; the folder's name is its plan's seed."""
    labels, groups = everything
    assert REPEATS, "no committed C1 fold seed"
    by_seed: dict[int, list[np.ndarray]] = {}
    for run in REPEATS:
        plan = json.loads((run / "plan.json").read_text())
        assert run.name.endswith(f"_s{plan['seed']}")
        _, fold = fold_logits(run, len(labels))
        for k in set(fold) - {-1}:
            assert not set(groups[fold == k]) & set(groups[(fold != k) & (fold >= 0)])
        by_seed.setdefault(plan["seed"], []).append(fold)
    for seed, folds in by_seed.items():
        for other in folds[1:]:  # where both recipes finished a fold, it holds the same slices
            both = (folds[0] >= 0) & (other >= 0)
            assert both.any() and np.array_equal(folds[0][both], other[both]), seed


def test_the_48px_recipes_seed_0_table_is_paired_with_r5s_seed_0(data_dir):
    """docs/runs/c1/ship_s0.csv (the out-of-fold table shipped until R5 replaced it) holds the same folds as
    docs/runs/r5, so C1's seed-0 repeat stays paired now that assets/ holds R5's table."""
    from analysis.repeated_cv import source_folds

    data, _, splits = load_everything(data_dir)
    n = len(data.labels)
    old = source_folds(RUNS / "c1" / "ship_s0.csv", n, splits, data.ids)
    r5 = source_folds(RUNS / "r5", n, splits, data.ids)
    assert (old >= 0).all() and np.array_equal(old, r5)
