import json

from model.card import model_card_markdown
from model.constants import BASELINE_PATH, METRICS_PATH, MODEL_CONFIG_PATH


def shipped():
    return json.loads(MODEL_CONFIG_PATH.read_text()), json.loads(METRICS_PATH.read_text())


def test_card_states_recipe_metrics_and_limitations_from_the_files():
    config, metrics = shipped()
    card = model_card_markdown(config, metrics, json.loads(BASELINE_PATH.read_text()))
    assert config["weights_sha256"] in card and f"{metrics['accuracy']:.4f}" in card
    for heading in ("### Intended use", "### Training recipe", "### Test-split metrics", "### Limitations and risks"):
        assert heading in card
    assert "Subject leakage" in card and "most similar training slice" in card
    errors = sum(r["errors"] for r in metrics["by_train_distance"])
    assert "**Where the errors are.**" in card and f"All {errors} of its errors" in card


def test_card_names_the_regularisers_that_were_used():
    config, metrics = shipped()
    config = {**config, "train_config": {**config["train_config"], "neighbour_mix": 0.5, "neighbour_k": 3,
                                         "cutout": 0.5, "cutout_size": 0.25, "ema_decay": 0.998}}
    card = model_card_markdown(config, None)
    assert "3 nearest same-class train slices" in card and "25% of the side" in card and "decay 0.998" in card
    assert "### Test-split metrics" not in card and "most similar training slice" not in card


def test_card_of_a_refit_says_what_chose_its_recipe():
    config, metrics = shipped()
    config = {**config, "temperature": 1.3, "selected_epoch": {"epoch": 30},
              "train_config": {**config["train_config"], "val_fraction": 0.0, "select": "last", "temperature": 1.3}}
    card = model_card_markdown(config, metrics)
    assert "a refit" in card and "last epoch (30)" in card and "temperature 1.300" in card
    assert "No choice inside this recipe looked at the test split" in card and "slightly optimistic" in card


def test_card_states_the_buffered_validation_and_the_prior_shift_it_rejected():
    from model.constants import BUFFERED_VALIDATION_PATH

    config, metrics = shipped()
    buffered = json.loads(BUFFERED_VALIDATION_PATH.read_text())
    plain = next(r for r in buffered["sweep"] if r["tau"] == 0)
    card = model_card_markdown(config, metrics, None, buffered)
    assert "**Slices with no near-copy in training.**" in card
    assert f"{plain['accuracy']:.1%} accuracy" in card and f"{sum(buffered['class_counts']['trained_on']):,}" in card
    assert f"{plain['recalled']['Moderate_Demented']} moderate" in card
    assert ("so none is applied" if buffered["chosen_tau"] == 0 else "preferred a prior shift") in card
    lookup = buffered["lookup"]  # the raw-pixel lookup on the same split, stated beside the network's figure
    assert f"is right on {lookup['accuracy']:.1%} of the same validation slices ({lookup['errors']} errors" in card
    assert ("more often than the network" in card) == (lookup["accuracy"] > plain["accuracy"])
    # the shipped file is what analysis.prior_shift writes for a --val-buffer run of the shipped recipe
    assert buffered["val_buffer"] > 0 and buffered["chosen_tau"] == max(
        buffered["sweep"], key=lambda r: (round(r["macro_f1"], 12), -r["tau"]))["tau"]
    assert buffered["epochs"] == config["train_config"]["epochs"]
    assert buffered["image_size"] == config["image_size"]


def test_card_buffered_paragraph_handles_other_sweeps():
    from model.card import buffered_summary
    from model.constants import BUFFERED_VALIDATION_PATH

    config, metrics = shipped()
    buffered = json.loads(BUFFERED_VALIDATION_PATH.read_text())
    without_plain = {**buffered, "sweep": [r for r in buffered["sweep"] if r["tau"] > 0]}
    assert buffered_summary(without_plain) == ""
    assert "no near-copy in training" not in model_card_markdown(config, metrics, None, without_plain)
    without_lookup = {k: v for k, v in buffered.items() if k != "lookup"}  # a file written before it was recorded
    assert "lookup" not in buffered_summary(without_lookup) and buffered_summary(without_lookup)
    worse_lookup = {**buffered, "lookup": {**buffered["lookup"], "accuracy": 0.5, "errors": 1}}
    text = buffered_summary(worse_lookup)
    assert "right on 50.0% of the same validation slices (1 error)." in text and "more often" not in text
    chose_shift = {**buffered, "chosen_tau": 0.25}
    assert "preferred a prior shift of tau 0.25; the shipped model does not apply one" in buffered_summary(chose_shift)
