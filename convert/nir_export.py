"""The trained student as a NIR graph: a registry of small per-module exporters.

Layout and conventions of the exported graph (also written into its metadata):

- One ``Input`` per modality, ``input_<name>``, of shape ``(C, F, V)`` (coordinates: 3,
  x y z, or 2, x y for 2-D keypoints; frames, joints) for ONE person: persons are separate samples whose logits are summed
  by the runner. The modalities are computed at the input (``mksgn.data.transforms``),
  not in the graph, from joints centred and, where ``metadata["input"]["normalise"]`` is
  ``"sample"``, divided by the sample's median bone length (``mksgn.data.normalise``; graphs
  without the key: ``"none"``). Every time step receives the same input (direct encoding).
- Tensors are ``(C, F, V)`` per time step. Graph convolution ``sum_k W_k X (A_k + B_k)``
  is a ``Linear`` over joints (weight ``(A_k + B_k)^T``), a graded relay and a 1x1 ``Conv2d``
  (``W_k``), one chain per partition, all summed into the LIF. **``Linear``/``Affine`` act on
  the last axis** (joints), as ``torch.nn.functional.linear`` and nirtorch do; NIR's
  specification states them for 1-D inputs only, so NIR's own type check is off (NIR 1.0.8
  also types a non-square ``Conv2d`` kernel by its first axis) and the reference executor
  (:class:`mksgn.core.executor.NIRExecutor`) validates every shape instead; read the graph
  with ``nir.read(path, type_check=False)`` (README, "Reading the graph with nir.read").
- BatchNorm is folded into the preceding synapses; the attention's AND is a LIF with
  ``tau = dt`` (no memory) and threshold 1.5; residual and attention branches are edges
  summed at the receiving node.
- LIF nodes: ``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``, ``v_reset = 0``;
  forward-Euler discretisation with the recorded ``dt`` gives exactly
  ``v = beta v + I``, spike if ``v > threshold`` (strict), reset to zero.
- Graded relays: every graph convolution stays factorised, ``Linear(A_k^T)`` on the joints
  into an ``LI`` with ``tau = dt``, ``r = 1``, ``v_leak = 0`` (``v = I`` each step: a
  memoryless graded relay, ``metadata["role"] = "graded_relay"``), then the 1x1 ``Conv2d``
  ``W_k``; the attention gate's input is a 1x1 ``Conv2d`` to one channel, a relay and an
  ``Affine`` over the joints. A modality's input scale is folded into its branch's ``W_k``.
- Readout: ``SumPool2d`` over (frames, joints), ``Flatten``, a relay, ``Scale(1 / (F V))``,
  ``Affine`` (weights divided by T), and an integrator ``I`` (``r = 1 / dt``) whose value
  after T steps is the logit.
"""

from __future__ import annotations

import copy

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

import mksgn
from mksgn.core.nir_file import encode_metadata
from mksgn.core.timestep import DEFAULT_DT, DISCRETISATIONS, tau_of_beta
from mksgn.data.normalise import normalisation_of
from mksgn.errors import MksgnError
from mksgn.train.blocks import (
    Broadcast, ConvBN, FactorisedGate, FactorisedGraphConv, Fusion, GlobalAvgPool, InputScale, JointMix,
    SpatialGraphConv, bn_affine,
)
from mksgn.train.neuron import LIF
from mksgn.train.student import MKSGN, SpikingAttention, SpikingBlock, non_deployable_modules

DATA_KEYS = ("path", "sha256", "source", "benchmark")

COORD_NAMES: Mapping[int, str] = MappingProxyType({3: "x y z", 2: "x y"})
"""What the input's coordinate axis holds, by its size ``C``."""
"""The keys of the training data's record copied into the metadata."""

DT = DEFAULT_DT
"""Time step recorded in exported graphs (snnTorch's NIR convention, so its importer agrees)."""

DISCRETISATION = DISCRETISATIONS[0]
RESET_MODE = "zero"
RELAY_ROLE = "graded_relay"
"""``metadata["role"]`` of the ``LI`` nodes that are graded relays."""


class ExportError(MksgnError, ValueError):
    """The model cannot be exported; names the module path and type."""


@dataclass
class Port:
    """A value in the graph under construction: the nodes whose outputs sum to it, its shape."""

    sources: list[str]
    shape: tuple[int, ...]


@dataclass
class GraphBuilder:
    """Collects nodes, edges and the node -> module map."""

    dt: float = DT
    exporters: Mapping[type[nn.Module], Callable] = field(default_factory=dict)
    nodes: dict[str, nir.NIRNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    module_map: dict[str, str] = field(default_factory=dict)

    def add(self, path: str, node: nir.NIRNode, inputs: Port | list[str] | None, suffix: str = "") -> str:
        """Add ``node`` for module ``path`` fed by ``inputs``; returns the node name."""
        name = node_name(path + suffix)
        if name in self.nodes:
            raise ExportError(f"{path}: node name {name!r} is used twice")
        node.metadata = {**(node.metadata or {}), "module": path}
        self.nodes[name] = node
        self.module_map[name] = path
        sources = inputs.sources if isinstance(inputs, Port) else (inputs or [])
        for src in sources:
            self.edges.append((src, name))
        return name

    def export(self, module: nn.Module, path: str, port: Port) -> Port:
        """Export one module through the registry."""
        exporter = self.exporters.get(type(module))
        if exporter is None:
            raise ExportError(f"{path}: module type {type(module).__name__} has no NIR exporter "
                              f"(supported: {sorted(t.__name__ for t in self.exporters)})")
        return exporter(module, self, path, port)


Exporter = Callable[[nn.Module, GraphBuilder, str, Port], Port]
"""``exporter(module, builder, path, port) -> port``: adds the module's nodes, returns what it outputs."""


def node_name(path: str) -> str:
    """A NIR node name for a module path: dots (NIR's nesting separator) become ``_``."""
    return re.sub(r"[^0-9A-Za-z_]", "_", path)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference-mode BatchNorm into the conv before it (per output channel)."""
    scale, _ = bn_affine(bn)
    w = weight.double() * scale.view(-1, *([1] * (weight.dim() - 1)))
    b0 = torch.zeros_like(scale) if bias is None else bias.double()
    b = bn.bias.double() + (b0 - bn.running_mean.double()) * scale
    return _np(w), _np(b)


def _conv_node(weight: np.ndarray, bias: np.ndarray, conv: nn.Conv2d | None, in_shape: tuple[int, ...]) -> tuple[nir.Conv2d, tuple[int, ...]]:
    stride = conv.stride if conv is not None else (1, 1)
    padding = conv.padding if conv is not None else (0, 0)
    dilation = conv.dilation if conv is not None else (1, 1)
    groups = conv.groups if conv is not None else 1
    c, h, w = in_shape
    kh, kw = weight.shape[2:]
    if weight.shape[1] * groups != c:
        raise ExportError(f"conv expects {weight.shape[1] * groups} input channels, gets {c}")
    out_h = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    node = nir.Conv2d(input_shape=(h, w), weight=weight, stride=tuple(stride), padding=tuple(padding),
                      dilation=tuple(dilation), groups=groups, bias=bias)
    return node, (weight.shape[0], out_h, out_w)


def _check_last_axis(path: str, port: Port, size: int) -> None:
    if port.shape[-1] != size:
        raise ExportError(f"{path}: acts on a last axis of {size}, input shape is {port.shape}")


def _input_scale(m: InputScale, g: GraphBuilder, path: str, port: Port) -> Port:
    if bool((m.scale == 1).all()):  # folded into the graph convolution after it (fold_input_scales)
        return port
    scale = np.broadcast_to(_np(m.scale).reshape(-1, *([1] * (len(port.shape) - 1))), port.shape).copy()
    return Port([g.add(path, nir.Scale(scale=scale), port)], port.shape)


def fold_input_scales(model: MKSGN) -> None:
    """Fold each modality's ``InputScale`` into the ``W_k`` of its branch's graph convolution, in place.

    The scale acts on channels and the joint mix on joints, so ``W_k (s x) A_k = (W_k s) x A_k``:
    the input then reaches the joint mix directly, which makes it one ``jointmix`` synapse (a
    scale per channel cannot be shared over channels). Branches have no residual path.
    """
    with torch.no_grad():
        for name in model.modalities:
            scale, block = model.input_scale[name].scale, model.branches[name]
            if bool((scale == 1).all()) or block.down is not None or block.identity:
                continue
            gcn = block.gcn
            if isinstance(gcn, SpatialGraphConv):
                for conv in gcn.conv:
                    conv.weight.mul_(scale.to(conv.weight.dtype).view(1, -1, 1, 1))
            elif isinstance(gcn, FactorisedGraphConv):
                gcn.weight.mul_(scale.to(gcn.weight.dtype).view(1, 1, -1))
            else:
                continue
            scale.fill_(1.0)


def _joint_mix(m: JointMix, g: GraphBuilder, path: str, port: Port) -> Port:
    matrix = _np(m.matrix())
    _check_last_axis(path, port, matrix.shape[0])
    weight = matrix.T.copy()  # y = x M  <=>  y = W x on the last axis with W = M^T
    node = nir.Linear(weight=weight) if m.bias is None else nir.Affine(weight=weight, bias=_np(m.bias))
    return Port([g.add(path, node, port)], port.shape[:-1] + (matrix.shape[1],))


def _conv2d(m: nn.Conv2d, g: GraphBuilder, path: str, port: Port) -> Port:
    bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels)
    node, shape = _conv_node(_np(m.weight), bias, m, port.shape)
    return Port([g.add(path, node, port)], shape)


def _conv_bn(m: ConvBN, g: GraphBuilder, path: str, port: Port) -> Port:
    if m.bn is None:  # folded already (deployment form)
        w = _np(m.conv.weight)
        b = _np(m.conv.bias) if m.conv.bias is not None else np.zeros(m.conv.out_channels)
    else:
        w, b = fold_bn(m.conv.weight, m.conv.bias, m.bn)
    node, shape = _conv_node(w, b, m.conv, port.shape)
    return Port([g.add(f"{path}.conv", node, port)], shape)


def relay_node(shape: tuple[int, ...], dt: float) -> nir.LI:
    """A graded relay: an ``LI`` with ``tau = dt``, ``r = 1``, ``v_leak = 0``, so ``v = I`` every step
    (:mod:`mksgn.core.kinds.relay`)."""
    return nir.LI(tau=np.full(shape, dt), r=np.ones(shape), v_leak=np.zeros(shape), metadata={"role": RELAY_ROLE})


def _partition(g: GraphBuilder, path: str, port: Port, k: int, a: np.ndarray, w: np.ndarray, bias: np.ndarray
               ) -> tuple[str, tuple[int, ...]]:
    """Partition ``k`` of a graph convolution: ``Linear(a^T)`` -> relay -> 1x1 ``Conv2d(w, bias)``."""
    _check_last_axis(path, port, a.shape[0])
    mix = nir.Linear(weight=a.T.copy(), metadata={"part": f"a.{k}"})
    mixed = g.add(path, mix, port, f".mix.{k}")
    shape = port.shape[:-1] + (a.shape[1],)
    relay = g.add(path, relay_node(shape, g.dt), [mixed], f".relay.{k}")
    node, out_shape = _conv_node(w[:, :, None, None], bias, None, shape)
    node.metadata = {"part": f"weight.{k}"}
    return g.add(path, node, [relay], f".conv.{k}"), out_shape


def _spatial_graph_conv(m: SpatialGraphConv, g: GraphBuilder, path: str, port: Port) -> Port:
    sources, shape = [], port.shape
    for k, (mix, conv) in enumerate(zip(m.mix, m.conv, strict=True)):
        if mix.bias is not None:
            raise ExportError(f"{path}.mix.{k}: a joint bias before a graded relay has no Lava process")
        w, b = fold_bn(conv.weight, None, m.bn)
        if k:  # the BN shift is added once, by the first partition's conv
            b = np.zeros_like(b)
        name, shape = _partition(g, path, port, k, _np(mix.matrix()), w[:, :, 0, 0], b)
        sources.append(name)
    return Port(sources, shape)


def _factorised_graph_conv(m: FactorisedGraphConv, g: GraphBuilder, path: str, port: Port) -> Port:
    a, w, bias = _np(m.a), _np(m.weight), _np(m.bias)
    sources, shape = [], port.shape
    for k in range(a.shape[0]):
        name, shape = _partition(g, path, port, k, a[k], w[k], bias if k == 0 else np.zeros_like(bias))
        sources.append(name)
    return Port(sources, shape)


def _gate_input(g: GraphBuilder, path: str, port: Port, squeeze: np.ndarray, a: np.ndarray, bias: float,
                prefix: str = "") -> Port:
    """``(sum_c squeeze[c] s[c]) a + bias``: a 1x1 ``Conv2d`` to one channel -> relay -> ``Affine``
    (node names ``path + prefix + .squeeze`` ...: the trained and the deployment form name them alike)."""
    c, f, v = port.shape
    node, shape = _conv_node(squeeze.reshape(1, c, 1, 1), np.zeros(1), None, port.shape)
    node.metadata = {"part": "squeeze"}
    squeezed = g.add(path, node, port, f"{prefix}.squeeze")
    relay = g.add(path, relay_node(shape, g.dt), [squeezed], f"{prefix}.relay")
    mix = nir.Affine(weight=a.T.copy(), bias=np.full(v, float(bias)), metadata={"part": "a"})
    return Port([g.add(path, mix, [relay], f"{prefix}.mix")], (1, f, v))


def _factorised_gate(m: FactorisedGate, g: GraphBuilder, path: str, port: Port) -> Port:
    return _gate_input(g, path, port, _np(m.squeeze), _np(m.a), float(m.bias))


def _broadcast(m: Broadcast, g: GraphBuilder, path: str, port: Port) -> Port:
    if port.shape[0] != 1:
        raise ExportError(f"{path}: broadcasts one channel, input has {port.shape[0]}")
    node, shape = _conv_node(np.ones((m.channels, 1, 1, 1)), np.zeros(m.channels), None, port.shape)
    return Port([g.add(path, node, port)], shape)


def _lif(m: LIF, g: GraphBuilder, path: str, port: Port) -> Port:
    beta, threshold = m.params.beta, m.params.threshold
    ones = np.ones(port.shape)
    if beta >= 1.0:  # no leak: integrate-and-fire
        node = nir.IF(r=ones / g.dt, v_threshold=ones * threshold, v_reset=0 * ones)
    else:
        tau = tau_of_beta(beta, g.dt)
        node = nir.LIF(tau=ones * tau, r=ones * (tau / g.dt), v_leak=0 * ones, v_threshold=ones * threshold,
                       v_reset=0 * ones)
    node.metadata = {"beta": float(beta), "threshold": float(threshold)}
    return Port([g.add(path, node, port)], port.shape)


def _global_avg_pool(m: GlobalAvgPool, g: GraphBuilder, path: str, port: Port) -> Port:
    """``SumPool2d`` over (frames, joints) and ``Flatten`` into a graded relay (a whole number of
    spikes), then ``Scale(1 / (F V))``: the mean, with the division on the synapse after it."""
    c, h, w = port.shape
    pool = nir.SumPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]), padding=np.array([0, 0]))
    pooled = g.add(path, pool, port, ".pool")
    flat = g.add(path, nir.Flatten(input_type={"input": np.array([c, 1, 1])}, start_dim=0, end_dim=-1), [pooled], ".flatten")
    relay = g.add(path, relay_node((c,), g.dt), [flat], ".relay")
    return Port([g.add(path, nir.Scale(scale=np.full(c, 1.0 / (h * w))), [relay], ".mean")], (c,))


def _attention(m: SpikingAttention, g: GraphBuilder, path: str, port: Port) -> Port:
    if m.fused is not None:  # deployment form
        gate_in = g.export(m.fused, f"{path}.fused", port)
    else:
        if m.mix.bias is not None:
            raise ExportError(f"{path}.mix: a joint bias after the squeeze has no place on Loihi (one gate bias)")
        scale, shift = bn_affine(m.bn)  # BN over the single channel folds into the joint mix
        gate_in = _gate_input(g, path, port, _np(m.squeeze.weight)[0, :, 0, 0],
                              _np(m.mix.matrix()) * float(scale[0]), float(shift[0]), prefix=".fused")
    gate = g.export(m.gate, f"{path}.gate", gate_in)
    spread = g.export(m.broadcast, f"{path}.broadcast", gate)
    return g.export(m.coincidence, f"{path}.coincidence", Port(port.sources + spread.sources, port.shape))


def _spiking_block(m: SpikingBlock, g: GraphBuilder, path: str, port: Port) -> Port:
    s = g.export(m.lif_s, f"{path}.lif_s", g.export(m.gcn, f"{path}.gcn", port))
    if m.attention is not None:
        s = g.export(m.attention, f"{path}.attention", s)
    current = g.export(m.tcn, f"{path}.tcn", s)
    sources = list(current.sources)
    if m.identity:
        sources += port.sources
    elif m.down is not None:
        sources += g.export(m.down, f"{path}.down", port).sources
    return g.export(m.lif_t, f"{path}.lif_t", Port(sources, current.shape))


def _fusion(m: Fusion, g: GraphBuilder, path: str, port: Port) -> Port:
    raise ExportError(f"{path}: Fusion takes one input per modality; export it through export_student")


def _export_fusion(m: Fusion, g: GraphBuilder, path: str, ports: list[Port]) -> Port:
    alpha = m.alpha().detach().double()
    sources, shape = [], ports[0].shape
    for i, (proj, port) in enumerate(zip(m.proj, ports, strict=True)):
        if proj.bn is None:  # folded already (deployment form)
            w, b = _np(proj.conv.weight), _np(proj.conv.bias)
        else:
            w, b = fold_bn(proj.conv.weight, None, proj.bn)
        node, shape = _conv_node(w * float(alpha[i]), b * float(alpha[i]), proj.conv, port.shape)
        sources.append(g.add(f"{path}.proj.{i}.conv", node, port))
    return Port(sources, shape)


DEFAULT_EXPORTERS: Mapping[type[nn.Module], Exporter] = MappingProxyType({
    InputScale: _input_scale,
    JointMix: _joint_mix,
    nn.Conv2d: _conv2d,
    ConvBN: _conv_bn,
    SpatialGraphConv: _spatial_graph_conv,
    FactorisedGraphConv: _factorised_graph_conv,
    FactorisedGate: _factorised_gate,
    Broadcast: _broadcast,
    LIF: _lif,
    GlobalAvgPool: _global_avg_pool,
    SpikingAttention: _attention,
    SpikingBlock: _spiking_block,
    Fusion: _fusion,
})
"""Exporter per module type (read-only); ``export_student(..., exporters={MyModule: fn})`` adds or
overrides entries."""


def export_student(model: MKSGN, frames: int, num_joints: int, class_names: list[str], layout: str,
                   dt: float = DT, exporters: Mapping[type[nn.Module], Exporter] | None = None,
                   data: Mapping[str, Any] | None = None) -> nir.NIRGraph:
    """Export a trained student (inference mode) to a NIR graph; see the module docstring.

    ``data`` is the checkpoint's data record; its ``path``, ``sha256``, ``source`` and
    ``benchmark`` go into the metadata (``"data"``), so that every command run on the graph
    defaults to the data it was trained on (:mod:`mksgn.data.recorded`), and its ``normalise``
    (``"none"`` when it has none) into ``metadata["input"]["normalise"]``, so that every command
    feeds the graph inputs normalised as in training (:mod:`mksgn.data.normalise`).
    """
    bad = non_deployable_modules(model)
    if bad:
        path, kind = bad[0]
        raise ExportError(f"{path}: module type {kind} is not a deployable block")
    # Derived parameters (adjacency + offset, fusion weights, folded BatchNorm) are computed
    # in float64 from the stored ones, as a float64 run of the model computes them; deriving
    # them in float32 would shift currents by ~1e-8 and flip spikes that sit that close to
    # a threshold.
    model = copy.deepcopy(model).eval().double()
    fold_input_scales(model)
    g = GraphBuilder(dt=dt, exporters={**DEFAULT_EXPORTERS, **(exporters or {})})
    in_shape = (model.in_channels, frames, num_joints)
    with torch.no_grad():
        branch_ports = []
        for name in model.modalities:
            inp = g.add(f"input.{name}", nir.Input(input_type={"input": np.array(in_shape)}), None)
            scaled = g.export(model.input_scale[name], f"input_scale.{name}", Port([inp], in_shape))
            branch_ports.append(g.export(model.branches[name], f"branches.{name}", scaled))
        h = g.export(model.fusion_lif, "fusion_lif", _export_fusion(model.fusion, g, "fusion", branch_ports))
        for j, block in enumerate(model.blocks):
            h = g.export(block, f"blocks.{j}", h)
        pooled = g.export(model.pool, "pool", h)
        t_steps = model.cfg.time_steps
        fc = nir.Affine(weight=_np(model.fc.weight) / t_steps, bias=_np(model.fc.bias) / t_steps)
        fc_name = g.add("fc", fc, pooled)
        k = model.fc.out_features
        integ = g.add("readout", nir.I(r=np.full(k, 1.0 / dt)), [fc_name])
        g.add("output", nir.Output(output_type={"output": np.array([k])}), [integ])
    metadata = {
        "mksgn_version": mksgn.__version__,
        "nir_version": getattr(nir, "__version__", "unknown"),
        "producer": "mksgn-export",
        "dt": dt,
        "discretisation": DISCRETISATION,
        "reset": RESET_MODE,
        "time_steps": int(model.cfg.time_steps),
        "input": {
            "modalities": list(model.modalities),
            "inputs": [node_name(f"input.{m}") for m in model.modalities],
            "shape": list(in_shape),
            "layout": f"(C, F, V): coordinates {COORD_NAMES[model.in_channels]}, frames, joints",
            "frames": frames,
            "joints": num_joints,
            "skeleton": layout,
            "persons": "one person per run; the logits of the persons present in a sample are summed",
            "encoding": "direct: the same input at every time step",
            "modality_computation": "at the input (mksgn.data.transforms), not in the graph",
            "normalise": normalisation_of(data),
        },
        "output": {"node": "output", "meaning": "logits: the integrator's value after time_steps steps"},
        "class_names": list(class_names),
        "module_map": dict(g.module_map),
        **({"fixed_point_grid": model.fixed_point} if model.fixed_point else {}),
        **({"data": {k: data.get(k) for k in DATA_KEYS}} if data is not None and "path" in data else {}),
        "conventions": {
            "tensor_layout": "(C, F, V) per time step, batch outside the graph",
            "linear_axis": "Linear and Affine act on the last axis (joints, or features after Flatten)",
            "lif": "tau = dt / (1 - beta), r = tau / dt, v_leak = 0, v_reset = 0: v = beta v + I, spike if v > threshold",
            "edges": "several edges into a node are summed; no synaptic delay within a step",
        },
    }
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata=encode_metadata(metadata), type_check=False)
