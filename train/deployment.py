"""The student in deployment form: one module per Loihi synapse, the same function.

Training keeps the paper's factorised structure (a graph convolution is ``sum_k W_k X A_k``
then BatchNorm; fusion weights are a softmax). On Loihi every chain of linear operations
between two neuron populations is **one** synapse whose weights are rounded to 8 bits
(:mod:`mksgn.core.synapse_graph`). :func:`deployment_form` rewrites the student so that
each such synapse is one module whose parameters *are* those weights:

=====================================  ============================================================
trained                                deployment form
=====================================  ============================================================
``InputScale`` then ``SpatialGraphConv``  the scale folded into a :class:`~mksgn.train.blocks.FusedGraphConv`
(branches)                             (``InputScale.scale`` = 1)
``SpatialGraphConv`` (BN)              :class:`~mksgn.train.blocks.FusedGraphConv`
attention ``bn(mix(squeeze(s)))``       ``SpikingAttention.fused``, a ``FusedGraphConv`` with one channel
``ConvBN``                             its conv with the BN folded into weight and bias (``bn = None``)
``Fusion`` (``alpha_m ConvBN_m``)       ``alpha_m`` and the BN folded into each conv; logits 0 (alpha = 1)
=====================================  ============================================================

The rewrite is exact up to rounding (float64: ~1e-12 of the currents); it changes which
parameters exist, not what the model computes. :mod:`mksgn.convert.snap` then rounds these
parameters onto the fixed-point grid, which makes the float model and Loihi's integers agree.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from mksgn.train.blocks import ConvBN, FusedGraphConv, SpatialGraphConv, bn_affine
from mksgn.train.student import MKSGN, SpikingAttention


def fuse_graph_conv(m: SpatialGraphConv, in_scale: torch.Tensor | None = None) -> FusedGraphConv:
    """``BN(sum_k W_k X A_k)`` (times a per-input-channel ``in_scale``) as one map."""
    conv0 = m.conv[0]
    joints = m.mix[0].matrix().shape[0]
    fused = FusedGraphConv(joints, conv0.in_channels, conv0.out_channels).double()
    scale, shift = bn_affine(m.bn)
    weight = torch.zeros(fused.weight.shape, dtype=torch.float64)
    for mix, conv in zip(m.mix, m.conv, strict=True):
        a = mix.matrix().double()  # y[..., wo] = sum_wi x[..., wi] a[wi, wo]
        w = conv.weight.double()[:, :, 0, 0] * scale[:, None]  # (C_out, C_in)
        weight += torch.einsum("io,cd->ocid", a, w)
    if in_scale is not None:
        weight = weight * in_scale.double().view(1, 1, 1, -1)
    with torch.no_grad():
        fused.weight.copy_(weight)
        fused.bias.copy_(shift)
    return fused


def fuse_gate(m: SpikingAttention) -> FusedGraphConv:
    """The attention gate's input ``bn(mix(squeeze(s)))`` as one ``(V, 1, V, C)`` map."""
    a = m.mix.matrix().double()
    squeeze = m.squeeze.weight.double()[:, :, 0, 0]  # (1, C)
    scale, shift = bn_affine(m.bn)
    fused = FusedGraphConv(a.shape[0], squeeze.shape[1], 1).double()
    bias = shift.clone()
    if m.mix.bias is not None:  # a joint bias would vary per joint: not one bias per channel
        raise ValueError("the attention's joint mix has a bias; the deployment form has one bias per channel")
    with torch.no_grad():
        fused.weight.copy_(torch.einsum("io,cd->ocid", a, squeeze * scale[:, None]))
        fused.bias.copy_(bias)
    return fused


def fold_conv_bn(m: ConvBN, factor: float | torch.Tensor = 1.0) -> None:
    """Fold ``m.bn`` (and a factor) into ``m.conv`` in place; ``m.bn`` becomes None."""
    scale, shift = bn_affine(m.bn)
    conv = m.conv
    bias = torch.zeros_like(scale) if conv.bias is None else conv.bias.double()
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1) * factor
    new_bias = (bias * scale + shift) * factor
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, conv.groups, bias=True).double()
    with torch.no_grad():
        folded.weight.copy_(weight)
        folded.bias.copy_(new_bias)
    m.conv, m.bn = folded, None


def deployment_form(model: MKSGN) -> MKSGN:
    """A copy of ``model`` in deployment form (module docstring), float64, in inference mode."""
    dep = copy.deepcopy(model).eval().double()
    with torch.no_grad():
        for name in dep.modalities:
            block = dep.branches[name]
            if isinstance(block.gcn, SpatialGraphConv):
                block.gcn = fuse_graph_conv(block.gcn, dep.input_scale[name].scale)
                dep.input_scale[name].scale.fill_(1.0)
        for block in [*dep.branches.values(), *dep.blocks]:
            if isinstance(block.gcn, SpatialGraphConv):
                block.gcn = fuse_graph_conv(block.gcn)
            att = block.attention
            if att is not None and att.fused is None:
                att.fused = fuse_gate(att)
                att.squeeze = att.mix = att.bn = None
            for conv_bn in (block.tcn, block.down):
                if conv_bn is not None and conv_bn.bn is not None:
                    fold_conv_bn(conv_bn)
        fusion = dep.fusion
        alpha = fusion.alpha().detach().double()
        for i, proj in enumerate(fusion.proj):
            if proj.bn is not None:
                fold_conv_bn(proj, alpha[i])
        fusion.logits.zero_()  # alpha = M * softmax(0) = 1 exactly
        fusion.logits.requires_grad_(False)
    return dep


def deployment_skeleton(model: MKSGN) -> MKSGN:
    """``model`` restructured into deployment form (values arbitrary): to load a snapped state dict."""
    return deployment_form(model).float()


def apply_grid(model: MKSGN, grid: dict) -> None:
    """Attach a snapped student's grid: its record, and the input rounding of every modality.

    ``grid["inputs"]`` is keyed by the exported Input node of each modality, ``input_<name>``.
    """
    model.fixed_point = grid
    for name in model.modalities:
        entry = grid["inputs"].get(re.sub(r"[^0-9A-Za-z_]", "_", f"input.{name}"))  # the Input node's name
        if entry is None:
            raise ValueError(f"the fixed-point grid has no input entry for modality {name!r}")
        model.input_scale[name].unit.fill_(float(entry["scale"]))
        model.input_scale[name].bits.fill_(int(entry["bits"]))
