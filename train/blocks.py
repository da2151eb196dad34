"""The deployable building blocks of the MK-SGN student.

Everything the student does at inference is made of these modules, each of which has a
NIR counterpart (mksgn-spec.md: static synapses, LIF neurons). Layout per time step is
``(B, C, F, V)``: samples, channels, frames, joints.

============================  ==============================================================
module                        inference semantics (NIR)
============================  ==============================================================
:class:`InputScale`           ``y = s_c * x`` per channel (Scale)
:class:`JointMix`             ``y = x M (+ b)`` over the joint axis (Linear/Affine on the
                              last axis)
:class:`ConvBN`               ``Conv2d`` followed by ``BatchNorm2d`` (folded into the conv)
:class:`SpatialGraphConv`     ``BN(sum_k W_k (X (A_k + B_k)))``, one :class:`JointMix` and one
                              1x1 conv per partition, BN folded into the convs
:class:`FactorisedGraphConv` a graph convolution as Loihi runs it (the deployment form, see
                              :mod:`mksgn.train.deployment`): per partition a joint mix into
                              a graded relay (LI with ``tau = dt``), then a 1x1 Conv2d
:class:`FactorisedGate`       the attention gate's input likewise: a 1x1 Conv2d to one
                              channel, a relay, a joint mix (Affine)
:class:`Broadcast`            one channel copied to ``C`` channels (1x1 conv of ones)
:class:`Fusion`               ``sum_m alpha_m ConvBN_m(x_m)``, alpha static after training
:class:`GlobalAvgPool`        mean over frames and joints (SumPool2d + Flatten into a graded
                              relay, then the ``1 / (F V)`` as a Scale)
:class:`~mksgn.train.neuron.LIF`  the LIF neuron (LIF)
``torch.nn.Linear``           the readout (Affine)
============================  ==============================================================
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mksgn.train.neuron import LIF


class InputScale(nn.Module):
    """Fixed per-channel scaling of a real-valued input (set from training-data statistics).

    In the deployment form (:mod:`mksgn.train.deployment`) the input is first rounded to the
    graded-message grid the hardware receives: ``x = clip(round(x / unit), +-(2**(bits-1) - 1)) * unit``
    (``unit = 0``: no rounding). The rounding happens on the host, outside the NIR graph; the
    graph's metadata declares the grid so that every runner feeds the same values.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))
        # Set from the checkpoint's deployment record (mksgn.train.deployment), not the state dict.
        self.register_buffer("unit", torch.zeros(()), persistent=False)
        self.register_buffer("bits", torch.zeros((), dtype=torch.int64), persistent=False)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the input grid (unchanged when there is none)."""
        if float(self.unit) <= 0:
            return x
        unit = self.unit.to(x.dtype)
        limit = float((1 << (int(self.bits) - 1)) - 1)
        return torch.round(x / unit).clamp(-limit, limit) * unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize(x) * self.scale.view(1, -1, 1, 1).to(x.dtype)


class JointMix(nn.Module):
    """A static linear map over the joint axis: ``y[..., w] = sum_v x[..., v] M[v, w] + b[w]``.

    ``M = A + B``: ``A`` a fixed buffer (a graph partition, or zeros) and ``B`` a learnable,
    data-independent offset (zeros at start) when ``learnable`` is set.

    Parameters
    ----------
    fixed
        ``A`` as ``(V, V)``.
    learnable
        Train the offset ``B``.
    bias
        Add a learnable bias per output joint.
    """

    def __init__(self, fixed: np.ndarray | torch.Tensor, learnable: bool = True, bias: bool = False) -> None:
        super().__init__()
        fixed = torch.as_tensor(np.asarray(fixed), dtype=torch.float32)
        if fixed.ndim != 2 or fixed.shape[0] != fixed.shape[1]:
            raise ValueError(f"JointMix needs a square (V, V) matrix, got {tuple(fixed.shape)}")
        self.register_buffer("fixed", fixed)
        self.offset = nn.Parameter(torch.zeros_like(fixed)) if learnable else None
        self.bias = nn.Parameter(torch.zeros(fixed.shape[0])) if bias else None

    def matrix(self) -> torch.Tensor:
        """The effective ``(V, V)`` matrix ``A + B``."""
        return self.fixed if self.offset is None else self.fixed + self.offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.matrix()
        return y if self.bias is None else y + self.bias


class ConvBN(nn.Module):
    """``Conv2d`` (no bias) then ``BatchNorm2d``; the BN is folded into the conv at export."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int] = (1, 1), stride: int = 1) -> None:
        super().__init__()
        pad = (kernel[0] // 2, kernel[1] // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=(stride, 1), padding=pad, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if self.bn is None else self.bn(y)  # bn is None once folded (deployment form)


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference BatchNorm as ``scale * x + shift`` per channel, in float64."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


class SpatialGraphConv(nn.Module):
    """Graph convolution over the ST-GCN partitions: ``BN(sum_k W_k X (A_k + B_k))``.

    Parameters
    ----------
    c_in, c_out
        Channels.
    partitions
        ``(K, V, V)`` fixed partitions ``A_k`` (see :mod:`mksgn.data.skeletons`).
    """

    def __init__(self, c_in: int, c_out: int, partitions: np.ndarray) -> None:
        super().__init__()
        self.mix = nn.ModuleList(JointMix(a) for a in partitions)
        self.conv = nn.ModuleList(nn.Conv2d(c_in, c_out, 1, bias=False) for _ in partitions)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = sum(conv(mix(x)) for mix, conv in zip(self.mix, self.conv, strict=True))
        return self.bn(out)


class FactorisedGraphConv(nn.Module):
    """A graph convolution as Loihi runs it, each factor its own synapse's weights.

    ``y = sum_k conv1x1(W_k, x A_k) + bias``: per partition ``k`` a joint mix ``A_k``
    (``a[k]``, ``(V, V)``; ``y[..., wo] = sum_wi x[..., wi] a[k, wi, wo]``, shared over channels
    and frames) into a graded relay, then a 1x1 convolution ``W_k`` (``weight[k]``,
    ``(C_out, C_in)``, shared over frames and joints). The deployment form of a
    :class:`SpatialGraphConv` (BN and any input scale folded into ``W_k``, the BN shift into
    ``bias``; see :mod:`mksgn.train.deployment`): its parameters are the synapses' weights,
    no more than the trained module has.

    Parameters
    ----------
    partitions, joints, c_in, c_out
        ``K``, ``V`` and channels.
    """

    def __init__(self, partitions: int, joints: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(partitions, joints, joints))
        self.weight = nn.Parameter(torch.zeros(partitions, c_out, c_in))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, w = self.a.to(x.dtype), self.weight.to(x.dtype)
        y = sum(torch.einsum("oc,bcfw->bofw", w[k], x @ a[k]) for k in range(a.shape[0]))
        return y + self.bias.to(x.dtype).view(1, -1, 1, 1)


class FactorisedGate(nn.Module):
    """The attention gate's input ``BN(JointMix(Conv1x1_{C->1}(s)))`` as Loihi runs it.

    ``y = (sum_c squeeze[c] s[c]) a + bias``: a 1x1 convolution to one channel into a graded
    relay, then a joint mix ``a`` ``(V, V)`` whose BN scale is folded in, the BN shift a bias
    of the gate neurons. The deployment form of the gate (:mod:`mksgn.train.deployment`).
    """

    def __init__(self, channels: int, joints: int) -> None:
        super().__init__()
        self.squeeze = nn.Parameter(torch.zeros(channels))
        self.a = nn.Parameter(torch.zeros(joints, joints))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        squeezed = torch.einsum("c,bcfw->bfw", self.squeeze.to(s.dtype), s).unsqueeze(1)
        return squeezed @ self.a.to(s.dtype) + self.bias.to(s.dtype)


class Broadcast(nn.Module):
    """Copy a single channel to ``channels`` channels (a 1x1 convolution of ones)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.channels, -1, -1)


class Fusion(nn.Module):
    """Learned static weighted sum of the modality branches: ``sum_m alpha_m ConvBN_m(x_m)``.

    ``alpha = M * softmax(logits)`` (1 each at start). Mutual-information estimates made
    during training pull ``softmax(logits)`` towards their own softmax (see
    :mod:`mksgn.train.distill`); after training alpha is folded into the convolutions.
    """

    def __init__(self, num_inputs: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(ConvBN(channels, channels) for _ in range(num_inputs))
        self.logits = nn.Parameter(torch.zeros(num_inputs))

    def alpha(self) -> torch.Tensor:
        """The fusion weights ``alpha_m``."""
        return torch.softmax(self.logits, dim=0) * self.logits.numel()

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        alpha = self.alpha()
        return sum(alpha[m] * proj(x) for m, (proj, x) in enumerate(zip(self.proj, inputs, strict=True)))


class GlobalAvgPool(nn.Module):
    """Mean over frames and joints: ``(B, C, F, V) -> (B, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def present_persons(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``(N, Mod, C, F, V, M)`` into per-person rows ``(R, Mod, C, F, V)``.

    Persons are separate samples (mksgn-spec.md); an absent person (all zeros) is not run,
    except person 0, so every sample has at least one row. Returns the rows and, for each
    row, the index of its sample (for summing the rows' logits per sample).
    """
    present = x.abs().flatten(1, -2).amax(dim=1) > 0  # (N, M)
    present[:, 0] = True
    sample, person = present.nonzero(as_tuple=True)
    return x[sample, ..., person], sample


def sum_per_sample(rows: torch.Tensor, sample: torch.Tensor, n: int) -> torch.Tensor:
    """Sum row outputs ``(R, K)`` into their samples: ``(n, K)``."""
    return rows.new_zeros((n, rows.shape[1])).index_add(0, sample, rows)


DEPLOYABLE_BLOCKS: tuple[type[nn.Module], ...] = (
    InputScale, JointMix, ConvBN, SpatialGraphConv, FactorisedGraphConv, FactorisedGate, Broadcast, Fusion,
    GlobalAvgPool, LIF,
    nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.ModuleList, nn.ModuleDict,
)
"""Module types allowed inside the student (containers of the student add to it)."""
