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
    return spikes, torch.where(spikes.detach() > 0, p.reset, v)


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
class SpikeRule:
    """How a membrane becomes spikes and is reset (:mod:`mksgn.core.semantics` names the modes).

    Attributes
    ----------
    threshold
        The firing threshold ``theta`` (a number or a tensor broadcastable to the state).
    reset
        ``"to-v-reset"``, ``"zero"``, ``"subtract"`` or ``"subtract-next"``.
    v_reset
        The membrane after a spike for ``"to-v-reset"``.
    test
        ``">"`` or ``">="``.
    multi
        Several spikes per step: as many as whole thresholds the membrane holds.
    v_min
        A floor under the membrane after the reset (None: none).
    """

    threshold: Any
    reset: str = "to-v-reset"
    v_reset: Any = 0.0
    test: str = ">"
    multi: bool = False
    v_min: Any = None

    @property
    def delayed(self) -> bool:
        """Whether the reset acts on the next step's membrane (``"zero"``, ``"subtract-next"``)."""
        return self.reset in ("zero", "subtract-next")


def spike_count(v: torch.Tensor, rule: SpikeRule) -> torch.Tensor:
    """Spikes of the membrane ``v``: 0 or 1 (``v > theta`` or ``v >= theta``), or with ``multi`` as many
    as the thresholds ``v`` holds (``floor(v / theta)`` for ``>=``, ``ceil(v / theta) - 1`` for ``>``, at least 0)."""
    if not rule.multi:
        return (v >= rule.threshold if rule.test == ">=" else v > rule.threshold).to(v.dtype)
    ratio = v / rule.threshold
    count = torch.floor(ratio) if rule.test == ">=" else torch.ceil(ratio) - 1
    return count.clamp_(min=0)


def apply_pending_reset(v: torch.Tensor, fired: torch.Tensor, rule: SpikeRule) -> torch.Tensor:
    """A delayed reset on this step's membrane ``v`` (``fired``: the previous step's spikes): ``"zero"``
    makes it 0 where the neuron fired, ``"subtract-next"`` takes ``theta`` per spike from it."""
    if rule.reset == "zero":
        return torch.where(fired > 0, torch.zeros_like(v), v)
    if rule.reset == "subtract-next":
        return v - fired * rule.threshold
    return v


def reset_membrane(v: torch.Tensor, spikes: torch.Tensor, rule: SpikeRule) -> torch.Tensor:
    """The membrane after this step's spikes: ``v_reset`` where fired (``"to-v-reset"``), ``v - theta s``
    (``"subtract"``), or ``v`` (the delayed resets); then floored at ``v_min``."""
    if rule.reset == "to-v-reset":
        v = torch.where(spikes > 0, torch.as_tensor(rule.v_reset, dtype=v.dtype, device=v.device), v)
    elif rule.reset == "subtract":
        v = v - spikes * rule.threshold
    if rule.v_min is not None:
        v = torch.clamp(v, min=rule.v_min) if not torch.is_tensor(rule.v_min) else torch.maximum(v, rule.v_min)
    return v


@dataclass(frozen=True)
class CurrentParams:
    """Coefficients of :func:`current_step`: decay ``a`` and input gain ``b`` (None: 1)."""

    a: Any = 0.0
    b: Any = None


def current_step(x: torch.Tensor, i: torch.Tensor, params: CurrentParams) -> torch.Tensor:
    """The synaptic current ``i_t = a i_{t-1} + b x_t``."""
    return params.a * i + (x if params.b is None else params.b * x)
