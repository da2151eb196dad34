"""PNG figures without pyplot (no global state), written atomically: what every report plot shares."""

from __future__ import annotations

import os
from typing import Any

from mksgn.atomic import atomic_open

MIN_FONT = 8
"""Smallest font size (points) a report figure uses for text a reader must read (tick labels, notes)."""


def figure(width: float, height: float, layout: str | None = None) -> Any:
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches on its own Agg canvas.

    ``layout="constrained"`` lays out colour bars and long tick labels without overlap; without
    it :func:`save_png` applies ``tight_layout``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Lay the figure out and write it as PNG (to a temporary file, then renamed)."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png")
