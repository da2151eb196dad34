"""The MK-SGN student: a spiking graph convolutional network built from deployable blocks.

Per time step (``T`` steps, the same input each step: direct encoding, SSC) a sample of
one person flows as::

    modality m (C, F, V) --InputScale--> branch block_m --+
                                                          +--Fusion--> LIF --> trunk blocks --> readout
    (joint, bone, joint motion, bone motion)  ...      ---+

A block (:class:`SpikingBlock`) is SA-SGC then STC::

    s1 = LIF(SpatialGraphConv(x))                                  spatial graph convolution
    g  = LIF(BN(JointMix_full(Conv1x1_{C->1}(s1))))                gate per (frame, joint)
    s2 = AND(s1, g) = LIF_{beta=0, thr=1.5}(s1 + Broadcast(g))      coincidence neuron
    y  = LIF(ConvBN_{k x 1, stride}(s2) + residual(x))             temporal convolution

The readout averages the last block's spikes over frames and joints, applies a linear
classifier, and integrates over the ``T`` steps: ``logits = (1/T) sum_t W pool(s_t) + b``.
Persons are separate samples whose logits are summed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from mksgn.core.neuron import COINCIDENCE, LIFParams, lif_membrane
from mksgn.data.skeletons import SkeletonLayout
from mksgn.train.blocks import (
    DEPLOYABLE_BLOCKS, Broadcast, ConvBN, FactorisedGate, Fusion, GlobalAvgPool, InputScale, JointMix,
    SpatialGraphConv,
    present_persons, sum_per_sample,
)
from mksgn.train.config import StudentConfig
from mksgn.train.neuron import DEFAULT_SURROGATE_ALPHA, LIF, default_surrogate

State = dict[str, torch.Tensor]


class SpikingAttention(nn.Module):
    """Spatial global spiking attention: a spiking gate per (frame, joint), ANDed in.

    The gate sees global spike statistics: a 1x1 convolution sums the channels, a full
    learnable joint matrix mixes all joints. Its BN starts with a bias above threshold, so
    the gate is open (the AND passes everything) until training teaches it to close.
    """

    GATE_BIAS_INIT = 2.0

    def __init__(self, channels: int, num_joints: int, params: LIFParams) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(channels, 1, 1, bias=False)
        nn.init.constant_(self.squeeze.weight, 1.0 / channels)
        self.mix = JointMix(torch.full((num_joints, num_joints), 1.0 / num_joints), learnable=True)
        self.bn = nn.BatchNorm2d(1)
        nn.init.constant_(self.bn.bias, self.GATE_BIAS_INIT)
        self.gate = LIF(params)
        self.broadcast = Broadcast(channels)
        self.coincidence = LIF(COINCIDENCE)

        self.fused: FactorisedGate | None = None
        """The gate's input in deployment form (squeeze, mix and bn are then None)."""

    def gate_input(self, s: torch.Tensor) -> torch.Tensor:
        """The gate neurons' synaptic input ``BN(JointMix(Conv1x1(s)))``."""
        if self.fused is not None:
            return self.fused(s)
        return self.bn(self.mix(self.squeeze(s)))

    def forward(self, s: torch.Tensor, state: State) -> torch.Tensor:
        g, state["gate"] = self.gate(self.gate_input(s), state.get("gate"))
        out, _ = self.coincidence(s + self.broadcast(g))
        return out


class SpikingBlock(nn.Module):
    """SA-SGC (graph convolution, LIF, attention) then STC (temporal convolution, LIF).

    Parameters
    ----------
    c_in, c_out, stride
        Channels and temporal stride.
    layout
        The skeleton (its partitions and joint count).
    cfg
        Kernel, neuron parameters and whether attention is on.
    residual
        Add a residual path into the temporal neuron: the input itself when shapes match,
        else a strided 1x1 ConvBN.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, layout: SkeletonLayout, cfg: StudentConfig,
                 residual: bool = True) -> None:
        super().__init__()
        params = LIFParams(cfg.beta, cfg.threshold)
        self.gcn = SpatialGraphConv(c_in, c_out, layout.partitions())
        self.lif_s = LIF(params)
        self.attention = SpikingAttention(c_out, layout.num_joints, params) if cfg.attention else None
        self.tcn = ConvBN(c_out, c_out, (cfg.kernel, 1), stride)
        self.lif_t = LIF(params)
        self.identity = residual and c_in == c_out and stride == 1
        self.down = ConvBN(c_in, c_out, (1, 1), stride) if residual and not self.identity else None

    def forward(self, x: torch.Tensor, state: State, current: torch.Tensor | None = None) -> torch.Tensor:
        """One time step. ``current``: ``self.gcn(x)`` if already computed (a constant input)."""
        s, state["lif_s"] = self.lif_s(self.gcn(x) if current is None else current, state.get("lif_s"))
        if self.attention is not None:
            s = self.attention(s, state.setdefault("attention", {}))
        current = self.tcn(s)
        if self.identity:
            current = current + x
        elif self.down is not None:
            current = current + self.down(x)
        out, state["lif_t"] = self.lif_t(current, state.get("lif_t"))
        return out


@dataclass
class StudentOutput:
    """Logits ``(N, K)`` and, on request, features for distillation.

    Features are per person row ``(R, ...)``; ``sample_index[r]`` is row ``r``'s sample.
    """

    logits: torch.Tensor
    features: list[torch.Tensor]
    branch_features: list[torch.Tensor]
    sample_index: torch.Tensor
    step_logits: torch.Tensor | None = None
    """``(T, N, K)``: each step's read-out (summed over persons); ``logits`` is their mean."""


class MKSGN(nn.Module):
    """The spiking student.

    Parameters
    ----------
    cfg
        Architecture (channels, strides, kernel, T, neuron).
    layout
        Skeleton layout.
    num_classes
        Classes of the readout.
    modalities
        Input streams, in the order of the input's modality axis.
    in_channels
        Coordinates per joint of the data ``C``: 3 (x y z) or 2 (2-D keypoints).
    """

    def __init__(self, cfg: StudentConfig, layout: SkeletonLayout, num_classes: int,
                 modalities: tuple[str, ...], in_channels: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.modalities = tuple(modalities)
        self.in_channels = int(in_channels)
        params = LIFParams(cfg.beta, cfg.threshold)
        cb = cfg.branch_channels
        self.input_scale = nn.ModuleDict({m: InputScale(self.in_channels) for m in self.modalities})
        self.branches = nn.ModuleDict(
            {m: SpikingBlock(self.in_channels, cb, 1, layout, cfg, residual=False) for m in self.modalities}
        )
        self.fusion = Fusion(len(self.modalities), cb)
        self.fusion_lif = LIF(params)
        blocks, c_prev = [], cb
        for c, stride in zip(cfg.channels, cfg.strides, strict=True):
            blocks.append(SpikingBlock(c_prev, c, stride, layout, cfg))
            c_prev = c
        self.blocks = nn.ModuleList(blocks)
        if cfg.surrogate_alpha != DEFAULT_SURROGATE_ALPHA:
            for module in self.modules():
                if isinstance(module, LIF):
                    module.spike_fn = default_surrogate(cfg.surrogate_alpha)
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(c_prev, num_classes)
        self.fixed_point: dict | None = None
        """Set when the student is snapped onto Loihi's grid (:mod:`mksgn.convert.snap`)."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> StudentOutput | torch.Tensor:
        """Run ``T`` steps.

        Parameters
        ----------
        x
            ``(N, Mod, C, F, V, M)``: samples, modalities, coordinates, frames, joints, persons.
        return_features
            Return a :class:`StudentOutput` with the time-averaged spike maps of every trunk
            block (``features``) and the pooled branch spike rates (``branch_features``).

        Returns
        -------
        torch.Tensor or StudentOutput
            Logits ``(N, K)`` summed over the persons present (absent persons are skipped,
            see :func:`~mksgn.train.blocks.present_persons`).
        """
        n, mods = x.shape[:2]
        if mods != len(self.modalities):
            raise ValueError(f"expected {len(self.modalities)} modalities, got {mods}")
        rows, sample = present_persons(x)
        row_logits, feats, branch_feats = self.run_rows(rows, return_features)
        if not return_features:
            return sum_per_sample(row_logits, sample, n)
        mean = sum(row_logits[1:], row_logits[0]) / len(row_logits)  # as without features, to the bit
        steps = torch.stack([sum_per_sample(r, sample, n) for r in row_logits])
        return StudentOutput(logits=sum_per_sample(mean, sample, n), features=feats, branch_features=branch_feats,
                             sample_index=sample, step_logits=steps)

    def run_rows(self, rows: torch.Tensor, return_features: bool = False
                 ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Run ``T`` steps on person rows ``(R, Mod, C, F, V)``.

        Returns the rows' logits ``(R, K)`` (with ``return_features``, each step's, ``(T, R, K)``)
        and, if asked, the time-averaged trunk spike maps and pooled branch spike rates (empty
        lists otherwise).
        """
        inputs = [self.input_scale[name](rows[:, i]) for i, name in enumerate(self.modalities)]
        # The input is the same at every step (direct encoding): the branches' first
        # synaptic layer is computed once.
        currents = [self.branches[name].gcn(inputs[i]) for i, name in enumerate(self.modalities)]
        state: dict[str, State] = {}
        t_steps = self.cfg.time_steps
        logits: list[torch.Tensor] = []
        feats: list[torch.Tensor] = [0.0] * len(self.blocks)  # type: ignore[list-item]
        branch_feats: list[torch.Tensor] = [0.0] * len(self.modalities)  # type: ignore[list-item]
        for _ in range(t_steps):
            branch_out = [
                self.branches[name](inputs[i], state.setdefault(f"branch.{name}", {}), currents[i])
                for i, name in enumerate(self.modalities)
            ]
            h, fused_v = self.fusion_lif(self.fusion(branch_out), state.get("fusion", {}).get("v"))
            state["fusion"] = {"v": fused_v}
            for j, block in enumerate(self.blocks):
                h = block(h, state.setdefault(f"block{j}", {}))
                if return_features:
                    feats[j] = feats[j] + h
            if return_features:
                branch_feats = [bf + self.pool(b) for bf, b in zip(branch_feats, branch_out, strict=True)]
            logits.append(self.fc(self.pool(h)))
        if not return_features:
            return sum(logits[1:], logits[0]) / t_steps, [], []
        return torch.stack(logits), [fe / t_steps for fe in feats], [bf / t_steps for bf in branch_feats]


STUDENT_CONTAINERS: tuple[type[nn.Module], ...] = (MKSGN, SpikingBlock, SpikingAttention)
"""The student's own container modules."""


def non_deployable_modules(model: nn.Module) -> list[tuple[str, str]]:
    """``(path, type)`` of every module outside the declared deployable set."""
    allowed = DEPLOYABLE_BLOCKS + STUDENT_CONTAINERS
    return [(name or "<root>", type(mod).__name__) for name, mod in model.named_modules() if type(mod) not in allowed]


@contextmanager
def record_spikes(
    model: nn.Module, membranes: dict[str, list[torch.Tensor]] | None = None
) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record every LIF population's spikes per call (one call per time step), by module path.

    If ``membranes`` is given, it receives each population's membrane before the spike
    decision, ``beta * v + I`` (for parity margins).
    """
    records: dict[str, list[torch.Tensor]] = {}
    handles = []

    def hook(mod: LIF, args, out, key: str) -> None:
        records[key].append(out[0].detach())
        if membranes is not None:
            current = args[0]
            v = args[1] if len(args) > 1 and args[1] is not None else torch.zeros_like(current)
            membranes.setdefault(key, []).append(lif_membrane(current, v, mod.params).detach())

    for name, module in model.named_modules():
        if isinstance(module, LIF):
            records[name] = []
            handles.append(module.register_forward_hook(
                lambda mod, args, out, key=name: hook(mod, args, out, key)
            ))
    try:
        yield records
    finally:
        for h in handles:
            h.remove()


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
