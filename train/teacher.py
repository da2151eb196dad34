"""The floating-point 4-modality GCN teacher (training only), CTR-GCN layout.

One stream per modality, each ``data BN -> 10 blocks -> global average -> linear``; the
teacher's logits are the mean of the stream logits (CTR-GCN's multi-stream ensemble,
trained jointly here). A block is the CTR-GCN layout with an ST-GCN-style spatial unit::

    y = ReLU(ConvBN_{9x1, stride}(ReLU(SpatialGraphConv(x))) + residual(x))

The spatial unit is the partitioned graph convolution with a learnable adjacency offset
(:class:`~mksgn.train.blocks.SpatialGraphConv`), not CTR-GCN's channel-wise topology
refinement; the 9x1 temporal unit replaces its multi-scale temporal convolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mksgn.data.skeletons import SkeletonLayout
from mksgn.train.blocks import ConvBN, SpatialGraphConv, present_persons, sum_per_sample
from mksgn.train.config import TeacherConfig


class GCNBlock(nn.Module):
    """Graph convolution, ReLU, temporal convolution, residual, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int, layout: SkeletonLayout, kernel: int,
                 residual: bool = True) -> None:
        super().__init__()
        self.gcn = SpatialGraphConv(c_in, c_out, layout.partitions())
        self.tcn = ConvBN(c_out, c_out, (kernel, 1), stride)
        self.relu = nn.ReLU()
        if not residual:
            self.residual = None
        elif c_in == c_out and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = ConvBN(c_in, c_out, (1, 1), stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.relu(self.gcn(x)))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class GCNStream(nn.Module):
    """One modality: data BN over (joints x coordinates), the blocks, the classifier."""

    def __init__(self, cfg: TeacherConfig, layout: SkeletonLayout, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.data_bn = nn.BatchNorm1d(in_channels * layout.num_joints)
        blocks, c_prev = [], in_channels
        for i, (c, stride) in enumerate(zip(cfg.channels, cfg.strides, strict=True)):
            blocks.append(GCNBlock(c_prev, c, stride, layout, cfg.kernel, residual=i > 0))
            c_prev = c
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x`` ``(B, C, F, V)`` -> per-sample logits ``(B, K)`` and every block's output."""
        b, c, f, v = x.shape
        x = self.data_bn(x.permute(0, 3, 1, 2).reshape(b, v * c, f)).view(b, v, c, f).permute(0, 2, 3, 1)
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return self.fc(self.dropout(x.mean(dim=(2, 3)))), feats


@dataclass
class TeacherOutput:
    """Ensemble logits ``(N, K)``, per-stream logits, and per-stream block outputs.

    ``stream_features[m][d]`` is stream ``m``'s block ``d`` output per person row (as in
    :class:`~mksgn.train.student.StudentOutput`); :meth:`feature` averages the streams of
    one block, computed only for the blocks a loss asks for.
    """

    logits: torch.Tensor
    stream_logits: list[torch.Tensor]
    stream_features: list[list[torch.Tensor]]

    def feature(self, depth: int) -> torch.Tensor:
        """Block ``depth``'s output averaged over the streams ``(R, C, F', V)``."""
        return torch.stack([f[depth] for f in self.stream_features]).mean(dim=0)

    @property
    def num_features(self) -> int:
        """Blocks with an output."""
        return len(self.stream_features[0])


class GCNTeacher(nn.Module):
    """Multi-stream GCN teacher; input ``(N, Mod, C, F, V, M)`` like the student.

    ``in_channels`` is the data's coordinates per joint ``C``: 3 (x y z) or 2 (2-D keypoints).
    """

    def __init__(self, cfg: TeacherConfig, layout: SkeletonLayout, num_classes: int,
                 modalities: tuple[str, ...], in_channels: int = 3) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.in_channels = int(in_channels)
        self.streams = nn.ModuleDict({m: GCNStream(cfg, layout, num_classes, self.in_channels)
                                      for m in self.modalities})

    def forward(self, x: torch.Tensor, return_features: bool = False) -> TeacherOutput | torch.Tensor:
        n = x.shape[0]
        inputs, sample = present_persons(x)
        row_logits, all_feats = self.run_rows(inputs)
        stream_logits = [sum_per_sample(logit, sample, n) for logit in row_logits]
        logits = torch.stack(stream_logits).mean(dim=0)
        if not return_features:
            return logits
        return TeacherOutput(logits, stream_logits, all_feats)

    def run_rows(self, rows: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Person rows ``(R, Mod, C, F, V)`` -> per-stream row logits and per-stream block outputs."""
        logits, feats = [], []
        for i, name in enumerate(self.modalities):
            logit, f = self.streams[name](rows[:, i])
            logits.append(logit)
            feats.append(f)
        return logits, feats
