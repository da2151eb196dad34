"""A toy synapse kind, in one file: sum pooling as a depthwise convolution with a kernel per channel.

Fused from a chain holding a single ``SumPool2d``; ``weight`` ``(C, kH, kW)``. Conv semantics in
fixed point (no exponent, output wrapped to 24 bits); in Lava a stock ``Conv`` with ``groups = C``.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F

from mksgn.core import fields, loihi
from mksgn.core.fixed_point import QuantizedSynapse
from mksgn.core.kinds.base import ChainView, SynapseKind
from mksgn.core.synapse_graph import Synapse


class SumPool(SynapseKind):
    name = "sumpool"
    exponent = False

    def match(self, chain: ChainView) -> dict[str, Any] | None:
        if len(chain.ops) != 1 or not isinstance(chain.node(0), nir.SumPool2d):
            return None
        node = chain.node(0)
        kernel = fields.int_tuple(node.kernel_size, 2, "kernel_size")
        stride = kernel if node.stride is None else fields.int_tuple(node.stride, 2, "stride")
        padding = (0, 0) if node.padding is None else fields.int_tuple(node.padding, 2, "padding")
        channels = chain.source_shape[0]
        return {"weight": np.ones((channels, *kernel)), "stride": stride, "padding": padding, "dilation": (1, 1),
                "groups": channels}

    def fold_gain(self, weight: np.ndarray, gain: np.ndarray) -> np.ndarray | None:
        flat = gain.reshape(gain.shape[0], -1)
        return weight * flat[:, :1, None] if np.all(flat == flat[:, :1]) else None

    def forward(self, syn: Synapse, x: torch.Tensor, w: torch.Tensor, target_shape: tuple[int, ...]) -> torch.Tensor:
        return F.conv2d(x, w[:, None], None, syn.stride, syn.padding, 1, syn.groups)

    def fixed_weights(self, q: QuantizedSynapse) -> np.ndarray:
        return np.asarray(q.weight, dtype=np.int64)

    def fixed_output(self, y: torch.Tensor, q: QuantizedSynapse) -> torch.Tensor:
        return loihi.wrap_signed(y, loihi.CONV_OUTPUT_BITS)

    def lava_process(self, syn: Synapse, ctx: Any) -> tuple[Any, Any, Any]:
        Conv = ctx.lava("lava.proc.conv.process").Conv
        kernel = np.flip(ctx.weights(syn), axis=(1, 2))[..., None].copy()  # (C, kH, kW, 1); Lava convolves
        src = ctx.graph.populations[syn.source]
        proc = Conv(weight=kernel, input_shape=ctx.lava_shape(src.shape), padding=syn.padding, stride=syn.stride,
                    dilation=(1, 1), groups=syn.groups, num_message_bits=ctx.message_bits(syn))
        return proc, proc.s_in, proc.a_out
