"""Options of every command that runs a NIR graph: its inputs as arrays, its time step, its neuron semantics.

    --input X.npz        one array (T, B, *shape) per Input node, by node name (or one array for
                         a single-input graph): B rows run, T steps each
    --dt DT              the time step (default: the graph's, else the preset's)
    --semantics PRESET   the producer's semantics (mksgn.core.semantics.PRESETS)
    --reset, --threshold-test, --spikes, --v-min, --recurrent-initial, --current-input,
    --discretisation     one field, for every neuron type, on top of the preset or the graph's

This module imports nothing heavy (``--help`` stays fast): the choices are spelled out here and a
test holds them equal to :mod:`mksgn.core.semantics`'s.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

PRESET_NAMES = ("nir", "norse", "sinabs", "sinabs-from-model", "sinabs-single", "snntorch", "snntorch-zero")
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "reset": ("to-v-reset", "zero", "subtract", "subtract-next"),
    "threshold": (">", ">="),
    "spikes": ("single", "multi"),
    "recurrent_initial": ("zero", "bias"),
    "current_input": ("integrated", "jump"),
    "discretisation": ("forward-euler", "exponential"),
}
_FLAGS = {"reset": "--reset", "threshold": "--threshold-test", "spikes": "--spikes",
          "recurrent_initial": "--recurrent-initial", "current_input": "--current-input",
          "discretisation": "--discretisation"}


def _v_min(text: str) -> float | str:
    if text.lower() == "none":
        return "none"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def add_graph_options(parser: argparse.ArgumentParser, inputs: bool = True) -> None:
    """``--input`` (if ``inputs``), ``--dt``, ``--semantics`` and the semantics' fields."""
    if inputs:
        parser.add_argument("--input", type=Path, metavar="X.npz",
                            help="run these arrays instead of skeleton data: one (T, B, *shape) array per Input "
                                 "node, named after it (one array for a single-input graph); B rows, T steps")
    group = parser.add_argument_group("neuron semantics (what NIR files do not state; default: the graph's own, "
                                      "else NIR's reading, with a warning when the graph states no dt)")
    group.add_argument("--dt", type=float, help="time step (default: the graph's metadata, else the preset's)")
    group.add_argument("--semantics", choices=PRESET_NAMES, metavar="PRESET",
                       help=f"the producer's semantics: {', '.join(PRESET_NAMES)}")
    for field, flag in _FLAGS.items():
        group.add_argument(flag, dest=f"sem_{field}", choices=FIELD_CHOICES[field],
                           help=f"{field.replace('_', ' ')} of every neuron ({' | '.join(FIELD_CHOICES[field])})")
    group.add_argument("--v-min", dest="sem_v_min", type=_v_min, metavar="V|none",
                       help="floor under every membrane after its reset ('none': no floor)")
    if hasattr(parser, "add_check"):
        parser.add_check(lambda args: _check_dt(parser, args))


def _check_dt(parser: Any, args: argparse.Namespace) -> None:
    dt = getattr(args, "dt", None)
    if dt is not None and not (math.isfinite(dt) and dt > 0):
        parser.error(f"--dt must be a finite number > 0, got {dt}")


def semantics_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The semantics fields set on the command line."""
    out: dict[str, Any] = {}
    for field in (*_FLAGS, "v_min"):
        value = getattr(args, f"sem_{field}", None)
        if value is not None:
            out[field] = None if value == "none" else value
    return out


def graph_semantics(args: argparse.Namespace, metadata: Any, where: str):
    """The :class:`~mksgn.core.semantics.Semantics` a command runs ``metadata``'s graph with (warns when
    it assumes a default ``dt``)."""
    from mksgn.core.semantics import resolve

    return resolve(metadata, dt=getattr(args, "dt", None), preset_name=getattr(args, "semantics", None),
                   overrides=semantics_overrides(args), where=where)
