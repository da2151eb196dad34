"""Time in NIR graphs: the step ``dt``, the discretisation, and the discrete coefficients.

NIR describes neurons as ODEs (``tau dv/dt = (v_leak - v) + r I``); running them needs a
time step and a discretisation, which NIR does not store. mksgn reads both from the
graph's metadata (``"dt"``, ``"discretisation"``) and writes them into every graph it
exports; a graph without ``"dt"`` runs at :data:`DEFAULT_DT`, snnTorch's export convention.

Forward Euler gives, per step (``"exponential"`` replaces ``dt/tau`` by ``1 - exp(-dt/tau)``)::

    LIF, LI          v <- a v + b I + c,   a = 1 - dt/tau,   b = r dt/tau,   c = v_leak dt/tau
    I, IF            v <- v + r dt I
    CubaLIF, CubaLI  i <- a_syn i + b_syn I,   a_syn = 1 - dt/tau_syn,   b_syn = w_in dt/tau_syn,
                     then the LIF update of v with tau_mem and input i

Coefficients are computed in float64 (callers cast them once).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mksgn.core.fields import FieldError, as_text

DEFAULT_DT: float = 1e-4
"""Time step of a graph whose metadata gives none (snnTorch's NIR export convention)."""

DISCRETISATIONS: tuple[str, ...] = ("forward-euler", "exponential")
"""The values of ``metadata["discretisation"]`` mksgn implements."""


def _metadata(graph: Any) -> Mapping[str, Any]:
    metadata = getattr(graph, "metadata", None)
    return metadata if isinstance(metadata, Mapping) else {}


def discretisation(graph: Any, label: str = "graph") -> str:
    """``metadata["discretisation"]`` (default forward Euler); raises :class:`FieldError` if unsupported."""
    value = _metadata(graph).get("discretisation", DISCRETISATIONS[0])
    text = as_text(value)
    if text not in DISCRETISATIONS:
        raise FieldError(f"{label}: metadata discretisation {value!r} is not supported; "
                         f"supported: {list(DISCRETISATIONS)}")
    return text


def metadata_dt(graph: Any, label: str = "graph") -> float | None:
    """``metadata["dt"]`` as a float, or None when absent; raises :class:`FieldError` if not a positive number."""
    return parse_dt(_metadata(graph).get("dt"), label)


def parse_dt(value: Any, label: str = "graph") -> float | None:
    """A stored ``dt`` value (a number or a one-element array) as a float; None stays None."""
    if value is None:
        return None
    try:
        dt = float(np.asarray(value, dtype=np.float64).reshape(-1)[0]) if np.size(value) == 1 else math.nan
    except (TypeError, ValueError):
        dt = math.nan
    if not (math.isfinite(dt) and dt > 0):
        raise FieldError(f"{label}: metadata dt {value!r} must be a finite number > 0")
    return dt


def graph_dt(graph: Any, dt: float | None = None) -> float:
    """The time step to run ``graph`` at: ``dt`` if given, else its metadata's, else :data:`DEFAULT_DT`."""
    if dt is not None:
        dt = float(dt)
        if not (math.isfinite(dt) and dt > 0):
            raise FieldError(f"dt must be a finite number > 0, got {dt}")
        return dt
    stored = metadata_dt(graph)
    return DEFAULT_DT if stored is None else stored


def decay_step(tau: np.ndarray, dt: float, discretisation: str = "forward-euler") -> np.ndarray:
    """``1 - a``, the part of the state that leaks in one step: ``dt / tau`` (forward Euler) or
    ``1 - exp(-dt / tau)`` (exponential, the exact solution for an input held over the step)."""
    if discretisation == "exponential":
        return -np.expm1(-dt / np.asarray(tau, dtype=np.float64))
    return dt / np.asarray(tau, dtype=np.float64)


def leaky_coefficients(tau: np.ndarray, r: np.ndarray, v_leak: np.ndarray, dt: float,
                       discretisation: str = "forward-euler") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, c)`` of ``tau dv/dt = v_leak - v + r I`` (LIF, LI; CubaLIF's membrane): with
    ``k = 1 - a`` (:func:`decay_step`), ``a = 1 - k``, ``b = r k``, ``c = v_leak k``."""
    k = decay_step(tau, dt, discretisation)
    return 1.0 - k, r * k, v_leak * k


def integrator_gain(r: np.ndarray, dt: float) -> np.ndarray:
    """Forward-Euler input gain ``r dt`` of ``dv/dt = r I`` (I, IF)."""
    return r * dt


def synaptic_coefficients(tau_syn: np.ndarray, w_in: np.ndarray, dt: float, discretisation: str = "forward-euler",
                          jump: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(a_syn, b_syn)`` of ``tau_syn di/dt = -i + w_in I`` (CubaLIF, CubaLI): ``a_syn = 1 - k``,
    ``b_syn = w_in k`` (:func:`decay_step`), or ``b_syn = w_in`` where the input jumps into the current."""
    k = decay_step(tau_syn, dt, discretisation)
    return 1.0 - k, (np.asarray(w_in, dtype=np.float64) if jump else k * w_in)


def tau_of_beta(beta: float, dt: float) -> float:
    """The ``tau`` whose forward-Euler decay ``1 - dt/tau`` is ``beta`` (``beta < 1``)."""
    return dt / (1.0 - beta)
