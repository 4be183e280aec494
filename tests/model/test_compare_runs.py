import pytest
import torch

from model import compare_runs


def test_mcnemar_counts_discordant_pairs_and_is_one_without_them():
    a = [True, True, True, False, False, True]
    b = [False, False, False, True, False, True]
    t = compare_runs.mcnemar(a, b)
    assert (t["only_a"], t["only_b"], t["both"]) == (3, 1, 1)
    assert t["p_value"] == pytest.approx(0.625)  # two-sided exact binomial, 1 of 4 at p = 0.5
    assert compare_runs.mcnemar([True, False], [True, False])["p_value"] == 1.0
    with pytest.raises(ValueError, match="one length"):
        compare_runs.mcnemar([True], [True, False])


def test_an_ensemble_of_runs_that_err_on_different_slices_fixes_both():
    labels = torch.tensor([0, 1, 2, 3])
    good = torch.eye(4) * 0.7 + 0.075
    a, b = good.clone(), good.clone()
    a[0] = torch.tensor([0.3, 0.0, 0.7, 0.0])  # a misses slice 0, b misses slice 1, each narrowly
    b[1] = torch.tensor([0.0, 0.4, 0.6, 0.0])
    rows = {tuple(r["runs"]): r for r in compare_runs.ensembles({"a": a, "b": b}, labels)}
    assert rows[("a",)]["errors"] == 1 and rows[("b",)]["errors"] == 1
    assert rows[("a", "b")]["errors"] == 0 and rows[("a", "b")]["moderate_recalled"] == "1/1"
    assert rows[("b",)]["moderate_recalled"] == "0/1" and rows[("b",)]["predicted_moderate"] == 0


def test_cli_compares_two_runs_and_refuses_a_different_split(tmp_path, data_dir, capsys):
    from model.train import TrainConfig, main

    common = dict(data_dir=str(data_dir), image_size=32, epochs=1, batch_size=16, limit=300,
                  eval_batch_size=64, threads=1, select="last")
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        main(TrainConfig(output_dir=str(tmp_path / name), seed=seed, **common))
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "McNemar p" in out and f"{tmp_path / 'a'} + {tmp_path / 'b'}: errors" in out
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "c")]) == 2
    assert "other slices" in capsys.readouterr().err
    assert compare_runs.main([str(tmp_path / "a")]) == 2
