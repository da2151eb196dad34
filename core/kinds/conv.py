"""``conv``: one Conv1d/Conv2d, with the per-channel scales around it folded in.

Torch's ``conv1d``/``conv2d`` on ``(C, L)`` / ``(C, H, W)``. In Lava a ``Conv`` (layout
``(H, W, C)``, kernel flipped: Lava convolves); its fixed-point model has no weight exponent
and wraps its output into 24 signed bits, so quantisation keeps its weights within 8 bits.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F

from mksgn.core import fields
from mksgn.core.kinds.base import ChainView, ConvSemantics, per_channel
from mksgn.core.synapse_graph import Synapse


class Conv(ConvSemantics):
    name = "conv"
    shared = True  # one kernel at every position

    def match(self, chain: ChainView) -> dict[str, Any] | None:
        ops = list(chain.ops)
        convs = [o for o in ops if isinstance(chain.nodes[o], (nir.Conv1d, nir.Conv2d))]
        if len(convs) != 1 or any(not isinstance(chain.nodes[o], (nir.Conv1d, nir.Conv2d, nir.Scale)) for o in ops):
            return None
        node = chain.nodes[convs[0]]
        nd = 1 if isinstance(node, nir.Conv1d) else 2
        weight = np.asarray(node.weight, dtype=np.float64).copy()
        groups = int(node.groups)
        split = ops.index(convs[0])
        for o in ops[:split]:  # per input channel
            s = per_channel(chain.scale_vector(o))
            if s is None:
                return None
            per_group = weight.shape[1]
            for co in range(weight.shape[0]):
                g = co // (weight.shape[0] // groups)
                weight[co] *= s[g * per_group:(g + 1) * per_group].reshape((per_group,) + (1,) * nd)
        for o in ops[split + 1:]:  # per output channel
            s = per_channel(chain.scale_vector(o))
            if s is None:
                return None
            weight *= s.reshape((-1,) + (1,) * (nd + 1))
        dilation = fields.int_tuple(node.dilation, nd, "dilation")
        padding = fields.explicit_padding(node.padding, weight.shape[2:], dilation)
        if padding is None:
            return None  # an asymmetric "same" padding: not one plain convolution
        return {"weight": weight, "stride": fields.int_tuple(node.stride, nd, "stride"), "padding": padding,
                "dilation": dilation, "groups": groups}

    def fold_gain(self, weight: np.ndarray, gain: np.ndarray) -> np.ndarray | None:
        channel = per_channel(gain)
        return None if channel is None else weight * channel.reshape((-1,) + (1,) * (weight.ndim - 1))

    def forward(self, syn: Synapse, x: torch.Tensor, w: torch.Tensor, target_shape: tuple[int, ...]) -> torch.Tensor:
        fn = F.conv1d if w.dim() == 3 else F.conv2d
        return fn(x, w, None, syn.stride, syn.padding, syn.dilation, syn.groups)

    def lava_process(self, syn: Synapse, ctx: Any) -> tuple[Any, Any, Any]:
        src = ctx.graph.populations[syn.source]
        w = ctx.weights(syn)
        if w.ndim == 3:  # Conv1d on (C, L) -> (L, 1, C) with a (k, 1) kernel
            w = w[..., None]
        w_lava = np.flip(w, axis=(2, 3)).transpose(0, 2, 3, 1).copy()

        def pair(v: tuple[int, ...]) -> tuple[int, int]:
            return (v[0], v[1]) if len(v) == 2 else (v[0], 1 if len(v) == 1 else v[0])

        padding = pair(syn.padding) if len(syn.padding) == 2 else (syn.padding[0], 0)
        proc = ctx.conv(syn, w_lava, ctx.lava_shape(src.shape), padding=padding, stride=pair(syn.stride),
                        dilation=pair(syn.dilation), groups=syn.groups)
        return proc, proc.s_in, proc.a_out
