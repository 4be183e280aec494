"""Every Plotly figure of the dashboard, built from plain numbers.

Pages pass in probabilities and metrics dicts; nothing here reads files or
touches the model, so a chart can be tested and reused on its own.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from model.core.constants import CLASS_COLORS, CLASS_NAMES, DISPLAY_NAMES, STAGE_ORDER
from model.reports.card import BASELINE_NAMES
from model.qualify.neighbours import distance_bin_label

# One calm, colour-blind-safe colour per class (Okabe-Ito), used on every chart.
SPLIT_COLORS = ("#1F6F8B", "#9CC3D5")  # train, test
LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=40, b=10), font=dict(size=13))


def _display(name: str) -> str:
    return DISPLAY_NAMES[CLASS_NAMES.index(name)]


def probability_bars(probabilities, *, title: str = "Calibrated probability by stage") -> go.Figure:
    """Horizontal bars of calibrated probabilities, stages from healthy to severe. Bars under 1% keep their
    value as a label outside the bar, so a near-zero bar is never an unlabelled sliver."""
    order = list(STAGE_ORDER)
    names = [CLASS_NAMES[i] for i in order]
    values = [float(probabilities[i]) for i in order]
    fig = go.Figure(go.Bar(
        x=values, y=[_display(n) for n in names], orientation="h",
        marker_color=[CLASS_COLORS[n] for n in names],
        text=[f"{v:.1%}" for v in values], textposition=["inside" if v >= 0.15 else "outside" for v in values],
        cliponaxis=False, hovertemplate="%{y}: %{x:.2%}<extra></extra>",
    ))
    fig.update_layout(**LAYOUT, title=title, height=260,
                      xaxis=dict(range=[0, 1], tickformat=".0%"), yaxis=dict(autorange="reversed"))
    return fig


def class_balance(counts: dict[str, list[int]], *, title: str = "Class balance",
                  axis: str = "share of split") -> go.Figure:
    """Grouped bars of class shares per group of counts (splits, or subjects and slices); hover shows counts.

    counts: {name: per-class counts in label order}; a name such as "subjects" or "train" is also the unit
    shown on hover (slices unless the name says subjects).
    """
    fig = go.Figure()
    order = list(STAGE_ORDER)
    for (split, values), color in zip(counts.items(), SPLIT_COLORS):
        total = sum(values)
        unit = "subjects" if "subject" in split else "slices"
        fig.add_trace(go.Bar(
            marker_color=color,
            name=f"{split} (n={total:,})", x=[DISPLAY_NAMES[i] for i in order],
            y=[values[i] / total for i in order], customdata=[values[i] for i in order],
            text=[f"{values[i]:,}" for i in order], textposition="outside",
            hovertemplate="%{x}: %{customdata:,} " + unit + " (%{y:.1%})<extra>" + split + "</extra>",
        ))
    fig.update_layout(**LAYOUT, title=title, barmode="group", height=340,
                      yaxis=dict(tickformat=".0%", title=axis, range=[0, 0.65]))
    return fig


def confusion_matrix(matrix, *, normalize: bool, unit: str = "slices") -> go.Figure:
    """Confusion matrix ordered by disease stage; rows are true labels; `unit` names what is counted."""
    m = np.asarray(matrix, dtype=float)[np.ix_(STAGE_ORDER, STAGE_ORDER)]
    counts = m.astype(int)
    if normalize:
        m = m / np.clip(m.sum(axis=1, keepdims=True), 1, None)
    labels = [DISPLAY_NAMES[i] for i in STAGE_ORDER]
    text = [[f"{v:.1%}" if normalize else f"{int(v)}" for v in row] for row in m]
    fig = go.Figure(go.Heatmap(
        z=m.tolist(), x=labels, y=labels, text=text, texttemplate="%{text}", colorscale="Blues", showscale=False,
        customdata=counts.tolist(), hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} " + unit + "<extra></extra>",
    ))
    fig.update_layout(**LAYOUT, title="Confusion matrix (rows: true stage)" + (", row-normalised" if normalize else ""),
                      height=420, xaxis=dict(title="predicted", side="bottom"),
                      yaxis=dict(title="true", autorange="reversed"))
    return fig


def roc_curves(metrics: dict) -> go.Figure:
    """One-vs-rest ROC curve per class, AUC in the legend."""
    fig = go.Figure()
    for name, entry in metrics["per_class"].items():
        if "roc_curve" not in entry:
            continue
        fig.add_trace(go.Scatter(
            x=entry["roc_curve"]["fpr"], y=entry["roc_curve"]["tpr"], mode="lines",
            name=f"{_display(name)} (AUC {entry['roc_auc']:.4f})", line=dict(color=CLASS_COLORS[name], width=2),
        ))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(dash="dot", color="#999")))
    fig.update_layout(**LAYOUT, title="ROC curves, one class vs rest", height=420,
                      xaxis=dict(title="false positive rate", range=[0, 1]),
                      yaxis=dict(title="true positive rate", range=[0, 1.02]), legend=dict(x=0.45, y=0.05))
    return fig


def pr_curves(metrics: dict) -> go.Figure:
    """Precision-recall curve per class, average precision in the legend, prevalence as baseline."""
    fig = go.Figure()
    n = metrics["n"]
    for name, entry in metrics["per_class"].items():
        if "pr_curve" not in entry:
            continue
        color = CLASS_COLORS[name]
        fig.add_trace(go.Scatter(
            x=entry["pr_curve"]["recall"], y=entry["pr_curve"]["precision"], mode="lines",
            name=f"{_display(name)} (AP {entry['pr_auc']:.4f})", line=dict(color=color, width=2, shape="hv"),
        ))
        prevalence = entry["support"] / n
        fig.add_trace(go.Scatter(x=[0, 1], y=[prevalence] * 2, mode="lines", showlegend=False,
                                 line=dict(color=color, dash="dot", width=1), hoverinfo="skip"))
    fig.update_layout(**LAYOUT, title="Precision-recall curves (dotted: prevalence)", height=420,
                      xaxis=dict(title="recall", range=[0, 1]), yaxis=dict(title="precision", range=[0, 1.02]),
                      legend=dict(x=0.02, y=0.05))
    return fig


def training_curves(rows: list[dict], *, title: str = "Training history") -> go.Figure:
    """Training loss and validation accuracy / macro-F1 per epoch (of the averaged weights, when kept)."""
    epochs = [r["epoch"] for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=epochs, y=[r["train_loss"] for r in rows], name="train loss", yaxis="y2",
                             line=dict(color="#999")))
    validated = bool(rows) and "val_acc" in rows[0]  # a refit on all of train has no validation columns
    if validated:
        fig.add_trace(go.Scatter(x=epochs, y=[r["val_acc"] for r in rows], name="validation accuracy",
                                 line=dict(color="#0072B2")))
        fig.add_trace(go.Scatter(x=epochs, y=[r["val_macro_f1"] for r in rows], name="validation macro-F1",
                                 line=dict(color="#CC79A7")))
    if validated and rows[0].get("raw_val_acc") not in (None, ""):  # a run that kept a moving average of the weights
        fig.add_trace(go.Scatter(x=epochs, y=[r["raw_val_acc"] for r in rows], name="validation accuracy, raw weights",
                                 line=dict(color="#0072B2", dash="dot")))
    fig.update_layout(**{**LAYOUT, "margin": dict(l=10, r=60, t=40, b=10)}, title=title, height=360,
                      xaxis=dict(title="epoch"),
                      yaxis=dict(title="validation", range=[0, 1.02], tickformat=".0%"),
                      yaxis2=dict(title="train loss", overlaying="y", side="right", rangemode="tozero",
                                  automargin=True),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def accuracy_by_train_distance(rows: list[dict]) -> go.Figure:
    """Accuracy of the model and of the nearest-train-slice lookup, per bin of distance to that slice."""
    rows = [r for r in rows if r["n"]]
    x = [f"{distance_bin_label(r)}<br>n={r['n']:,}" for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=x, y=[r["accuracy"] for r in rows], name="this model", marker_color="#0072B2",
                         text=[f"{r['accuracy']:.1%}" + (f"<br>{r['errors']} wrong" if r["errors"] else "")
                               for r in rows], textposition="inside", textangle=0, insidetextanchor="end",
                         hovertemplate="%{x}: %{y:.2%}<extra>this model</extra>"))
    fig.add_trace(go.Bar(x=x, y=[r["lookup_accuracy"] for r in rows], name="nearest-train-slice lookup",
                         marker_color="#BBBBBB", text=[f"{r['lookup_accuracy']:.1%}" for r in rows],
                         textposition="inside", textangle=0, insidetextanchor="end", hovertemplate="%{x}: %{y:.2%}<extra>lookup</extra>"))
    fig.update_layout(**LAYOUT, barmode="group", height=340,
                      title="Accuracy by distance to the nearest training slice",
                      xaxis=dict(title="RMS grey-level distance to the nearest train slice"),
                      yaxis=dict(title="accuracy", range=[0, 1.05], tickformat=".0%"),
                      legend=dict(orientation="h", y=-0.35))
    return fig


def leakage_headline(rows: list[dict]) -> go.Figure:
    """The network and the raw-pixel lookup, side by side, on each question the data can answer.

    rows: [{"setting": str, "network": float, "lookup": float}] of balanced accuracies. Where the lookup,
    which learns nothing, matches the network, the setting rewards finding the same brain again.
    """
    x = [r["setting"] for r in rows]
    fig = go.Figure()
    for key, color in (("network", "#0072B2"), ("lookup", "#BBBBBB")):
        name = BASELINE_NAMES[key]
        values = [r[key] for r in rows]
        fig.add_trace(go.Bar(x=x, y=values, name=name, marker_color=color, text=[f"{v:.1%}" for v in values],
                             textposition="outside", hovertemplate="%{x}: %{y:.1%}<extra>" + name + "</extra>"))
    fig.add_hline(y=0.25, line=dict(dash="dot", color="#999"), annotation_text="chance",
                  annotation_position="top left", annotation_font=dict(color="#777", size=11))
    fig.update_layout(**LAYOUT, barmode="group", height=330, title="Balanced accuracy: a seen brain or a new one",
                      yaxis=dict(range=[0, 1.12], tickformat=".0%", title="balanced accuracy"),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def reliability_diagram(before: list[dict], after: list[dict]) -> go.Figure:
    """Accuracy against confidence per bin, before and after temperature scaling; the diagonal is perfect."""
    return reliability_figure(before, after, title="Reliability, out of fold (marker size: slices in the bin)")


def reliability_figure(before: list[dict], after: list[dict], *, title: str, unit: str = "slices") -> go.Figure:
    """`reliability_diagram` with its own title: rows are `model.core.calibration.reliability` bins, `unit` what
    each bin counts (shown on hover)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line=dict(dash="dot", color="#999")))
    for rows, name, color in ((before, "before (T = 1)", "#E69F00"), (after, "after temperature scaling", "#0072B2")):
        fig.add_trace(go.Scatter(
            x=[r["confidence"] for r in rows], y=[r["accuracy"] for r in rows], mode="lines+markers", name=name,
            marker=dict(size=[6 + 14 * (r["n"] / max(1, max(q["n"] for q in rows))) ** 0.5 for r in rows]),
            line=dict(color=color), customdata=[r["n"] for r in rows],
            hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata} " + unit + "<extra>" + name +
                          "</extra>"))
    fig.update_layout(**LAYOUT, height=360, title=title,
                      xaxis=dict(title="mean confidence", range=[0, 1]),
                      yaxis=dict(title="accuracy", range=[0, 1.02]), legend=dict(orientation="h", y=-0.25))
    return fig


def subject_scatter(table, column: str, label: str) -> go.Figure:
    """Each subject's out-of-fold probability of its true stage against a clinical column, per class.

    table: one row per subject with `column`, true_label, p_true and correct. Filled markers are subjects
    staged right, open ones wrong.
    """
    fig = go.Figure()
    for name in (CLASS_NAMES[i] for i in STAGE_ORDER):
        rows = table[(table.true_label == name) & table[column].notna()]
        if rows.empty:
            continue
        fig.add_trace(go.Scatter(
            x=rows[column], y=rows.p_true, mode="markers", name=_display(name),
            marker=dict(color=CLASS_COLORS[name], size=9, line=dict(color=CLASS_COLORS[name], width=1.5),
                        symbol=["circle" if c else "circle-open" for c in rows.correct]),
            customdata=rows.subject, hovertemplate="%{customdata}<br>" + label + " %{x}<br>p(true stage) %{y:.2f}"
                                                   "<extra>" + _display(name) + "</extra>"))
    fig.update_layout(**LAYOUT, height=340, title=f"p(true stage) by {label.split(' (')[0]} (open: staged wrong)",
                      xaxis=dict(title=label), yaxis=dict(title="p(true stage), out of fold", range=[0, 1.02]),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def age_by_class(table) -> go.Figure:
    """Box plot of age per stage, for the subjects with a clinical row."""
    fig = go.Figure()
    for name in (CLASS_NAMES[i] for i in STAGE_ORDER):
        ages = table.loc[(table.label == name) & table.age.notna(), "age"]
        if len(ages):
            fig.add_trace(go.Box(y=ages, name=f"{_display(name)}<br>n={len(ages)}", marker_color=CLASS_COLORS[name],
                                 boxpoints="all", jitter=0.4, pointpos=0))
    fig.update_layout(**LAYOUT, height=340, title="Age by stage (subjects with an OASIS row)", showlegend=False,
                      yaxis=dict(title="age (years)"))
    return fig


def predicted_counts(results: list) -> go.Figure:
    """Stacked bars of predicted stages in a batch (`model.reports.record.Result`s), stages from healthy to
    severe: scans without a flag, and scans flagged out of distribution or as near-copies of training slices."""
    order = list(STAGE_ORDER)
    shown = [r for r in results if not hasattr(r, "error")]
    fig = go.Figure()
    for name, keep, color in (("no flag", lambda r: r.reliable, "#4c78a8"),
                              ("flagged", lambda r: not r.reliable, "#e45756")):
        counts = [sum(1 for r in shown if r.label == i and keep(r)) for i in order]
        fig.add_trace(go.Bar(name=name, x=[DISPLAY_NAMES[i] for i in order], y=counts, marker_color=color,
                             text=[c or "" for c in counts], hovertemplate="%{x}: %{y} scans<extra>" + name + "</extra>"))
    fig.update_layout(**LAYOUT, title=f"Predicted stage of {len(shown)} scans", barmode="stack", height=320,
                      yaxis=dict(title="scans"))
    return fig


def clickable_confusion_matrix(matrix, *, normalize: bool, unit: str = "slices") -> go.Figure:
    """`confusion_matrix` with one invisible marker per cell on top, so a click selects the cell.

    Plotly heatmaps report no selection in Streamlit (streamlit/streamlit#8760); the markers do. Each marker's
    customdata is [true label id, predicted label id, count]; the selected one is drawn as an outlined square.
    """
    fig = confusion_matrix(matrix, normalize=normalize, unit=unit)
    m = np.asarray(matrix, dtype=int)
    labels = [DISPLAY_NAMES[i] for i in STAGE_ORDER]
    cells = [(t, p) for t in STAGE_ORDER for p in STAGE_ORDER]
    fig.add_trace(go.Scatter(
        x=[DISPLAY_NAMES[p] for _, p in cells], y=[DISPLAY_NAMES[t] for t, _ in cells], mode="markers",
        marker=dict(symbol="square-open", size=44, color="#E69F00", line=dict(width=3), opacity=0),
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=0)),
        customdata=[[t, p, int(m[t, p])] for t, p in cells], showlegend=False, name="cells",
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata[2]} " + unit + " · click to see them"
                      "<extra></extra>"))
    fig.update_layout(hoverdistance=60, clickmode="event+select", dragmode=False,
                      xaxis=dict(categoryorder="array", categoryarray=labels),
                      yaxis=dict(categoryorder="array", categoryarray=labels))
    return fig


def stage_distance(distance: dict[int, int], *, unit: str = "slices") -> go.Figure:
    """Bars of predicted minus true stage (-3..3 places in STAGE_ORDER): 0 is right, +1 one stage too severe."""
    keys = sorted(distance)
    total = max(1, sum(distance.values()))
    colors = ["#009E73" if d == 0 else "#56B4E9" if abs(d) == 1 else "#D55E00" for d in keys]
    fig = go.Figure(go.Bar(
        x=[f"{d:+d}" if d else "0" for d in keys], y=[distance[d] / total for d in keys], marker_color=colors,
        customdata=[distance[d] for d in keys], text=[f"{distance[d]:,}" for d in keys], textposition="outside",
        cliponaxis=False, hovertemplate="%{x} stages: %{customdata:,} " + unit + " (%{y:.1%})<extra></extra>"))
    fig.update_layout(**LAYOUT, height=300, title="Predicted minus true stage",
                      xaxis=dict(title="stages (− milder than true, + more severe)", type="category"),
                      yaxis=dict(title=f"share of {unit}", tickformat=".0%", rangemode="tozero"))
    return fig


def risk_coverage(curve: dict, chosen: dict, *, unit: str = "slices", points: int = 400,
                  min_coverage: float = 0.1) -> go.Figure:
    """Accuracy and balanced accuracy on the kept rows against the share kept (coverage), the chosen referral
    marked. curve: `model.qualify.interrogate.risk_coverage`; chosen: `model.qualify.interrogate.referral`. At most `points`
    points per line are drawn, from `min_coverage` on (a handful of rows says little)."""
    n = len(curve["coverage"])
    start = min(n - 1, int(np.ceil(min_coverage * n)) - 1) if min_coverage > 0 else 0
    step = max(1, (n - start) // points)
    pick = np.unique(np.r_[np.arange(start, n, step), n - 1])
    fig = go.Figure()
    x_chosen = chosen["kept"] / n
    for key, name, color, side in (("accuracy", "accuracy", "#0072B2", "top left"),
                                   ("balanced_accuracy", "balanced accuracy", "#CC79A7", "bottom right")):
        fig.add_trace(go.Scatter(
            x=curve["coverage"][pick], y=curve[key][pick], mode="lines", name=name, line=dict(color=color, width=2),
            customdata=curve["confidence"][pick],
            hovertemplate="keep %{x:.0%}<br>" + name + " %{y:.1%}<br>confidence ≥ %{customdata:.2f}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[x_chosen], y=[chosen[key]], mode="markers+text", showlegend=False,
                                 marker=dict(color=color, size=12, line=dict(color="white", width=2)),
                                 text=[f"{chosen[key]:.1%}"], textposition=side, cliponaxis=False,
                                 textfont=dict(color=color), hoverinfo="skip"))
    fig.add_vline(x=x_chosen, line=dict(color="#999", dash="dot"))
    fig.update_layout(**LAYOUT, height=340, title=f"Risk-coverage: figures on the {unit} kept",
                      xaxis=dict(title=f"share of {unit} kept (coverage)", range=[min_coverage - 0.02, 1.02],
                                 tickformat=".0%"),
                      yaxis=dict(title="on the kept", range=[0, 1.08], tickformat=".0%"),
                      legend=dict(orientation="h", y=-0.25))
    return fig
