import json

import pytest
import torch

from analysis import compare_runs


def test_mcnemar_counts_discordant_pairs_and_is_one_without_them():
    a = [True, True, True, False, False, True]
    b = [False, False, False, True, False, True]
    t = compare_runs.mcnemar(a, b)
    assert (t["only_a"], t["only_b"], t["both"]) == (3, 1, 1)
    assert t["p_value"] == pytest.approx(0.625)  # two-sided exact binomial, 1 of 4 at p = 0.5
    assert compare_runs.mcnemar([True, False], [True, False])["p_value"] == 1.0
    with pytest.raises(ValueError, match="1-D arrays of one length"):
        compare_runs.mcnemar([True], [True, False])
    with pytest.raises(ValueError, match="1-D"):
        compare_runs.mcnemar(True, True)


def test_an_ensemble_of_runs_that_err_on_different_slices_fixes_both():
    labels = torch.tensor([0, 1, 2, 3])
    good = torch.eye(4) * 0.7 + 0.075
    a, b = good.clone(), good.clone()
    a[0] = torch.tensor([0.3, 0.0, 0.7, 0.0])  # a misses slice 0, b misses slice 1, each narrowly
    b[1] = torch.tensor([0.0, 0.4, 0.6, 0.0])
    rows = {tuple(r["runs"]): r for r in compare_runs.ensembles({"a": a, "b": b}, labels)}
    assert rows[("a",)]["errors"] == 1 and rows[("b",)]["errors"] == 1
    assert rows[("a", "b")]["errors"] == 0 and rows[("a", "b")]["recalled"]["Moderate_Demented"] == "1/1"
    assert rows[("b",)]["recalled"]["Moderate_Demented"] == "0/1" and rows[("b",)]["predicted"]["Non_Demented"] == 2
    assert rows[("a",)]["accuracy"] == 0.75 and rows[("a",)]["recalled"]["Mild_Demented"] == "0/1"


def fake_runs(monkeypatch, runs: dict):
    """validation_logits replaced by fixed logits per run dir name: {name: (logits, labels, val_ids)}."""
    from model.core.dataset import SliceSet
    from analysis.prior_shift import ValidationRun

    def validation_logits(run, device="auto"):
        logits, labels, ids = runs[run.name]
        val_set = SliceSet(torch.zeros(len(ids), 1, 4, 4, dtype=torch.uint8), labels, ids)
        return ValidationRun(logits, labels, {"val_buffer": 20.0},
                             {"data_sha256": {"train": "x"}, "epoch": 1, "checkpoint": str(run / "last.pt")},
                             val_set, val_set)
    monkeypatch.setattr("analysis.prior_shift.validation_logits", validation_logits)


def test_compare_scores_pairs_and_the_ensemble_against_the_best_run(monkeypatch, tmp_path, capsys):
    labels = torch.tensor([0, 1, 2, 3, 2, 2])
    ids = tuple(f"row {i}" for i in range(6))
    right = torch.nn.functional.one_hot(labels, 4).float() * 4
    a, b = right.clone(), right.clone()
    a[0], a[4] = torch.tensor([0.0, 0, 3, 0]), torch.tensor([0.0, 0, 0, 5])   # a wrong on 0 and 4
    b[1] = torch.tensor([0.0, 2, 3, 0])                                     # b wrong on 1
    fake_runs(monkeypatch, {"a": (a, labels, ids), "b": (b, labels, ids)})
    out = tmp_path / "cmp.json"
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (pair,) = result["pairs"]
    scores = {" + ".join(r["runs"]): r for r in result["scores"]}
    assert (pair["only_a"], pair["only_b"], pair["both"]) == (2, 1, 0)
    assert pair["only_a"] + pair["both"] == scores[str(tmp_path / "a")]["errors"] == 2
    assert result["ensemble_vs_best_single"]["b"] == str(tmp_path / "b")  # the run with fewer errors
    assert set(result["runs"]) == {str(tmp_path / "a"), str(tmp_path / "b")} and result["val_slices"] == 6
    assert "exact McNemar p = " in capsys.readouterr().out


def test_compare_refuses_other_slices_and_the_same_run_twice(monkeypatch, tmp_path, capsys):
    labels = torch.tensor([0, 1, 2, 3])
    logits = torch.randn(4, 4)
    same_labels_other_slices = tuple(f"other {i}" for i in range(4))
    fake_runs(monkeypatch, {"a": (logits, labels, ("0", "1", "2", "3")), "c": (logits, labels, same_labels_other_slices)})
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "c")]) == 2
    assert "not validated on the same split: val_ids differ" in capsys.readouterr().err
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "a") + "/"]) == 2
    assert "two or more different runs" in capsys.readouterr().err
    assert compare_runs.main([str(tmp_path / "a")]) == 2
    assert compare_runs.split_mismatch({"val_ids": (1,), "data_sha256": {}, "val_buffer": 0.0},
                                       {"val_ids": (1,), "data_sha256": {}, "val_buffer": 20.0}) == "val_buffer"


def test_cli_compares_two_real_runs(tmp_path, data_dir, capsys):
    from model.training.train import TrainConfig, main

    common = dict(data_dir=str(data_dir), image_size=32, epochs=1, batch_size=16, limit=300,
                  eval_batch_size=64, threads=1, select="last")
    for name in ("a", "b"):
        main(TrainConfig(output_dir=str(tmp_path / name), **common))
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "McNemar p" in out and f"{tmp_path / 'a'} + {tmp_path / 'b'}: errors" in out
    main(TrainConfig(output_dir=str(tmp_path / "c"), seed=1, **common))  # another seed: other validation slices
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "c")]) == 2
    assert "val_ids differ" in capsys.readouterr().err


def test_shipped_comparison_is_consistent():
    from model.core.constants import RUN_COMPARISON_PATH

    result = json.loads(RUN_COMPARISON_PATH.read_text())
    scores = {" + ".join(r["runs"]): r for r in result["scores"]}
    for pair in [*result["pairs"], result["ensemble_vs_best_single"]]:
        assert pair["only_a"] + pair["both"] == scores[pair["a"]]["errors"]
        assert pair["only_b"] + pair["both"] == scores[pair["b"]]["errors"]
    singles = [r for r in result["scores"] if len(r["runs"]) == 1]
    assert result["ensemble_vs_best_single"]["b"] == min(singles, key=lambda r: r["errors"])["runs"][0]
    assert all(r["recalled"]["Moderate_Demented"] == "5/5" for r in result["scores"])
