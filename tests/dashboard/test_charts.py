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


def test_accuracy_by_train_distance_skips_empty_bins_and_marks_errors():
    bins = [{"from": 0.0, "to": 15.0, "n": 10, "errors": 0, "accuracy": 1.0, "lookup_accuracy": 1.0},
            {"from": 15.0, "to": 25.0, "n": 0, "errors": 0, "accuracy": None, "lookup_accuracy": None},
            {"from": 25.0, "to": None, "n": 4, "errors": 1, "accuracy": 0.75, "lookup_accuracy": 1.0}]
    fig = charts.accuracy_by_train_distance(bins)
    model, lookup = fig.data
    assert list(model.x) == ["0–15<br>n=10", "≥ 25<br>n=4"]
    assert list(model.y) == [1.0, 0.75] and list(lookup.y) == [1.0, 1.0]
    assert model.text[1] == "75.0%<br>1 wrong" and model.text[0] == "100.0%"
