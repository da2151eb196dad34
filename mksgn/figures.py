"""PNG figures without pyplot (no global state), written atomically: what every report plot shares."""

from __future__ import annotations

import os
from typing import Any

from mksgn.atomic import atomic_open


def figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Lay the figure out and write it as PNG (to a temporary file, then renamed)."""
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png")
