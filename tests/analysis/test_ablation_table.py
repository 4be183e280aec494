"""The ablation table is generated from the tracking store, not typed."""
from analysis import ablation_table
from model.training.tracking import Tracker


def test_the_table_reads_finished_runs_and_marks_intervals_that_exclude_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = Tracker("screen-r1", {"folds": 5, "fold_seed": 0, "mixup": 0.2, "augment": True, "select_on": "subject_auc",
                                "ordinal": 0.0}, experiment="t", tags={"kind": "crossval"})
    run.log_metrics({"network_subject_any_dementia_auc": 0.81, "network_subject_any_dementia_auc_lo": 0.75,
                     "network_subject_any_dementia_auc_hi": 0.86, "network_subject_balanced_accuracy": 0.4,
                     "paired_reference_auc_diff": 0.07, "paired_reference_auc_lo": 0.02,
                     "paired_reference_auc_hi": 0.12, "paired_pca_auc_diff": 0.04, "paired_pca_auc_lo": -0.01,
                     "paired_pca_auc_hi": 0.09, "pca_subject_any_dementia_auc": 0.77,
                     "lookup_subject_any_dementia_auc": 0.74, "fold0_total_seconds": 600, "fold1_total_seconds": 600,
                     "fold0_seconds": 31.0})  # an epoch's seconds: not the fold's
    run.finish()
    unfinished = Tracker("crashed", {"folds": 5}, experiment="t", tags={"kind": "crossval"})
    unfinished.finish(ok=False)
    markdown = ablation_table.table(ablation_table.runs_table("t"), shipped={"mixup": 0.0, "augment": False})
    rows = markdown.splitlines()[2:]
    assert len(rows) == 1 and "crashed" not in markdown
    assert "0.810 [0.750, 0.860]" in rows[0]
    assert "+0.070 [+0.020, +0.120] *" in rows[0]  # excludes 0: marked
    assert "pca 0.770" in rows[0] and "+0.040 [-0.010, +0.090] |" in rows[0]  # the best floor, not marked
    assert "select-on subject_auc, augment, mixup 0.2" in rows[0] and "ordinal" not in rows[0]
    assert rows[0].rstrip().endswith("20 |")  # minutes of training

    results = tmp_path / "results.md"
    results.write_text("# Results\n\ntext\n")
    ablation_table.write(markdown, results)
    ablation_table.write(markdown, results)  # a second write replaces the block, never appends another
    assert results.read_text().count(ablation_table.START) == 1 and "text" in results.read_text()


def test_rows_of_runs_the_store_no_longer_holds_are_kept_and_a_run_in_both_is_updated(tmp_path):
    head = "| run | levers | x |\n|---|---|---|"
    results = tmp_path / "results.md"
    results.write_text("# Results\n")
    ablation_table.write(head + "\n| old-run | a | 1 |\n| both | b | 2 |", results)
    ablation_table.write(head + "\n| both | b | 3 |\n| new-run | c | 4 |", results)
    text = results.read_text()
    block = text[text.index(ablation_table.START):text.index(ablation_table.END)]
    rows = [r for r in block.splitlines() if r.startswith("| ") and not r.startswith("| run |")]
    assert rows == ["| old-run | a | 1 |", "| both | b | 3 |", "| new-run | c | 4 |"]
    assert sum(r.startswith("|---") for r in block.splitlines()) == 1


def test_a_run_that_keeps_its_last_epoch_lists_no_selection_figure():
    import pandas as pd
    row = pd.Series({"params.select": "last", "params.select_on": "subject_auc", "params.epochs": "12"})
    assert ablation_table.levers(row, {"epochs": 6}) == "epochs 12, select last"
