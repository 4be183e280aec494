"""The model card, rendered from the shipped files so it never drifts from the model.

`model_card_markdown(config, metrics)` takes assets/model_config.json and
assets/metrics.json (as dicts) and returns Markdown.
"""
from __future__ import annotations

from model.constants import CLASS_NAMES, DISPLAY_NAMES, HF_DATASET_ID

INTENDED_USE = """\
**Intended use.** Research on machine-learning methods for staging Alzheimer's disease from
2D axial MRI slices: comparing models, studying saliency maps, teaching, and building and testing
health software around such a model.

**Intended users.** Researchers and health-software builders who can read the evaluation below
and its caveats.

**Out of scope.** Diagnosis, screening or staging of any individual patient; any clinical
decision; other brain diseases; other MRI sequences, orientations, scanners or preprocessing than
those of the training data; whole 3D volumes."""

LIMITATIONS = """\
- **Subject leakage.** The dataset holds several slices per subject and publishes no subject ids, so
  the train/test split is by slice: slices of one person can fall on both sides. Test accuracy
  therefore overstates accuracy on new patients, possibly by a wide margin.
- **Class imbalance.** Moderate dementia is about 1% of the data (15 test slices): its figures rest
  on very few images and have wide intervals.
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
    return (f"{tc['val_fraction']:.0%} stratified validation split (seed {tc.get('seed')}); selected epoch {epoch} "
            f"by {'validation macro-F1' if tc.get('select') == 'best' else 'last epoch'}.")


def buffered_summary(buffered: dict) -> str:
    """One paragraph on the validation run whose validation slices had no near-copy in training ('' if the
    file does not hold the unshifted figures)."""
    sweep = buffered.get("sweep", [])
    plain = next((r for r in sweep if r.get("tau") == 0), None)
    if plain is None:
        return ""
    shifted = [r for r in sweep if r["tau"] > 0]
    trained = sum(buffered["class_counts"]["trained_on"])
    moderate = plain["recalled"]["Moderate_Demented"]
    text = (f"A validation run of the same recipe dropped every train slice closer than {buffered['val_buffer']:g} "
            f"grey levels RMS to a validation slice ({trained:,} train slices left), so none of its "
            f"{buffered['val_slices']} validation slices had a training slice that close. On them it scored "
            f"{plain['accuracy']:.1%} accuracy and macro-F1 {plain['macro_f1']:.3f}, with {moderate} moderate "
            f"slices recalled: a better guide than the test split to a slice unlike any seen in training.")
    lookup = buffered.get("lookup")
    if lookup:
        text += (f" Other slices of the same subjects stayed in training, and they still give much away: a lookup "
                 f"with no learning, which takes the label of the most similar remaining train slice, is right on "
                 f"{lookup['accuracy']:.1%} of the same validation slices ({lookup['errors']} "
                 f"error{'' if lookup['errors'] == 1 else 's'})"
                 + (", more often than the network" if lookup["accuracy"] > plain["accuracy"] else "")
                 + ". So this is not a figure for a new patient either.")
    else:
        text += " Other slices of the same subjects stayed in training, so it is still not a figure for a new patient."
    if shifted:
        best = max(shifted, key=lambda r: r["macro_f1"])
        taus = ", ".join(f"{r['tau']:g}" for r in shifted)
        if buffered.get("chosen_tau", 0) == 0:
            text += (f" Dividing out the class prior (logit adjustment, tau {taus}) only lowered macro-F1 there "
                     f"(at best {best['macro_f1']:.3f}, tau {best['tau']:g}), so none is applied.")
        else:
            text += (f" Validation preferred a prior shift of tau {buffered['chosen_tau']:g}; the shipped model "
                     "does not apply one.")
    return text


def model_card_markdown(config: dict, metrics: dict | None, baseline: dict | None = None,
                        buffered: dict | None = None) -> str:
    tc = config.get("train_config", {})
    lines = [
        "### Model details",
        f"- Architecture: `{config['arch']}` trained from random initialisation, "
        f"{config['in_channels']} input channel, {len(config['class_names'])} classes.",
        f"- Input: {config['source_size']}x{config['source_size']} grayscale slice, resized to "
        f"{config['image_size']}x{config['image_size']}, normalised with mean {config['mean']} and std {config['std']}.",
        f"- Output: calibrated probabilities (temperature {config['temperature']:.3f}, fitted on the validation split"
        f"{' of the validated run' if not tc.get('val_fraction') else ''}).",
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

        lines += ["", "### Test-split metrics",
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
    lines += ["", "### Limitations and risks", LIMITATIONS]
    if baseline and "test" in baseline:
        lines.append(f"- **How much is memorisation.** Giving each test slice the label of the most similar training "
                     f"slice (raw pixels, no learning) is right on {baseline['test']['accuracy']:.2%} of the test "
                     f"split: near-copies of most test slices are in the training data, so a high slice-level score "
                     f"is expected of any method that finds the same brain again.")
    if metrics and metrics.get("by_train_distance"):
        from model.neighbours import distance_summary

        lines.append(f"- **Where the errors are.** {distance_summary(metrics['by_train_distance'])}")
    buffered_text = buffered_summary(buffered) if buffered else ""
    if buffered_text:
        lines.append(f"- **Slices with no near-copy in training.** {buffered_text}")
    return "\n".join(lines) + "\n"
