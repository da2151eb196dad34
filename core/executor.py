"""A small reference executor for NIR graphs, written in torch.

:class:`NIRExecutor` runs any :class:`nir.NIRGraph` built from Input, Output, Affine,
Linear, Scale, Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, Threshold, Delay, I, IF,
LI, LIF, CubaLI, CubaLIF and nested NIRGraph nodes over ``T`` time steps and a batch, in
float32 or float64, and records the output of every node. It is meant to be read and
trusted, not to be fast: the loops over time and nodes are plain Python, every node is
vectorised over the batch.

Conventions
-----------
Tensors
    Every signal is ``(B, *shape)`` within a step and ``(T, B, *shape)`` over a run, where
    ``shape`` is the per-sample shape that NIR types describe (no batch axis).
Edges and time
    Within a step, nodes are evaluated in topological order and an edge is an identity
    with no latency: a node receives its source's output of the same step. A node with
    several incoming edges receives their **sum** (all must deliver the same shape).
Cycles
    Edges that close a cycle carry the source's output of the **previous** step (zeros at
    ``t = 0``). They are the back edges of a depth-first search that starts from the
    top-level Input nodes in the order of ``graph.nodes`` and follows edges in the order of
    the edge lists (a graph's own edges, then those of its subgraphs, in node order). A
    self-loop is a back edge. This is how a recurrent subgraph runs, for example a CubaLIF
    whose spikes return through a Linear node. A cycle must pass through a neuron or a
    Delay (:data:`STATEFUL_TYPES`); a cycle of stateless nodes is an algebraic loop and is
    refused. Every node must be reachable from a top-level Input. :attr:`NIRExecutor.back_edges` lists the back edges found.
Nested graphs
    A nested NIRGraph is flattened into its parent: its nodes are named
    ``"sub.node"`` (deeper: ``"sub.inner.node"``), its Input and Output nodes become
    pass-through nodes, and each node keeps its own state. An edge may name the subgraph
    itself (meaning its only Input, as a destination, or its only Output, as a source) or
    a node inside it with a dotted name, such as ``"sub.input"`` or ``"sub.output"``.
    ``records["sub"]`` repeats the output of the subgraph's Output node when it has
    exactly one.
Time step, discretisation and neuron semantics
    ``dt`` is the constructor's ``dt``, else its ``semantics.dt``, else ``graph.metadata["dt"]``,
    else :data:`DEFAULT_DT` (snnTorch's export convention; :mod:`mksgn.core.timestep`), with a
    warning. A nested graph's own ``"dt"``, if any, must agree with it unless ``dt`` or
    ``semantics`` is given, which overrides all. ``metadata["discretisation"]`` (default
    ``"forward-euler"``) must be one of :data:`DISCRETISATIONS`, in every graph. How neurons
    reset and spike, and what a back edge delivers at ``t = 0``, is the :class:`Semantics`
    record's (:mod:`mksgn.core.semantics`; default the graph's, else NIR's reading): with
    ``recurrent_initial = "bias"`` every back edge delivers at ``t = 0`` what its source computes
    when every neuron and Delay outputs zeros (a recurrent layer's bias).
Nodes
    What each node type computes in a step is its builder's (:mod:`mksgn.core.node_steps`):
    neurons discretised by forward Euler, reset and spiking as the semantics say; Affine and
    Linear on the last axis; convolutions, pooling, Flatten and Delay as torch and NIR define them.

Validation happens in the constructor, before anything runs: unsupported node types,
edges naming missing nodes, duplicate edges, graphs without Input or Output nodes,
non-finite parameters, and shapes (each node's output shape is computed and checked
against what the next node declares or needs). Errors are :class:`NIRExecutionError`
and name the node (and its type) or the edge at fault.

The per-type behaviour lives in a registry of small *builders* keyed by NIR node class
(:data:`DEFAULT_NODE_STEPS`); ``NIRExecutor(graph, node_steps={MyNode: builder})`` adds
or overrides entries. A builder receives the node and a :class:`BuildContext` and returns
a :class:`NodeProgram` (output shape, initial state, step function).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch

from mksgn.core import timestep
from mksgn.core.fields import FieldError, declared_shape
from mksgn.core.node_steps import DEFAULT_NODE_STEPS, STATEFUL_TYPES, BuildContext, NIRExecutionError, NodeBuilder, NodeProgram
from mksgn.core.semantics import Semantics, SemanticsError
from mksgn.core.semantics import resolve as resolve_semantics
from mksgn.core.timestep import DEFAULT_DT, DISCRETISATIONS

__all__ = [
    "DEFAULT_DT",
    "DEFAULT_NODE_STEPS",
    "DISCRETISATIONS",
    "BuildContext",
    "ExecutionResult",
    "NIRExecutionError",
    "NIRExecutor",
    "NodeBuilder",
    "NodeProgram",
]

_SHAPE_FIELDS = frozenset({"input_type", "output_type", "metadata", "input_shape"})


@dataclass
class ExecutionResult:
    """What :meth:`NIRExecutor.run` returns; every tensor is ``(T, B, *shape)``.

    Attributes
    ----------
    outputs
        Top-level Output node name -> its signal.
    records
        Every node (nested ones as ``"sub.node"``; a subgraph with one Output under its own
        name too) -> its output. Empty when ``run(..., record=False)``.
    membranes
        LIF, IF and CubaLIF nodes -> membrane potential before the reset; Threshold nodes
        -> their input. Empty when ``run(..., record=False)``.
    """

    outputs: dict[str, torch.Tensor]
    records: dict[str, torch.Tensor]
    membranes: dict[str, torch.Tensor]


# --------------------------------------------------------------------------- graph structure


@dataclass
class _FlatGraph:
    """A graph with its subgraphs inlined: leaf nodes by dotted name, resolved edges."""

    nodes: dict[str, Any] = dataclasses.field(default_factory=dict)
    edges: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    edge_set: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)  # subgraph -> its single Output


def _type_name(node: Any) -> str:
    return type(node).__name__


def _graph_label(prefix: str) -> str:
    return f"subgraph {prefix[:-1]!r}" if prefix else "graph"


def _ports(graph: nir.NIRGraph, kind: type) -> list[str]:
    return [name for name, node in graph.nodes.items() if isinstance(node, kind)]


def _resolve(graph: nir.NIRGraph, name: str, role: str, prefix: str, edge: tuple[str, str]) -> str | None:
    """The path (relative to ``graph``) of the leaf node an edge endpoint names, or None."""
    node = graph.nodes.get(name)
    if node is not None:
        if not isinstance(node, nir.NIRGraph):
            return name
        kind = nir.Input if role == "destination" else nir.Output
        ports = _ports(node, kind)
        if len(ports) != 1:
            raise NIRExecutionError(
                f"{_graph_label(prefix)}: edge {edge} names subgraph {name!r} as {role}, but it has "
                f"{len(ports)} {kind.__name__} nodes {ports}; name one as '{name}.<node>'")
        return f"{name}.{ports[0]}"
    parts = name.split(".")
    for i in range(1, len(parts)):
        head, rest = ".".join(parts[:i]), ".".join(parts[i:])
        sub = graph.nodes.get(head)
        if isinstance(sub, nir.NIRGraph):
            inner = _resolve(sub, rest, role, f"{prefix}{head}.", edge)
            if inner is not None:
                return f"{head}.{inner}"
    return None


def _check_finite_fields(name: str, node: Any) -> None:
    """Every float field of a NIR node must be finite."""
    if not dataclasses.is_dataclass(node):
        return
    for field in dataclasses.fields(node):
        if field.name in _SHAPE_FIELDS:
            continue
        value = getattr(node, field.name, None)
        if value is None or isinstance(value, (str, bytes)):
            continue
        try:
            array = np.asarray(value)
        except Exception:  # noqa: BLE001 - a field NumPy cannot read is the builder's business
            continue
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            raise NIRExecutionError(f"field {field.name!r} has non-finite values", name, _type_name(node))


# --------------------------------------------------------------------------- executor


class NIRExecutor:
    """Runs a NIR graph step by step (see the module docstring for the conventions).

    Parameters
    ----------
    graph
        The graph to run; it is validated here and never modified.
    dtype
        ``torch.float32`` or ``torch.float64``; parameters are cast once, here.
    device
        Torch device of parameters, state and results.
    dt
        Time step; overrides ``semantics.dt`` and ``graph.metadata["dt"]`` (default :data:`DEFAULT_DT`,
        with a :class:`~mksgn.core.semantics.SemanticsWarning`).
    node_steps
        Extra or replacement builders, keyed by node class (see :data:`DEFAULT_NODE_STEPS`).
    semantics
        How the neurons step beyond what NIR states (:mod:`mksgn.core.semantics`: reset, threshold
        test, multi-spike, floor, back edges at ``t = 0``, current order); default what the graph's
        metadata states, else NIR's.

    Attributes
    ----------
    dt, discretisation
        The time step and discretisation in use.
    inputs, outputs
        Names of the top-level Input and Output nodes.
    order
        Dotted names of all (flattened) nodes in evaluation order.
    back_edges
        The cycle-closing edges, as resolved ``(source, destination)`` dotted names; they
        deliver the source's output of the previous step.
    input_shapes, output_shapes
        Per-sample shapes each node receives and produces.
    programs
        The compiled :class:`NodeProgram` of each node.

    Raises
    ------
    NIRExecutionError
        If the graph cannot be executed; the message names the node or edge at fault.
    """

    def __init__(self, graph: nir.NIRGraph, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu",
                 dt: float | None = None, node_steps: Mapping[type, NodeBuilder] | None = None,
                 semantics: Semantics | None = None) -> None:
        if not isinstance(graph, nir.NIRGraph):
            raise NIRExecutionError(f"expected a nir.NIRGraph, got {_type_name(graph)}")
        if dtype not in (torch.float32, torch.float64):
            raise NIRExecutionError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.graph = graph
        self.dtype = dtype
        self.device = torch.device(device)
        self.registry: dict[type, NodeBuilder] = {**DEFAULT_NODE_STEPS, **(node_steps or {})}
        self._dt_given = dt is not None or semantics is not None
        try:
            timestep.discretisation(graph, "graph")
            if semantics is None:
                semantics = resolve_semantics(getattr(graph, "metadata", None), dt=dt)
            elif dt is not None and dt != semantics.dt:
                semantics = dataclasses.replace(semantics, dt=float(dt))
        except (FieldError, SemanticsError) as exc:
            raise NIRExecutionError(str(exc)) from exc
        self.semantics: Semantics = semantics
        self.dt: float = float(semantics.dt)
        self.discretisation: str = semantics.discretisation

        self._flat = _FlatGraph()
        self._flatten(graph, "")
        self.inputs: tuple[str, ...] = tuple(_ports(graph, nir.Input))
        self.outputs: tuple[str, ...] = tuple(_ports(graph, nir.Output))
        for src, dst in self._flat.edges:
            if dst in self.inputs:
                raise NIRExecutionError(f"graph: edge ({src!r}, {dst!r}) leads into top-level Input {dst!r}")
        self.order, self.back_edges = self._schedule()
        self._check_cycles_have_state()
        back = set(self.back_edges)
        self._forward_sources: dict[str, list[str]] = {name: [] for name in self.order}
        self._back_sources: dict[str, list[str]] = {name: [] for name in self.order}
        for src, dst in self._flat.edges:
            (self._back_sources if (src, dst) in back else self._forward_sources)[dst].append(src)
        self.programs: dict[str, NodeProgram] = {}
        self.input_shapes: dict[str, tuple[int, ...]] = {}
        self._compile()

    # ------------------------------------------------------------------ construction

    def _describe(self, name: str) -> str:
        return f"node {name!r} ({_type_name(self._flat.nodes[name])})"

    def _builder(self, name: str, node: Any) -> NodeBuilder:
        for cls in type(node).__mro__:
            if cls in self.registry:
                return self.registry[cls]
        raise NIRExecutionError(f"node type {_type_name(node)} is not supported; supported: "
                                f"{sorted(c.__name__ for c in self.registry)}", name, _type_name(node))

    def _flatten(self, graph: nir.NIRGraph, prefix: str) -> None:
        label = _graph_label(prefix)
        nodes = getattr(graph, "nodes", None)
        if not isinstance(nodes, Mapping):
            raise NIRExecutionError(f"{label}: nodes must be a dict of name -> node")
        for kind in (nir.Input, nir.Output):
            if not _ports(graph, kind):
                raise NIRExecutionError(f"{label} has no {kind.__name__} node")
        if prefix:
            try:
                timestep.discretisation(graph, label)
                sub_dt = timestep.metadata_dt(graph, label)
            except FieldError as exc:
                raise NIRExecutionError(str(exc)) from exc
            if sub_dt is not None and not self._dt_given and not math.isclose(sub_dt, self.dt, rel_tol=1e-9):
                raise NIRExecutionError(f"{label}: metadata dt={sub_dt} differs from the graph's dt={self.dt}; "
                                        f"pass dt= to choose one")
        for name, node in nodes.items():
            full = f"{prefix}{name}"
            if not isinstance(name, str) or not name:
                raise NIRExecutionError(f"{label}: node names must be non-empty strings, got {name!r}")
            if not isinstance(node, nir.NIRGraph):
                self._builder(full, node)
                _check_finite_fields(full, node)
        for edge in graph.edges:
            if len(edge) != 2:
                raise NIRExecutionError(f"{label}: edge {edge!r} is not a (source, destination) pair")
            src, dst = (str(e) for e in edge)
            resolved = []
            for endpoint, role in ((src, "source"), (dst, "destination")):
                path = _resolve(graph, endpoint, role, prefix, (src, dst))
                if path is None:
                    raise NIRExecutionError(f"{label}: edge ({src!r}, {dst!r}) names {role} {endpoint!r}, which is "
                                            f"not a node; nodes: {sorted(nodes)}")
                resolved.append(prefix + path)
            pair = (resolved[0], resolved[1])
            if pair in self._flat.edge_set:
                raise NIRExecutionError(f"{label}: edge ({src!r}, {dst!r}) duplicates another edge")
            self._flat.edge_set.add(pair)
            self._flat.edges.append(pair)
        for name, node in nodes.items():
            full = f"{prefix}{name}"
            if isinstance(node, nir.NIRGraph):
                self._flatten(node, f"{full}.")
                outputs = _ports(node, nir.Output)
                if len(outputs) == 1:
                    self._flat.aliases[full] = f"{full}.{outputs[0]}"
            else:
                if full in self._flat.nodes:
                    raise NIRExecutionError(f"{label}: node name {full!r} clashes with a nested node's dotted name")
                self._flat.nodes[full] = node
        if not prefix:
            clashes = set(self._flat.aliases) & set(self._flat.nodes)
            if clashes:
                raise NIRExecutionError(f"graph: node names {sorted(clashes)} clash with subgraph names")

    def _schedule(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Topological order of the nodes and the back edges (DFS from the inputs)."""
        successors: dict[str, list[str]] = {name: [] for name in self._flat.nodes}
        for src, dst in self._flat.edges:
            successors[src].append(dst)
        colour = dict.fromkeys(self._flat.nodes, 0)  # 0 new, 1 on the DFS stack, 2 done
        back: set[tuple[str, str]] = set()
        postorder: list[str] = []
        for root in self.inputs:
            colour[root] = 1
            stack = [(root, iter(successors[root]))]
            while stack:
                name, pending = stack[-1]
                for nxt in pending:
                    if colour[nxt] == 0:
                        colour[nxt] = 1
                        stack.append((nxt, iter(successors[nxt])))
                        break
                    if colour[nxt] == 1:
                        back.add((name, nxt))
                else:
                    colour[name] = 2
                    postorder.append(name)
                    stack.pop()
        unreached = [name for name, c in colour.items() if c == 0]
        if unreached:
            name = unreached[0]
            raise NIRExecutionError(f"is not reachable from any top-level Input (unreachable: {unreached})",
                                    name, _type_name(self._flat.nodes[name]))
        return postorder[::-1], [edge for edge in self._flat.edges if edge in back]

    def _check_cycles_have_state(self) -> None:
        """Refuse a cycle of stateless nodes (an algebraic loop): it needs a neuron or a Delay."""
        back = set(self.back_edges)
        self.cyclic: set[str] = set()
        """Nodes on a cycle (a neuron there is ``recurrent`` for the semantics' ``by_type``)."""
        forward: dict[str, list[str]] = {name: [] for name in self._flat.nodes}
        for src, dst in self._flat.edges:
            if (src, dst) not in back:
                forward[src].append(dst)
        for src, dst in self.back_edges:
            # the cycle: dst, the nodes on forward paths from dst to src, and src
            reach, stack = {dst}, [dst]
            while stack:
                for nxt in forward[stack.pop()]:
                    if nxt not in reach:
                        reach.add(nxt)
                        stack.append(nxt)
            if src not in reach:
                continue
            cycle = [n for n in self.order if n in reach and self._reaches(n, src, forward)]
            self.cyclic.update(cycle)
            if not any(isinstance(self._flat.nodes[n], STATEFUL_TYPES) for n in cycle):
                raise NIRExecutionError(f"a cycle through {cycle} has no neuron and no Delay (an algebraic loop); "
                                        f"put a neuron or a Delay on it", src, _type_name(self._flat.nodes[src]))

    @staticmethod
    def _reaches(start: str, goal: str, forward: dict[str, list[str]]) -> bool:
        seen, stack = {start}, [start]
        while stack:
            name = stack.pop()
            if name == goal:
                return True
            for nxt in forward[name]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    def _compile(self) -> None:
        """Build every node in order, propagating shapes; check the back edges' shapes."""
        out_shapes: dict[str, tuple[int, ...]] = {}
        for name in self.order:
            node = self._flat.nodes[name]
            sources = self._forward_sources[name]
            if name in self.inputs:
                shape = declared_shape(node.input_type, "input")
                if shape is None:
                    raise NIRExecutionError("input_type declares no shape", name, _type_name(node))
                origin = "the caller's input"
            else:
                shape = out_shapes[sources[0]]
                for other in sources[1:]:
                    if out_shapes[other] != shape:
                        raise NIRExecutionError(
                            f"its inputs must have one shape to be summed, but {self._describe(sources[0])} delivers "
                            f"{shape} and {self._describe(other)} delivers {out_shapes[other]}", name, _type_name(node))
                origin = " + ".join(self._describe(s) for s in sources)
            ctx = BuildContext(name=name, node_type=_type_name(node), input_shape=tuple(shape), sources=origin,
                               dt=self.dt, dtype=self.dtype, device=self.device, semantics=self.semantics,
                               recurrent=name in self.cyclic)
            try:
                program = self._builder(name, node)(node, ctx)
            except FieldError as exc:
                raise ctx.error(str(exc)) from exc
            self.programs[name] = program
            self.input_shapes[name] = ctx.input_shape
            out_shapes[name] = tuple(int(s) for s in program.output_shape)
        for src, dst in self.back_edges:
            if out_shapes[src] != self.input_shapes[dst]:
                raise NIRExecutionError(
                    f"receives shape {self.input_shapes[dst]}, but the cycle-closing edge from {self._describe(src)} "
                    f"delivers {out_shapes[src]}", dst, _type_name(self._flat.nodes[dst]))
        self.output_shapes = out_shapes

    # ------------------------------------------------------------------ running

    def _check_inputs(self, inputs: Mapping[str, Any] | torch.Tensor) -> tuple[dict[str, torch.Tensor], int, int]:
        if not isinstance(inputs, Mapping):
            if len(self.inputs) != 1:
                raise NIRExecutionError(f"the graph has {len(self.inputs)} Input nodes {list(self.inputs)}; "
                                        f"pass a dict of name -> tensor")
            inputs = {self.inputs[0]: inputs}
        unknown = sorted(set(inputs) - set(self.inputs))
        if unknown:
            raise NIRExecutionError(f"inputs {unknown} are not Input nodes of the graph {list(self.inputs)}")
        checked: dict[str, torch.Tensor] = {}
        steps_batch: tuple[int, int] | None = None
        for name in self.inputs:
            if name not in inputs:
                raise NIRExecutionError("no input tensor given", name, "Input")
            try:
                x = torch.as_tensor(inputs[name], device=self.device)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise NIRExecutionError(f"input is not a tensor ({exc})", name, "Input") from exc
            if x.is_complex() or not (x.is_floating_point() or x.dtype in (torch.bool, torch.uint8, torch.int8,
                                                                             torch.int16, torch.int32, torch.int64)):
                raise NIRExecutionError(f"input has unsupported dtype {x.dtype}", name, "Input")
            x = x.to(self.dtype)
            shape = self.output_shapes[name]
            if x.ndim != 2 + len(shape) or tuple(x.shape[2:]) != shape:
                raise NIRExecutionError(f"input must be (T, B, *{shape}), got {tuple(x.shape)}", name, "Input")
            if steps_batch is None:
                steps_batch = (x.shape[0], x.shape[1])
            elif (x.shape[0], x.shape[1]) != steps_batch:
                raise NIRExecutionError(f"input has (T, B) = {tuple(x.shape[:2])}, but another input has "
                                        f"{steps_batch}", name, "Input")
            if x.shape[0] < 1 or x.shape[1] < 1:
                raise NIRExecutionError(f"input needs T >= 1 and B >= 1, got {tuple(x.shape)}", name, "Input")
            if not bool(torch.isfinite(x).all()):
                raise NIRExecutionError("input has non-finite values", name, "Input")
            checked[name] = x
        assert steps_batch is not None
        return checked, steps_batch[0], steps_batch[1]

    def _initial_back_values(self, back_sources: list[str], batch: int) -> dict[str, torch.Tensor]:
        """What the back edges deliver at ``t = 0``: zeros, or (``recurrent_initial = "bias"``) what their
        sources compute when every Input, neuron and Delay outputs zeros."""
        def zeros(shape: tuple[int, ...]) -> torch.Tensor:
            return torch.zeros((batch, *shape), dtype=self.dtype, device=self.device)

        if self.semantics.recurrent_initial == "zero" or not back_sources:
            return {src: zeros(self.output_shapes[src]) for src in back_sources}
        value: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name in self.order:
                node = self._flat.nodes[name]
                if name in self.inputs or isinstance(node, STATEFUL_TYPES):
                    value[name] = zeros(self.output_shapes[name])
                    continue
                x = zeros(self.input_shapes[name])
                for src in self._forward_sources[name]:
                    x = x + value[src]
                value[name] = self.programs[name].step(self.programs[name].initial_state(batch), x)[0]
        return {src: value[src] for src in back_sources}

    def run(self, inputs: Mapping[str, torch.Tensor] | torch.Tensor,
            record: bool | Collection[str] = True) -> ExecutionResult:
        """Run the graph from zero state.

        Parameters
        ----------
        inputs
            Input node name -> ``(T, B, *input_shape)`` tensor (any real dtype; cast to the
            executor's), or one tensor when the graph has exactly one Input.
        record
            Keep every node's output and the spiking nodes' membranes; if False only the
            Output nodes are kept; if a collection of node names, only those nodes (and the
            Output nodes) are kept, with their membranes. Unknown names raise.

        Returns
        -------
        ExecutionResult
            Outputs, records and membranes, each ``(T, B, *shape)``.

        Raises
        ------
        NIRExecutionError
            If an input is missing, unknown, mis-shaped or not finite.
        """
        xs, steps, batch = self._check_inputs(inputs)
        states = {name: program.initial_state(batch) for name, program in self.programs.items()}
        if isinstance(record, bool):
            kept = self.order if record else list(self.outputs)
        else:
            wanted = {self._flat.aliases.get(name, name) for name in record}
            unknown = sorted(wanted - set(self.order))
            if unknown:
                raise NIRExecutionError(f"cannot record unknown nodes {unknown}")
            kept = [name for name in self.order if name in wanted or name in self.outputs]
        traces: dict[str, list[torch.Tensor]] = {name: [] for name in kept}
        membranes: dict[str, list[torch.Tensor]] = {}
        back_sources = sorted({src for src, _ in self.back_edges})
        previous = self._initial_back_values(back_sources, batch)
        with torch.no_grad():
            for t in range(steps):
                current: dict[str, torch.Tensor] = {}
                for name in self.order:
                    if name in xs:
                        x = xs[name][t]
                    else:
                        terms = [current[s] for s in self._forward_sources[name]]
                        terms += [previous[s] for s in self._back_sources[name]]
                        x = terms[0]
                        for term in terms[1:]:
                            x = x + term
                    y, membrane = self.programs[name].step(states[name], x)
                    current[name] = y
                    if name in traces:
                        traces[name].append(y)
                    if record and membrane is not None and name in traces:
                        membranes.setdefault(name, []).append(membrane)
                previous = {src: current[src] for src in back_sources}
        records = {name: torch.stack(values) for name, values in traces.items()}
        if record:
            for alias, target in self._flat.aliases.items():
                if target in records:
                    records[alias] = records[target]
        return ExecutionResult(
            outputs={name: records[name] for name in self.outputs},
            records=records if record else {},
            membranes={name: torch.stack(values) for name, values in membranes.items()},
        )
