"""The reports' figures: matplotlib (Agg) PNGs drawn from the same numbers as the app's Plotly charts."""
from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure

from model.core.constants import CLASS_COLORS, CLASS_NAMES, STAGE_ORDER
from model.qualify.neighbours import distance_bin_label
from model.reports.blocks import display
from model.reports.record import png_bytes

NETWORK_COLOR, LOOKUP_COLOR, GROUP_COLORS = "#0072B2", "#BBBBBB", ("#1F6F8B", "#9CC3D5")
FIGURE_DPI = 150  # sharp when printed at the half-page width figures take in the PDF


def _new_figure(width: float = 5.2, height: float = 3.6):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, facecolor="white")
    return buf.getvalue()


def _short(name: str) -> str:
    return display(name).replace(" dementia", "\ndementia")


def figure_headline(rows: list[dict]) -> bytes:
    """Balanced accuracy of the network and the lookup per setting (rows: setting, network, lookup)."""
    fig, ax = _new_figure(5.6, 3.2)
    x = np.arange(len(rows))
    for offset, key, name, color in ((-0.2, "network", "this network", NETWORK_COLOR),
                                     (0.2, "lookup", "raw-pixel lookup (no learning)", LOOKUP_COLOR)):
        values = [r[key] for r in rows]
        bars = ax.bar(x + offset, values, 0.4, color=color, label=name)
        ax.bar_label(bars, [f"{v:.1%}" for v in values], fontsize=8)
    ax.axhline(0.25, ls=":", color="#777", label="chance (4 stages)")
    ax.set_xticks(x, [r["setting"] for r in rows], fontsize=8)
    ax.set(ylim=(0, 1.12), ylabel="balanced accuracy", title="Balanced accuracy: a seen brain or a new one")
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)


def figure_confusion(matrix, unit: str) -> bytes:
    """Counts and row shares, stages from healthy to severe; rows are the true stage."""
    m = np.asarray(matrix, dtype=float)[np.ix_(STAGE_ORDER, STAGE_ORDER)]
    share = m / np.clip(m.sum(1, keepdims=True), 1, None)
    fig, ax = _new_figure(5.2, 4.2)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(m)):
        for j in range(len(m)):
            ax.text(j, i, f"{int(m[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    labels = [_short(CLASS_NAMES[i]) for i in STAGE_ORDER]
    ax.set_xticks(range(len(m)), labels, fontsize=8)
    ax.set_yticks(range(len(m)), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix ({unit}; row shares)")
    return _png(fig)


def figure_roc(metrics: dict) -> bytes:
    fig, ax = _new_figure()
    for name in (CLASS_NAMES[i] for i in STAGE_ORDER):
        entry = metrics["per_class"].get(name, {})
        if "roc_curve" in entry:
            ax.plot(entry["roc_curve"]["fpr"], entry["roc_curve"]["tpr"], color=CLASS_COLORS[name], lw=1.6,
                    label=f"{display(name)} (AUC {entry['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="#999", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate",
           title="ROC curves, one stage vs rest")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def figure_pr(metrics: dict) -> bytes:
    fig, ax = _new_figure()
    for name in (CLASS_NAMES[i] for i in STAGE_ORDER):
        entry = metrics["per_class"].get(name, {})
        if "pr_curve" in entry:
            color = CLASS_COLORS[name]
            ax.step(entry["pr_curve"]["recall"], entry["pr_curve"]["precision"], where="post", color=color, lw=1.6,
                    label=f"{display(name)} (AP {entry['pr_auc']:.3f})")
            ax.axhline(entry["support"] / metrics["n"], color=color, ls=":", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title="Precision-recall (dotted: prevalence)")
    ax.legend(fontsize=7, loc="upper right")
    return _png(fig)


def figure_reliability(before: list[dict], after: list[dict],
                       title: str = "Reliability, out of fold (marker size: slices)") -> bytes:
    """Accuracy against mean confidence per bin, before and after temperature scaling; marker area ~ slices."""
    fig, ax = _new_figure(5.2, 4.0)
    ax.plot([0, 1], [0, 1], ls=":", color="#999", label="perfectly calibrated")
    for rows, name, color in ((before, "before (T = 1)", "#E69F00"), (after, "after temperature scaling",
                                                                      NETWORK_COLOR)):
        biggest = max([r["n"] for r in rows] or [1])
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], color=color, label=name)
        ax.scatter([r["confidence"] for r in rows], [r["accuracy"] for r in rows], color=color,
                   s=[10 + 90 * r["n"] / biggest for r in rows], zorder=3)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="mean confidence", ylabel="accuracy", title=title)
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def figure_class_balance(counts: dict[str, list[int]]) -> bytes:
    """Share of each stage per group of counts ({name: per-class counts in label order}), counts on the bars."""
    fig, ax = _new_figure()
    x = np.arange(len(STAGE_ORDER))
    width = 0.8 / max(1, len(counts))
    for k, ((name, values), color) in enumerate(zip(counts.items(), GROUP_COLORS)):
        total = max(1, sum(values))
        bars = ax.bar(x + (k - (len(counts) - 1) / 2) * width, [values[i] / total for i in STAGE_ORDER], width,
                      color=color, label=f"{name} (n={sum(values):,})")
        ax.bar_label(bars, [f"{values[i]:,}" for i in STAGE_ORDER], fontsize=7)
    ax.set_xticks(x, [_short(CLASS_NAMES[i]) for i in STAGE_ORDER], fontsize=8)
    ax.set(ylim=(0, 0.7), ylabel="share", title="Class balance")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.legend(fontsize=8)
    return _png(fig)


def figure_train_distance(rows: list[dict]) -> bytes:
    """Accuracy of the model and of the lookup per bin of distance to the nearest training slice."""
    rows = [r for r in rows if r["n"]]
    fig, ax = _new_figure(7.2, 3.0)
    x = np.arange(len(rows))
    for offset, key, name, color in ((-0.2, "accuracy", "this model", NETWORK_COLOR),
                                     (0.2, "lookup_accuracy", "nearest-train-slice lookup", LOOKUP_COLOR)):
        bars = ax.bar(x + offset, [r[key] for r in rows], 0.4, color=color, label=name)
        ax.bar_label(bars, [f"{r[key]:.0%}" for r in rows], fontsize=7)
    ax.set_xticks(x, [f"{distance_bin_label(r)}\nn={r['n']:,}" for r in rows], fontsize=7)
    ax.set(ylim=(0, 1.12), ylabel="accuracy", xlabel="RMS grey-level distance to the nearest train slice",
           title="Accuracy by distance to the nearest training slice")
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


def pixel_png(image: np.ndarray, min_side: int = 384) -> bytes:
    """A uint8 slice (S, S) or overlay (S, S, 3) as PNG, enlarged by a whole factor with nearest neighbours so
    that it prints sharp without inventing detail."""
    factor = max(1, -(-min_side // max(1, image.shape[0])))
    return png_bytes(np.repeat(np.repeat(np.asarray(image, np.uint8), factor, 0), factor, 1))
