"""``sumpool``: sum pooling, optionally flattened, as a depthwise convolution with a kernel of ones.

Fused from a chain holding one ``SumPool2d``, optionally followed by a ``Flatten``; ``weight``
``(C, kH, kW)`` (ones, times the channels' scales once folded)::

    y[c, ho, wo] = sum_{i, j} weight[c, i, j] x[c, ho * sH + i - pH, wo * sW + j - pW]

The read-out of a factorised student pools a layer's spikes over frames and joints this way
(the ``1 / (frames * joints)`` of an average pool folded into the classifier after it, so that
the pooled value is a whole number of spikes). Fixed point: Conv semantics (weights as given,
no exponent, the sum wrapped to 24 bits); in Lava a stock ``Conv`` with ``groups = C`` (merged
below Lava's limit of 127 groups: :func:`mksgn.deploy.lava_builder.merged_groups`), its
output transposed from Lava's ``(H, W, C)`` to NIR's ``(C, H, W)`` order when flattened.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F

from mksgn.core import fields
from mksgn.core.kinds.base import ChainView, ConvSemantics
from mksgn.core.synapse_graph import Synapse

CHANNELS_FIRST = (2, 0, 1)
"""Lava ``(H, W, C)`` -> NIR ``(C, H, W)``."""


class SumPool(ConvSemantics):
    name = "sumpool"
    shared = True  # one kernel of ones at every position

    def match(self, chain: ChainView) -> dict[str, Any] | None:
        ops = list(chain.ops)
        if not ops or len(chain.source_shape) != 3 or not isinstance(chain.nodes[ops[0]], nir.SumPool2d):
            return None
        if len(ops) > 2 or (len(ops) == 2 and not isinstance(chain.nodes[ops[1]], nir.Flatten)):
            return None
        node = chain.nodes[ops[0]]
        kernel = fields.int_tuple(node.kernel_size, 2, "kernel_size")
        stride = kernel if node.stride is None else fields.int_tuple(node.stride, 2, "stride")
        padding = (0, 0) if node.padding is None else fields.int_tuple(node.padding, 2, "padding")
        channels = chain.source_shape[0]
        return {"weight": np.ones((channels, *kernel)), "stride": stride, "padding": padding, "dilation": (1, 1),
                "groups": channels}

    def fold_gain(self, weight: np.ndarray, gain: np.ndarray) -> np.ndarray | None:
        channels = weight.shape[0]
        flat = gain.reshape(channels, -1)
        return weight * flat[:, :1, None] if np.all(flat == flat[:, :1]) else None

    def forward(self, syn: Synapse, x: torch.Tensor, w: torch.Tensor, target_shape: tuple[int, ...]) -> torch.Tensor:
        y = F.conv2d(x, w[:, None], None, syn.stride, syn.padding, 1, syn.groups)
        return y.reshape(y.shape[0], *target_shape)

    def lava_process(self, syn: Synapse, ctx: Any) -> tuple[Any, Any, Any]:
        """A stock depthwise ``Conv``; a flattened target reads its output in NIR's channel-first order."""
        kernel = np.flip(ctx.weights(syn), axis=(1, 2))[..., None].copy()  # (C, kH, kW, 1); Lava convolves
        src = ctx.graph.populations[syn.source]
        proc = ctx.conv(syn, kernel, ctx.lava_shape(src.shape), padding=syn.padding, stride=syn.stride,
                        groups=syn.groups)
        flat = len(ctx.graph.populations[syn.target].shape) == 1
        return proc, proc.s_in, proc.a_out.transpose(CHANNELS_FIRST) if flat else proc.a_out
