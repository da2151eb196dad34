"""Operation counts: what a spiking run actually did, and what the dense ANN baseline does.

Spiking network (from a real run of the emulator or Lava, :func:`snn_counts`), per population
``p`` (the layer), per sample:

- ``synaptic_ops``: over the synapses into ``p`` whose source spikes, the sum over presynaptic
  spikes of their non-zero fan-out (in fixed point the quantised weights: a weight rounded
  to zero is no synapse). These are accumulates (ACs).
- ``graded_ops``: the same for synapses whose source is a real-valued graph input (the
  encoding layer) or a graded relay: every non-zero value times its non-zero fan-out. These
  are MACs. An input whose values were all 0 or 1 in the run (spikes, ``--input``) counts
  as ``synaptic_ops``.
- ``neuron_updates``: neurons x ``T`` per person row (every neuron is updated at every step
  on a synchronous chip; a pipelined deployment overlaps rows, so the latency steps are not
  charged).
- ``spikes``: the spikes ``p`` sent.

A sample is the sum of its person rows (persons are separate rows, mksgn-spec.md).

Operations are per event: a convolution's kernel (or any shared weight) is one synapse per
position it is applied at, as the emulator's fan-out counts it. Hardware with weight sharing
stores such a weight once per core, which saves synaptic memory (:mod:`mksgn.hw_profiles.resources`),
not operations.

Dense ANN baseline, per person row: :func:`teacher_counts` counts the teacher's ``Conv2d``,
``Linear`` and joint-mix (adjacency) products with forward hooks; :func:`onnx_counts`
counts any GCN given as ONNX from its graph (``Conv``, ``ConvTranspose``, ``MatMul``,
``Gemm``, ``Einsum``; shapes from ONNX shape inference with the batch set to 1).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mksgn.errors import MksgnError


class CountError(MksgnError, ValueError):
    """Operations that cannot be counted; names the file and node."""


@dataclass
class LayerCounts:
    """Operations of one population (layer) per sample."""

    name: str
    neurons: int
    synaptic_ops: float = 0.0
    graded_ops: float = 0.0
    neuron_updates: float = 0.0
    spikes: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SNNCounts:
    """Per-layer counts of a spiking run, per sample, and what they were measured on."""

    layers: list[LayerCounts]
    samples: int
    person_rows: int
    time_steps: int
    latency: int
    measured_on: str
    backend: str

    def total(self, key: str) -> float:
        return float(sum(getattr(layer, key) for layer in self.layers))

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "person_rows": self.person_rows, "time_steps": self.time_steps,
                "latency": self.latency, "measured_on": self.measured_on, "backend": self.backend,
                "totals": {k: self.total(k) for k in ("synaptic_ops", "graded_ops", "neuron_updates", "spikes")},
                "layers": [layer.to_dict() for layer in self.layers]}


@dataclass
class ANNCounts:
    """Dense MACs per person row of an ANN, per layer (module or ONNX node)."""

    macs: dict[str, int] = field(default_factory=dict)
    source: str = ""

    @property
    def total(self) -> int:
        return int(sum(self.macs.values()))

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "macs_per_row": self.total, "layers": dict(self.macs)}


def snn_counts(sg, record: dict[str, Any]) -> SNNCounts:
    """Per-layer counts from ``record`` (an ``mksgn-run`` result on the synapse graph ``sg``)."""
    return count_layers(sg, record["spikes_per_population"], record["synops_per_synapse"], int(record["samples"]),
                        int(record["person_rows"]), int(record["time_steps"]), record["measured_on"],
                        f"{record['backend']} {record['tag']}", record.get("binary_inputs") or {})


def count_layers(sg, spikes: dict[str, int], synops: dict[str, int], samples: int, rows: int, steps: int,
                 measured_on: str, backend: str, binary_inputs: dict[str, bool] | None = None) -> SNNCounts:
    """Per-layer counts per sample from a run's totals (spikes per population, synaptic ops per synapse);
    ``binary_inputs``: the graph inputs whose values were all 0 or 1 (counted as synaptic ops)."""
    n = max(samples, 1)
    layers = {name: LayerCounts(name, sg.populations[name].size) for name in sg.neurons()}
    for layer in layers.values():
        layer.neuron_updates = layer.neurons * steps * rows / n
        layer.spikes = spikes.get(layer.name, 0) / n
    for syn in sg.synapses:
        ops = synops.get(syn.name, 0) / n
        if sg.is_graded(syn.source) and not (binary_inputs or {}).get(syn.source, False):
            layers[syn.target].graded_ops += ops
        else:
            layers[syn.target].synaptic_ops += ops
    return SNNCounts(list(layers.values()), samples, rows, steps, 0, measured_on, backend)


def teacher_counts(teacher, frames: int, num_joints: int) -> ANNCounts:
    """Dense MACs per person row of a :class:`~mksgn.train.teacher.GCNTeacher` (all streams)."""
    import torch

    from mksgn.convert.onnx_export import TeacherPerPerson
    from mksgn.train.complexity import count_macs_by_module

    rows = TeacherPerPerson(teacher).eval()
    x = torch.zeros((1, len(teacher.modalities), teacher.in_channels, frames, num_joints))
    macs = count_macs_by_module(rows, x)
    return ANNCounts({k.removeprefix("teacher."): v for k, v in macs.items()},
                     f"GCN teacher, {len(teacher.modalities)} streams, one person row of {frames} frames x "
                     f"{num_joints} joints (forward hooks: Conv2d, Linear, adjacency products)")


_COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum")


def onnx_counts(path: str | os.PathLike[str], batch: int = 1) -> ANNCounts:
    """Dense MACs of an ONNX model per input row (every dynamic dimension set to ``batch``)."""
    import onnx
    from onnx import shape_inference

    try:
        model = onnx.load(os.fspath(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise CountError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.dim_value:
                dim.dim_value = batch
    del model.graph.value_info[:]  # shapes recorded at export are symbolic: infer them again
    for value in model.graph.output:
        value.type.tensor_type.ClearField("shape")
    try:
        model = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise CountError(f"{path}: ONNX shape inference failed ({exc})") from exc
    shapes: dict[str, list[int]] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = [d.dim_value if d.dim_value else -1 for d in value.type.tensor_type.shape.dim]
        shapes[value.name] = dims
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    macs: dict[str, int] = {}
    for i, node in enumerate(model.graph.node):
        if node.op_type not in _COUNTED:
            continue
        name = node.name or f"{node.op_type}_{i}"
        ins = [shapes.get(x) for x in node.input if x]
        out = shapes.get(node.output[0])
        if out is None or any(s is None or -1 in s for s in ins[:2]) or -1 in out:
            raise CountError(f"{path}: ONNX node {name!r} ({node.op_type}): shapes unknown after shape inference; "
                             f"export the model with static shapes")
        macs[name] = macs.get(name, 0) + _node_macs(node, ins, out) // batch
    if not macs:
        raise CountError(f"{path}: no Conv, MatMul, Gemm or Einsum node to count")
    return ANNCounts(macs, f"ONNX graph {os.fspath(path)} ({len(macs)} counted nodes, per input row)")


def _node_macs(node, ins: list[list[int]], out: list[int]) -> int:
    if node.op_type in ("Conv", "ConvTranspose"):
        w = ins[1]
        if node.op_type == "Conv":
            return math.prod(out) * math.prod(w[1:])
        return math.prod(ins[0]) * math.prod(w[1:])  # each input element meets C_out/groups x kernel weights
    if node.op_type == "MatMul":
        a = ins[0]
        return math.prod(out) * (a[-1] if a else 1)
    if node.op_type == "Gemm":
        trans_a = next((att.i for att in node.attribute if att.name == "transA"), 0)
        a = ins[0]
        return math.prod(out) * (a[0] if trans_a else a[-1])
    equation = next(att.s.decode() for att in node.attribute if att.name == "equation")
    lhs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, shape in zip(lhs, ins, strict=False):
        letters = re.sub(r"\.\.\.", "", term)
        for letter, size in zip(letters, shape[-len(letters):] if letters else [], strict=False):
            sizes[letter] = size
    return int(np.prod(list(sizes.values()), dtype=np.int64)) if len(lhs) > 1 else 0
