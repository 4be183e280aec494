"""The model card, rendered from the shipped files so it never drifts from the model.

`model_card_markdown(config, metrics)` takes assets/model_config.json and
assets/metrics.json (as dicts) and returns Markdown.
"""
from __future__ import annotations

from model.core.constants import CLASS_NAMES, DISPLAY_NAMES, HF_DATASET_ID
from model.core.recipe import FLOOR_NAMES, floors_of, recipe_differences, temperature_from_crossval
from model.qualify.explain import METHOD_NAMES as EXPLAIN_NAMES
from model.qualify.faithfulness import RANDOMISATION_LIMIT
from model.qualify.neighbours import distance_summary
from model.qualify.trust import error_worth

INTENDED_USE = """\
**Intended use.** Research on machine-learning methods for staging Alzheimer's disease from
2D axial MRI slices: comparing models, studying saliency maps, teaching, and building and testing
health software around such a model.

**Intended users.** Researchers and health-software builders who can read the evaluation below
and its caveats.

**Out of scope.** Diagnosis, screening or staging of any individual patient; any clinical
decision; other brain diseases; other MRI sequences, orientations, scanners or preprocessing than
those of the training data; 3D analysis of a volume (a volume is read as one axial slice, or as
the 32 axial slices that match the training slices when staged as a subject)."""

LIMITATIONS = """\
- **Subject leakage in the published split.** The dataset's 6,400 slices are 200 OASIS-1 subjects,
  32 consecutive slices each, split by slice: every test brain is also in training. The test-split
  figures measure recognising a seen brain; the cross-validated figures above are the ones for a
  new subject.
- **Class imbalance.** Moderate dementia is 2 subjects (64 slices): no figure can validate that
  class, and the network has seen one or two such brains in any training run.
- **One source.** All slices come from one preprocessed collection (resized to 128x128). Images
  from other scanners, protocols or skull-stripping pipelines are outside the training
  distribution and the model's probabilities do not warn about that.
- **Slice, not patient.** The labels are per-subject clinical ratings attached to single slices;
  a single slice can lack the anatomy that carried the rating.
- **Saliency is not proof.** Grad-CAM shows where the network's evidence sits at a coarse scale;
  it does not show that the evidence is clinically meaningful."""


def _fmt_ci(entry: dict, key: str) -> str:
    ci = entry.get("ci95", {}).get(key)
    return f"{entry[key]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{entry[key]:.3f}"


def _regularisers(tc: dict) -> str:
    parts = ["augmentation (affine, flip, intensity)" if tc.get("augment") else "no geometric augmentation"]
    if tc.get("neighbour_mix"):
        parts.append(f"with chance {tc['neighbour_mix']} a blend with one of the {tc.get('neighbour_k')} nearest "
                     "same-class train slices")
    if tc.get("cutout"):
        parts.append(f"with chance {tc['cutout']} one blanked square ({tc.get('cutout_size', 0):.0%} of the side)")
    if tc.get("mri_augment"):
        parts.append("MRI intensity augmentation (gamma, bias field, noise, blur)")
    if tc.get("mixup"):
        parts.append(f"mixup {tc['mixup']} across brains")
    if tc.get("dropout"):
        parts.append(f"dropout {tc['dropout']} before the classifier")
    if tc.get("slices_per_subject"):
        parts.append(f"{tc['slices_per_subject']} slices of each subject drawn per epoch (not every slice)")
    if tc.get("ema_decay"):
        parts.append(f"exponential moving average of the weights (decay {tc['ema_decay']}), which is what ships")
    return ", ".join(parts)


def _selection(config: dict, tc: dict) -> str:
    epoch = config.get("selected_epoch", {}).get("epoch")
    if not tc.get("val_fraction"):
        return (f"trained on every train slice with nothing held out (a refit), and the last epoch ({epoch}) "
                f"shipped. The recipe, the epoch count and the temperature {config.get('temperature', 0):.3f} "
                "were chosen with the same recipe on 90% of train, validated on a stratified 10% "
                "(its curves are below). No choice inside this recipe looked at the test split, but an earlier "
                "model was scored on it and that score is why the work went on: read its figures as "
                "slightly optimistic.")
    held = ("of the train split's subjects held out whole (all their train slices)" if tc.get("val_by_subject")
            else "stratified validation split")
    return (f"{tc['val_fraction']:.0%} {held} (seed {tc.get('seed')}); selected epoch {epoch} "
            f"by {'validation macro-F1' if tc.get('select') == 'best' else 'last epoch'}. Only the published train "
            "split was trained on, so the test split stays held out for this network.")


# What the evaluation compares, named once: the model card, the Evaluation page, its exported report, the chart
BASELINE_NAMES = {"network": "this network", **FLOOR_NAMES,
                  "clinical": "clinical baseline: age, sex, eTIV, nWBV",
                  "network_on_clinical_subjects": "this network, on the clinical baseline's subjects"}


def _with_ci(entry: dict, key: str) -> str:
    value = entry.get(key)
    if value is None or value != value:
        return "–"
    ci = entry.get("ci95", {}).get(key)
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def paired_auc(crossval: dict, key: str) -> str:
    """The network's AUC minus method `key`'s, paired over the same subjects, with its 95% interval, or "–"."""
    diff = (crossval.get("paired") or {}).get(key)
    if not diff:
        return "–"
    low, high = diff["auc_difference_ci95"]
    return f"{diff['auc_difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def floor_verdict(auc: float, floor: dict) -> str:
    """'above', 'not distinguishable from' or 'below' a floor: above or below only where the paired interval
    excludes 0 (without a pairing, 'above' or 'no better than' by the point figures)."""
    if floor.get("auc_difference_ci95"):
        low, high = floor["auc_difference_ci95"]
        return "above" if low > 0 else "below" if high < 0 else "not distinguishable from"
    return "above" if auc > floor["any_dementia_auc"] else "no better than"


def confound_sentence(confounds: dict) -> str:
    """One sentence per clinical column on whether the subject-level mistakes follow it."""
    parts = []
    for column, label in (("age", "age"), ("nwbv", "nWBV")):
        entry = confounds.get(column, {}).get("all")
        if not entry or entry.get("auc_wrong") is None:
            continue
        fmt = "{:.0f}" if column == "age" else "{:.3f}"
        parts.append(f"{label}: {fmt.format(entry['mean_wrong'])} in the {entry['wrong']} subjects staged wrong "
                     f"against {fmt.format(entry['mean_right'])} in those staged right (AUC of {label} at "
                     f"picking out the mistakes {entry['auc_wrong']:.2f}; 0.5 is no relation)")
    return ("**Do the mistakes follow age or atrophy?** " + "; ".join(parts) + ".") if parts else ""


def crossval_section(crossval: dict, config: dict) -> list[str]:
    """The lead section: figures for a brain the model has never seen, against the two baselines, and
    whether the shipped network was trained with the recipe they measure."""
    plan, cal = crossval.get("plan", {}), crossval["calibration"]
    recipe = plan.get("recipe", {})
    lines = ["### Performance on new subjects (cross-validated)",
             f"The {crossval['slices']:,} slices of both published splits were traced back to their "
             f"{crossval['subjects']} OASIS-1 subjects (`alzmri-train data subjects`) and predicted by "
             f"{plan.get('folds')}-fold cross-validation by subject: every slice by a network that never saw any "
             f"slice of that brain, trained with this recipe ({recipe.get('image_size')} px, "
             f"{recipe.get('epochs')} epochs, "
             + ("the last epoch kept" if recipe.get("select") == "last" else
                "epoch chosen on an inner split of subjects")
             + "). Subject level: a subject's probabilities averaged over its slices. 95% intervals from a bootstrap "
               "over subjects.",
             "", "| method | subjects | any-dementia ROC AUC | 4-stage balanced accuracy | 3-stage balanced "
                 "accuracy | ECE | this network's AUC minus it (paired) |", "|---|---|---|---|---|---|---|"]
    for key, name in BASELINE_NAMES.items():
        entry = crossval.get(key, {}).get("subject")
        if entry:
            lines.append(f"| {name} | {entry['n']} | {_with_ci(entry, 'any_dementia_auc')} | "
                         f"{_with_ci(entry, 'balanced_accuracy')} | {_with_ci(entry, 'three_class_balanced_accuracy')} "
                         f"| {entry['ece']:.3f} | {paired_auc(crossval, key)} |")
    net = crossval["network"]["subject"]["per_class"]
    lines += ["", "Subjects recalled: " + "; ".join(
        f"{DISPLAY_NAMES[CLASS_NAMES.index(n)].lower()} {e['recalled']} (exact 95% "
        f"[{e['recall_exact_ci95'][0]:.0%}, {e['recall_exact_ci95'][1]:.0%}])" for n, e in net.items()) + ". "
        "Moderate dementia is 2 subjects: this data cannot validate that class.",
        "", f"Per slice, out of fold: balanced accuracy {_with_ci(crossval['network']['slice'], 'balanced_accuracy')}"
        f" (the lookup: {crossval['lookup']['slice']['balanced_accuracy']:.3f}). Calibration: one temperature, "
        f"{cal['temperature']:.3f}, fitted on all out-of-fold logits, ships with the model; with each fold's "
        f"temperature fitted on the other folds, the out-of-fold ECE is {cal['ece_after']:.3f} "
        f"({cal['ece_before']:.3f} before scaling)."]
    floors, clinical = floors_of(crossval), crossval.get("clinical", {}).get("subject")
    if floors:
        net, best = crossval["network"]["subject"], floors[0]
        verdict = (f"On new subjects this network's any-dementia AUC is {net['any_dementia_auc']:.3f}, "
                   f"{floor_verdict(net['any_dementia_auc'], best)} the best floor, a {best['name']} "
                   f"({best['any_dementia_auc']:.3f}")
        if best["auc_difference"] is not None:
            low, high = best["auc_difference_ci95"]
            verdict += (f"; paired difference {best['auc_difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
                        + (", an interval that includes 0" if low <= 0 <= high else ""))
        verdict += ")"
        if clinical:
            verdict += (f", and its 4-stage balanced accuracy {net['balanced_accuracy']:.3f} is "
                        f"{'above' if net['balanced_accuracy'] > clinical['balanced_accuracy'] else 'below'} the "
                        f"clinical baseline's ({clinical['balanced_accuracy']:.3f})")
        lines += ["", f"**In short.** {verdict}."]
    if crossval.get("error_confounds"):
        lines += ["", confound_sentence(crossval["error_confounds"])]
    differ = recipe_differences(config.get("train_config", {}), recipe)
    if differ:
        lines += ["", f"**Caution.** The shipped network was trained with another recipe than the one "
                      f"cross-validated ({'; '.join(differ)}): the figures above describe that recipe, not it."]
    else:
        lines += ["", "**Why this network ships.** It is trained with the cross-validated recipe on the published "
                      "train split only, so these figures and this temperature describe it, and the test split "
                      "below stays held out for it. The recipe was chosen on new subjects only: recipes were "
                      "compared on the same subject folds, each by a rule written before its run, and this one "
                      "replaced the previous recipe after a repeated cross-validation (three fold seeds, paired by "
                      "subject; `docs/results.md`)."]
    return lines


def trust_section(trust: dict, rates: dict | None = None) -> list[str]:
    """'Checks on every input': the guard's measured false alarms and hits, the near-copy flag, the spread."""
    fa, seen = trust["false_alarms"], trust["seen_brains"]
    lines = ["### Checks on every input",
             "Every prediction, in the app, the batch page and `python -m model.predict`, comes with:",
             f"- **An out-of-distribution guard** (pixel space: residual outside a {trust['n_components']}-component "
             f"basis of the training slices at {trust['signature_size']} px, and grey-level histogram distance; "
             f"plus flat and colour checks). False alarms on slices of subjects the guard was fitted without: "
             f"**{fa['cross_fitted']:.1%}** (5 folds by subject, {fa['subjects']} subjects)."]
    if rates:
        lines[-1] += (f" Flagged: **{rates['flagged']} of {rates['images']}** other images (noise, flat, patterns, "
                      "text, photos, other body parts and MRI protocols, brains inverted, turned or saturated; "
                      "`python -m analysis.guard_rates`).")
    lines.append(f"- **A near-copy flag**: the nearest training slice is closer than 99% of new subjects' slices are "
                 f"to theirs. It marks {seen['near_copy']:.1%} of the published test slices whose brains the network trained on "
                 f"(the nearest slice is the same subject for {seen['nearest_is_same_subject']:.1%}), and "
                 f"{trust['never_trained_subjects']['near_copy']:.1%} of slices of subjects never trained on.")
    unc = trust.get("uncertainty_never_trained")
    if unc:
        auc = unc["auroc_error"]
        lines.append(f"- **An uncertainty**: the spread of the probability over 8 test-time variants. On slices of "
                     f"never-trained subjects a high spread {error_worth(auc['spread'])} (AUROC {auc['spread']:.2f}, "
                     f"0.5 is chance; the calibrated probability itself: {auc['one_minus_probability']:.2f}).")
    return lines


def faithfulness_section(record: dict) -> list[str]:
    """'Are the saliency maps faithful?': every method against a random and an edge map, and the randomisation
    check, from assets/faithfulness.json (alzmri-train data build-faithfulness)."""
    lines = ["### Are the saliency maps faithful?",
             f"On {record['slices']} {record['source']}, for the predicted stage: the area under the probability "
             f"curve as the map's most salient pixels are blacked out (deletion, lower is better) or put back into a "
             f"black slice (insertion, higher is better), beside a random map's and an edge (Sobel) map's on the "
             f"same slices; and the rank correlation between each map and the same method's map with "
             f"{' and '.join(record['randomised_blocks'])} randomised (near 0 is right). Means with 95% bootstrap "
             "intervals over slices; outside the brain is the share of the map's mass on the black background around "
             "the head.", "",
             "| method | deletion | random | edges | insertion | random | edges | against random | against edges "
             "| randomisation ρ | outside the brain |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(r, key):
        return f"{r[key]['mean']:.3f}"

    for method, r in record["methods"].items():
        lines.append(f"| {EXPLAIN_NAMES.get(method, method)} | {cell(r, 'map_deletion')} | {cell(r, 'random_deletion')} "
                     f"| {cell(r, 'edges_deletion')} | {cell(r, 'map_insertion')} | {cell(r, 'random_insertion')} | "
                     f"{cell(r, 'edges_insertion')} | {r['verdict']['random']} | {r['verdict']['edges']} | "
                     f"{r['randomisation_spearman']['mean']:.2f} | "
                     + (f"{r['map_outside_brain']['mean']:.0%} |" if "map_outside_brain" in r else "– |"))
    insensitive = [EXPLAIN_NAMES.get(m, m) for m, r in record["methods"].items()
                   if r["randomisation_spearman"]["mean"] > RANDOMISATION_LIMIT]
    if insensitive:
        lines += ["", f"**Insensitive to the weights:** {', '.join(insensitive)} (mean correlation above "
                      f"{RANDOMISATION_LIMIT} with the map of a network whose last blocks are random): part of what "
                      "such a map shows is the slice itself, not what the network learned."]
    cam = record["methods"].get("gradcam")
    if cam:
        word = {"beats": "beats", "loses": "does worse than",
                "no clear difference": "does not clearly beat"}[cam["verdict"]["random"]]
        lines += ["", f"**The shipped Grad-CAM {word} a random map** on these held-out slices "
                      f"(deletion {cam['map_deletion']['mean']:.3f} against {cam['random_deletion']['mean']:.3f}, "
                      f"insertion {cam['map_insertion']['mean']:.3f} against {cam['random_insertion']['mean']:.3f}). "
                      "`alzmri-train data build-faithfulness` reproduces the table; "
                      "`python -m benchmarks.bench_explain` times the maps."]
    return lines


def model_card_markdown(config: dict, metrics: dict | None, baseline: dict | None = None,
                        crossval: dict | None = None, trust: dict | None = None,
                        guard_rates: dict | None = None, faithfulness: dict | None = None) -> str:
    tc = config.get("train_config", {})
    lines = crossval_section(crossval, config) + [""] if crossval else []
    lines += [
        "### Model details",
        f"- Architecture: `{config['arch']}` trained from random initialisation, "
        f"{config['in_channels']} input channel, {len(config['class_names'])} classes.",
        f"- Input: {config['source_size']}x{config['source_size']} grayscale slice, resized to "
        f"{config['image_size']}x{config['image_size']}, normalised with mean {config['mean']} and std {config['std']}.",
        f"- Output: calibrated probabilities (temperature {config['temperature']:.3f}, "
        + ("fitted on the out-of-fold logits of the subject-grouped cross-validation, so they are meant for a "
           "new subject)." if temperature_from_crossval(config) else
           f"fitted on the validation split{' of the validated run' if not tc.get('val_fraction') else ''})."),
        f"- Weights: `{config['weights_file']}` ({config['weights_dtype']}), SHA-256 `{config['weights_sha256']}`.",
        "",
        "### Intended use",
        INTENDED_USE,
        "",
        "### Training data",
        f"`{HF_DATASET_ID}` (Hugging Face; Apache-2.0): 5,120 train and 1,280 test axial slices, 128x128.",
        "Classes in label order: " + ", ".join(f"{i} {n} ({d.lower()})" for i, (n, d) in
                                                enumerate(zip(CLASS_NAMES, DISPLAY_NAMES))) + ".",
    ]
    counts = (metrics or {}).get("class_counts")
    if counts:
        lines += ["", "| split | " + " | ".join(DISPLAY_NAMES) + " |", "|---|" + "---|" * len(DISPLAY_NAMES)]
        for split, values in counts.items():
            total = sum(values)
            lines.append(f"| {split} | " + " | ".join(f"{v:,} ({v / total:.1%})" for v in values) + " |")
    lines += ["", "Data files (SHA-256): " + ", ".join(f"{k} `{v[:12]}…`" for k, v in
                                                       config.get("data_sha256", {}).items())]
    lines += ["", "### Training recipe",
              f"{tc.get('epochs')} epochs, {tc.get('optimizer', '').upper()} (lr {tc.get('lr')}, "
              + (f"momentum {tc.get('momentum')}, " if tc.get("optimizer") == "sgd" else "") +
              f"weight decay {tc.get('weight_decay')}"
              + ("" if tc.get("norm_bias_decay", False) else " on conv and linear weights only")  # absent: older code
              + f"), {tc.get('lr_schedule')} schedule "
              f"with {tc.get('warmup_epochs')} warm-up epochs, batch {tc.get('batch_size')}, "
              f"{_regularisers(tc)}, "
              f"class weights `{tc.get('class_weights')}`, label smoothing {tc.get('label_smoothing')}, "
              f"mixed precision `{tc.get('amp')}`, " + _selection(config, tc)]
    if metrics:
        ci = metrics.get("ci95", {})

        def head(key):
            c = ci.get(key)
            return f"{metrics[key]:.4f}" + (f" [{c[0]:.4f}, {c[1]:.4f}]" if c else "")

        lines += ["", "### Published test-split metrics (slice level: brains also seen in training)",
                  f"On the {metrics['n']:,} test slices (95% bootstrap intervals in brackets):",
                  f"- Accuracy {head('accuracy')}; balanced accuracy {head('balanced_accuracy')}; "
                  f"macro-F1 {head('macro_f1')}; weighted F1 {metrics['weighted_f1']:.4f}.",
                  f"- Quadratic-weighted kappa {metrics['quadratic_weighted_kappa']:.4f}; "
                  f"expected calibration error {metrics['ece']:.4f}; log loss {metrics['log_loss']:.4f}.",
                  "", "| class | precision | recall | F1 | ROC AUC | support |", "|---|---|---|---|---|---|"]
        for name, entry in metrics["per_class"].items():
            lines.append(f"| {DISPLAY_NAMES[CLASS_NAMES.index(name)]} | {_fmt_ci(entry, 'precision')} | "
                         f"{_fmt_ci(entry, 'recall')} | {_fmt_ci(entry, 'f1')} | {_fmt_ci(entry, 'roc_auc')} | "
                         f"{entry['support']} |")
    if trust:
        lines += [""] + trust_section(trust, guard_rates)
    if faithfulness:
        lines += [""] + faithfulness_section(faithfulness)
    lines += ["", "### Limitations and risks", LIMITATIONS]
    if baseline and "test" in baseline:
        lines.append(f"- **How much is memorisation.** Giving each test slice the label of the most similar training "
                     f"slice (raw pixels, no learning) is right on {baseline['test']['accuracy']:.2%} of the test "
                     f"split: near-copies of most test slices are in the training data, so a high slice-level score "
                     f"is expected of any method that finds the same brain again.")
    if metrics and metrics.get("by_train_distance"):
        lines.append(f"- **Where the errors are.** {distance_summary(metrics['by_train_distance'])}")
    return "\n".join(lines) + "\n"
