from dashboard import charts


def rows(raw: bool):
    out = []
    for epoch in (1, 2):
        row = {"epoch": epoch, "train_loss": 1.0 / epoch, "val_acc": 0.5 * epoch, "val_macro_f1": 0.4 * epoch}
        if raw:
            row["raw_val_acc"] = 0.45 * epoch
        out.append(row)
    return out


def test_training_curves_show_raw_weights_only_when_a_moving_average_was_kept():
    plain = charts.training_curves(rows(raw=False))
    assert [t.name for t in plain.data] == ["train loss", "validation accuracy", "validation macro-F1"]
    averaged = charts.training_curves(rows(raw=True))
    assert averaged.data[-1].name == "validation accuracy, raw weights"
    assert list(averaged.data[-1].y) == [0.45, 0.9]


def test_training_curves_of_a_refit_show_the_loss_only():
    refit = [{"epoch": 1, "train_loss": 0.5, "lr": 1e-3, "seconds": 80.0}]
    assert [t.name for t in charts.training_curves(refit).data] == ["train loss"]
