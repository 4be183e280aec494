import json

import pytest
import torch

from analysis import prior_shift
from model.core.constants import NUM_CLASSES


def test_tau_zero_is_the_calibrated_softmax_and_tau_one_divides_the_prior_out():
    torch.manual_seed(0)
    logits = torch.randn(20, NUM_CLASSES)
    priors = prior_shift.class_priors([724, 49, 2566, 1781])
    assert sum(priors) == pytest.approx(1.0)
    assert torch.allclose(prior_shift.shifted_probabilities(logits, 0.5, priors, 0.0), torch.softmax(logits / 0.5, 1))
    plain = torch.softmax(logits / 0.5, 1)
    balanced = plain / torch.tensor(priors, dtype=torch.float32)
    balanced = balanced / balanced.sum(1, keepdim=True)
    assert torch.allclose(prior_shift.shifted_probabilities(logits, 0.5, priors, 1.0), balanced, atol=1e-6)
    with pytest.raises(ValueError, match="positive count"):
        prior_shift.class_priors([10, 0, 5, 5])


def test_a_shift_moves_only_unsure_slices_towards_the_rare_class():
    priors = prior_shift.class_priors([700, 50, 2500, 1750])
    logits = torch.tensor([[0.0, -1.0, -5.0, 0.5],     # unsure: very mild first, moderate 1.5 logits behind
                           [-5.0, -5.0, -5.0, 9.0]])   # sure: very mild
    before = prior_shift.shifted_probabilities(logits, 1.0, priors, 0.0).argmax(1).tolist()
    after = prior_shift.shifted_probabilities(logits, 1.0, priors, 1.0).argmax(1).tolist()
    assert before == [3, 3] and after == [1, 3]


def test_sweep_scores_each_tau_and_choose_prefers_the_smaller_on_a_tie():
    priors = prior_shift.class_priors([700, 50, 2500, 1750])
    logits = torch.tensor([[4.0, -2, -2, -2], [-1.0, -1.5, -5, 0.0], [-2.0, -2, 4, -2], [-2.0, -2, -2, 4]])
    labels = torch.tensor([0, 1, 2, 3])
    rows = prior_shift.sweep(logits, labels, 1.0, priors, (0.0, 0.5, 1.0))
    assert [r["tau"] for r in rows] == [0.0, 0.5, 1.0]
    assert rows[0]["errors"] == 1 and rows[0]["recalled"]["Moderate_Demented"] == "0/1"
    assert rows[-1]["errors"] == 0 and rows[-1]["recall"]["Moderate_Demented"] == 1.0
    assert rows[0]["predicted"]["Moderate_Demented"] == 0 and rows[-1]["predicted"]["Moderate_Demented"] == 1
    assert [r["tau"] for r in prior_shift.sweep(logits, labels, 1.0, priors, (1.0, 0.5))] == [0.0, 0.5, 1.0]
    assert prior_shift.choose(rows) == min(r["tau"] for r in rows if r["errors"] == 0)
    tie = [{"tau": 0.5, "macro_f1": 0.9}, {"tau": 0.0, "macro_f1": 0.9}, {"tau": 1.0, "macro_f1": 0.8}]
    assert prior_shift.choose(tie) == 0.0


def test_cli_sweeps_a_buffered_run(tmp_path, data_dir, capsys):
    from model.training.train import TrainConfig, main

    run = tmp_path / "run"
    main(TrainConfig(data_dir=str(data_dir), output_dir=str(run), image_size=32, epochs=1, batch_size=16,
                     limit=400, eval_batch_size=64, threads=1, val_buffer=20.0, select="last"))
    (run / "best.pt").unlink()  # a --select last run is scored from last.pt
    assert prior_shift.main([str(run), "--grid", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert "chosen tau" in out and "val_buffer 20.0" in out
    summary = json.loads((run / "prior_shift.json").read_text())
    assert [r["tau"] for r in summary["sweep"]] == [0.0, 1.0] and summary["val_buffer"] == 20.0
    assert summary["chosen_tau"] == prior_shift.choose(summary["sweep"])
    lookup = summary["lookup"]  # the nearest-neighbour lookup, scored on the same validation slices
    assert lookup["n"] == summary["val_slices"] and 0 <= lookup["errors"] <= lookup["n"]
    assert sum(int(v.split("/")[1]) for v in lookup["recalled"].values()) == lookup["n"]
    assert sum(int(v.split("/")[0]) for v in lookup["recalled"].values()) == lookup["n"] - lookup["errors"]
    assert lookup["accuracy"] == pytest.approx(1 - lookup["errors"] / lookup["n"])
    from analysis.baseline import lookup_score
    from model.training.train import load_data
    train_set, val_set = load_data(TrainConfig(data_dir=str(data_dir), limit=400, val_buffer=20.0))
    assert lookup == lookup_score(train_set, val_set)  # the buffered train slices are its reference
    assert "nearest-neighbour lookup on the same split" in out
    counts = summary["class_counts"]
    assert sum(counts["validation"]) == summary["val_slices"] and min(counts["validation"]) >= 1  # stratified
    assert sum(counts["trained_on"]) < 400 - summary["val_slices"]  # the buffer dropped near-copies
    assert summary["class_priors"] == pytest.approx([c / sum(counts["trained_on"]) for c in counts["trained_on"]])
    assert summary["checkpoint"].endswith("last.pt") and summary["epoch"] == 1 and "train" in summary["data_sha256"]
    assert all(0 <= r["ece"] <= 1 for r in summary["sweep"])


def test_cli_errors_are_messages(tmp_path, capsys):
    assert prior_shift.main([str(tmp_path / "nothing")]) == 2
    assert "no training checkpoint" in capsys.readouterr().err
    assert prior_shift.main([str(tmp_path), "--grid", "-1"]) == 2
    assert "tau must be >= 0" in capsys.readouterr().err
