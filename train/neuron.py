"""The LIF population as a trainable module: :func:`mksgn.core.neuron.lif_step` with a surrogate gradient.

The neuron itself (equations, parameters, the coincidence neuron) is defined once, in
:mod:`mksgn.core.neuron`, and shared by every backend. During training the spike's gradient
is a surrogate (snnTorch's arctan by default); the reset is detached.
"""

from __future__ import annotations

import torch
from torch import nn

from mksgn.core.neuron import LIFParams, SpikeFn, heaviside, lif_step


DEFAULT_SURROGATE_ALPHA = 2.0
"""snnTorch's default width of the arctan surrogate."""


def default_surrogate(alpha: float = DEFAULT_SURROGATE_ALPHA) -> SpikeFn:
    """snnTorch's arctan surrogate (forward: strict ``x > 0``); gradient ``(alpha / 2) / (1 + (pi alpha x / 2)^2)``,
    so a smaller ``alpha`` is wider."""
    from snntorch import surrogate

    return surrogate.atan(alpha=alpha)


class LIF(nn.Module):
    """A LIF population: :func:`~mksgn.core.neuron.lif_step` with a surrogate gradient while training.

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
