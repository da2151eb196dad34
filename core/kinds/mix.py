"""``mix``: a map over channels and the last axis, shared by every position of the middle axis.

On ``(C, H, W)`` populations (channels, frames, joints): a graph convolution, joint mixing on
the last axis and a 1x1 convolution over channels, composed into ``weight``
``(W_out, C_out, W_in, C_in)``::

    y[co, h, wo] = sum_{wi, ci} weight[wo, co, wi, ci] x[ci, h, wi]

Fused from last-axis Linear/Affine, 1x1 Conv2d, per-(channel, joint) Scale and, in the
deployment form, per output column a ``(1, W)`` Conv2d over all columns followed by a Linear
placing it. Fixed point: Conv semantics (weights as given, no exponent, the sum wrapped to 24
bits). In Lava a stock ``Conv`` on Lava's ``(H, W_in, C_in)`` layout with a ``(1, W_in)`` kernel
and ``W_out * C_out`` output channels, its ``(H, 1, W_out * C_out)`` output read as
``(H, W_out, C_out)``.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch

from mksgn.core import fields
from mksgn.core.kinds.base import ChainView, ConvSemantics
from mksgn.core.synapse_graph import Synapse


def _full_width(node: nir.Conv2d, shape: tuple[int, ...]) -> bool:
    """A Conv2d whose ``(1, W)`` kernel spans the whole last axis once (no padding, one group)."""
    k = np.asarray(node.weight)
    return (k.shape[2] == 1 and k.shape[3] == shape[2] > 1 and int(node.groups) == 1
            and fields.int_tuple(node.stride, 2, "stride")[0] == 1
            and fields.int_tuple(node.dilation, 2, "dilation") == (1, 1)
            and fields.explicit_padding(node.padding, k.shape[2:], (1, 1)) == (0, 0))


def _channel_map(node: nir.Conv2d, in_channels: int) -> np.ndarray | None:
    """A 1x1, stride-1, unpadded (grouped) Conv2d as a full ``(C_out, C_in)`` matrix, else None."""
    k = np.asarray(node.weight, dtype=np.float64)
    if (k.shape[2:] != (1, 1) or fields.int_tuple(node.stride, 2, "stride") != (1, 1) or
            fields.explicit_padding(node.padding, (1, 1), (1, 1)) != (0, 0)):
        return None
    groups, c_out = int(node.groups), k.shape[0]
    full = np.zeros((c_out, in_channels))
    per_in, per_out = k.shape[1], c_out // groups
    for g in range(groups):
        full[g * per_out:(g + 1) * per_out, g * per_in:(g + 1) * per_in] = k[g * per_out:(g + 1) * per_out, :, 0, 0]
    return full


class Mix(ConvSemantics):
    name = "mix"
    shared = True  # one map at every frame

    def match(self, chain: ChainView) -> dict[str, Any] | None:
        if len(chain.source_shape) != 3 or not chain.ops:
            return None
        c, h, w = chain.source_shape
        m = None  # (W_out, C_out, W_in, C_in); None: the identity (the first op builds its map directly)
        for o in chain.ops:
            node, shape = chain.nodes[o], chain.input_shapes[o]
            if len(shape) != 3 or shape[1] != h:
                return None
            if isinstance(node, (nir.Linear, nir.Affine)):
                lin = np.asarray(node.weight, dtype=np.float64)
                m = np.einsum("oi,cj->ocij", lin, np.eye(c)) if m is None else np.einsum("ov,vcij->ocij", lin, m)
            elif isinstance(node, nir.Conv2d) and _full_width(node, shape):
                # a (1, W) kernel over every column: all joints and channels into one column
                k = np.asarray(node.weight, dtype=np.float64)[:, :, 0, :]  # (C_out, C_in, W)
                m = k.transpose(0, 2, 1)[None].copy() if m is None else np.einsum("dcw,wcij->dij", k, m)[None]
            elif isinstance(node, nir.Conv2d):
                full = _channel_map(node, shape[0])
                if full is None:
                    return None
                m = np.einsum("wi,dj->wdij", np.eye(w), full) if m is None else np.einsum("dc,wcij->wdij", full, m)
            elif isinstance(node, nir.Scale):
                s = chain.scale_vector(o)  # (C, H, W)
                if not np.all(s == s[:, :1, :]):
                    return None
                if m is None:
                    m = np.eye(w * c).reshape(w, c, w, c)
                m = m * s[:, 0, :].T[:, :, None, None]
            else:
                return None
        return {"weight": m}

    def fold_gain(self, weight: np.ndarray, gain: np.ndarray) -> np.ndarray | None:
        if not np.all(gain == gain[:, :1, :]):
            return None
        return weight * gain[:, 0, :].T[:, :, None, None]

    def forward(self, syn: Synapse, x: torch.Tensor, w: torch.Tensor, target_shape: tuple[int, ...]) -> torch.Tensor:
        b, c, h, wi = x.shape
        wo, co = w.shape[:2]
        y = x.permute(0, 2, 3, 1).reshape(b, h, wi * c) @ w.reshape(wo * co, wi * c).T
        return y.reshape(b, h, wo, co).permute(0, 3, 1, 2)

    def fanout(self, syn: Synapse, source_shape: tuple[int, ...], target_shape: tuple[int, ...],
               nonzero: torch.Tensor) -> torch.Tensor:
        per = nonzero.sum(dim=(0, 1))  # (W_in, C_in)
        c, h, w = source_shape
        return per.T.reshape(c, 1, w).expand(c, h, w).contiguous()

    def row_bound(self, w_abs: np.ndarray) -> float:
        return float(w_abs.sum(axis=(2, 3)).max())

    def lava_process(self, syn: Synapse, ctx: Any) -> tuple[Any, Any, Any]:
        """A stock ``Conv`` whose ``(1, W_in)`` kernel spans the joints; the frames are its rows."""
        src, dst = ctx.graph.populations[syn.source], ctx.graph.populations[syn.target]
        w = ctx.weights(syn)  # (W_out, C_out, W_in, C_in)
        wo, co, wi, ci = w.shape
        kernel = np.flip(w.reshape(wo * co, 1, wi, ci), axis=2).copy()  # Lava convolves: flip the joints
        proc = ctx.conv(syn, kernel, ctx.lava_shape(src.shape))
        return proc, proc.s_in, proc.a_out.reshape(ctx.lava_shape(dst.shape))
