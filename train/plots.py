"""PNG plots of training results (matplotlib without pyplot: no global state)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mksgn.figures import figure, save_png


def plot_confusion(confusion: np.ndarray, class_names: list[str], path: str | os.PathLike[str], title: str) -> None:
    """Row-normalised confusion matrix (rows: true class, columns: prediction) as PNG."""
    cm = np.asarray(confusion, dtype=np.float64)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    size = max(4.0, 0.45 * k + 2)
    fig = figure(size + 1, size)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=9)
    save_png(fig, path)


NOT_LOSS_TERMS = frozenset({"loss", "top1", "samples", "seconds", "samples_per_s", "loss_curve", "lr_end"})
"""Keys of an epoch's ``train`` metrics that are not loss terms."""
PROBE_TERM = "mi_probe"
"""The loss term that trains the MI probes, not the student."""
TERM_NOTES = {
    "ce": "cross-entropy on the labels",
    "kd_soft": "KD soft labels",
    "kd_feature": "KD features",
    "mi_probe": "MI probes' own CE (trains the probes only)",
    "mi_guidance": "MI fusion guidance",
}
"""What each recorded loss term is (:class:`mksgn.train.distill.DistillationLoss`)."""


def _term_label(term: str, weights: dict[str, float]) -> str:
    note = TERM_NOTES.get(term, "CE of one stream" if term.startswith("ce_") else "")
    weight = f" (x {weights[term]:g} in the loss)" if term in weights and weights[term] != 1 else ""
    return f"{term}: {note}{weight}" if note else f"{term}{weight}"


def _total_formula(terms: list[str], weights: dict[str, float]) -> str:
    """``loss = ce + kd_soft + 0.1 x mi_guidance`` as the recorded terms make it up."""
    if not terms:
        return ""
    if all(t.startswith("ce_") for t in terms):
        return "loss = mean of the streams' CE"
    return "loss = " + " + ".join(t if weights.get(t, 1) == 1 else f"{weights[t]:g} x {t}" for t in terms)


def training_curves_figure(metrics: dict, title: str, weights: dict[str, float] | None = None) -> Any:
    """Per model in ``metrics``, its training loss and every term it is made of per epoch (log scale);
    validation top-1 of all, with the epoch chosen on it.

    The MI probes' own cross-entropy (``mi_probe``) trains the probes, not the student: the
    thick line is the student's own loss without it, so that a large probe loss does not hide
    the student's progress.

    Parameters
    ----------
    metrics
        ``metrics.json``: model kind -> ``{"epochs": [{"epoch", "train": {...}, "val": {...}}]}``.
    title
        The figure's title.
    weights
        Weight of a term in the total where it is not 1 (``kd_soft``: ``distill.alpha``, ...),
        named in the legend; the terms are plotted as recorded (unweighted).
    """
    weights = weights or {}
    kinds = [k for k, v in metrics.items() if "epochs" in v]  # not the baseline
    fig = figure(5.2 * (len(kinds) + 1), 4.4)
    axes = [fig.add_subplot(1, len(kinds) + 1, i + 1) for i in range(len(kinds) + 1)]
    for ax, kind in zip(axes, kinds, strict=False):
        epochs = metrics[kind]["epochs"]
        x = [e["epoch"] for e in epochs]
        terms = sorted({k for e in epochs for k in e["train"] if k not in NOT_LOSS_TERMS})
        own = [e["train"]["loss"] - e["train"].get(PROBE_TERM, 0.0) for e in epochs]
        ax.plot(x, own, color="black", linewidth=2, marker=".",
                label=f"{kind}'s own loss" + (" (without the probes' CE)" if PROBE_TERM in terms else ""))
        for term in terms:
            ax.plot(x, [e["train"].get(term, np.nan) for e in epochs], marker=".", label=_term_label(term, weights),
                    linestyle=":" if term == PROBE_TERM else "-")
        if all("loss" in e.get("val", {}) for e in epochs):
            ax.plot(x, [e["val"]["loss"] for e in epochs], color="black", linestyle="--",
                    label="validation cross-entropy")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss per batch (mean over the epoch)")
        formula = _total_formula(terms, weights)
        ax.set_title(f"{kind}: training loss and its terms" + (f"\n{formula}" if formula else ""), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    ax_acc = axes[-1]
    for kind in kinds:
        epochs = [e for e in metrics[kind]["epochs"] if "val" in e]
        line, = ax_acc.plot([e["epoch"] for e in epochs], [e["val"]["top1"] for e in epochs], marker=".", label=kind)
        best = metrics[kind].get("best", {})
        if best.get("epoch", -1) > 0:
            ax_acc.plot([best["epoch"]], [best["top1"]], marker="*", markersize=12, color=line.get_color(),
                        label=f"{kind}: chosen (epoch {best['epoch']})")
    ax_acc.set(xlabel="epoch", ylabel="validation top-1", ylim=(0, 1))
    ax_acc.set_title("validation top-1 (chooses the checkpoint; the test split is not used)", fontsize=9)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_training_curves(metrics: dict, path: str | os.PathLike[str], title: str,
                         weights: dict[str, float] | None = None) -> None:
    """Write :func:`training_curves_figure` as PNG at ``path``."""
    save_png(training_curves_figure(metrics, title, weights), path)
