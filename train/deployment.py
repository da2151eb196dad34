"""The student in deployment form: one parameter tensor per Loihi synapse, the same function.

Training keeps the paper's factorised structure (a graph convolution is ``sum_k W_k X A_k``
then BatchNorm; fusion weights are a softmax). On Loihi every chain of linear operations
between two populations is **one** synapse whose weights are rounded to 8 bits
(:mod:`mksgn.core.synapse_graph`); a graph convolution stays factorised there too, each
joint mix ``A_k`` a synapse into a graded relay population and each ``W_k`` a 1x1
convolution out of it (:mod:`mksgn.core.kinds.relay`). :func:`deployment_form` rewrites the
student so that each such synapse's weights are one parameter:

=====================================  ============================================================
trained                                deployment form
=====================================  ============================================================
``InputScale`` then ``SpatialGraphConv``  the scale folded into the ``W_k`` of a :class:`~mksgn.train.blocks.FactorisedGraphConv`
(branches)                             (``InputScale.scale`` = 1)
``SpatialGraphConv`` (BN)              :class:`~mksgn.train.blocks.FactorisedGraphConv` (``A_k``, ``W_k`` with BN)
attention ``bn(mix(squeeze(s)))``       ``SpikingAttention.fused``, a :class:`~mksgn.train.blocks.FactorisedGate`
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

from mksgn.train.blocks import ConvBN, FactorisedGate, FactorisedGraphConv, SpatialGraphConv, bn_affine
from mksgn.train.student import MKSGN, SpikingAttention

GRID_FORMAT = "mksgn-fixed-point-grid/2"
"""The format of a snapped student's grid. Version 2: the factorised deployment form (graded
relays); a version 1 grid belongs to a fused deployment form (one map per graph
convolution) that this version does not rebuild."""


def factorise_graph_conv(m: SpatialGraphConv, in_scale: torch.Tensor | None = None) -> FactorisedGraphConv:
    """``BN(sum_k W_k X A_k)`` (times a per-input-channel ``in_scale``) with BN and scale in ``W_k``."""
    conv0 = m.conv[0]
    mats = [mix.matrix().double() for mix in m.mix]  # y[..., wo] = sum_wi x[..., wi] a[wi, wo]
    out = FactorisedGraphConv(len(mats), mats[0].shape[0], conv0.in_channels, conv0.out_channels).double()
    scale, shift = bn_affine(m.bn)
    weight = torch.stack([conv.weight.double()[:, :, 0, 0] * scale[:, None] for conv in m.conv])
    if in_scale is not None:
        weight = weight * in_scale.double().view(1, 1, -1)
    with torch.no_grad():
        out.a.copy_(torch.stack(mats))
        out.weight.copy_(weight)
        out.bias.copy_(shift)
    return out


def factorise_gate(m: SpikingAttention) -> FactorisedGate:
    """The attention gate's input ``bn(mix(squeeze(s)))`` with the BN scale in the joint mix."""
    if m.mix.bias is not None:  # a joint bias would vary per joint: not one bias of the gate
        raise ValueError("the attention's joint mix has a bias; the deployment form has one gate bias")
    a = m.mix.matrix().double()
    scale, shift = bn_affine(m.bn)
    out = FactorisedGate(m.squeeze.in_channels, a.shape[0]).double()
    with torch.no_grad():
        out.squeeze.copy_(m.squeeze.weight.double()[0, :, 0, 0])
        out.a.copy_(a * scale[0])
        out.bias.copy_(shift[0])
    return out


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
                block.gcn = factorise_graph_conv(block.gcn, dep.input_scale[name].scale)
                dep.input_scale[name].scale.fill_(1.0)
        for block in [*dep.branches.values(), *dep.blocks]:
            if isinstance(block.gcn, SpatialGraphConv):
                block.gcn = factorise_graph_conv(block.gcn)
            att = block.attention
            if att is not None and att.fused is None:
                att.fused = factorise_gate(att)
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
    if grid.get("format") != GRID_FORMAT:
        raise ValueError(f"fixed-point grid format {grid.get('format')!r}, expected {GRID_FORMAT!r} (snapped by an "
                         f"older mksgn with fused graph convolutions: snap the trained checkpoint again)")
    model.fixed_point = grid
    for name in model.modalities:
        entry = grid["inputs"].get(re.sub(r"[^0-9A-Za-z_]", "_", f"input.{name}"))  # the Input node's name
        if entry is None:
            raise ValueError(f"the fixed-point grid has no input entry for modality {name!r}")
        model.input_scale[name].unit.fill_(float(entry["scale"]))
        model.input_scale[name].bits.fill_(int(entry["bits"]))
