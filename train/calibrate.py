"""Make an untrained student fire: BatchNorm biases set so every LIF population is active.

A student with random weights is mostly silent or saturated, and a spike comparison on
it proves little. :func:`calibrate_activity` runs the person rows through the model once
and, at the first time step of each LIF population (in execution order, so each one sees
its already calibrated inputs), shifts the bias of the BatchNorm that feeds it, channel by
channel, so that a fraction ``target`` of its neurons would fire under a constant input
equal to this step's (a constant current ``I`` fires eventually iff
``I / (1 - beta) > threshold``)::

    delta_c = threshold * (1 - beta) - quantile_c(I, 1 - target)     (per channel c)
    bn.bias_c += delta_c / gain                                      (gain: what multiplies the BN output)

The shift is a real parameter change (it is exported, folded, like any bias); the model
stays a valid student. Populations with no BatchNorm of their own (the coincidence
neurons) are left alone: their activity follows from their inputs. Later steps fire more
or less than that estimate; :func:`firing_rates` measures the result.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mksgn.train.neuron import LIF
from mksgn.train.student import MKSGN, SpikingBlock, record_spikes

DEFAULT_TARGETS = {"gate": 0.5, "other": 0.35}
"""Fractions of neurons driven above their firing level: the attention gates higher, so the AND that follows them
(firing only where both a spike and an open gate meet) stays active."""


def _bias_sources(model: MKSGN) -> dict[str, tuple[nn.BatchNorm2d, Callable[[], torch.Tensor]]]:
    """LIF module path -> (the BatchNorm feeding it, the gain on that BN's output)."""
    one = lambda: torch.tensor(1.0)  # noqa: E731
    sources: dict[str, tuple[nn.BatchNorm2d, Callable[[], torch.Tensor]]] = {}
    blocks: list[tuple[str, SpikingBlock]] = [(f"branches.{k}", b) for k, b in model.branches.items()]
    blocks += [(f"blocks.{j}", b) for j, b in enumerate(model.blocks)]
    for prefix, block in blocks:
        sources[f"{prefix}.lif_s"] = (block.gcn.bn, one)
        sources[f"{prefix}.lif_t"] = (block.tcn.bn, one)
        if block.attention is not None:
            sources[f"{prefix}.attention.gate"] = (block.attention.bn, one)
    sources["fusion_lif"] = (model.fusion.proj[0].bn, lambda: model.fusion.alpha()[0].detach())
    return sources


@torch.no_grad()
def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters (folding then matters).

    ``running_mean ~ N(0, 0.2^2)``, ``running_var ~ U(0.5, 1.5)``, ``weight ~ U(0.5, 1.5)``,
    ``bias += N(0, 0.1^2)``, drawn from a generator seeded with ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.add_(torch.randn(m.num_features, generator=g) * 0.1)


@torch.no_grad()
def calibrate_activity(model: MKSGN, rows: torch.Tensor, targets: dict[str, float] | None = None) -> None:
    """Shift BatchNorm biases in place so a fraction ``target`` of each population is driven to fire.

    Parameters
    ----------
    model
        A student in eval mode.
    rows
        Person rows ``(R, Mod, C, F, V)`` to calibrate on.
    targets
        Fraction of neurons driven above their firing level, for the attention gates (``"gate"``) and for every other
        population with a BatchNorm (``"other"``); :data:`DEFAULT_TARGETS` by default.
    """
    targets = {**DEFAULT_TARGETS, **(targets or {})}
    for name, value in targets.items():
        if not 0.0 < value < 1.0:
            raise ValueError(f"calibration target {name!r} must lie in (0, 1), got {value}")
    sources = _bias_sources(model)
    done: set[str] = set()
    handles = []

    def pre_hook(path: str, module: LIF, args: tuple) -> tuple | None:
        if path in done or path not in sources:
            return None
        done.add(path)
        current = args[0]
        bn, gain = sources[path]
        target = targets["gate" if path.endswith("attention.gate") else "other"]
        per_channel = current.transpose(0, 1).flatten(1)  # (C, R*F*V)
        level = torch.quantile(per_channel.double(), 1.0 - target, dim=1).to(current.dtype)
        firing_level = module.params.threshold * (1.0 - module.params.beta)
        delta = firing_level - level + 1e-3 * abs(module.params.threshold)
        bn.bias.add_((delta / gain()).to(bn.bias.dtype))
        return (current + delta.view(1, -1, *([1] * (current.dim() - 2))), *args[1:])

    for path, module in model.named_modules():
        if isinstance(module, LIF):
            handles.append(module.register_forward_pre_hook(
                lambda mod, args, path=path: pre_hook(path, mod, args)))
    try:
        model.run_rows(rows)
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def firing_rates(model: MKSGN, rows: torch.Tensor) -> dict[str, float]:
    """Fraction of (neuron, step, row) elements that spike, per LIF module path."""
    with record_spikes(model) as spikes:
        model.run_rows(rows)
    return {path: float(torch.stack(s).mean()) for path, s in spikes.items()}
