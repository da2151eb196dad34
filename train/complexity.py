"""Dense operation counts of a model: parameters and multiply-accumulates per sample.

These are ANN-style counts (every synapse evaluated once per step, as if the input were
dense); the energy estimator counts what a spiking run actually performed instead.
"""

from __future__ import annotations

import torch
from torch import nn

from mksgn.train.blocks import JointMix


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of one forward pass on ``x``, per sample of ``x`` (batch axis 0).

    Counted through forward hooks: ``Conv2d`` (output elements x ``C_in / groups x kh x kw``),
    ``Linear`` (output elements x in features) and :class:`JointMix` (output elements x V);
    a module called ``T`` times (the student's steps) counts ``T`` times.
    """
    return sum(count_macs_by_module(model, x).values())


def count_macs_by_module(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """:func:`count_macs` per module (qualified name -> MACs per sample of ``x``), in call order."""
    totals: dict[str, int] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, args, out) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = out.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs = out.numel() * module.in_features
        else:  # JointMix
            macs = out.numel() * module.fixed.shape[0]
        totals[names[module]] = totals.get(names[module], 0) + macs

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, JointMix))]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(x)
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return {k: v // x.shape[0] for k, v in totals.items()}
