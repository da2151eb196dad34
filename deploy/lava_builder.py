"""A synapse graph (float or quantised) as Lava processes, latency-aligned, and run.

Mapping: every population and synapse becomes the Lava process its kind builds
(:meth:`~mksgn.core.kinds.base.SynapseKind.lava_process`, :mod:`mksgn.core.kinds`): input
population -> ``RingBuffer`` source of graded values (float, or the emulator's integer
inputs) for ``T`` steps, zeros after; neuron population -> stock ``LIF`` (a non-spiking one
never reaches its threshold and is read from ``v``); ``dense`` -> ``Dense``;
``elementwise`` -> ``Sparse`` (diagonal); ``conv`` -> ``Conv`` (Lava's ``(H, W, C)`` layout,
kernel flipped: Lava convolves); ``mix`` -> mksgn's ``FrameDense``
(:mod:`mksgn.deploy.lava_procs`). Spikes to record go to mksgn's ``FileSink`` (a
memory-mapped file; Lava's ``Var.get`` on a ring buffer takes minutes at this size).

Layout: a NIR population ``(C, H, W)`` is a Lava population ``(H, W, C)``; ``(C, L)`` is
``(L, 1, C)``; 1-D stays 1-D. Dense and Sparse weights are permuted to Lava's flattening.

Latency alignment: every Lava synapse delivers one step late. A population ``D`` synaptic
layers deep (``SynapseGraph.depth``) runs aligned step ``k`` at Lava step ``k + D``; a
synapse whose source is shallower gets a ``DelayLine`` of the missing steps (and the
graph's own Delay steps). A population's bias counts from Lava step ``D`` on (mksgn's
model of the stock LIF with ``bias_start``, proven equal to setting ``bias_mant`` at step
``D``): before that nothing has arrived and its state stays zero. So the Lava
output is the reference output shifted by the known latency, residual and attention
branches included, and the results are returned aligned.
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
from mksgn.errors import MksgnError

GRADED_MESSAGE_BITS = loihi.GRADED_MESSAGE_BITS
"""Payload bits of graded input spikes."""


class LavaBuildError(MksgnError, ValueError):
    """A synapse graph that cannot be mapped to Lava; names the population or synapse."""


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
    """Input name -> ``(T, *shape)`` values the sources send (integers in fixed point)."""
    total: int = 0
    """Lava steps the run takes."""
    procs: dict[str, Any] = field(default_factory=dict)
    synapses: dict[str, Any] = field(default_factory=dict)
    delays: dict[str, Any] = field(default_factory=dict)
    exact_float32: set[str] = field(default_factory=set)
    """Synapses whose integer sums provably stay below 2**24 (fixed point)."""

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

    def message_bits(self, syn: Synapse) -> int:
        source = self.graph.populations[syn.source]
        return GRADED_MESSAGE_BITS if self.graph.kinds.population(source.kind).graded else 0


def _one_blas_thread():
    """Limit BLAS to one thread for the run (the forked Lava processes inherit it), if possible."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class LavaRun:
    """Aligned results of one Lava run (one sample)."""

    outputs: dict[str, np.ndarray]
    """Output name -> ``(T, *shape)`` for spiking populations, ``(1, *shape)`` (the last aligned
    step) for non-spiking ones, in float units."""
    spikes: dict[str, np.ndarray]
    latency: int
    steps_run: int
    seconds: dict[str, float]


class LavaNetwork:
    """The Lava processes of a synapse graph for one input sample.

    Parameters
    ----------
    graph
        Synapse graph; quantised for ``fixed_pt``.
    tag
        ``"floating_pt"`` or ``"fixed_pt"``.
    inputs
        Input name -> ``(T, *shape)`` values (float; fixed point quantises them as the emulator).
    record
        Populations whose spikes to record (default: the spiking output populations).
    """

    def __init__(self, graph: SynapseGraph, tag: str, inputs: dict[str, np.ndarray],
                 record: list[str] | None = None) -> None:
        import time

        from mksgn.core.emulator import exact_in_float32, synapse_lag

        start = time.perf_counter()
        if tag == "fixed_pt" and graph.fixed is None:
            raise LavaBuildError("fixed_pt needs a quantised graph (mksgn-quantize)")
        self.graph, self.tag = graph, tag
        self.depth = graph.depth()
        self._lags = {syn.name: synapse_lag(syn, self.depth, "lava") for syn in graph.synapses}
        xs = self._inputs(inputs)
        self.steps = next(iter(xs.values())).shape[0]
        self.record = list(record) if record is not None else [p for p in graph.outputs.values()
                                                              if graph.populations[p].spiking]
        wanted = set(self.record) | set(graph.outputs.values())
        self.latency = max(self.depth[p] for p in wanted)
        self.total = self.steps + self.latency
        ctx = BuildContext(graph, tag, xs, self.total)
        if ctx.fixed:
            ctx.exact_float32 = {s.name for s in graph.synapses if exact_in_float32(graph, s, ctx.weights(s))}
        for name, pop in graph.populations.items():
            ctx.procs[name] = graph.kinds.population(pop.kind).lava_process(pop, ctx, self.depth[name])
        for syn in graph.synapses:
            self._connect(syn, ctx)
        self.ctx = ctx
        self._sinks()
        self.build_seconds = time.perf_counter() - start

    def _inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Checked ``(T, *shape)`` inputs, as the graded integers the host sends in fixed point."""
        import torch

        xs = {}
        for name in self.graph.inputs:
            if name not in inputs:
                raise LavaBuildError(f"input {name!r} is missing; inputs: {self.graph.inputs}")
            x = torch.as_tensor(inputs[name], dtype=torch.float64)
            shape = self.graph.populations[name].shape
            if tuple(x.shape[1:]) != shape or not bool(torch.isfinite(x).all()):
                raise LavaBuildError(f"input {name!r}: expected finite (T, {shape}), got shape {tuple(x.shape)}")
            xs[name] = (self.graph.fixed.inputs[name].encode(x) if self.tag == "fixed_pt" else x).numpy()
        return xs

    def _connect(self, syn: Synapse, ctx: BuildContext) -> None:
        """Build ``syn``'s process, with a delay line for the steps it must wait, and connect it."""
        graph = self.graph
        proc, s_in, a_out = graph.kinds.synapse(syn.kind).lava_process(syn, ctx)
        ctx.synapses[syn.name] = proc
        src_port = ctx.procs[syn.source].s_out
        extra = self._lags[syn.name] - 1
        if extra > 0:
            line = ctx.mksgn_process("DelayLine")(shape=lava_shape(graph.populations[syn.source].shape), delay=extra)
            src_port.connect(line.s_in)
            ctx.delays[syn.name] = line
            src_port = line.s_out
        target_shape = lava_shape(graph.populations[syn.target].shape)
        src_port = src_port.reshape(s_in.shape) if src_port.shape != s_in.shape else src_port
        src_port.connect(s_in)
        a_out = a_out.reshape(target_shape) if a_out.shape != target_shape else a_out
        a_out.connect(ctx.procs[syn.target].a_in)

    def _sinks(self) -> None:
        """A memory-mapped file sink per recorded population."""
        FileSink = self.ctx.mksgn_process("FileSink")
        self._tmp = tempfile.TemporaryDirectory(prefix="mksgn-lava-")
        self.sinks: dict[str, str] = {}
        for i, name in enumerate(self.record):
            shape = lava_shape(self.graph.populations[name].shape)
            path = os.path.join(self._tmp.name, f"sink{i}.npy")
            np.lib.format.open_memmap(path, mode="w+", dtype=np.float64 if not self.ctx.fixed else np.int32,
                                      shape=(self.total, *shape)).flush()
            sink = FileSink(shape=shape, path=path)
            self.ctx.procs[name].s_out.connect(sink.a_in)
            self.sinks[name] = path

    def run(self) -> LavaRun:
        """Run ``T + latency`` steps (pausing only to read non-spiking outputs' ``v``)."""
        import time

        RunSteps = lava_import("lava.magma.core.run_conditions").RunSteps
        Loihi2SimCfg = lava_import("lava.magma.core.run_configs").Loihi2SimCfg
        g, ctx = self.graph, self.ctx
        neurons = [n for n, p in g.populations.items() if not g.kinds.population(p.kind).source]
        readouts = {p: self.depth[p] + self.steps for p in g.outputs.values() if not g.populations[p].spiking}
        stops = sorted(set(readouts.values()) | {1, self.total})  # after step 1: compile time measured apart
        anchor = ctx.procs[neurons[0]]
        from mksgn.deploy.lava_procs.models import fast_conv_models, fast_sparse_models, gated_lif_models

        fast = {**fast_conv_models()[self.tag], **fast_sparse_models()[self.tag], **gated_lif_models()[self.tag]}
        cfg = Loihi2SimCfg(select_tag=self.tag, exception_proc_model_map=fast)
        values: dict[str, np.ndarray] = {}
        done = 0
        start = time.perf_counter()
        compile_seconds = None
        limits = _one_blas_thread()  # every Lava process is an OS process: no BLAS threads on top
        try:
            with guarded_run(anchor) as guard:  # stops Lava; on Ctrl-C or SIGTERM ends its processes and segments
                for stop in stops:
                    if stop > done:
                        anchor.run(condition=RunSteps(num_steps=stop - done), run_cfg=cfg)
                        guard.check()
                        if compile_seconds is None:
                            compile_seconds = time.perf_counter() - start
                        done = stop
                    for p, at in readouts.items():
                        if at == done:
                            values[p] = np.asarray(ctx.procs[p].v.get())
            spikes = {n: np.array(np.load(path, mmap_mode="r")) for n, path in self.sinks.items()}
        finally:
            if limits is not None:
                limits.restore_original_limits()
            self._tmp.cleanup()
        seconds = {"build": self.build_seconds, "first_run_incl_compile": compile_seconds or 0.0,
                   "run": time.perf_counter() - start}
        aligned = {}
        for name, data in spikes.items():
            shape = g.populations[name].shape
            d = self.depth[name]
            window = data[d:d + self.steps]
            aligned[name] = from_lava(window, shape).astype(np.float64)
        outputs = {}
        for out, pop_name in g.outputs.items():
            pop = g.populations[pop_name]
            if pop.spiking:
                outputs[out] = aligned[pop_name]
            else:
                v = from_lava(values[pop_name][None], pop.shape).astype(np.float64)
                outputs[out] = g.kinds.population(pop.kind).lava_readout(pop, ctx, v)
        return LavaRun(outputs, aligned, self.latency, self.total, seconds)


def run_lava(graph: SynapseGraph, tag: str, inputs: dict[str, np.ndarray], record: list[str] | None = None) -> LavaRun:
    """Build and run one sample (see :class:`LavaNetwork`)."""
    return LavaNetwork(graph, tag, inputs, record).run()
