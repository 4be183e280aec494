import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from model.core.constants import PROJECT_ROOT
from model.core.dataset import load_split
from model.training.train import (
    TrainConfig,
    class_weight_tensor,
    get_args_parser,
    lr_factor,
    main,
    make_optimizer,
    neighbour_blend,
    train_neighbours,
)


def tiny_config(tmp_path, data_dir, **kw):
    base = dict(data_dir=str(data_dir), output_dir=str(tmp_path / "run"), image_size=32, epochs=1, batch_size=16,
                limit=96, eval_batch_size=64, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_defaults_reproduce_the_model_card():
    cfg = TrainConfig(**vars(get_args_parser().parse_args([])))
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay) == ("sgd", 0.01, 0.9, 1e-3)
    assert (cfg.batch_size, cfg.epochs, cfg.image_size, cfg.val_fraction) == (16, 7, 224, 0.1)
    assert (cfg.lr_schedule, cfg.augment, cfg.class_weights, cfg.label_smoothing) == ("constant", False, "none", 0.0)
    optimizer, _ = make_optimizer(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)), cfg, 10)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-3, 1e-3]  # the card decayed every parameter


def test_norm_and_bias_parameters_can_be_spared_weight_decay():
    cfg = TrainConfig(norm_bias_decay=False, weight_decay=0.05)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    optimizer, _ = make_optimizer(net, cfg, 10)
    decayed, spared = optimizer.param_groups
    assert decayed["weight_decay"] == 0.05 and [p.ndim for p in decayed["params"]] == [4]
    assert spared["weight_decay"] == 0.0 and len(spared["params"]) == 3  # conv bias, BN weight and bias


def test_help_describes_every_option():
    import dataclasses

    from model.training.train import field_comments

    parser = get_args_parser()
    helps = {a.dest: a.help for a in parser._actions if a.dest != "help"}
    comments = field_comments(TrainConfig)
    fields = dataclasses.fields(TrainConfig)
    assert set(helps) == {f.name for f in fields}  # a flag for every option, and no other
    for field in fields:  # each help says what the option does and its default
        assert helps[field.name].startswith(comments[field.name].replace("%", "%%")), field.name
        assert helps[field.name].endswith(f"default: {field.default}"), field.name


def test_bad_option_lists_valid_ones(tmp_path, data_dir):
    with pytest.raises(ValueError, match=r"--optimizer 'adam' is not one of \['sgd', 'adamw'\]"):
        main(tiny_config(tmp_path, data_dir, optimizer="adam"))


def test_class_weights_favour_rare_classes_and_average_one():
    labels = torch.tensor([0] * 10 + [1] * 1 + [2] * 50 + [3] * 30)
    w = class_weight_tensor(labels, "sqrt")
    assert w[1] > w[0] > w[3] > w[2]
    assert (w[labels].mean()).item() == pytest.approx(1.0, abs=1e-5)
    assert class_weight_tensor(labels, "none") is None


def test_cosine_schedule_warms_up_then_decays():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.01)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(50, 100, 0, "constant") == 1.0


def test_one_epoch_smoke_run_exports_and_resumes(tmp_path, data_dir):
    export = tmp_path / "export"
    export.mkdir()
    (export / "selection_log.csv").write_text("epoch,train_loss\n")  # left by an earlier refit
    result = main(tiny_config(tmp_path, data_dir, export_dir=str(export), augment=True, class_weights="sqrt"))
    assert not (export / "selection_log.csv").exists()
    assert len(result["history"]) == 1 and result["temperature"] > 0
    config = json.loads((export / "model_config.json").read_text())
    assert config["image_size"] == 32 and config["train_config"]["augment"] is True
    assert set(config["data_sha256"]) == {"train", "test"}
    assert (export / "train_log.csv").read_text().startswith("epoch,train_loss")
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["data_sha256"] == config["data_sha256"] and state["config"]["augment"] is True
    # resuming a finished run continues to the new epoch count from the saved epoch
    result2 = main(tiny_config(tmp_path, data_dir, epochs=2, resume=True, export_dir=str(export), augment=True,
                               class_weights="sqrt"))
    assert [row["epoch"] for row in result2["history"]] == [1, 2]


def test_training_is_reproducible(tmp_path, data_dir):
    a = main(tiny_config(tmp_path / "a", data_dir, limit=48))["history"][0]
    b = main(tiny_config(tmp_path / "b", data_dir, limit=48))["history"][0]
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    wa = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, data_dir, monkeypatch):
    import model.training.train as train

    options = dict(limit=48, epochs=2, lr_schedule="cosine", optimizer="adamw", lr=1e-3, cutout=0.5, ema_decay=0.5)
    main(tiny_config(tmp_path / "straight", data_dir, **options))
    real_write_log = train.write_log

    def crash_after_first_epoch(path, history):
        real_write_log(path, history)
        raise KeyboardInterrupt  # the checkpoint of epoch 1 is on disk, as after a real stop

    monkeypatch.setattr(train, "write_log", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        main(tiny_config(tmp_path / "stopped", data_dir, **options))
    monkeypatch.setattr(train, "write_log", real_write_log)
    resumed = main(tiny_config(tmp_path / "stopped", data_dir, resume=True, **options))
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    a = torch.load(tmp_path / "straight" / "run" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "stopped" / "run" / "last.pt", weights_only=True)
    for part in ("model", "ema"):
        assert all(torch.allclose(a[part][k].float(), b[part][k].float(), atol=1e-6) for k in a[part]), part


def test_resuming_under_other_options_is_refused(tmp_path, data_dir):
    main(tiny_config(tmp_path, data_dir, limit=48, lr_schedule="cosine"))
    with pytest.raises(ValueError, match=r"--epochs 1 -> 3"):
        main(tiny_config(tmp_path, data_dir, limit=48, lr_schedule="cosine", epochs=3, resume=True))
    with pytest.raises(ValueError, match=r"--lr 0.01 -> 0.1"):
        main(tiny_config(tmp_path, data_dir, limit=48, lr_schedule="cosine", lr=0.1, resume=True))
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    state["data_sha256"] = {"train": "0" * 64}
    torch.save(state, tmp_path / "run" / "last.pt")
    with pytest.raises(ValueError, match="trained on other data files"):
        main(tiny_config(tmp_path, data_dir, limit=48, lr_schedule="cosine", resume=True))
    del state["config"]["norm_bias_decay"]  # a checkpoint from before the option: it never decayed them
    state["data_sha256"] = {}
    torch.save(state, tmp_path / "run" / "last.pt")
    with pytest.raises(ValueError, match="--norm-bias-decay False -> True"):
        main(tiny_config(tmp_path, data_dir, limit=48, lr_schedule="cosine", resume=True))
    # --select and --temperature act after the last epoch, so they may change
    state["config"]["norm_bias_decay"] = True
    torch.save(state, tmp_path / "run" / "last.pt")
    resumed = main(tiny_config(tmp_path, data_dir, limit=48, lr_schedule="cosine", resume=True, select="last"))
    assert [r["epoch"] for r in resumed["history"]] == [1]


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path, data_dir):
    from model.core.assets import ModelLoadError

    (tmp_path / "run").mkdir()
    for junk in (b"not a checkpoint", bytes(range(256)) * 4):
        (tmp_path / "run" / "last.pt").write_bytes(junk)
        with pytest.raises(ModelLoadError, match="not a usable training checkpoint"):
            main(tiny_config(tmp_path, data_dir, limit=48, resume=True))
    torch.save({"model": {}}, tmp_path / "run" / "last.pt")
    with pytest.raises(ModelLoadError, match="missing optimizer, scheduler, epoch, history, best"):
        main(tiny_config(tmp_path, data_dir, limit=48, resume=True))


def test_two_process_ddp_on_gloo(tmp_path, data_dir):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "model.training.train", "--device", "cpu", "--limit", "96", "--image-size", "32", "--epochs", "1",
           "--batch-size", "8", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "device cpu x2" in proc.stdout
    assert "weights identical on 2 ranks" in proc.stdout  # the all-reduce kept both processes in step
    assert (tmp_path / "ddp" / "last.pt").is_file()


def test_ema_weights_are_validated_exported_and_resumed(tmp_path, data_dir):
    export = tmp_path / "export"
    result = main(tiny_config(tmp_path, data_dir, ema_decay=0.9, export_dir=str(export)))
    row = result["history"][0]
    assert 0.0 <= row["raw_val_acc"] <= 1.0 and 0.0 <= row["val_acc"] <= 1.0
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    ema_weights = {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}
    assert not torch.equal(ema_weights["fc.weight"], state["model"]["fc.weight"])  # it is an average, not a copy
    exported = load_file(export / "resnet34_alzheimer.safetensors")
    torch.testing.assert_close(exported["fc.weight"].float(), ema_weights["fc.weight"], atol=1e-3, rtol=1e-3)
    resumed = main(tiny_config(tmp_path, data_dir, ema_decay=0.9, epochs=2, resume=True))
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    with pytest.raises(ValueError, match="ema-decay"):
        main(tiny_config(tmp_path, data_dir, ema_decay=1.0))


def test_neighbour_blend_keeps_weight_and_mixes_only_with_partners():
    gen = torch.Generator().manual_seed(0)
    pool = torch.stack([torch.full((1, 4, 4), v, dtype=torch.uint8) for v in (0, 100, 200)])
    images, partners = pool[:2], torch.tensor([[2], [2]])
    never = neighbour_blend(images, pool, partners, 0.0, gen)
    assert torch.equal(never, images)
    always = neighbour_blend(images, pool, partners, 1.0, gen)
    assert always.dtype == torch.uint8 and always.shape == images.shape
    assert (always[0] >= 0).all() and (always[0] <= 100).all()  # 0 blended towards 200 with weight >= 0.5
    assert (always[1] >= 100).all() and (always[1] <= 150).all()


def test_train_neighbours_are_same_class_and_never_self(data_dir):
    data = load_split("train", data_dir, limit=64)
    idx = train_neighbours(data, 2)
    assert idx.shape == (64, 2)
    assert (data.labels[idx] == data.labels[:, None]).all()
    crowded = torch.bincount(data.labels, minlength=4)[data.labels] > 2  # slices whose class has 2 others
    assert crowded.any() and not (idx[crowded] == torch.arange(64)[crowded, None]).any()


def test_neighbour_mix_and_cutout_reach_every_batch(tmp_path, data_dir, monkeypatch):
    from model.training import train

    calls = {"blend": [], "cutout": []}
    blend, cut = train.neighbour_blend, train.cutout
    monkeypatch.setattr(train, "neighbour_blend", lambda *a, **k: calls["blend"].append(a[3]) or blend(*a, **k))
    monkeypatch.setattr(train, "cutout", lambda *a, **k: calls["cutout"].append(k["p"]) or cut(*a, **k))
    result = main(tiny_config(tmp_path, data_dir, neighbour_mix=0.5, neighbour_k=2, cutout=0.25))
    batches = (96 - 10) // 16  # 86 train slices after the 10% validation split, batch 16
    assert calls == {"blend": [0.5] * batches, "cutout": [0.25] * batches}
    row = result["history"][0]
    assert 0 < row["train_loss"] < 10 and 0 <= row["val_acc"] <= 1 and 0 <= row["val_macro_f1"] <= 1


@pytest.mark.data
def test_validation_by_subject_holds_out_whole_brains(tmp_path, data_dir):
    from model.core.dataset import slice_keys
    from model.core.dataset import subjects_for
    from model.training.train import load_data

    train, val = load_data(tiny_config(tmp_path, data_dir, limit=None, val_by_subject=True, val_fraction=0.1))
    keys = slice_keys("train", data_dir).set_index("path").sha256
    subject = {i: s for i, s in zip(keys.index, subjects_for("train", keys.index, keys.values))}
    held, trained = {subject[i] for i in val.ids}, {subject[i] for i in train.ids}
    assert held and not held & trained  # no validation brain has a slice in training
    assert len(held) == 20  # round(0.1 x subjects) per class: 3 Mild, 0 of the 2 Moderate, 10 Non, 7 Very mild
    assert len(train) + len(val) == 5120


def test_refit_on_all_of_train_uses_the_given_temperature(tmp_path, data_dir):
    export = tmp_path / "export"
    args = get_args_parser().parse_args(["--val-fraction", "0", "--select", "last", "--temperature", "1.25"])
    assert args.temperature == 1.25 and args.val_fraction == 0.0
    result = main(tiny_config(tmp_path, data_dir, val_fraction=0.0, select="last", temperature=1.25,
                              export_dir=str(export)))
    assert result["temperature"] == 1.25
    assert set(result["history"][0]) == {"epoch", "train_loss", "lr", "seconds"}  # nothing was validated
    assert json.loads((export / "model_config.json").read_text())["temperature"] == 1.25
    with pytest.raises(ValueError, match="--temperature"):
        main(tiny_config(tmp_path, data_dir, val_fraction=0.0, select="last"))
    with pytest.raises(ValueError, match="--select last"):
        main(tiny_config(tmp_path, data_dir, val_fraction=0.0, temperature=1.25))


def test_val_buffer_drops_train_slices_near_any_validation_slice(tmp_path, data_dir):
    from model.qualify.neighbours import nearest_neighbours
    from model.training.train import load_data

    plain_train, plain_val = load_data(tiny_config(tmp_path, data_dir, limit=400))
    train, val = load_data(tiny_config(tmp_path, data_dir, limit=400, val_buffer=20.0))
    assert val.ids == plain_val.ids  # the validation split itself does not change
    assert set(train.ids) < set(plain_train.ids)  # the 400 slices of one seeded draw hold near-copies
    _, distance = nearest_neighbours(val.images, train.images, k=1)
    assert distance.min() >= 20.0
    dropped = [i for i, name in enumerate(plain_train.ids) if name not in set(train.ids)]
    _, dropped_distance = nearest_neighbours(val.images, plain_train.subset(dropped).images, k=1)
    assert dropped_distance.max() < 20.0  # only slices that had a near-copy in validation were dropped
    with pytest.raises(ValueError, match="leaves a class with no train slices"):
        load_data(tiny_config(tmp_path, data_dir, limit=400, val_buffer=500.0))
    with pytest.raises(ValueError, match="needs a validation split"):
        TrainConfig(val_buffer=5.0, val_fraction=0.0, select="last", temperature=1.0).validate()
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        TrainConfig(val_buffer=-1.0).validate()


def test_split_seed_keeps_the_validation_split_while_the_seed_changes(tmp_path, data_dir):
    from model.training.train import load_data

    _, seed0 = load_data(tiny_config(tmp_path, data_dir, limit=400))
    _, seed1 = load_data(tiny_config(tmp_path, data_dir, limit=400, seed=1))
    _, seed1_split0 = load_data(tiny_config(tmp_path, data_dir, limit=400, seed=1, split_seed=0))
    assert seed1.ids != seed0.ids and seed1_split0.ids == seed0.ids
    assert "--split-seed" in get_args_parser().format_help()


def test_flip_option_mirrors_training_batches(tmp_path, data_dir):
    from model.training.train import training_batch

    data = load_split("train", data_dir, limit=8)
    idx = torch.arange(8)
    plain = training_batch(data, idx, tiny_config(tmp_path, data_dir), torch.Generator().manual_seed(0))
    always = training_batch(data, idx, tiny_config(tmp_path, data_dir, flip=1.0), torch.Generator().manual_seed(0))
    assert torch.allclose(always, plain.flip(-1))
    with pytest.raises(ValueError, match="--flip must be in"):
        TrainConfig(flip=1.5).validate()
