"""``jointmix``: a map over the last axis alone, shared by every channel and frame.

On ``(C, H, W)`` populations (channels, frames, joints): the joint-mixing half of a factorised
graph convolution (a partition's adjacency ``A_k``), ``weight`` ``(W_out, W_in)``::

    y[c, h, wo] = sum_wi weight[wo, wi] x[c, h, wi]

Fused from a chain holding one last-axis ``Linear``/``Affine`` (its bias goes to the target).
The ``W_out * W_in`` weights are stored once, as a convolution kernel is: in Lava a stock
``Conv`` with a 1x1 kernel whose channels are the joints, on the source's spikes transposed
from Lava's ``(H, W, C)`` to ``(H, C, W)`` (an ``OutPort.transpose``), its output transposed
back. So its fixed-point semantics are Conv's: weights used as given (8 bits), no exponent,
the sum wrapped to 24 bits.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch

from mksgn.core.kinds.base import ChainView, ConvSemantics
from mksgn.core.synapse_graph import Synapse

JOINTS_LAST = (0, 2, 1)
"""Lava ``(H, W, C)`` <-> ``(H, C, W)``: the last NIR axis as a convolution's channels."""


class JointMix(ConvSemantics):
    name = "jointmix"
    shared = True  # one (V, V) map for every channel and frame

    def match(self, chain: ChainView) -> dict[str, Any] | None:
        if len(chain.ops) != 1 or len(chain.source_shape) != 3:
            return None
        node = chain.node(0)
        if not isinstance(node, (nir.Linear, nir.Affine)):
            return None
        weight = np.asarray(node.weight, dtype=np.float64)
        c, h, w = chain.source_shape
        if weight.ndim != 2 or weight.shape[1] != w or chain.target_shape != (c, h, weight.shape[0]):
            return None
        return {"weight": weight.copy()}

    def fold_gain(self, weight: np.ndarray, gain: np.ndarray) -> np.ndarray | None:
        per_joint = gain[:1, :1, :]
        if not np.all(gain == per_joint):
            return None
        return weight * per_joint.reshape(-1, 1)

    def forward(self, syn: Synapse, x: torch.Tensor, w: torch.Tensor, target_shape: tuple[int, ...]) -> torch.Tensor:
        return x @ w.T

    def fanout(self, syn: Synapse, source_shape: tuple[int, ...], target_shape: tuple[int, ...],
               nonzero: torch.Tensor) -> torch.Tensor:
        return nonzero.sum(dim=0).expand(source_shape).contiguous()

    def lava_process(self, syn: Synapse, ctx: Any) -> tuple[Any, Any, Any, Any]:
        """A stock ``Conv`` (1x1 kernel, joints as channels) between two transposes of the layout."""
        f, v_in, c = ctx.lava_shape(ctx.graph.populations[syn.source].shape)
        w = ctx.weights(syn)
        proc = ctx.conv(syn, w[:, None, None, :].copy(), (f, c, v_in))
        return proc, proc.s_in, proc.a_out.transpose(JOINTS_LAST), lambda port: port.transpose(JOINTS_LAST)
