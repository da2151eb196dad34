"""The LIF neuron: one pure step function shared by every backend, and a thin module.

Discrete-time leaky integrate-and-fire with reset to zero and a strict threshold
(mksgn-spec.md)::

    v_t = beta * v'_{t-1} + I_t
    s_t = 1 if v_t > threshold else 0
    v'_t = v_t * (1 - s_t)            (reset to zero)

``beta = 0`` gives a memoryless neuron; with ``threshold`` between 1 and 2 and two binary
inputs of weight 1 it is the coincidence (AND) neuron of the spatial attention.

This equals snnTorch's ``Leaky(beta, threshold, reset_mechanism="zero")`` spike for spike
(snnTorch applies the reset one step late, to the same effect) and Lava's LIF with
``du = 1`` (float; 4095 in fixed point) and ``dv = 1 - beta``. During training the
spike's gradient is a surrogate (snnTorch's arctan by default); the reset is detached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """Strict step ``x > 0`` as float, without gradient (inference)."""
    return (x > 0).to(x.dtype)


def default_surrogate() -> SpikeFn:
    """snnTorch's arctan surrogate (forward: strict ``x > 0``)."""
    from snntorch import surrogate

    return surrogate.atan(alpha=2.0)


@dataclass(frozen=True)
class LIFParams:
    """Parameters of a LIF population (scalars; the same for every neuron of a layer).

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


COINCIDENCE = LIFParams(beta=0.0, threshold=1.5)
"""The AND neuron: no memory, two unit inputs needed to cross 1.5."""


def lif_step(
    current: torch.Tensor, v: torch.Tensor, params: LIFParams, spike_fn: SpikeFn = heaviside
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the LIF equations in the module docstring.

    Parameters
    ----------
    current
        Synaptic input ``I_t``.
    v
        Membrane after the previous step's reset ``v'_{t-1}`` (zeros at the start).
    params
        Decay and threshold.
    spike_fn
        The step function; a surrogate-gradient function while training.

    Returns
    -------
    spikes, v
        ``s_t`` and the membrane after reset ``v'_t``.
    """
    v = lif_membrane(current, v, params)
    spikes = spike_fn(v - params.threshold)
    return spikes, v * (1.0 - spikes.detach())


def lif_membrane(current: torch.Tensor, v: torch.Tensor, params: LIFParams) -> torch.Tensor:
    """The membrane ``v_t`` before the spike decision (for parity margins)."""
    return params.beta * v + current


class LIF(nn.Module):
    """A LIF population: :func:`lif_step` with a surrogate gradient while training.

    ``forward(current, v)`` returns ``(spikes, v)``; pass ``v=None`` at the first step.
    """

    def __init__(self, params: LIFParams = LIFParams(), spike_fn: SpikeFn | None = None) -> None:
        super().__init__()
        self.params = params
        self.spike_fn = spike_fn or default_surrogate()

    def forward(self, current: torch.Tensor, v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if v is None:
            v = torch.zeros_like(current)
        fn = self.spike_fn if torch.is_grad_enabled() else heaviside
        return lif_step(current, v, self.params, fn)

    def extra_repr(self) -> str:
        return f"beta={self.params.beta}, threshold={self.params.threshold}"
