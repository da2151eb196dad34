"""A NIR graph as neuron populations joined by single synapses: what Loihi and Lava can run.

On Loihi a synapse connects one population to another; NIR chains of linear nodes
(``Scale``, ``Linear``/``Affine``, ``Conv2d``, pooling, ``Flatten``, ``Delay``) between two
neuron nodes have no neuron in between, so each chain is fused into one synapse, and the
chains between the same two populations are summed. :func:`fuse` does this for any graph
the reference executor accepts (it validates it first) and returns a
:class:`SynapseGraph`.

Populations
    Every neuron node (LIF, IF, LI, I, CubaLIF, CubaLI, Threshold) becomes one population
    with Lava's two-state dynamics (see :mod:`mksgn.core.loihi`)::

        u = (1 - du) u + a_in;   v = (1 - dv) v + u + bias;   spike if v > threshold, then v = 0

    The node's input gain (``r dt / tau``, ``w_in dt / tau_syn``...) is folded into the
    weights of its synapses, ``v_leak`` and the synapses' biases into ``bias``. A
    non-spiking node (LI, I, CubaLI, or linear nodes feeding an Output directly, which
    become a memoryless population) has no threshold and outputs ``v``. Input nodes are
    source populations. ``v_reset`` must be 0 (Lava resets to 0).
Synapses (``kind``)
    ``elementwise``: a weight per neuron (an edge, possibly scaled) - ``y = w x``;
    ``conv``: one Conv1d/Conv2d with per-channel scales folded in - torch's ``conv`` on
    ``(C, H, W)``;
    ``mix``: on ``(C, H, W)`` populations, a map over channels and the last axis shared by
    every position of the middle axis (a graph convolution: joint mixing on the last axis
    then a 1x1 convolution; or, in the deployment form, per output column a ``(1, W)``
    convolution over all columns then a Linear placing it) - ``weight`` is
    ``(W_out, C_out, W_in, C_in)`` and
    ``y[co, h, wo] = sum_{wi, ci} weight[wo, co, wi, ci] x[ci, h, wi]``;
    ``dense``: anything else, as a ``(N_target, N_source)`` matrix over the flattened
    populations (refused above :data:`DENSE_MAX_ENTRIES`).
    ``delay`` counts the steps of the chain's Delay nodes; ``recurrent`` marks a chain that
    closes a cycle (it delivers the previous step's spikes, as in the reference executor).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch

from mksgn.core.executor import NIRExecutionError, NIRExecutor
from mksgn.errors import MksgnError

DENSE_MAX_ENTRIES = 1 << 26
"""Largest dense synapse (target x source entries) fused from a chain that is no conv or mix."""

NEURON_TYPES = (nir.LIF, nir.IF, nir.LI, nir.I, nir.CubaLIF, nir.CubaLI, nir.Threshold)
LINEAR_TYPES = (nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d,
                nir.Flatten, nir.Delay)
KINDS = ("elementwise", "conv", "mix", "dense")


class FusionError(MksgnError, ValueError):
    """A graph that cannot become populations and synapses; names the node at fault."""


@dataclass
class Population:
    """Neurons with Lava's dynamics, or a source of input (``kind="input"``).

    Arrays broadcast to ``shape``. ``threshold is None``: non-spiking, the output is ``v``.
    """

    name: str
    shape: tuple[int, ...]
    kind: str = "neuron"
    du: np.ndarray = field(default_factory=lambda: np.ones(()))
    dv: np.ndarray = field(default_factory=lambda: np.ones(()))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(()))
    threshold: np.ndarray | None = None
    nir_type: str = ""

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def spiking(self) -> bool:
        return self.threshold is not None


@dataclass
class Synapse:
    """One synapse from population ``source`` to population ``target`` (see the module doc)."""

    name: str
    source: str
    target: str
    kind: str
    weight: np.ndarray
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    delay: int = 0
    recurrent: bool = False
    nodes: tuple[str, ...] = ()

    def geometry(self) -> tuple:
        """What must agree for two chains to be summed into one synapse."""
        return (self.source, self.target, self.kind, tuple(self.weight.shape), self.stride, self.padding,
                self.dilation, self.groups, self.delay, self.recurrent)


@dataclass
class SynapseGraph:
    """Populations in evaluation order, synapses, and which populations are read out."""

    populations: dict[str, Population]
    synapses: list[Synapse]
    inputs: list[str]
    outputs: dict[str, str]
    """Output node name -> the population it reads (spikes, or ``v`` if non-spiking)."""
    dt: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def incoming(self, target: str) -> list[Synapse]:
        return [s for s in self.synapses if s.target == target]

    def depth(self) -> dict[str, int]:
        """Synaptic layers from the inputs: ``depth(p) = max over forward synapses (depth(src) + 1)``."""
        depth = dict.fromkeys(self.inputs, 0)
        for name in self.populations:
            if name in depth:
                continue
            forward = [s for s in self.incoming(name) if not s.recurrent]
            depth[name] = max((depth[s.source] + 1 for s in forward), default=1)
        return depth


# --------------------------------------------------------------------------- populations


def _population(name: str, node: Any, shape: tuple[int, ...], dt: float) -> tuple[Population, np.ndarray]:
    """The population of a neuron node and its input gain (folded into incoming weights)."""
    kind = type(node).__name__

    def arr(field_name: str) -> np.ndarray:
        return np.broadcast_to(np.asarray(getattr(node, field_name), dtype=np.float64), shape).copy()

    def reset_is_zero() -> None:
        if np.any(arr("v_reset") != 0):
            raise FusionError(f"node {name!r} ({kind}): v_reset must be 0 (Lava resets to zero), "
                              f"got {np.unique(arr('v_reset'))[:5]}")

    zeros, ones = np.zeros(shape), np.ones(shape)
    if isinstance(node, (nir.LIF, nir.LI)):
        k = dt / arr("tau")
        pop = Population(name, shape, du=ones, dv=k, bias=arr("v_leak") * k, nir_type=kind)
        gain = arr("r") * k
        if isinstance(node, nir.LIF):
            reset_is_zero()
            pop.threshold = arr("v_threshold")
        return pop, gain
    if isinstance(node, (nir.IF, nir.I)):
        pop = Population(name, shape, du=ones, dv=zeros, bias=zeros, nir_type=kind)
        if isinstance(node, nir.IF):
            reset_is_zero()
            pop.threshold = arr("v_threshold")
        return pop, arr("r") * dt
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        k_syn, k_mem = dt / arr("tau_syn"), dt / arr("tau_mem")
        pop = Population(name, shape, du=k_syn, dv=k_mem, bias=arr("v_leak") * k_mem, nir_type=kind)
        if isinstance(node, nir.CubaLIF):
            reset_is_zero()
            pop.threshold = arr("v_threshold")
        return pop, arr("w_in") * k_syn * arr("r") * k_mem
    if isinstance(node, nir.Threshold):
        return Population(name, shape, du=ones, dv=ones, bias=zeros, threshold=arr("threshold"),
                          nir_type=kind), ones
    raise FusionError(f"node {name!r} ({kind}) is not a neuron type")


# --------------------------------------------------------------------------- chains


@dataclass
class _Chain:
    source: str
    nodes: list[str]
    recurrent: bool


class _Fuser:
    def __init__(self, graph: nir.NIRGraph) -> None:
        try:
            self.ex = NIRExecutor(graph, dtype=torch.float64)
        except NIRExecutionError as exc:
            raise FusionError(f"invalid graph: {exc}") from None
        self.nodes = self.ex._flat.nodes
        self.back = set(self.ex.back_edges)
        self.sources: dict[str, list[str]] = {n: [] for n in self.ex.order}
        for src, dst in self.ex._flat.edges:
            self.sources[dst].append(src)
        for name in self.ex.order:
            node = self.nodes[name]
            if not isinstance(node, (*NEURON_TYPES, *LINEAR_TYPES, nir.Input, nir.Output)):
                raise FusionError(f"node {name!r}: type {type(node).__name__} cannot be deployed")

    def is_population(self, name: str) -> bool:
        node = self.nodes[name]
        return isinstance(node, NEURON_TYPES) or name in self.ex.inputs or (
            isinstance(node, nir.Input) and not self.sources[name])

    def chains_into(self, name: str) -> list[_Chain]:
        """Every chain of linear (or pass-through) nodes from a population into ``name``."""
        out: list[_Chain] = []

        def walk(node: str, tail: list[str], recurrent: bool, seen: frozenset[str]) -> None:
            for src in self.sources[node]:
                rec = recurrent or (src, node) in self.back
                if (src, node) in self.back and recurrent:
                    raise FusionError(f"node {name!r}: a chain into it closes two cycles")
                if self.is_population(src):
                    out.append(_Chain(src, tail, rec))
                elif src in seen:
                    raise FusionError(f"node {src!r}: a cycle of linear nodes without a neuron")
                else:
                    walk(src, [src, *tail], rec, seen | {src})

        walk(name, [], False, frozenset())
        return out

    def program(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        step = self.ex.programs[name].step
        return lambda x: step({}, x)[0]


def _scale_vector(fuser: _Fuser, name: str) -> np.ndarray:
    """A Scale node's factor broadcast to its input shape."""
    shape = fuser.ex.input_shapes[name]
    ones = torch.ones((1, *shape), dtype=torch.float64)
    return fuser.program(name)(ones)[0].numpy()


def _per_channel(values: np.ndarray) -> np.ndarray | None:
    """``values`` ``(C, ...)`` as one factor per channel, or None if it varies within a channel."""
    flat = values.reshape(values.shape[0], -1)
    return flat[:, 0].copy() if np.all(flat == flat[:, :1]) else None


def _as_conv(fuser: _Fuser, ops: list[str]) -> dict | None:
    convs = [o for o in ops if isinstance(fuser.nodes[o], (nir.Conv1d, nir.Conv2d))]
    if len(convs) != 1 or any(not isinstance(fuser.nodes[o], (nir.Conv1d, nir.Conv2d, nir.Scale)) for o in ops):
        return None
    conv_name = convs[0]
    node = fuser.nodes[conv_name]
    nd = 1 if isinstance(node, nir.Conv1d) else 2
    weight = np.asarray(node.weight, dtype=np.float64).copy()
    groups = int(node.groups)
    split = ops.index(conv_name)
    for o in ops[:split]:  # per input channel
        s = _per_channel(_scale_vector(fuser, o))
        if s is None:
            return None
        per_group = weight.shape[1]
        for co in range(weight.shape[0]):
            g = co // (weight.shape[0] // groups)
            weight[co] *= s[g * per_group:(g + 1) * per_group].reshape((per_group,) + (1,) * nd)
    for o in ops[split + 1:]:  # per output channel
        s = _per_channel(_scale_vector(fuser, o))
        if s is None:
            return None
        weight *= s.reshape((-1,) + (1,) * (nd + 1))
    stride = _tuple(node.stride, nd)
    dilation = _tuple(node.dilation, nd)
    padding = _conv_padding(node.padding, nd, weight.shape[2:], dilation)
    if padding is None:
        return None
    return {"kind": "conv", "weight": weight, "stride": stride, "padding": padding, "dilation": dilation,
            "groups": groups}


def _tuple(value: Any, nd: int) -> tuple[int, ...]:
    arr = np.atleast_1d(np.asarray(value)).astype(int)
    return tuple(int(v) for v in (np.repeat(arr, nd) if arr.size == 1 else arr))


def _conv_padding(value: Any, nd: int, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...] | None:
    if isinstance(value, str):
        if value == "valid":
            return (0,) * nd
        total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        if any(t % 2 for t in total):
            return None  # asymmetric "same" padding: not a plain convolution
        return tuple(t // 2 for t in total)
    return _tuple(value, nd)


def _as_mix(fuser: _Fuser, ops: list[str], src_shape: tuple[int, ...]) -> dict | None:
    """Compose last-axis Linear, 1x1 convolutions and per-(channel, last-axis) scales."""
    if len(src_shape) != 3 or not ops:
        return None
    c, h, w = src_shape
    m = None  # (W_out, C_out, W_in, C_in); None: the identity (the first op builds its map directly)
    for o in ops:
        node = fuser.nodes[o]
        shape = fuser.ex.input_shapes[o]
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
            k = np.asarray(node.weight, dtype=np.float64)
            if (k.shape[2:] != (1, 1) or _tuple(node.stride, 2) != (1, 1) or
                    _conv_padding(node.padding, 2, (1, 1), (1, 1)) != (0, 0)):
                return None
            groups, c_out = int(node.groups), k.shape[0]
            full = np.zeros((c_out, shape[0]))
            per_in, per_out = k.shape[1], c_out // groups
            for g in range(groups):
                full[g * per_out:(g + 1) * per_out, g * per_in:(g + 1) * per_in] = k[g * per_out:(g + 1) * per_out, :, 0, 0]
            m = np.einsum("wi,dj->wdij", np.eye(w), full) if m is None else np.einsum("dc,wcij->wdij", full, m)
        elif isinstance(node, nir.Scale):
            s = _scale_vector(fuser, o)  # (C, H, W)
            if not np.all(s == s[:, :1, :]):
                return None
            if m is None:
                m = np.eye(w * c).reshape(w, c, w, c)
            m = m * s[:, 0, :].T[:, :, None, None]
        else:
            return None
    return {"kind": "mix", "weight": m}


def _full_width(node: nir.Conv2d, shape: tuple[int, ...]) -> bool:
    """A Conv2d whose ``(1, W)`` kernel spans the whole last axis once (no padding, one group)."""
    k = np.asarray(node.weight)
    return (k.shape[2] == 1 and k.shape[3] == shape[2] > 1 and int(node.groups) == 1
            and _tuple(node.stride, 2)[0] == 1 and _tuple(node.dilation, 2) == (1, 1)
            and _conv_padding(node.padding, 2, k.shape[2:], (1, 1)) == (0, 0))


def _as_dense(fuser: _Fuser, ops: list[str], src_shape: tuple[int, ...], dst_shape: tuple[int, ...],
              where: str) -> dict:
    n_in, n_out = math.prod(src_shape), math.prod(dst_shape)
    if n_in * n_out > DENSE_MAX_ENTRIES:
        raise FusionError(f"{where}: the chain {ops} is neither a convolution nor a joint/channel mix, and as a "
                          f"dense synapse it would need {n_in} x {n_out} weights (limit {DENSE_MAX_ENTRIES})")
    programs = [fuser.program(o) for o in ops]

    def f(x: torch.Tensor) -> torch.Tensor:
        y = x.reshape(1, *src_shape)
        for p in programs:
            y = p(y)
        return y.reshape(-1)

    zero = torch.zeros(n_in, dtype=torch.float64)
    jac = torch.func.jacrev(f)(zero) if n_out <= n_in else torch.func.jacfwd(f)(zero)
    return {"kind": "dense", "weight": jac.detach().numpy().reshape(n_out, n_in)}


def _chain_bias(fuser: _Fuser, ops: list[str], src_shape: tuple[int, ...]) -> np.ndarray:
    y = torch.zeros((1, *src_shape), dtype=torch.float64)
    for o in ops:
        y = fuser.program(o)(y)
    return y[0].numpy()


def _delay_steps(fuser: _Fuser, name: str) -> int:
    node = fuser.nodes[name]
    steps = np.round(np.asarray(node.delay, dtype=np.float64) / fuser.ex.dt).astype(int)
    if np.unique(steps).size != 1:
        raise FusionError(f"node {name!r} (Delay): per-element delays cannot be one synapse's delay")
    return int(np.unique(steps)[0])


def fuse(graph: nir.NIRGraph) -> SynapseGraph:
    """Fuse a NIR graph into populations and synapses (see the module docstring).

    Raises
    ------
    FusionError
        Naming the node: an invalid graph, a node type that cannot be deployed, a non-zero
        reset, a chain too large to be a dense synapse, or a cycle without a neuron.
    """
    fuser = _Fuser(graph)
    ex = fuser.ex
    pops: dict[str, Population] = {}
    gains: dict[str, np.ndarray] = {}
    for name in ex.order:
        node = fuser.nodes[name]
        if name in ex.inputs:
            pops[name] = Population(name, ex.output_shapes[name], kind="input", nir_type="Input")
        elif isinstance(node, NEURON_TYPES):
            pops[name], gains[name] = _population(name, node, ex.input_shapes[name], ex.dt)
    outputs: dict[str, str] = {}
    for out in ex.outputs:
        chains = fuser.chains_into(out)
        if len(chains) == 1 and not chains[0].nodes and not chains[0].recurrent:
            outputs[out] = chains[0].source
            continue
        # linear nodes feed the Output directly: a memoryless, non-spiking readout population
        shape = ex.input_shapes[out]
        readout = f"{out}.readout"
        pops[readout] = Population(readout, shape, du=np.ones(shape), dv=np.ones(shape), bias=np.zeros(shape),
                                   nir_type="Output")
        gains[readout] = np.ones(shape)
        outputs[out] = readout
    targets = {name: (name if not name.endswith(".readout") else name[: -len(".readout")]) for name in pops}
    synapses: list[Synapse] = []
    for pop_name, pop in pops.items():
        if pop.kind == "input":
            continue
        grouped: dict[tuple, Synapse] = {}
        for chain in fuser.chains_into(targets[pop_name]):
            delays = [o for o in chain.nodes if isinstance(fuser.nodes[o], nir.Delay)]
            ops = [o for o in chain.nodes if o not in delays and not isinstance(fuser.nodes[o], (nir.Input, nir.Output))]
            delay = sum(_delay_steps(fuser, d) for d in delays)
            src_shape = pops[chain.source].shape
            where = f"chain {chain.source!r} -> {pop_name!r}"
            if any(fuser.ex.input_shapes.get(o) is None for o in ops):
                raise FusionError(f"{where}: unknown shapes")
            bias = _chain_bias(fuser, ops, src_shape) if ops else np.zeros(pop.shape)
            if bias.shape != pop.shape:
                raise FusionError(f"{where}: delivers shape {bias.shape}, population has {pop.shape}")
            pop.bias = pop.bias + gains[pop_name] * bias
            if not ops or all(isinstance(fuser.nodes[o], nir.Scale) for o in ops):
                weight = np.ones(pop.shape)
                for o in ops:
                    weight = weight * _scale_vector(fuser, o)
                if weight.shape != pop.shape or src_shape != pop.shape:
                    raise FusionError(f"{where}: an elementwise chain must keep the shape {pop.shape}")
                spec = {"kind": "elementwise", "weight": weight}
            else:
                spec = _as_conv(fuser, ops) or _as_mix(fuser, ops, src_shape) or _as_dense(
                    fuser, ops, src_shape, pop.shape, where)
            spec["weight"] = _fold_gain(spec, gains[pop_name], pop.shape)
            syn = Synapse(name=f"{chain.source}->{pop_name}", source=chain.source, target=pop_name,
                          delay=delay, recurrent=chain.recurrent, nodes=tuple(chain.nodes), **spec)
            key = syn.geometry()
            if key in grouped:
                grouped[key].weight = grouped[key].weight + syn.weight
                grouped[key].nodes += syn.nodes
            else:
                grouped[key] = syn
        named: dict[str, int] = {}
        for syn in grouped.values():
            k = named.get(syn.name, 0)
            named[syn.name] = k + 1
            if k:
                syn.name = f"{syn.name}#{k}"
            synapses.append(syn)
    meta = dict(graph.metadata or {})
    return SynapseGraph(pops, synapses, list(ex.inputs), outputs, ex.dt, meta)


def _fold_gain(spec: dict, gain: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Multiply a synapse's weights by its target's input gain (per target neuron)."""
    w = spec["weight"]
    kind = spec["kind"]
    if np.all(gain == gain.flat[0]):
        return w if gain.flat[0] == 1.0 else w * gain.flat[0]
    if kind == "elementwise":
        return w * gain
    if kind == "dense":
        return w * gain.reshape(-1, 1)
    per_channel = _per_channel(gain)
    if kind == "conv" and per_channel is not None:
        return w * per_channel.reshape((-1,) + (1,) * (w.ndim - 1))
    if kind == "mix":
        g = gain[:, 0, :]
        if np.all(gain == gain[:, :1, :]):
            return w * g.T[:, :, None, None]
    raise FusionError(f"population of shape {shape}: an input gain (r, tau) that varies within a channel "
                      f"cannot be folded into a {kind} synapse")
