"""Neuron step functions: one pure function per neuron semantics, shared by every backend.

Each is ``step(x, state, params) -> (output, state)`` (as Norse's ``lif_feed_forward_step``),
elementwise, on torch tensors; parameters broadcast to the state. Training, the reference
NIR executor, the nirtorch maps and the emulator's floating-point model all call these; the
bit-accurate integer model of the same neuron is :func:`mksgn.core.loihi.lif_fixed_step`, and
Lava's own process models are proven equal to both by tests.

Leaky integrate-and-fire (:func:`lif_step`), the discrete form of NIR's LIF, LI, IF and I::

    v_t  = a v'_{t-1} + b x_t + c
    s_t  = 1 if v_t > threshold else 0          (strict; no threshold: non-spiking)
    v'_t = reset where s_t else v_t

The spec's neuron (:class:`LIFParams`) is ``a = beta``, ``b = 1``, ``c = 0``, reset to zero;
it equals snnTorch's ``Leaky(beta, threshold, reset_mechanism="zero")`` spike for spike and
Lava's LIF with ``du = 1`` (4095 in fixed point) and ``dv = 1 - beta``. ``beta = 0`` with a
threshold between 1 and 2 and two binary inputs of weight 1 is the coincidence (AND) neuron.

Current-based (:func:`current_step`): ``i_t = a_syn i_{t-1} + b_syn x_t``, feeding a LIF
(CubaLIF, CubaLI; Lava's two-state LIF with ``a_syn = 1 - du``, ``a = 1 - dv``, ``c = bias``).

While training, ``spike_fn`` is a surrogate-gradient step function (snnTorch's arctan) and
the reset is detached from the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

SpikeFn = Callable[[torch.Tensor], torch.Tensor]
"""``spike_fn(v - threshold)``: 1 where positive (strictly)."""


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """Strict step ``x > 0`` in ``x``'s dtype, without gradient (inference)."""
    return (x > 0).to(x.dtype)


@dataclass(frozen=True)
class LeakyParams:
    """Coefficients of :func:`lif_step`; each a number or a tensor broadcastable to the state.

    Attributes
    ----------
    a
        Decay of the membrane per step.
    b
        Input gain (None: 1, the input is added as it is).
    c
        Constant drive per step (None: 0).
    threshold
        Firing threshold (strict); None for a non-spiking neuron, whose output is ``v``.
    reset
        The membrane after a spike.
    """

    a: Any = 1.0
    b: Any = None
    c: Any = None
    threshold: Any = None
    reset: Any = 0.0


@dataclass(frozen=True)
class LIFParams:
    """The spec's LIF (``v = beta v + I``, reset to zero): scalars, the same for a whole layer.

    Parameters
    ----------
    beta
        Membrane decay per step, in [0, 1]; ``tau = dt / (1 - beta)``.
    threshold
        Firing threshold (strict: a spike needs ``v > threshold``), > 0.
    """

    beta: float = 0.5
    threshold: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"LIF beta must be in [0, 1], got {self.beta}")
        if not self.threshold > 0.0:
            raise ValueError(f"LIF threshold must be > 0, got {self.threshold}")

    @property
    def leaky(self) -> LeakyParams:
        """The same neuron as :func:`lif_step` coefficients."""
        return LeakyParams(a=self.beta, threshold=self.threshold)


COINCIDENCE = LIFParams(beta=0.0, threshold=1.5)
"""The AND neuron: no memory, two unit inputs needed to cross 1.5."""


def _leaky(params: LeakyParams | LIFParams) -> LeakyParams:
    return params.leaky if isinstance(params, LIFParams) else params


def lif_membrane(x: torch.Tensor, v: torch.Tensor, params: LeakyParams | LIFParams) -> torch.Tensor:
    """The membrane ``v_t`` before the spike decision (``v`` is the previous step's, after reset)."""
    p = _leaky(params)
    v = p.a * v + (x if p.b is None else p.b * x)
    return v if p.c is None else v + p.c


def lif_fire(v: torch.Tensor, params: LeakyParams | LIFParams, spike_fn: SpikeFn = heaviside
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes of the membrane ``v_t`` and the membrane after reset; a non-spiking neuron returns ``(v, v)``."""
    p = _leaky(params)
    if p.threshold is None:
        return v, v
    spikes = spike_fn(v - p.threshold)
    fired = spikes.detach()
    if isinstance(p.reset, (int, float)) and p.reset == 0:
        # where(fired, 0, v) as a product: the same values for a finite membrane (one that
        # fires is > 0), about 5x faster on CPU; an overflowed (infinite) membrane gives NaN.
        return spikes, v * (1 - fired)
    return spikes, torch.where(fired > 0, p.reset, v)


def lif_step(x: torch.Tensor, v: torch.Tensor, params: LeakyParams | LIFParams, spike_fn: SpikeFn = heaviside
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the LIF equations in the module docstring.

    Parameters
    ----------
    x
        Synaptic input ``x_t``.
    v
        Membrane after the previous step's reset ``v'_{t-1}`` (zeros at the start).
    params
        The coefficients (:class:`LeakyParams`) or the spec's ``beta, threshold`` (:class:`LIFParams`).
    spike_fn
        The step function; a surrogate-gradient function while training.

    Returns
    -------
    spikes, v
        ``s_t`` (``v_t`` for a non-spiking neuron) and the membrane after reset ``v'_t``.
    """
    return lif_fire(lif_membrane(x, v, params), params, spike_fn)


@dataclass(frozen=True)
class CurrentParams:
    """Coefficients of :func:`current_step`: decay ``a`` and input gain ``b`` (None: 1)."""

    a: Any = 0.0
    b: Any = None


def current_step(x: torch.Tensor, i: torch.Tensor, params: CurrentParams) -> torch.Tensor:
    """The synaptic current ``i_t = a i_{t-1} + b x_t``."""
    return params.a * i + (x if params.b is None else params.b * x)
