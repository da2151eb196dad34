"""A synapse graph (float or quantised) as Lava processes, latency-aligned, and run.

Mapping: every population and synapse becomes the Lava process its kind builds
(:meth:`~mksgn.core.kinds.base.SynapseKind.lava_process`, :mod:`mksgn.core.kinds`): input
population -> ``RingBuffer`` source of graded values (float, or the emulator's integer
inputs), ``T`` steps per row, zeros after; neuron population -> stock ``LIFReset`` (``LIF``
where rows cannot share a build; a non-spiking one never reaches its threshold and is read
from ``v``); ``dense`` -> ``Dense``; ``elementwise`` -> ``Sparse`` (diagonal; both
``DelayDense``/``DelaySparse`` when lagged); ``conv`` -> ``Conv`` (Lava's ``(H, W, C)`` layout,
kernel flipped: Lava convolves); ``jointmix`` -> ``Conv`` with a 1x1 kernel on the source's
``s_out`` transposed to ``(H, C, W)`` (joints as channels), its ``a_out`` transposed back;
``sumpool`` -> depthwise ``Conv``; ``mix`` -> ``Conv`` with a ``(1, W)`` kernel over the joints,
its output reshaped; graded ``relay`` -> ``GradedVec`` (``vth = 0``; its graded spikes are
recorded like spikes). Every ``Conv``'s groups are merged below the 127 that its ``int8`` field
holds (:func:`merged_groups`). Spikes to record go to mksgn's ``FileSink``
(:mod:`mksgn.deploy.lava_procs`: a memory-mapped file; Lava's ``Var.get`` on a ring buffer takes
minutes at this size), the only process in the network that is not Lava's.

Layout: a NIR population ``(C, H, W)`` is a Lava population ``(H, W, C)``; ``(C, L)`` is
``(L, 1, C)``; 1-D stays 1-D. Dense and Sparse weights are permuted to Lava's flattening.

Latency alignment: every Lava synapse delivers one step late. A population ``D`` synaptic
layers deep (``SynapseGraph.depth``) runs aligned step ``k`` at Lava step ``k + D``; a
synapse whose source is shallower waits the missing steps (and the graph's own Delay steps):
an ``elementwise`` or ``dense`` one is a stock ``DelaySparse``/``DelayDense`` with that delay on
every weight (at most ``loihi.DELAY_MAX`` = 63, Loihi 2's 6 bits; more is refused), a kind
that cannot hold a delay (``conv``, ``jointmix``, ``sumpool``, ``mix``) reads a delayed graded
relay instead: an identity ``DelaySparse`` (or ``Sparse``) into a stock ``GradedVec`` that sends
on what it receives, so its weights stay shared (:meth:`LavaNetwork._delayed_relay`). So the Lava
output is the reference output shifted by the known latency, residual and attention branches
included, and the results are returned aligned.

Many rows per build: the sources send ``R`` person rows back to back (row ``n`` at Lava
steps ``nT .. nT+T-1``) and every neuron population is a stock ``LIFReset`` with
``reset_interval = T`` and ``reset_offset = (D + 1) mod T``: its ``u`` and ``v`` are zeroed
(after the input is received, before that step's integration) exactly when a row's first
input reaches it, so each row starts from the zero state as in a build of its own. Every
forward synapse delivers aligned step ``k`` of its source to aligned step ``k`` of its target,
so what a population emits inside row ``n``'s window reaches only row ``n``'s window, and
what it emits before its first reset (its bias is on from the start) reaches a target
before that target's first reset. Spikes of row ``n`` are cut from the sinks at
``nT + D .. nT + D + T - 1``; a non-spiking read-out's ``v`` is probed every step by a stock
``Monitor`` and read at ``nT + D + T - 1``: no pause. A recurrent synapse or one with Delay
steps would carry a row's last steps (or pre-window activity) into the next row's window:
such graphs run one build per row (:func:`rows_blocker`), with the stock ``LIF`` whose
bias counts from Lava step ``D`` on (mksgn's model with ``bias_start``, proven equal to
setting ``bias_mant`` at step ``D``), as before.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mksgn.core.synapse_graph import Synapse, SynapseGraph
from mksgn.core import loihi
from mksgn.deploy.lava_compat import lava_import
from mksgn.deploy.lava_guard import guarded_run
from mksgn.deploy.lava_split import connect_pieces, reassemble, split_groups
from mksgn.errors import MksgnError

GRADED_MESSAGE_BITS = loihi.GRADED_MESSAGE_BITS
"""Payload bits of graded input spikes."""


LAVA_CONV_FIELD_MAX = (1 << 7) - 1
"""The largest kernel size, stride, padding, dilation and group count a stock Lava 0.10 ``Conv``
holds: its process models keep them in ``int8`` Vars (``lava/proc/conv/models.py``), so 256
groups wrap to 0 and the model divides by zero."""


class LavaBuildError(MksgnError, ValueError):
    """A synapse graph that cannot be mapped to Lava; names the population or synapse."""


def merged_groups(weight: np.ndarray, groups: int, limit: int = LAVA_CONV_FIELD_MAX) -> tuple[np.ndarray, int]:
    """The same grouped convolution with at most ``limit`` groups: ``m`` neighbouring groups merged
    into one whose kernel is block-diagonal (zeros between the merged groups).

    ``weight`` is ``(C_out, kH, kW, C_in / groups)``; the result has ``groups / m`` groups, ``m``
    the smallest divisor of ``groups`` that brings it within ``limit``, and ``m`` times the
    input channels per group. A depthwise convolution over 256 channels becomes 64 groups of 4
    channels (4x the weights, three quarters of them zero); the sums are the same integers.
    """
    if groups <= limit:
        return weight, groups
    m = next(d for d in range(2, groups + 1) if groups % d == 0 and groups // d <= limit)
    c_out, kh, kw, ci = weight.shape
    per_out = c_out // groups
    merged = np.zeros((c_out, kh, kw, m * ci), dtype=weight.dtype)
    for j in range(groups):
        p = j % m
        merged[j * per_out:(j + 1) * per_out, :, :, p * ci:(p + 1) * ci] = weight[j * per_out:(j + 1) * per_out]
    return merged, groups // m


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava's shape of a NIR population shape."""
    if len(shape) == 3:
        c, h, w = shape
        return (h, w, c)
    if len(shape) == 2:
        c, length = shape
        return (length, 1, c)
    return tuple(shape)


def to_lava(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A NIR-layout array ``(..., *shape)`` in Lava's layout (leading axes kept)."""
    lead = x.ndim - len(shape)
    axes = list(range(lead))
    if len(shape) == 3:
        return x.transpose(*axes, lead + 1, lead + 2, lead)
    if len(shape) == 2:
        return np.expand_dims(x.transpose(*axes, lead + 1, lead), lead + 1)
    return x


def from_lava(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`to_lava` (leading axes kept)."""
    lead = x.ndim - len(lava_shape(shape))
    axes = list(range(lead))
    if len(shape) == 3:
        return x.transpose(*axes, lead + 2, lead, lead + 1)
    if len(shape) == 2:
        return np.squeeze(x, lead + 1).transpose(*axes, lead + 1, lead)
    return x


def _lava_order(shape: tuple[int, ...]) -> np.ndarray:
    """For each Lava-flat index, the NIR-flat index of the same neuron."""
    return to_lava(np.arange(math.prod(shape)).reshape(shape), shape).reshape(-1)


@dataclass
class BuildContext:
    """What the kinds' Lava builders share: the graph, the tag, the processes built so far, helpers."""

    graph: SynapseGraph
    tag: str
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    """Input name -> ``(R*T, *shape)`` values the sources send, the rows back to back (integers in
    fixed point)."""
    total: int = 0
    """Lava steps the run takes."""
    period: int | None = None
    """Steps per row ``T`` when neurons reset at each row's start (stock ``LIFReset``); ``None``: one
    row, stock ``LIF`` with its bias counting from the population's depth (``bias_start``)."""
    procs: dict[str, Any] = field(default_factory=dict)
    synapses: dict[str, Any] = field(default_factory=dict)
    delays: dict[str, Any] = field(default_factory=dict)

    lava_shape = staticmethod(lava_shape)
    to_lava = staticmethod(to_lava)
    lava_order = staticmethod(_lava_order)

    @property
    def fixed(self) -> bool:
        return self.tag == "fixed_pt"

    @staticmethod
    def lava(module: str) -> Any:
        """A Lava module, imported through :func:`~mksgn.deploy.lava_compat.lava_import`."""
        return lava_import(module)

    @staticmethod
    def mksgn_process(name: str) -> type:
        """One of mksgn's own Lava processes (:mod:`mksgn.deploy.lava_procs.process`)."""
        from mksgn.deploy.lava_procs import process

        return getattr(process, name)

    @staticmethod
    def error(message: str) -> LavaBuildError:
        return LavaBuildError(message)

    def weights(self, syn: Synapse) -> np.ndarray:
        if self.fixed:
            return np.asarray(self.graph.fixed.synapses[syn.name].weight, dtype=np.int64)
        return np.asarray(syn.weight, dtype=np.float64)

    def weight_exp(self, syn: Synapse) -> int:
        return int(self.graph.fixed.synapses[syn.name].weight_exp) if self.fixed else 0

    def conv(self, syn: Synapse, weight: np.ndarray, input_shape: tuple[int, ...], padding: tuple[int, int] = (0, 0),
             stride: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1), groups: int = 1) -> Any:
        """A stock Lava ``Conv`` for ``syn`` (``weight`` in Lava's ``(C_out, kH, kW, C_in / groups)``
        convolution order), its groups merged within :data:`LAVA_CONV_FIELD_MAX` (:func:`merged_groups`).

        Raises
        ------
        LavaBuildError
            A kernel size, stride, padding or dilation above what the Conv's ``int8`` fields hold,
            naming the synapse.
        """
        fields = {"kernel size": weight.shape[1:3], "stride": stride, "padding": padding, "dilation": dilation}
        for field_name, values in fields.items():
            if max(values) > LAVA_CONV_FIELD_MAX:
                raise LavaBuildError(f"synapse {syn.name!r}: {field_name} {tuple(values)} exceeds "
                                     f"{LAVA_CONV_FIELD_MAX}, the most a stock Lava Conv holds (int8)")
        weight, groups = merged_groups(weight, groups)
        ConvProcess = self.lava("lava.proc.conv.process").Conv
        return ConvProcess(weight=weight, input_shape=tuple(input_shape), padding=tuple(padding),
                           stride=tuple(stride), dilation=tuple(dilation), groups=groups,
                           num_message_bits=self.message_bits(syn))  # Conv has no weight exponent

    def message_bits(self, syn: Synapse) -> int:
        """Payload bits of what ``syn``'s source sends: graded values and multi-spike counts 24, spikes 0."""
        return GRADED_MESSAGE_BITS if sends_values(self.graph, syn.source) else 0


def sends_values(graph: SynapseGraph, name: str) -> bool:
    """Whether population ``name`` sends values (graded, or multi-spike counts) rather than binary spikes."""
    pop = graph.populations[name]
    return graph.kinds.population(pop.kind).graded or (pop.spiking and pop.rule.spikes == "multi")


def _one_blas_thread():
    """Limit BLAS to one thread for the run (the forked Lava processes inherit it), if possible."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class LavaRun:
    """Aligned results of one Lava run (one sample, or ``R`` rows with ``rows=True``)."""

    outputs: dict[str, np.ndarray]
    """Output name -> ``(T, *shape)`` for spiking populations, ``(1, *shape)`` (the last aligned
    step) for non-spiking ones, in float units; with ``rows=True`` ``(T or 1, R, *shape)``."""
    spikes: dict[str, np.ndarray]
    """Recorded population -> ``(T, *shape)`` float spikes; with ``rows=True`` ``(T, R, *shape)``
    (bool for spiking populations: one byte a spike)."""
    latency: int
    steps_run: int
    seconds: dict[str, float]
    builds: int = 1
    """Lava networks built for these results."""
    non_stock: dict[str, str] = field(default_factory=dict)
    """Population -> the class of mksgn's own process that realises it where no stock Lava process
    can (``RuleLIF``: a spike rule a Lava LIF lacks); empty for a network of stock processes."""


def rows_blocker(graph: SynapseGraph) -> str | None:
    """Why ``graph``'s rows cannot run back to back in one build (``None``: they can).

    A recurrent synapse delivers its source's previous step, and a synapse with Delay steps
    an earlier one: at a row's first steps that is the previous row's last steps (or activity
    from before the population's first reset), where each row alone sees zeros.
    """
    for syn in graph.synapses:
        if syn.recurrent:
            return f"synapse {syn.name!r} is recurrent (it would carry one row's last step into the next row)"
        if syn.delay:
            return (f"synapse {syn.name!r} has {syn.delay} Delay step(s) (they would carry one row's last steps "
                    f"into the next row)")
    return None


def _rows_first(x: np.ndarray, rows: int) -> np.ndarray:
    """``(T, R, *shape)`` -> ``(R*T, *shape)``: the rows back to back."""
    return np.moveaxis(x, 1, 0).reshape(rows * x.shape[0], *x.shape[2:])


class LavaNetwork:
    """The Lava processes of a synapse graph for one input sample, or for ``R`` rows back to back.

    Parameters
    ----------
    graph
        Synapse graph; quantised for ``fixed_pt``.
    tag
        ``"floating_pt"`` or ``"fixed_pt"``.
    inputs
        Input name -> ``(T, *shape)`` values, or ``(T, R, *shape)`` with ``rows=True`` (float;
        fixed point quantises them as the emulator).
    record
        Populations whose spikes to record; output populations that send spikes or graded
        spikes are always recorded (their outputs are read from the records).
    rows
        Inputs and results carry a row axis (see :class:`LavaRun`).
    reset
        Neurons as ``LIFReset`` zeroed at each row's start (needed for more than one row);
        ``False``: ``LIF`` with ``bias_start`` (one row); ``None``: ``LIFReset`` unless
        :func:`rows_blocker` objects.

    Raises
    ------
    LavaBuildError
        If the graph cannot be mapped, or rows cannot share a build (naming the synapse).
    """

    def __init__(self, graph: SynapseGraph, tag: str, inputs: dict[str, np.ndarray],
                 record: list[str] | None = None, rows: bool = False, reset: bool | None = None) -> None:
        import time

        from mksgn.core.emulator import synapse_lag

        start = time.perf_counter()
        if tag == "fixed_pt" and graph.fixed is None:
            raise LavaBuildError("fixed_pt needs a quantised graph (mksgn-quantize)")
        self.graph, self.tag, self.rows_axis = graph, tag, rows
        self.depth = graph.depth()
        self._lags = {syn.name: synapse_lag(syn, self.depth, "lava") for syn in graph.synapses}
        one_row = {k: np.expand_dims(v, 1) if np.ndim(v) else v for k, v in inputs.items()}
        xs = self._inputs(inputs if rows else one_row)
        self.steps, self.rows = next(iter(xs.values())).shape[:2]
        self.reset = self._reset_mode(reset)
        sent_outputs = [p for p in dict.fromkeys(graph.outputs.values()) if self._sent(p)]
        self.record = list(dict.fromkeys([*(record if record is not None else []), *sent_outputs]))
        wanted = set(self.record) | set(graph.outputs.values())
        self.latency = max(self.depth[p] for p in wanted)
        self.total = self.rows * self.steps + self.latency
        ctx = BuildContext(graph, tag, {k: _rows_first(x, self.rows) for k, x in xs.items()}, self.total,
                           period=self.steps if self.reset else None)
        self.groups = {n: g for n in graph.populations if (g := split_groups(graph, n, tag)) is not None}
        self.split: dict[str, list[Any]] = {}
        for name, pop in graph.populations.items():
            kind = graph.kinds.population(pop.kind)
            if name in self.groups:  # per-neuron decays: one stock LIF per decay group (mksgn.deploy.lava_split)
                self.split[name] = kind.lava_group_processes(pop, ctx, self.depth[name], self.groups[name])
                ctx.procs[name] = self.split[name][0]
            else:
                ctx.procs[name] = kind.lava_process(pop, ctx, self.depth[name])
        for syn in graph.synapses:
            if syn.source in self.groups or syn.target in self.groups:
                ctx.synapses[syn.name] = connect_pieces(syn, ctx, self.groups, self.split, self._lags[syn.name] - 1)
            else:
                self._connect(syn, ctx)
        self.ctx = ctx
        self._sinks()
        self.build_seconds = time.perf_counter() - start

    def _sent(self, name: str) -> bool:
        """Whether population ``name`` sends what it outputs (spikes, graded spikes), else it is read from ``v``."""
        pop = self.graph.populations[name]
        return pop.spiking or self.graph.kinds.population(pop.kind).graded

    def _reset_mode(self, reset: bool | None) -> bool:
        blocker = rows_blocker(self.graph)
        if reset is None:
            reset = blocker is None
        if reset and blocker is not None:
            raise LavaBuildError(f"rows cannot share a Lava build: {blocker}; run them one build each")
        if not reset and self.rows > 1:
            why = blocker or "reset=False"
            raise LavaBuildError(f"{self.rows} rows cannot share a Lava build: {why}; run them one build each")
        return reset

    def _inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Checked ``(T, R, *shape)`` inputs, as the graded integers the host sends in fixed point."""
        import torch

        xs = {}
        for name in self.graph.inputs:
            if name not in inputs:
                raise LavaBuildError(f"input {name!r} is missing; inputs: {self.graph.inputs}")
            x = torch.as_tensor(inputs[name], dtype=torch.float64)
            shape = self.graph.populations[name].shape
            if x.ndim < 2 or tuple(x.shape[2:]) != shape or not bool(torch.isfinite(x).all()):
                got = tuple(x.shape[:1]) + tuple(x.shape[2:]) if not self.rows_axis and x.ndim >= 2 else tuple(x.shape)
                want = f"(T, R, {shape})" if self.rows_axis else f"(T, {shape})"
                raise LavaBuildError(f"input {name!r}: expected finite {want}, got shape {got}")
            xs[name] = (self.graph.fixed.inputs[name].encode(x) if self.tag == "fixed_pt" else x).numpy()
        if len({x.shape[:2] for x in xs.values()}) != 1:
            raise LavaBuildError(f"inputs differ in steps or rows: { {k: x.shape[:2] for k, x in xs.items()} }")
        return xs

    def _connect(self, syn: Synapse, ctx: BuildContext) -> None:
        """Build ``syn``'s process, delayed by the steps it must wait (by itself where its kind can, else
        by a delay line in front), and connect it."""
        graph = self.graph
        kind = graph.kinds.synapse(syn.kind)
        extra = self._lags[syn.name] - 1
        if extra > 0 and kind.lava_delays:
            if extra > loihi.DELAY_MAX:
                raise LavaBuildError(f"synapse {syn.name!r} must wait {extra} steps beyond Lava's one; Loihi 2 "
                                     f"delays a synapse by at most {loihi.DELAY_MAX} steps")
            proc, s_in, a_out, *adapt = kind.lava_process(syn, ctx, delay=extra)
            extra = 0
        else:
            proc, s_in, a_out, *adapt = kind.lava_process(syn, ctx)
        ctx.synapses[syn.name] = proc
        src_port = ctx.procs[syn.source].s_out
        if extra > 0:
            src_port = self._delayed_relay(syn, ctx, src_port, extra)
        target_shape = lava_shape(graph.populations[syn.target].shape)
        if adapt:
            src_port = adapt[0](src_port)
        src_port = src_port.reshape(s_in.shape) if src_port.shape != s_in.shape else src_port
        src_port.connect(s_in)
        a_out = a_out.reshape(target_shape) if a_out.shape != target_shape else a_out
        a_out.connect(ctx.procs[syn.target].a_in)

    def _delayed_relay(self, syn: Synapse, ctx: BuildContext, port: Any, extra: int) -> Any:
        """``port`` delayed by ``extra`` steps through stock processes: an identity ``Sparse``
        (``DelaySparse`` with ``extra - 1`` steps) into a graded relay (``GradedVec``, ``vth = 0``,
        which sends what it receives in the same step); the synapse then reads the relay. The
        identity passes spikes as 1 and graded values unchanged (weight 1, no exponent), so
        the synapse sees what its source sent, ``extra`` steps later."""
        from scipy.sparse import identity

        if extra > loihi.DELAY_MAX + 1:
            raise LavaBuildError(f"synapse {syn.name!r} must wait {extra} steps beyond Lava's one; Loihi 2 "
                                 f"delays a synapse by at most {loihi.DELAY_MAX} steps (plus one through a relay)")
        sparse = ctx.lava("lava.proc.sparse.process")
        shape = lava_shape(self.graph.populations[syn.source].shape)
        eye = identity(math.prod(shape), dtype=np.float64, format="csr")
        bits = ctx.message_bits(syn)
        if extra > 1:
            delays = eye.astype(int)
            delays.data[:] = extra - 1
            line = sparse.DelaySparse(weights=eye, delays=delays, max_delay=extra - 1, num_message_bits=bits)
        else:
            line = sparse.Sparse(weights=eye, num_message_bits=bits)
        relay = ctx.lava("lava.proc.graded.process").GradedVec(shape=shape, vth=0)
        port.reshape(line.s_in.shape).connect(line.s_in)
        line.a_out.reshape(shape).connect(relay.a_in)
        ctx.delays[syn.name] = (line, relay)
        return relay.s_out

    def _sinks(self) -> None:
        """A memory-mapped file sink per recorded population, a ``Monitor`` of ``v`` per non-spiking output."""
        FileSink = self.ctx.mksgn_process("FileSink")
        Monitor = self.ctx.lava("lava.proc.monitor.process").Monitor
        g = self.graph
        self._tmp = tempfile.TemporaryDirectory(prefix="mksgn-lava-")
        self.sinks: dict[str, list[str]] = {}
        for i, name in enumerate(self.record):
            binary = g.populations[name].spiking and not sends_values(g, name)
            dtype = np.uint8 if binary else (np.int32 if self.ctx.fixed else np.float64)
            procs = self.split.get(name, [self.ctx.procs[name]])
            shapes = [(len(index),) for index in self.groups[name]] if name in self.split else \
                [lava_shape(g.populations[name].shape)]
            paths = []
            for j, (proc, shape) in enumerate(zip(procs, shapes, strict=True)):
                path = os.path.join(self._tmp.name, f"sink{i}_{j}.npy")
                np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(self.total, *shape)).flush()
                sink = FileSink(shape=shape, path=path)
                proc.s_out.connect(sink.a_in)
                paths.append(path)
            self.sinks[name] = paths
        self.monitors: dict[str, Any] = {}
        for name in dict.fromkeys(g.outputs.values()):
            if not self._sent(name):
                self.monitors[name] = Monitor()
                self.monitors[name].probe(self.ctx.procs[name].v, self.total)

    def _recorded(self, name: str, parts: list[np.ndarray]) -> np.ndarray:
        """A population's record ``(total, *lava shape)``, its groups' records put back in place."""
        if name not in self.split:
            return parts[0]
        return reassemble(parts, self.groups[name], self.graph.populations[name].shape, to_lava)

    def _windows(self, data: np.ndarray, name: str) -> np.ndarray:
        """``(total, *lava_shape)`` -> each row's aligned window ``(T, R, *shape)`` (NIR layout)."""
        d, t, r = self.depth[name], self.steps, self.rows
        rows = data[d:d + r * t].reshape(r, t, *data.shape[1:])
        return from_lava(np.moveaxis(rows, 0, 1), self.graph.populations[name].shape)

    def run(self) -> LavaRun:
        """Run ``R*T + latency`` steps, no pause (the first step apart: compilation is timed apart)."""
        import time

        RunSteps = lava_import("lava.magma.core.run_conditions").RunSteps
        Loihi2SimCfg = lava_import("lava.magma.core.run_configs").Loihi2SimCfg
        g, ctx = self.graph, self.ctx
        neurons = [n for n, p in g.populations.items() if not g.kinds.population(p.kind).source]
        anchor = ctx.procs[neurons[0]]
        from mksgn.deploy.lava_procs.models import fast_models

        cfg = Loihi2SimCfg(select_tag=self.tag, exception_proc_model_map=fast_models(self.tag, gated=not self.reset))
        start = time.perf_counter()
        compile_seconds = 0.0
        limits = _one_blas_thread()  # every Lava process is an OS process: no BLAS threads on top
        try:
            with guarded_run(anchor) as guard:  # stops Lava; on Ctrl-C or SIGTERM ends its processes and segments
                for steps in (1, self.total - 1):
                    if steps > 0:
                        anchor.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
                        guard.check()
                        compile_seconds = compile_seconds or time.perf_counter() - start
                values = {p: np.asarray(m.get_data()[ctx.procs[p].name]["v"]) for p, m in self.monitors.items()}
            spikes = {n: self._recorded(n, [np.array(np.load(path, mmap_mode="r")) for path in paths])
                      for n, paths in self.sinks.items()}
        finally:
            if limits is not None:
                limits.restore_original_limits()
            self._tmp.cleanup()
        seconds = {"build": self.build_seconds, "first_run_incl_compile": compile_seconds,
                   "run": time.perf_counter() - start}
        return self._results(spikes, values, seconds)

    def _results(self, spikes: dict[str, np.ndarray], values: dict[str, np.ndarray],
                 seconds: dict[str, float]) -> LavaRun:
        """Per-row windows of the recorded spikes and the read-outs' ``v`` at each row's last aligned step."""
        g, ctx = self.graph, self.ctx
        aligned = {}
        for name, data in spikes.items():
            window = self._windows(data, name)
            aligned[name] = window.astype(bool) if data.dtype == np.uint8 else window.astype(np.float64)
        outputs = {}
        for out, pop_name in g.outputs.items():
            pop = g.populations[pop_name]
            if pop.spiking:
                outputs[out] = aligned[pop_name]
            elif self._sent(pop_name):  # graded spikes, every step
                outputs[out] = g.kinds.population(pop.kind).lava_readout(pop, ctx, aligned[pop_name])
            else:
                last = self._windows(values[pop_name], pop_name)[-1:]  # (1, R, *shape)
                outputs[out] = g.kinds.population(pop.kind).lava_readout(pop, ctx, last.astype(np.float64))
        if not self.rows_axis:
            aligned = {k: v[:, 0].astype(np.float64) for k, v in aligned.items()}
            outputs = {k: v[:, 0].astype(np.float64) for k, v in outputs.items()}
        return LavaRun(outputs, aligned, self.latency, self.total, seconds, non_stock=self.non_stock())

    def non_stock(self) -> dict[str, str]:
        """Population -> class name of each population process that is mksgn's own, not stock Lava."""
        return {name: type(proc).__name__ for name, proc in self.ctx.procs.items()
                if type(proc).__module__.startswith("mksgn.")}


def run_lava(graph: SynapseGraph, tag: str, inputs: dict[str, np.ndarray], record: list[str] | None = None,
             reset: bool | None = None) -> LavaRun:
    """Build and run one sample (see :class:`LavaNetwork`)."""
    return LavaNetwork(graph, tag, inputs, record, reset=reset).run()


ROWS_PER_BUILD_BYTES = 1 << 29
"""About how many bytes of source data and recorded spikes one build holds (sets the rows per build)."""


def rows_per_build(graph: SynapseGraph, steps: int, record: list[str]) -> int:
    """Rows one build takes by default: as many as fit :data:`ROWS_PER_BUILD_BYTES` (at least 1)."""
    def recorded(name: str) -> int:  # a spike: one byte, twice (the sink, the result); a graded value: 8
        return (16 if graph.is_graded(name) else 2) * math.prod(graph.populations[name].shape)

    per_row = steps * (sum(8 * math.prod(graph.populations[n].shape) for n in graph.inputs)
                       + sum(recorded(n) for n in record))
    return max(1, ROWS_PER_BUILD_BYTES // max(per_row, 1))


def run_lava_rows(graph: SynapseGraph, tag: str, inputs: dict[str, np.ndarray], record: list[str] | None = None,
                  per_build: int | None = None, reset: bool | None = None, done: Any = None) -> LavaRun:
    """Run ``R`` person rows (inputs ``(T, R, *shape)``) in as few builds as possible; results per row.

    Rows run back to back in builds of ``per_build`` rows (default :func:`rows_per_build`);
    a graph that :func:`rows_blocker` objects to, or ``reset=False``, runs one build per row
    with the bias-gated ``LIF`` (the path of one build per row). Results equal one build per
    row exactly (tests). ``done(n)`` is called after each build with its number of rows (a
    progress bar).
    """
    rows = next(iter(inputs.values())).shape[1]
    record_list = list(record) if record is not None else None
    if per_build is not None and per_build < 1:
        raise LavaBuildError(f"rows per build must be >= 1, got {per_build}")
    if reset is None:
        reset = rows_blocker(graph) is None
    if not reset:
        per_build = 1
    elif per_build is None:
        steps = next(iter(inputs.values())).shape[0]
        per_build = rows_per_build(graph, steps, record_list or [])
    parts: list[LavaRun] = []
    for first in range(0, rows, per_build):
        chunk = {k: np.asarray(v)[:, first:first + per_build] for k, v in inputs.items()}
        parts.append(LavaNetwork(graph, tag, chunk, record_list, rows=True, reset=reset).run())
        if done is not None:
            done(next(iter(chunk.values())).shape[1])
    if not parts:
        raise LavaBuildError("no rows to run")
    if len(parts) == 1:
        return parts[0]
    seconds = {k: sum(p.seconds[k] for p in parts) for k in parts[0].seconds}
    return LavaRun({k: np.concatenate([p.outputs[k] for p in parts], axis=1) for k in parts[0].outputs},
                   {k: np.concatenate([p.spikes[k] for p in parts], axis=1) for k in parts[0].spikes},
                   parts[0].latency, sum(p.steps_run for p in parts), seconds, builds=len(parts),
                   non_stock=parts[0].non_stock)
