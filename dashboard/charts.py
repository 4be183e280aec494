"""Every Plotly figure of the dashboard, built from plain numbers.

Pages pass in probabilities and metrics dicts; nothing here reads files or
touches the model, so a chart can be tested and reused on its own.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from model.neighbours import distance_bin_label
from model.constants import CLASS_NAMES, DISPLAY_NAMES, STAGE_ORDER

# One calm, colour-blind-safe colour per class (Okabe-Ito), used on every chart.
CLASS_COLORS = {
    "Mild_Demented": "#E69F00",
    "Moderate_Demented": "#D55E00",
    "Non_Demented": "#009E73",
    "Very_Mild_Demented": "#56B4E9",
}
SPLIT_COLORS = ("#1F6F8B", "#9CC3D5")  # train, test
LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=40, b=10), font=dict(size=13))


def _display(name: str) -> str:
    return DISPLAY_NAMES[CLASS_NAMES.index(name)]


def probability_bars(probabilities) -> go.Figure:
    """Horizontal bars of calibrated probabilities, stages from healthy to severe."""
    order = list(STAGE_ORDER)
    names = [CLASS_NAMES[i] for i in order]
    values = [float(probabilities[i]) for i in order]
    fig = go.Figure(go.Bar(
        x=values, y=[_display(n) for n in names], orientation="h",
        marker_color=[CLASS_COLORS[n] for n in names],
        text=[f"{v:.1%}" for v in values], textposition="auto",
        hovertemplate="%{y}: %{x:.2%}<extra></extra>",
    ))
    fig.update_layout(**LAYOUT, title="Calibrated probability by stage", height=260,
                      xaxis=dict(range=[0, 1], tickformat=".0%"), yaxis=dict(autorange="reversed"))
    return fig


def class_balance(counts: dict[str, list[int]]) -> go.Figure:
    """Grouped bars of class shares per split; hover shows counts."""
    fig = go.Figure()
    order = list(STAGE_ORDER)
    for (split, values), color in zip(counts.items(), SPLIT_COLORS):
        total = sum(values)
        fig.add_trace(go.Bar(
            marker_color=color,
            name=f"{split} (n={total:,})", x=[DISPLAY_NAMES[i] for i in order],
            y=[values[i] / total for i in order], customdata=[values[i] for i in order],
            hovertemplate="%{x}: %{customdata:,} slices (%{y:.1%})<extra>" + split + "</extra>",
        ))
    fig.update_layout(**LAYOUT, title="Class balance", barmode="group", height=340,
                      yaxis=dict(tickformat=".0%", title="share of split"))
    return fig


def confusion_matrix(matrix, *, normalize: bool) -> go.Figure:
    """Confusion matrix ordered by disease stage; rows are true labels."""
    m = np.asarray(matrix, dtype=float)[np.ix_(STAGE_ORDER, STAGE_ORDER)]
    counts = m.astype(int)
    if normalize:
        m = m / np.clip(m.sum(axis=1, keepdims=True), 1, None)
    labels = [DISPLAY_NAMES[i] for i in STAGE_ORDER]
    text = [[f"{v:.1%}" if normalize else f"{int(v)}" for v in row] for row in m]
    fig = go.Figure(go.Heatmap(
        z=m.tolist(), x=labels, y=labels, text=text, texttemplate="%{text}", colorscale="Blues", showscale=False,
        customdata=counts.tolist(), hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} slices<extra></extra>",
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


def training_curves(rows: list[dict]) -> go.Figure:
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
    fig.update_layout(**LAYOUT, title="Training history", height=340, xaxis=dict(title="epoch"),
                      yaxis=dict(title="validation", range=[0, 1.02], tickformat=".0%"),
                      yaxis2=dict(title="loss", overlaying="y", side="right", rangemode="tozero"))
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
