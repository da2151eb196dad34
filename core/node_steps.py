"""What each NIR node type computes in one time step: a registry of small builders.

The reference executor (:mod:`mksgn.core.executor`) compiles every node of a graph with the
builder registered for its class in :data:`DEFAULT_NODE_STEPS`; ``NIRExecutor(graph,
node_steps={MyNode: builder})`` adds or overrides entries. A builder receives the node and a
:class:`BuildContext` (its input shape, ``dt``, dtype) and returns a :class:`NodeProgram`
(output shape, initial state, step function). Fields are read with :mod:`mksgn.core.fields`,
discretised with :mod:`mksgn.core.timestep`, and neurons step with :mod:`mksgn.core.neuron`.

Every signal is ``(B, *shape)`` within a step, ``shape`` the per-sample shape NIR types describe.

Neurons (forward Euler, see :mod:`mksgn.core.timestep`)
    LIF and LI ``v <- a v + b I + c``; I and IF ``v <- v + r dt I``; CubaLI and CubaLIF
    first ``i <- a_syn i + b_syn I``, then the LIF update with ``i``. Spiking nodes (LIF, IF,
    CubaLIF) fire and reset as the graph's semantics say (:mod:`mksgn.core.semantics`; NIR's
    reading: fire when ``v > v_threshold``, then ``v = v_reset``); Threshold fires when its input
    is ``> threshold``. Their output is the spike count (0 or 1, or more with multi-spike, in the
    run's dtype); the recorded membrane is ``v`` *before* the reset (for Threshold: its input). Neuron, Threshold and
    Delay parameters are elementwise: each must broadcast to the input shape without
    changing it (a scalar parameter applies to every element).
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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F

from mksgn.core import fields, timestep
from mksgn.core.neuron import CurrentParams, LeakyParams, current_step, lif_membrane
from mksgn.core.spike_rules import SpikeRule, apply_pending_reset, reset_membrane, spike_count
from mksgn.core.semantics import NeuronRule, Semantics
from mksgn.errors import MksgnError

_DELAY_TOLERANCE = 1e-6  # how far (in steps) a delay may be from a whole number of steps


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
    semantics
        The graph's neuron semantics (:mod:`mksgn.core.semantics`).
    recurrent
        Whether the node lies on a cycle.
    """

    name: str
    node_type: str
    input_shape: tuple[int, ...]
    sources: str
    dt: float
    dtype: torch.dtype
    device: torch.device
    semantics: Semantics = Semantics()
    recurrent: bool = False

    @property
    def rule(self) -> NeuronRule:
        """How a neuron of this node's type resets and spikes (:meth:`~mksgn.core.semantics.Semantics.for_type`)."""
        return self.semantics.for_type(self.node_type, self.recurrent)

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
            raise self.error(f"field {field!r} is not numeric ({exc})") from exc
        if not np.all(np.isfinite(array)):
            raise self.error(f"field {field!r} has non-finite values")
        if positive and not np.all(array > 0):
            raise self.error(f"field {field!r} must be > 0, got min {array.min()}")
        if elementwise and not fields.broadcasts_to(array.shape, self.input_shape):
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


def _leaky(ctx: BuildContext, node: Any, tau_field: str = "tau", threshold: bool = True) -> LeakyParams:
    """The LIF coefficients of ``node`` (:func:`mksgn.core.timestep.leaky_coefficients`), cast."""
    a, b, c = timestep.leaky_coefficients(ctx.param(node, tau_field, elementwise=True, positive=True),
                                          ctx.param(node, "r", elementwise=True),
                                          ctx.param(node, "v_leak", elementwise=True), ctx.dt,
                                          ctx.semantics.discretisation)
    return LeakyParams(ctx.tensor(a, "a = 1 - dt/tau"), ctx.tensor(b, "b = r*dt/tau"),
                       ctx.tensor(c, "c = v_leak*dt/tau"), *(_firing(ctx, node) if threshold else ()))


def _firing(ctx: BuildContext, node: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A spiking node's ``(threshold, reset)``."""
    return (ctx.tensor(ctx.param(node, "v_threshold", elementwise=True), "v_threshold"),
            ctx.tensor(ctx.param(node, "v_reset", elementwise=True), "v_reset"))


def _neuron_program(ctx: BuildContext, params: LeakyParams, current: CurrentParams | None = None) -> NodeProgram:
    """A neuron node: :func:`~mksgn.core.neuron.lif_membrane`, then spikes and reset as the semantics
    say (:class:`~mksgn.core.spike_rules.SpikeRule`), after :func:`~mksgn.core.neuron.current_step` for a
    current-based one."""
    rule = ctx.rule
    spiking = params.threshold is not None
    spike = SpikeRule(params.threshold, rule.reset, params.reset, rule.threshold, rule.spikes == "multi",
                      rule.v_min) if spiking else None
    delayed = spike is not None and spike.delayed

    def step(state: State, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if current is not None:
            x = state["i"] = current_step(x, state["i"], current)
        v = lif_membrane(x, state["v"], params)
        if spike is None:
            state["v"] = v
            return v, None
        if delayed:
            v = apply_pending_reset(v, state["fired"], spike)
        spikes = spike_count(v, spike)
        state["v"] = reset_membrane(v, spikes, spike)
        if delayed:
            state["fired"] = spikes
        return spikes.to(ctx.dtype), v

    def initial_state(batch: int) -> State:
        state = {"v": ctx.zeros(batch)}
        if current is not None:
            state["i"] = ctx.zeros(batch)
        if delayed:
            state["fired"] = ctx.zeros(batch)
        return state

    return NodeProgram(ctx.input_shape, step, initial_state)


# --------------------------------------------------------------------------- builders


def _build_input(node: nir.Input, ctx: BuildContext) -> NodeProgram:
    declared = fields.declared_shape(node.input_type, "input")
    if declared is None:
        raise ctx.error("input_type declares no shape")
    if declared != ctx.input_shape:
        raise ctx.mismatch(f"input_type declares shape {declared}")
    return NodeProgram(ctx.input_shape, lambda state, x: (x, None))


def _build_output(node: nir.Output, ctx: BuildContext) -> NodeProgram:
    declared = fields.declared_shape(node.output_type, "output")
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
        if not fields.broadcasts_to(bias.shape, (n_out,)):
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
    elif not fields.broadcasts_to(scale.shape, shape):
        raise ctx.mismatch(f"scale of shape {scale.shape} must equal the input shape, be per channel "
                           f"or broadcast to it")
    s = ctx.tensor(scale, "scale")
    return NodeProgram(shape, lambda state, x: (x * s, None))


def _conv_program(node: Any, ctx: BuildContext, nd: int) -> NodeProgram:
    weight = ctx.param(node, "weight")
    if weight.ndim != nd + 2:
        raise ctx.error(f"weight must have {nd + 2} axes (out, in/groups, kernel...), got shape {weight.shape}")
    groups = fields.int_scalar(node.groups, "groups")
    n_out, per_group = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    if groups < 1 or n_out % groups:
        raise ctx.error(f"groups={groups} must be >= 1 and divide the {n_out} output channels")
    n_in = per_group * groups
    declared = None if node.input_shape is None else fields.int_tuple(node.input_shape, nd, "input_shape")
    wanted = f"({n_in}, {', '.join(map(str, declared)) if declared else '...'})"
    shape = ctx.input_shape
    if len(shape) != nd + 1 or shape[0] != n_in or (declared is not None and shape[1:] != declared):
        raise ctx.mismatch(f"expects input of shape {wanted} (weight {weight.shape}, groups={groups}"
                           + (f", input_shape {declared})" if declared else ")"))
    stride = fields.int_tuple(node.stride, nd, "stride")
    dilation = fields.int_tuple(node.dilation, nd, "dilation")
    padding = fields.padding(node.padding, nd)
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ctx.error(f"padding 'same' needs stride 1, got {stride}")
        spatial = shape[1:]
    else:
        spatial = _window_output(ctx, shape[1:], kernel, stride, padding, dilation)
    bias = getattr(node, "bias", None)
    bias = np.zeros(n_out) if bias is None else ctx.param(node, "bias")
    if not fields.broadcasts_to(bias.shape, (n_out,)):
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
    kernel = fields.int_tuple(node.kernel_size, 2, "kernel_size")
    stride = kernel if node.stride is None else fields.int_tuple(node.stride, 2, "stride")
    padding = (0, 0) if node.padding is None else fields.int_tuple(node.padding, 2, "padding")
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
    declared = fields.declared_shape(node.input_type, "input")
    if declared is not None and declared != shape:
        raise ctx.mismatch(f"input_type declares shape {declared}")
    nd = len(shape)
    start = fields.int_scalar(node.start_dim, "start_dim")
    end = fields.int_scalar(node.end_dim, "end_dim")
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
    gain = ctx.tensor(timestep.integrator_gain(ctx.param(node, "r", elementwise=True), ctx.dt), "r*dt")
    return _neuron_program(ctx, LeakyParams(b=gain))


def _build_if(node: nir.IF, ctx: BuildContext) -> NodeProgram:
    gain = ctx.tensor(timestep.integrator_gain(ctx.param(node, "r", elementwise=True), ctx.dt), "r*dt")
    return _neuron_program(ctx, LeakyParams(1.0, gain, None, *_firing(ctx, node)))


def _build_li(node: nir.LI, ctx: BuildContext) -> NodeProgram:
    return _neuron_program(ctx, _leaky(ctx, node, threshold=False))


def _build_lif(node: nir.LIF, ctx: BuildContext) -> NodeProgram:
    return _neuron_program(ctx, _leaky(ctx, node))


def _current(node: Any, ctx: BuildContext) -> CurrentParams:
    a_syn, b_syn = timestep.synaptic_coefficients(ctx.param(node, "tau_syn", elementwise=True, positive=True),
                                                  ctx.param(node, "w_in", elementwise=True), ctx.dt,
                                                  ctx.semantics.discretisation, ctx.rule.current_input == "jump")
    return CurrentParams(ctx.tensor(a_syn, "1 - dt/tau_syn"), ctx.tensor(b_syn, "dt/tau_syn*w_in"))


def _build_cubali(node: nir.CubaLI, ctx: BuildContext) -> NodeProgram:
    current = _current(node, ctx)
    return _neuron_program(ctx, _leaky(ctx, node, "tau_mem", threshold=False), current)


def _build_cubalif(node: nir.CubaLIF, ctx: BuildContext) -> NodeProgram:
    current = _current(node, ctx)
    return _neuron_program(ctx, _leaky(ctx, node, "tau_mem"), current)


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
