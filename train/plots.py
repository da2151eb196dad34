"""PNG plots of training results (matplotlib without pyplot: no global state)."""

from __future__ import annotations

import os

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


def plot_training_curves(metrics: dict, path: str | os.PathLike[str], title: str) -> None:
    """Train loss and test top-1 per epoch, one line per model in ``metrics``."""
    fig = figure(9, 3.5)
    ax_loss, ax_acc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for kind, section in metrics.items():
        epochs = [e["epoch"] for e in section["epochs"]]
        ax_loss.plot(epochs, [e["train"]["loss"] for e in section["epochs"]], marker=".", label=kind)
        ax_acc.plot(epochs, [e["test"]["top1"] for e in section["epochs"]], marker=".", label=kind)
    ax_loss.set(xlabel="epoch", ylabel="training loss")
    ax_acc.set(xlabel="epoch", ylabel="test top-1", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    save_png(fig, path)
