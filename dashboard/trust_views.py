"""What qualifies an answer, on the Classify page: the guard's verdict, the uncertainty, the nearest
training slices, and what was done to the file. Calls model.qualify.trust and model.scans.scan_io; holds no logic."""
from __future__ import annotations

import streamlit as st

from dashboard.common import train_images_by_path
from dashboard.shell import crossval_describes_shipped_model, dataset_dir, plain, read_json
from model.core.constants import DISPLAY_NAMES
from model.qualify.trust import TRUST_PATH, spread_sentence
from model.qualify.unseen import never_seen


def verdict(assessment) -> None:
    """One box above the result: unreliable (with the reasons), recognition of a seen brain, or no flag."""
    trust = assessment.trust
    if trust is None:
        st.warning("The out-of-distribution guard is not available, so nothing checks that this input is like "
                   "the training slices.", icon=":material/help:")
    elif trust.out_of_distribution:
        st.error("**Unreliable: this does not look like the slices the model was trained on.** The stage below "
                 "is shown for completeness only; do not read it as a result.\n\n"
                 + "\n".join(f"- {plain(r)}" for r in trust.reasons), icon=":material/block:")
    elif trust.near_copy:
        n = trust.neighbours[0]
        st.warning(f"**Near-copy of a training slice** (subject {plain(n.subject)}, {n.stage}, distance "
                   f"{n.distance:.1f}). The model has seen this brain, so the stage below is not a reading of a "
                   "new one.", icon=":material/content_copy:")
        never_seen_answer(n.subject, n.path)
    else:
        st.success("Like the training slices, and not a near-copy of any of them: the model has not seen this "
                   "brain, so read the stage with the new-subject figures (Evaluation page).",
                   icon=":material/check_circle:")


def never_seen_answer(subject: str, path: str | None) -> None:
    """Beside a seen brain's answer: what the cross-validation's network that never saw this subject said of it."""
    answer = never_seen(subject, path)
    if answer is None:
        return
    whose = ("the shipped recipe's" if crossval_describes_shipped_model() else
             "the cross-validated recipe's (not the shipped network's)")
    slice_part = (f" Its nearest training slice, on its own: **{DISPLAY_NAMES[answer.slice_label]}** "
                  f"({max(answer.slice_probabilities):.0%})." if answer.slice_probabilities is not None else "")
    right = "right" if answer.label == answer.true_label else f"wrong (true stage: {DISPLAY_NAMES[answer.true_label]})"
    st.info(f"**Read this one: the answer for a brain the model never saw.** The fold-{answer.fold + 1} network of "
            f"{whose} 5-fold cross-validation was trained without {plain(subject)}; from all 32 of its slices it "
            f"stages this subject **{answer.display_name}** ({max(answer.probabilities):.0%}), {right}.{slice_part} "
            "That is what the model does on a new brain; the stage below comes from a network that trained on this "
            "brain.",
            icon=":material/visibility_off:")


def uncertainty_caption(assessment) -> None:
    if assessment.spread_thresholds:
        measured = ((read_json(str(TRUST_PATH)) or {}).get("uncertainty_never_trained") or {}).get("auroc_error", {})
        st.caption(spread_sentence(assessment.spread, assessment.agreement, assessment.spread_thresholds,
                                   measured.get("spread")))
    else:
        st.caption(f"Spread over 8 test-time variants: ±{assessment.spread:.1%}; {assessment.agreement:.0%} agree.")


def nearest_slices(assessment) -> None:
    """The nearest training slices: subject, stage, distance, and the picture when the dataset is here."""
    trust = assessment.trust
    if trust is None or not trust.neighbours or trust.out_of_distribution:
        return  # for an input unlike every training slice, the "nearest" ones mean nothing
    data = dataset_dir()
    images = train_images_by_path(str(data)) if data else {}
    st.markdown("**Nearest training slices** (grey levels RMS at 32×32; slices of one brain sit about 5–12 "
                "apart, other brains 13 and more)")
    columns = st.columns(max(6, len(trust.neighbours)))
    for column, n in zip(columns, trust.neighbours):
        with column:
            if n.path in images:
                st.image(images[n.path], width="stretch", clamp=True)
            st.caption(f"{plain(n.subject)} · {n.stage} · distance {n.distance:.1f}")
    if not images:
        st.caption("Pictures of these slices need the local dataset (`make data`).")


def scan_details(scan) -> None:
    """What was done to the file, and the technical header fields that were read (never identifiers)."""
    with st.expander(f"How {scan.name} was read ({scan.kind})"):
        st.text("\n".join(scan.steps))
        if scan.header:
            st.dataframe({"field": [k for k, _ in scan.header], "value": [v for _, v in scan.header]},
                         hide_index=True, key=f"classify_header_{hash(scan.name) & 0xFFFF}")
