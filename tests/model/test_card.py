import json

from model.core.recipe import floors_of
from model.reports.card import floor_verdict, model_card_markdown, paired_auc
from model.core.constants import BASELINE_PATH, CROSSVAL_PATH, METRICS_PATH, MODEL_CONFIG_PATH


def shipped():
    return json.loads(MODEL_CONFIG_PATH.read_text()), json.loads(METRICS_PATH.read_text())


def test_card_states_recipe_metrics_and_limitations_from_the_files():
    config, metrics = shipped()
    card = model_card_markdown(config, metrics, json.loads(BASELINE_PATH.read_text()))
    assert config["weights_sha256"] in card and f"{metrics['accuracy']:.4f}" in card
    for heading in ("### Intended use", "### Training recipe", "### Published test-split metrics",
                    "### Limitations and risks"):
        assert heading in card
    assert "Subject leakage" in card and "most similar training slice" in card
    from model.qualify.neighbours import distance_summary

    assert f"**Where the errors are.** {distance_summary(metrics['by_train_distance'])}" in card


def test_card_names_the_regularisers_that_were_used():
    config, metrics = shipped()
    config = {**config, "train_config": {**config["train_config"], "neighbour_mix": 0.5, "neighbour_k": 3,
                                         "cutout": 0.5, "cutout_size": 0.25, "ema_decay": 0.998}}
    card = model_card_markdown(config, None)
    assert "dropout 0.3 before the classifier" in card and "16 slices of each subject drawn per epoch" in card
    assert "3 nearest same-class train slices" in card and "25% of the side" in card and "decay 0.998" in card
    assert "test-split metrics" not in card and "most similar training slice" not in card


def test_card_of_a_refit_says_what_chose_its_recipe():
    config, metrics = shipped()
    config = {**config, "temperature": 1.3, "selected_epoch": {"epoch": 30},
              "train_config": {**config["train_config"], "val_fraction": 0.0, "select": "last", "temperature": 1.3}}
    card = model_card_markdown(config, metrics)
    assert "a refit" in card and "last epoch (30)" in card and "temperature 1.300" in card
    assert "No choice inside this recipe looked at the test split" in card and "slightly optimistic" in card


def test_card_leads_with_the_new_subject_figures():
    config, metrics = shipped()
    crossval = json.loads(CROSSVAL_PATH.read_text())
    card = model_card_markdown(config, metrics, None, crossval)
    assert card.startswith("### Performance on new subjects (cross-validated)")
    assert card.index("new subjects") < card.index("Published test-split metrics")
    net = crossval["network"]["subject"]
    row = next(line for line in card.splitlines() if line.startswith("| this network |"))
    assert f"| {net['n']} | {net['any_dementia_auc']:.3f} [" in row
    assert f"{net['per_class']['Moderate_Demented']['recalled']}" in card and "cannot validate" in card
    assert f"{crossval['calibration']['temperature']:.3f}, fitted on all out-of-fold logits" in card
    assert "Why this network ships" in card
    best = floors_of(crossval)[0]  # the verdict is against the best floor, paired where the file pairs them
    assert f"the best floor, a {best['name']} ({best['any_dementia_auc']:.3f}" in card
    for floor in floors_of(crossval):
        row = next(line for line in card.splitlines() if line.startswith(f"| {floor['name']} |"))
        assert row.endswith(f"| {paired_auc(crossval, floor['key'])} |")
    other = {**config, "train_config": {**config["train_config"], "image_size": 999}}
    assert "**Caution.**" in model_card_markdown(other, metrics, None, crossval) and "image_size: 999" in \
        model_card_markdown(other, metrics, None, crossval)
    tagged = {**config, "temperature_source": {"method": "crossval out-of-fold"}}
    assert "meant for a new subject" in model_card_markdown(tagged, metrics, None, crossval)
    assert "meant for a new subject" not in model_card_markdown({**config, "temperature_source": {}}, metrics)


def test_a_floor_is_beaten_or_not_by_its_paired_interval():
    floor = {"any_dementia_auc": 0.76, "auc_difference_ci95": [-0.05, 0.01]}
    assert floor_verdict(0.80, floor) == "not distinguishable from"  # the point is above; the interval includes 0
    assert floor_verdict(0.80, {**floor, "auc_difference_ci95": [0.01, 0.07]}) == "above"
    assert floor_verdict(0.70, {**floor, "auc_difference_ci95": [-0.09, -0.01]}) == "below"
    assert floor_verdict(0.70, {"any_dementia_auc": 0.76, "auc_difference_ci95": None}) == "no better than"
    crossval = {"pca": {"subject": {"n": 200, "any_dementia_auc": 0.76, "balanced_accuracy": 0.36}},
                "lookup": {"subject": {"n": 200, "any_dementia_auc": 0.75, "balanced_accuracy": 0.30}},
                "paired": {"pca": {"auc_difference": -0.02, "auc_difference_ci95": [-0.05, 0.01],
                                   "bacc_difference": 0.0, "bacc_difference_ci95": [-0.06, 0.06]}}}
    rows = floors_of(crossval)
    assert [r["key"] for r in rows] == ["pca", "lookup"]  # the best first
    assert rows[0]["auc_difference"] == -0.02 and rows[1]["auc_difference"] is None  # unpaired: said, not made up
    assert paired_auc(crossval, "pca") == "-0.020 [-0.050, +0.010]" and paired_auc(crossval, "lookup") == "–"
    assert floors_of(None) == [] and floors_of({"network": {}}) == []


def _summary(mean, lo, hi):
    return {"mean": mean, "ci95": [lo, hi]}


def test_card_states_the_checks_on_every_input_and_the_faithfulness_verdict():
    from model.reports.card import faithfulness_section, trust_section
    from model.qualify.trust import TRUST_PATH

    trust = json.loads(TRUST_PATH.read_text())
    text = "\n".join(trust_section(trust, {"flagged": 94, "images": 94}))
    assert f"{trust['false_alarms']['cross_fitted']:.1%}" in text and "94 of 94" in text
    chance = {**trust, "uncertainty_never_trained": {"auroc_error": {"spread": 0.49, "one_minus_probability": 0.64}}}
    assert "a high spread does not mark wrong answers (AUROC 0.49" in "\n".join(trust_section(chance))
    method = {k: _summary(0.2, 0.1, 0.3) for k in ("map_deletion", "random_deletion", "edges_deletion",
                                                   "map_insertion", "random_insertion", "edges_insertion",
                                                   "randomisation_spearman")}
    record = {"slices": 48, "source": "held-out slices", "randomised_blocks": ["layer4", "fc"],
              "methods": {"gradcam": {**method, "seconds_per_map": 0.05,
                                      "verdict": {"random": "no clear difference", "edges": "loses"}}}}
    text = "\n".join(faithfulness_section(record))
    assert "| Grad-CAM | 0.200 |" in text and "does not clearly beat a random map" in text
    record["methods"]["gradcam"]["verdict"]["random"] = "beats"
    assert "The shipped Grad-CAM beats a random map" in "\n".join(faithfulness_section(record))
