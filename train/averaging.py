"""An exponential moving average (EMA) of a model's weights, the weights that are evaluated.

After each optimiser step ``k`` (counted from 1) every floating-point entry ``w`` of the
model's state (parameters and buffers such as BN statistics) updates its average::

    d_k   = min(decay, (1 + k) / (10 + k))      warm-up: early averages forget their start fast
    a_k   = d_k * a_{k-1} + (1 - d_k) * w_k

Integer buffers (counters) are copied. The average is an ordinary copy of the model, so it
is evaluated, checkpointed and deployed like one: averaging changes which weights are kept,
not the network (Lava's LIF and every later stage see the same kind of parameters).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

WARMUP_STEPS = 10
"""The warm-up constant of the decay schedule, ``d_k = min(decay, (1 + k) / (WARMUP_STEPS + k))``."""


def average_decay(decay: float, step: int) -> float:
    """The decay applied at optimiser step ``step`` (from 1)."""
    return min(decay, (1.0 + step) / (WARMUP_STEPS + step))


class WeightAverage:
    """An EMA copy of ``model`` (see the module docstring); ``update`` after each optimiser step.

    Parameters
    ----------
    model
        The trained model; it is copied, never modified.
    decay
        The EMA decay in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"the weight average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average."""
        self.steps += 1
        d = average_decay(self.decay, self.steps)
        ours = self.model.state_dict()
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                ours[name].lerp_(value.detach(), 1.0 - d)
            else:
                ours[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "decay": self.decay}

    def load(self, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore the average (its weights and step count) from a checkpoint."""
        self.model.load_state_dict(weights)
        self.steps = int(state["steps"])
