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
Time step and discretisation
    ``dt`` is the constructor's ``dt``, else ``graph.metadata["dt"]``, else
    :data:`DEFAULT_DT` (snnTorch's export convention). A nested graph's own ``"dt"``, if
    any, must agree with it unless the constructor's ``dt`` is given, which overrides all.
    ``metadata["discretisation"]`` (default ``"forward-euler"``) must be one of
    :data:`DISCRETISATIONS`, in every graph. Forward Euler gives ``v <- a v + b I + c``
    with coefficients computed in float64 and then cast:

    - LIF and LI: ``a = 1 - dt/tau``, ``b = r dt/tau``, ``c = v_leak dt/tau``.
    - I and IF: ``v <- v + r dt I`` (so IF, like I, integrates ``r dt`` per unit input:
      an exporter that means "add the input" must store ``r = 1/dt``).
    - CubaLI and CubaLIF: ``i <- (1 - dt/tau_syn) i + (dt/tau_syn) w_in I``, then
      ``v <- (1 - dt/tau_mem) v + (r dt/tau_mem) i + v_leak dt/tau_mem`` with the new ``i``.
    - Spiking nodes (LIF, IF, CubaLIF, Threshold) fire when ``v > v_threshold``
      (strictly), and LIF, IF, CubaLIF then set ``v = v_reset``. Their output is the spike
      (0 or 1 in the run's dtype); ``ExecutionResult.membranes`` holds ``v`` *before* the
      reset (for Threshold: its input).

    Neuron, Threshold and Delay parameters are elementwise: each must broadcast to the
    input shape without changing it (a scalar parameter applies to every element).
Affine and Linear
    They act on the **last** axis, like ``torch.nn.functional.linear``
    (``y = x W^T + b``), which is nirtorch's convention and goes beyond NIR's 1-D
    statement: a ``(N, in)`` input gives ``(N, out)``. Only 2-D weights are supported.
Scale
    Elementwise product with the scale: if the scale has the input's shape it multiplies
    element by element; else a 1-D scale of length ``C`` on an input of two or more axes
    whose first axis has length ``C`` (``(C, L)`` or ``(C, H, W)``) multiplies per channel
    (this wins for a square ``(C, C)`` input); else NumPy broadcasting, aligned on the last
    axis, that must not change the input's shape.
Convolutions and pooling
    Conv1d and Conv2d take ``(C, L)`` and ``(C, H, W)`` inputs and run
    ``torch.nn.functional.conv1d``/``conv2d`` with the node's stride, padding (integers or
    ``"same"``/``"valid"``; ``"same"`` needs stride 1), dilation, groups and bias. The input
    channel count must be ``weight.shape[1] * groups``; ``input_shape``, when given, must
    match the spatial shape. SumPool2d is an exact windowed sum (zero padding; a missing
    stride means the kernel size) and AvgPool2d is ``torch.nn.functional.avg_pool2d``
    (zero padding counted in the average, as torch's default ``count_include_pad``).
Flatten
    ``start_dim`` and ``end_dim`` index the per-sample shape (the batch axis is not
    counted); negative values count from the end.
Delay
    ``delay`` is in time units; each element is delayed by ``round(delay/dt)`` steps (per
    element when ``delay`` is an array), zeros before the first input arrives. A delay
    that is negative or not a whole number of steps (to 1e-6 of a step) is an error.

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
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F

from mksgn.errors import MksgnError

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

DEFAULT_DT: float = 1e-4
"""Time step used when neither the constructor nor ``graph.metadata`` give ``"dt"``."""

DISCRETISATIONS: tuple[str, ...] = ("forward-euler",)
"""The values of ``graph.metadata["discretisation"]`` this executor implements."""

_DELAY_TOLERANCE = 1e-6  # how far (in steps) a delay may be from a whole number of steps
_SHAPE_FIELDS = frozenset({"input_type", "output_type", "metadata", "input_shape"})


class NIRExecutionError(MksgnError, ValueError):
    """A NIR graph, or the inputs given to it, cannot be executed.

    Parameters
    ----------
    message
        What is wrong.
    node
        The (dotted) name of the node at fault, if any; it prefixes the message.
    node_type
        The NIR type of that node (for example ``"LIF"``).
    """

    def __init__(self, message: str, node: str | None = None, node_type: str | None = None) -> None:
        self.reason = message
        self.node = node
        self.node_type = node_type
        if node is not None:
            where = f"node {node!r}" + (f" ({node_type})" if node_type else "")
            message = f"{where}: {message}"
        super().__init__(message)


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


State = dict[str, Any]
StepFunction = Callable[[State, torch.Tensor], "tuple[torch.Tensor, torch.Tensor | None]"]


def _no_state(batch: int) -> State:
    return {}


@dataclass(frozen=True)
class NodeProgram:
    """A node compiled for execution.

    Attributes
    ----------
    output_shape
        Per-sample output shape.
    step
        ``step(state, x) -> (y, membrane)``: one time step on the summed input ``x`` of
        shape ``(B, *input_shape)``; it may update ``state`` in place. ``membrane`` is the
        membrane to record (spiking nodes) or ``None``.
    initial_state
        ``initial_state(batch) -> state``: a fresh state, called at the start of each run.
    """

    output_shape: tuple[int, ...]
    step: StepFunction
    initial_state: Callable[[int], State] = _no_state


@dataclass(frozen=True)
class BuildContext:
    """What a builder knows about the node it compiles.

    Attributes
    ----------
    name
        Dotted node name.
    node_type
        NIR type name of the node.
    input_shape
        Per-sample shape of the (summed) input the node receives.
    sources
        Who delivers that input, for messages (for example ``"node 'lif' (LIF)"``).
    dt
        Time step.
    dtype, device
        Where the parameters must live.
    """

    name: str
    node_type: str
    input_shape: tuple[int, ...]
    sources: str
    dt: float
    dtype: torch.dtype
    device: torch.device

    def error(self, message: str) -> NIRExecutionError:
        """An error naming this node."""
        return NIRExecutionError(message, self.name, self.node_type)

    def mismatch(self, expectation: str) -> NIRExecutionError:
        """An input-shape error naming this node and the nodes feeding it."""
        return self.error(f"{expectation}, but {self.sources} delivers shape {self.input_shape}")

    def param(self, node: Any, field: str, *, elementwise: bool = False, positive: bool = False) -> np.ndarray:
        """``node.<field>`` as a finite float64 array.

        Parameters
        ----------
        node
            The NIR node.
        field
            Its field name.
        elementwise
            Require the parameter to broadcast to the input shape without changing it.
        positive
            Require every value to be > 0.
        """
        value = getattr(node, field, None)
        if value is None:
            raise self.error(f"field {field!r} is missing")
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise self.error(f"field {field!r} is not numeric ({exc})") from None
        if not np.all(np.isfinite(array)):
            raise self.error(f"field {field!r} has non-finite values")
        if positive and not np.all(array > 0):
            raise self.error(f"field {field!r} must be > 0, got min {array.min()}")
        if elementwise and not _broadcasts_to(array.shape, self.input_shape):
            raise self.mismatch(f"field {field!r} has shape {array.shape}, which must broadcast to the input shape")
        return array

    def tensor(self, array: np.ndarray, what: str = "coefficient") -> torch.Tensor:
        """Cast a float64 array to the run's dtype and device (checking it stays finite)."""
        out = torch.tensor(np.array(array, dtype=np.float64), dtype=self.dtype, device=self.device)
        if not bool(torch.isfinite(out).all()):
            raise self.error(f"{what} is not finite in {self.dtype}")
        return out

    def zeros(self, batch: int, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """A zero state of shape ``(batch, *shape)`` (default: the input shape)."""
        shape = self.input_shape if shape is None else shape
        return torch.zeros((batch, *shape), dtype=self.dtype, device=self.device)


NodeBuilder = Callable[[Any, BuildContext], NodeProgram]
"""``builder(node, ctx) -> NodeProgram``: compiles one node (see :data:`DEFAULT_NODE_STEPS`)."""


# --------------------------------------------------------------------------- helpers


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return tuple(np.broadcast_shapes(tuple(shape), tuple(target))) == tuple(target)
    except ValueError:
        return False


def _declared_shape(types: Any, key: str) -> tuple[int, ...] | None:
    """The shape stored in a NIR type dict (``{"input": array}``), or None if undeclared."""
    if not isinstance(types, Mapping):
        return None
    value = types.get(key)
    if value is None:
        return None
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


def _as_text(value: Any) -> str | None:
    """A string stored as str, bytes or a 0-d NumPy array, else None."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf8")
    if isinstance(value, str):
        return str(value)
    return None


def _int_scalar(ctx: BuildContext, value: Any, field: str) -> int:
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "iuf" or float(array.reshape(-1)[0]) != int(array.reshape(-1)[0]):
        raise ctx.error(f"field {field!r} must be an integer, got {value!r}")
    return int(array.reshape(-1)[0])


def _int_tuple(ctx: BuildContext, value: Any, n: int, field: str) -> tuple[int, ...]:
    """An int, or a sequence of 1 or ``n`` ints, as an ``n``-tuple."""
    array = np.asarray(value)
    flat = array.reshape(-1)
    if array.dtype.kind not in "iuf" or flat.size not in (1, n) or not np.all(flat == np.round(flat)):
        raise ctx.error(f"field {field!r} must be an integer or {n} integers, got {value!r}")
    values = tuple(int(v) for v in flat)
    return values * n if len(values) == 1 else values


def _padding(ctx: BuildContext, value: Any, n: int) -> tuple[int, ...] | str:
    text = _as_text(value)
    if text is not None:
        if text.lower() == "valid":
            return (0,) * n
        if text.lower() == "same":
            return "same"
        raise ctx.error(f"padding must be an integer, {n} integers, 'same' or 'valid', got {text!r}")
    return _int_tuple(ctx, value, n, "padding")


def _window_output(ctx: BuildContext, size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
                   padding: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...]:
    if any(v < 1 for v in stride + dilation) or any(p < 0 for p in padding):
        raise ctx.error(f"stride {stride} and dilation {dilation} must be >= 1 and padding {padding} >= 0")
    out = tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                for s, k, st, p, d in zip(size, kernel, stride, padding, dilation))
    if any(o < 1 for o in out):
        raise ctx.mismatch(f"a window of {kernel} (stride {stride}, padding {padding}, dilation {dilation}) "
                           f"gives an empty output {out}")
    return out


def _neuron_coefficients(ctx: BuildContext, tau: np.ndarray, r: np.ndarray, v_leak: np.ndarray
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward-Euler ``(a, b, c)`` of ``tau dv/dt = v_leak - v + r I``, in the run's dtype."""
    dt = ctx.dt
    return (ctx.tensor(1.0 - dt / tau, "a = 1 - dt/tau"), ctx.tensor(r * dt / tau, "b = r*dt/tau"),
            ctx.tensor(v_leak * dt / tau, "c = v_leak*dt/tau"))


# --------------------------------------------------------------------------- builders


def _build_input(node: nir.Input, ctx: BuildContext) -> NodeProgram:
    declared = _declared_shape(node.input_type, "input")
    if declared is None:
        raise ctx.error("input_type declares no shape")
    if declared != ctx.input_shape:
        raise ctx.mismatch(f"input_type declares shape {declared}")
    return NodeProgram(ctx.input_shape, lambda state, x: (x, None))


def _build_output(node: nir.Output, ctx: BuildContext) -> NodeProgram:
    declared = _declared_shape(node.output_type, "output")
    if declared is not None and declared != ctx.input_shape:
        raise ctx.mismatch(f"output_type declares shape {declared}")
    return NodeProgram(ctx.input_shape, lambda state, x: (x, None))


def _linear_program(ctx: BuildContext, weight: np.ndarray, bias: np.ndarray | None) -> NodeProgram:
    if weight.ndim != 2:
        raise ctx.error(f"only 2-D weights are supported, got shape {weight.shape}")
    n_out, n_in = weight.shape
    if len(ctx.input_shape) < 1 or ctx.input_shape[-1] != n_in:
        raise ctx.mismatch(f"weight {weight.shape} needs an input whose last axis has length {n_in}")
    if bias is not None:
        if not _broadcasts_to(bias.shape, (n_out,)):
            raise ctx.error(f"bias shape {bias.shape} does not match the {n_out} outputs")
        bias = np.broadcast_to(bias, (n_out,))
    w = ctx.tensor(weight, "weight")
    b = None if bias is None else ctx.tensor(bias, "bias")
    return NodeProgram(ctx.input_shape[:-1] + (n_out,), lambda state, x: (F.linear(x, w, b), None))


def _build_affine(node: nir.Affine, ctx: BuildContext) -> NodeProgram:
    return _linear_program(ctx, ctx.param(node, "weight"), ctx.param(node, "bias"))


def _build_linear(node: nir.Linear, ctx: BuildContext) -> NodeProgram:
    return _linear_program(ctx, ctx.param(node, "weight"), None)


def _build_scale(node: nir.Scale, ctx: BuildContext) -> NodeProgram:
    scale = ctx.param(node, "scale")
    shape = ctx.input_shape
    if scale.shape != shape and scale.ndim == 1 and len(shape) >= 2 and shape[0] == scale.shape[0]:
        scale = scale.reshape((shape[0],) + (1,) * (len(shape) - 1))  # per channel
    elif not _broadcasts_to(scale.shape, shape):
        raise ctx.mismatch(f"scale of shape {scale.shape} must equal the input shape, be per channel "
                           f"or broadcast to it")
    s = ctx.tensor(scale, "scale")
    return NodeProgram(shape, lambda state, x: (x * s, None))


def _conv_program(node: Any, ctx: BuildContext, nd: int) -> NodeProgram:
    weight = ctx.param(node, "weight")
    if weight.ndim != nd + 2:
        raise ctx.error(f"weight must have {nd + 2} axes (out, in/groups, kernel...), got shape {weight.shape}")
    groups = _int_scalar(ctx, node.groups, "groups")
    n_out, per_group = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    if groups < 1 or n_out % groups:
        raise ctx.error(f"groups={groups} must be >= 1 and divide the {n_out} output channels")
    n_in = per_group * groups
    declared = None if node.input_shape is None else _int_tuple(ctx, node.input_shape, nd, "input_shape")
    wanted = f"({n_in}, {', '.join(map(str, declared)) if declared else '...'})"
    shape = ctx.input_shape
    if len(shape) != nd + 1 or shape[0] != n_in or (declared is not None and shape[1:] != declared):
        raise ctx.mismatch(f"expects input of shape {wanted} (weight {weight.shape}, groups={groups}"
                           + (f", input_shape {declared})" if declared else ")"))
    stride = _int_tuple(ctx, node.stride, nd, "stride")
    dilation = _int_tuple(ctx, node.dilation, nd, "dilation")
    padding = _padding(ctx, node.padding, nd)
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ctx.error(f"padding 'same' needs stride 1, got {stride}")
        spatial = shape[1:]
    else:
        spatial = _window_output(ctx, shape[1:], kernel, stride, padding, dilation)
    bias = getattr(node, "bias", None)
    bias = np.zeros(n_out) if bias is None else ctx.param(node, "bias")
    if not _broadcasts_to(bias.shape, (n_out,)):
        raise ctx.error(f"bias shape {bias.shape} does not match the {n_out} output channels")
    w = ctx.tensor(weight, "weight")
    b = ctx.tensor(np.broadcast_to(bias, (n_out,)), "bias")
    conv = F.conv1d if nd == 1 else F.conv2d

    def step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return conv(x, w, b, stride, padding, dilation, groups), None

    return NodeProgram((n_out, *spatial), step)


def _build_conv1d(node: nir.Conv1d, ctx: BuildContext) -> NodeProgram:
    return _conv_program(node, ctx, 1)


def _build_conv2d(node: nir.Conv2d, ctx: BuildContext) -> NodeProgram:
    return _conv_program(node, ctx, 2)


def _pool_geometry(node: Any, ctx: BuildContext) -> tuple[tuple[int, ...], ...]:
    if len(ctx.input_shape) != 3:
        raise ctx.mismatch("expects a (C, H, W) input")
    kernel = _int_tuple(ctx, node.kernel_size, 2, "kernel_size")
    stride = kernel if node.stride is None else _int_tuple(ctx, node.stride, 2, "stride")
    padding = (0, 0) if node.padding is None else _int_tuple(ctx, node.padding, 2, "padding")
    if any(k < 1 for k in kernel):
        raise ctx.error(f"kernel_size {kernel} must be >= 1")
    spatial = _window_output(ctx, ctx.input_shape[1:], kernel, stride, padding, (1, 1))
    return kernel, stride, padding, (ctx.input_shape[0], *spatial)


def _build_sumpool2d(node: nir.SumPool2d, ctx: BuildContext) -> NodeProgram:
    kernel, stride, padding, out_shape = _pool_geometry(node, ctx)
    channels = ctx.input_shape[0]
    ones = torch.ones((channels, 1, *kernel), dtype=ctx.dtype, device=ctx.device)

    def step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return F.conv2d(x, ones, None, stride, padding, 1, channels), None

    return NodeProgram(out_shape, step)


def _build_avgpool2d(node: nir.AvgPool2d, ctx: BuildContext) -> NodeProgram:
    kernel, stride, padding, out_shape = _pool_geometry(node, ctx)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ctx.error(f"padding {padding} must be at most half the kernel_size {kernel}")
    return NodeProgram(out_shape, lambda state, x: (F.avg_pool2d(x, kernel, stride, padding), None))


def _build_flatten(node: nir.Flatten, ctx: BuildContext) -> NodeProgram:
    shape = ctx.input_shape
    declared = _declared_shape(node.input_type, "input")
    if declared is not None and declared != shape:
        raise ctx.mismatch(f"input_type declares shape {declared}")
    nd = len(shape)
    start = _int_scalar(ctx, node.start_dim, "start_dim")
    end = _int_scalar(ctx, node.end_dim, "end_dim")
    start, end = (start + nd if start < 0 else start), (end + nd if end < 0 else end)
    if not 0 <= start <= end < nd:
        raise ctx.mismatch(f"start_dim={node.start_dim}, end_dim={node.end_dim} must index the per-sample shape "
                           f"(no batch axis) with start <= end")
    out_shape = shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
    return NodeProgram(out_shape, lambda state, x: (x.reshape((x.shape[0], *out_shape)), None))


def _build_threshold(node: nir.Threshold, ctx: BuildContext) -> NodeProgram:
    threshold = ctx.tensor(ctx.param(node, "threshold", elementwise=True), "threshold")

    def step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x > threshold).to(ctx.dtype), x

    return NodeProgram(ctx.input_shape, step)


def _build_delay(node: nir.Delay, ctx: BuildContext) -> NodeProgram:
    delay = ctx.param(node, "delay", elementwise=True)
    exact = delay / ctx.dt
    steps = np.round(exact)
    if np.any(steps < 0) or np.any(np.abs(exact - steps) > _DELAY_TOLERANCE):
        raise ctx.error(f"delay must be a non-negative whole number of steps of dt={ctx.dt}, "
                        f"got {np.unique(exact)[:5]} steps")
    size = int(steps.max(initial=0)) + 1  # ring buffer slots
    shape = ctx.input_shape
    lag = torch.as_tensor(np.broadcast_to(steps, shape).astype(np.int64), device=ctx.device)

    def initial_state(batch: int) -> State:
        return {"t": 0, "buffer": torch.zeros((size, batch, *shape), dtype=ctx.dtype, device=ctx.device)}

    def step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        buffer, pos = state["buffer"], state["t"] % size
        buffer[pos] = x
        index = ((pos - lag) % size).expand(1, x.shape[0], *shape)
        state["t"] += 1
        return torch.gather(buffer, 0, index)[0], None

    return NodeProgram(shape, step, initial_state)


def _build_i(node: nir.I, ctx: BuildContext) -> NodeProgram:
    gain = ctx.tensor(ctx.param(node, "r", elementwise=True) * ctx.dt, "r*dt")

    def step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        state["v"] = state["v"] + gain * x
        return state["v"], None

    return NodeProgram(ctx.input_shape, step, lambda batch: {"v": ctx.zeros(batch)})


def _build_if(node: nir.IF, ctx: BuildContext) -> NodeProgram:
    gain = ctx.tensor(ctx.param(node, "r", elementwise=True) * ctx.dt, "r*dt")
    threshold = ctx.tensor(ctx.param(node, "v_threshold", elementwise=True), "v_threshold")
    reset = ctx.tensor(ctx.param(node, "v_reset", elementwise=True), "v_reset")

    def step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = state["v"] + gain * x
        spike = v > threshold
        state["v"] = torch.where(spike, reset, v)
        return spike.to(ctx.dtype), v

    return NodeProgram(ctx.input_shape, step, lambda batch: {"v": ctx.zeros(batch)})


def _build_li(node: nir.LI, ctx: BuildContext) -> NodeProgram:
    a, b, c = _neuron_coefficients(ctx, ctx.param(node, "tau", elementwise=True, positive=True),
                                   ctx.param(node, "r", elementwise=True), ctx.param(node, "v_leak", elementwise=True))

    def step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        state["v"] = a * state["v"] + b * x + c
        return state["v"], None

    return NodeProgram(ctx.input_shape, step, lambda batch: {"v": ctx.zeros(batch)})


def _build_lif(node: nir.LIF, ctx: BuildContext) -> NodeProgram:
    a, b, c = _neuron_coefficients(ctx, ctx.param(node, "tau", elementwise=True, positive=True),
                                   ctx.param(node, "r", elementwise=True), ctx.param(node, "v_leak", elementwise=True))
    threshold = ctx.tensor(ctx.param(node, "v_threshold", elementwise=True), "v_threshold")
    reset = ctx.tensor(ctx.param(node, "v_reset", elementwise=True), "v_reset")

    def step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = a * state["v"] + b * x + c
        spike = v > threshold
        state["v"] = torch.where(spike, reset, v)
        return spike.to(ctx.dtype), v

    return NodeProgram(ctx.input_shape, step, lambda batch: {"v": ctx.zeros(batch)})


def _cuba_coefficients(node: Any, ctx: BuildContext) -> tuple[torch.Tensor, ...]:
    tau_syn = ctx.param(node, "tau_syn", elementwise=True, positive=True)
    w_in = ctx.param(node, "w_in", elementwise=True)
    a_syn = ctx.tensor(1.0 - ctx.dt / tau_syn, "1 - dt/tau_syn")
    b_syn = ctx.tensor(ctx.dt / tau_syn * w_in, "dt/tau_syn*w_in")
    a, b, c = _neuron_coefficients(ctx, ctx.param(node, "tau_mem", elementwise=True, positive=True),
                                   ctx.param(node, "r", elementwise=True), ctx.param(node, "v_leak", elementwise=True))
    return a_syn, b_syn, a, b, c


def _cuba_state(ctx: BuildContext) -> Callable[[int], State]:
    return lambda batch: {"i": ctx.zeros(batch), "v": ctx.zeros(batch)}


def _build_cubali(node: nir.CubaLI, ctx: BuildContext) -> NodeProgram:
    a_syn, b_syn, a, b, c = _cuba_coefficients(node, ctx)

    def step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        state["i"] = a_syn * state["i"] + b_syn * x
        state["v"] = a * state["v"] + b * state["i"] + c
        return state["v"], None

    return NodeProgram(ctx.input_shape, step, _cuba_state(ctx))


def _build_cubalif(node: nir.CubaLIF, ctx: BuildContext) -> NodeProgram:
    a_syn, b_syn, a, b, c = _cuba_coefficients(node, ctx)
    threshold = ctx.tensor(ctx.param(node, "v_threshold", elementwise=True), "v_threshold")
    reset = ctx.tensor(ctx.param(node, "v_reset", elementwise=True), "v_reset")

    def step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state["i"] = a_syn * state["i"] + b_syn * x
        v = a * state["v"] + b * state["i"] + c
        spike = v > threshold
        state["v"] = torch.where(spike, reset, v)
        return spike.to(ctx.dtype), v

    return NodeProgram(ctx.input_shape, step, _cuba_state(ctx))


STATEFUL_TYPES: tuple[type, ...] = (nir.I, nir.IF, nir.LI, nir.LIF, nir.CubaLI, nir.CubaLIF, nir.Delay)
"""Node types with memory: a cycle must pass through one of them."""

DEFAULT_NODE_STEPS: Mapping[type, NodeBuilder] = MappingProxyType({
    nir.Input: _build_input,
    nir.Output: _build_output,
    nir.Affine: _build_affine,
    nir.Linear: _build_linear,
    nir.Scale: _build_scale,
    nir.Conv1d: _build_conv1d,
    nir.Conv2d: _build_conv2d,
    nir.SumPool2d: _build_sumpool2d,
    nir.AvgPool2d: _build_avgpool2d,
    nir.Flatten: _build_flatten,
    nir.Threshold: _build_threshold,
    nir.Delay: _build_delay,
    nir.I: _build_i,
    nir.IF: _build_if,
    nir.LI: _build_li,
    nir.LIF: _build_lif,
    nir.CubaLI: _build_cubali,
    nir.CubaLIF: _build_cubalif,
})
"""Builder per NIR node class (read-only; extend it with ``NIRExecutor(node_steps=...)``)."""

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


def _graph_metadata(graph: nir.NIRGraph) -> Mapping[str, Any]:
    metadata = getattr(graph, "metadata", None)
    return metadata if isinstance(metadata, Mapping) else {}


def _discretisation(graph: nir.NIRGraph, label: str) -> str:
    value = _graph_metadata(graph).get("discretisation", DISCRETISATIONS[0])
    text = _as_text(value)
    if text not in DISCRETISATIONS:
        raise NIRExecutionError(f"{label}: metadata discretisation {value!r} is not supported; "
                                f"supported: {list(DISCRETISATIONS)}")
    return text


def _metadata_dt(graph: nir.NIRGraph, label: str) -> float | None:
    value = _graph_metadata(graph).get("dt")
    if value is None:
        return None
    try:
        dt = float(np.asarray(value, dtype=np.float64).reshape(-1)[0]) if np.size(value) == 1 else math.nan
    except (TypeError, ValueError):
        dt = math.nan
    if not (math.isfinite(dt) and dt > 0):
        raise NIRExecutionError(f"{label}: metadata dt {value!r} must be a finite number > 0")
    return dt


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
        Time step; overrides ``graph.metadata["dt"]`` (default :data:`DEFAULT_DT`).
    node_steps
        Extra or replacement builders, keyed by node class (see :data:`DEFAULT_NODE_STEPS`).

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
                 dt: float | None = None, node_steps: Mapping[type, NodeBuilder] | None = None) -> None:
        if not isinstance(graph, nir.NIRGraph):
            raise NIRExecutionError(f"expected a nir.NIRGraph, got {_type_name(graph)}")
        if dtype not in (torch.float32, torch.float64):
            raise NIRExecutionError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.graph = graph
        self.dtype = dtype
        self.device = torch.device(device)
        self.registry: dict[type, NodeBuilder] = {**DEFAULT_NODE_STEPS, **(node_steps or {})}
        self.discretisation = _discretisation(graph, "graph")
        if dt is not None:
            dt = float(dt)
            if not (math.isfinite(dt) and dt > 0):
                raise NIRExecutionError(f"dt must be a finite number > 0, got {dt}")
        self._dt_given = dt is not None
        graph_dt = _metadata_dt(graph, "graph")
        self.dt: float = dt if dt is not None else (graph_dt if graph_dt is not None else DEFAULT_DT)

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
            _discretisation(graph, label)
            sub_dt = _metadata_dt(graph, label)
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
                shape = _declared_shape(node.input_type, "input")
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
                               dt=self.dt, dtype=self.dtype, device=self.device)
            program = self._builder(name, node)(node, ctx)
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
                raise NIRExecutionError(f"input is not a tensor ({exc})", name, "Input") from None
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
        previous = {src: torch.zeros((batch, *self.output_shapes[src]), dtype=self.dtype, device=self.device)
                    for src in back_sources}
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
