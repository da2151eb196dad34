"""A synapse graph (float or quantised) as Lava processes, latency-aligned, and run.

Mapping (registries keyed by population and synapse kind, user-overridable):

- input population -> ``RingBuffer`` source of graded values (float, or the emulator's
  integer inputs) for ``T`` steps, zeros after;
- spikes to record -> mksgn's ``FileSink`` (a memory-mapped file; Lava's ``Var.get`` on a
  ring buffer takes minutes at this size);
- neuron population -> stock ``LIF`` (``floating_pt``: ``du``, ``dv``, ``vth``, ``bias_mant``
  as floats; ``fixed_pt``: the quantised integers); a non-spiking one never reaches its
  threshold (float ``vth`` = 1e300, fixed the largest 17-bit one) and is read from ``v``;
- ``dense`` -> ``Dense``; ``elementwise`` -> ``Sparse`` (diagonal); ``conv`` -> ``Conv``
  (Lava's ``(H, W, C)`` layout, kernel flipped: Lava convolves); ``mix`` -> mksgn's
  ``FrameDense`` (:mod:`mksgn.deploy.lava_procs`).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mksgn.core.synapse_graph import Population, Synapse, SynapseGraph
from mksgn.core import loihi
from mksgn.deploy.lava_compat import lava_import
from mksgn.errors import MksgnError

FLOAT_NEVER = 1e300
"""Float threshold of a non-spiking population."""
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
    """What the per-kind builders share."""

    graph: SynapseGraph
    tag: str
    procs: dict[str, Any] = field(default_factory=dict)
    synapses: dict[str, Any] = field(default_factory=dict)
    delays: dict[str, Any] = field(default_factory=dict)
    exact_float32: set[str] = field(default_factory=set)
    """Synapses whose integer sums provably stay below 2**24 (fixed point)."""

    @property
    def fixed(self) -> bool:
        return self.tag == "fixed_pt"

    def q_synapse(self, syn: Synapse) -> dict:
        return self.graph.metadata["quantization"]["synapses"][syn.name]

    def q_population(self, name: str) -> dict:
        return self.graph.metadata["quantization"]["populations"][name]

    def weights(self, syn: Synapse) -> np.ndarray:
        if self.fixed:
            return np.asarray(self.q_synapse(syn)["weight"], dtype=np.int64)
        return np.asarray(syn.weight, dtype=np.float64)

    def weight_exp(self, syn: Synapse) -> int:
        return int(self.q_synapse(syn).get("weight_exp", 0)) if self.fixed else 0

    def message_bits(self, syn: Synapse) -> int:
        return GRADED_MESSAGE_BITS if self.graph.populations[syn.source].kind == "input" else 0


SynapseBuilder = Callable[[Synapse, BuildContext], tuple[Any, Any, Any]]
"""``builder(synapse, ctx) -> (process, in_port, out_port)`` (ports already reshaped)."""


def _dense(syn: Synapse, ctx: BuildContext) -> tuple[Any, Any, Any]:
    Dense = lava_import("lava.proc.dense.process").Dense
    src, dst = ctx.graph.populations[syn.source], ctx.graph.populations[syn.target]
    w = ctx.weights(syn)[_lava_order(dst.shape)][:, _lava_order(src.shape)]
    proc = Dense(weights=w, weight_exp=ctx.weight_exp(syn), num_message_bits=ctx.message_bits(syn))
    return proc, proc.s_in, proc.a_out


def _elementwise(syn: Synapse, ctx: BuildContext) -> tuple[Any, Any, Any]:
    from scipy.sparse import diags

    Sparse = lava_import("lava.proc.sparse.process").Sparse
    pop = ctx.graph.populations[syn.target]
    diag = to_lava(ctx.weights(syn).reshape(pop.shape), pop.shape).reshape(-1)
    proc = Sparse(weights=diags(diag).tocsr(), weight_exp=ctx.weight_exp(syn), num_message_bits=ctx.message_bits(syn))
    return proc, proc.s_in, proc.a_out


def _conv(syn: Synapse, ctx: BuildContext) -> tuple[Any, Any, Any]:
    Conv = lava_import("lava.proc.conv.process").Conv
    src = ctx.graph.populations[syn.source]
    w = ctx.weights(syn)
    if w.ndim == 3:  # Conv1d on (C, L) -> (L, 1, C) with a (k, 1) kernel
        w = w[..., None]
    w_lava = np.flip(w, axis=(2, 3)).transpose(0, 2, 3, 1).copy()

    def pair(v: tuple[int, ...]) -> tuple[int, int]:
        return (v[0], v[1]) if len(v) == 2 else (v[0], 1 if len(v) == 1 else v[0])

    padding = pair(syn.padding) if len(syn.padding) == 2 else (syn.padding[0], 0)
    proc = Conv(weight=w_lava, input_shape=lava_shape(src.shape), padding=padding, stride=pair(syn.stride),
                dilation=pair(syn.dilation), groups=syn.groups, weight_exp=ctx.weight_exp(syn),
                num_message_bits=ctx.message_bits(syn))
    return proc, proc.s_in, proc.a_out


def _mix(syn: Synapse, ctx: BuildContext) -> tuple[Any, Any, Any]:
    from mksgn.deploy.lava_procs.process import FrameDense

    src, dst = ctx.graph.populations[syn.source], ctx.graph.populations[syn.target]
    w = ctx.weights(syn)  # (W_out, C_out, W_in, C_in)
    wo, co, wi, ci = w.shape
    proc = FrameDense(weights=w.reshape(wo * co, wi * ci), in_shape=lava_shape(src.shape),
                      out_shape=lava_shape(dst.shape), weight_exp=ctx.weight_exp(syn),
                      num_message_bits=ctx.message_bits(syn), exact_in_float32=syn.name in ctx.exact_float32)
    return proc, proc.s_in, proc.a_out


SYNAPSE_BUILDERS: dict[str, SynapseBuilder] = {"dense": _dense, "elementwise": _elementwise, "conv": _conv,
                                               "mix": _mix}
"""Builder per synapse kind (copy and extend to override)."""


def _neuron(pop: Population, ctx: BuildContext, bias_start: int) -> Any:
    LIF = lava_import("lava.proc.lif.process").LIF
    shape = lava_shape(pop.shape)
    if ctx.fixed:
        q = ctx.q_population(pop.name)
        exp = to_lava(np.broadcast_to(np.asarray(q["bias_exp"]), pop.shape).astype(np.int64), pop.shape)
        return LIF(shape=shape, du=int(q["du"]), dv=int(q["dv"]), vth=int(q["vth"]), bias_mant=_bias(pop, ctx),
                   bias_exp=exp, bias_start=bias_start)
    vth = float(np.unique(pop.threshold)[0]) if pop.spiking else FLOAT_NEVER
    for what, values in (("du", pop.du), ("dv", pop.dv)) + ((("threshold", pop.threshold),) if pop.spiking else ()):
        if np.unique(np.asarray(values)).size != 1:
            raise LavaBuildError(f"population {pop.name!r}: {what} differs between neurons; a Lava LIF has one")
    return LIF(shape=shape, du=float(np.unique(pop.du)[0]), dv=float(np.unique(pop.dv)[0]), vth=vth,
               bias_mant=_bias(pop, ctx), bias_start=bias_start)


def _bias(pop: Population, ctx: BuildContext) -> np.ndarray:
    if ctx.fixed:
        q = ctx.q_population(pop.name)
        mant = np.broadcast_to(np.asarray(q["bias_mant"]), pop.shape).astype(np.int64)
        return to_lava(mant, pop.shape)
    return to_lava(np.broadcast_to(pop.bias, pop.shape).astype(np.float64), pop.shape)


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

        import torch

        from mksgn.core.emulator import exact_in_float32, graded_input, synapse_lag

        start = time.perf_counter()
        if tag == "fixed_pt" and "quantization" not in graph.metadata:
            raise LavaBuildError("fixed_pt needs a quantised graph (mksgn-quantize)")
        self.graph, self.tag = graph, tag
        self.depth = graph.depth()
        self._lags = {syn.name: synapse_lag(syn, self.depth, "lava") for syn in graph.synapses}
        xs = {}
        for name in graph.inputs:
            if name not in inputs:
                raise LavaBuildError(f"input {name!r} is missing; inputs: {graph.inputs}")
            x = torch.as_tensor(inputs[name], dtype=torch.float64)
            if tuple(x.shape[1:]) != graph.populations[name].shape or not bool(torch.isfinite(x).all()):
                raise LavaBuildError(f"input {name!r}: expected finite (T, {graph.populations[name].shape}), "
                                     f"got shape {tuple(x.shape)}")
            xs[name] = graded_input(x, graph.metadata["quantization"]["inputs"][name]) if tag == "fixed_pt" else x
        self.steps = next(iter(xs.values())).shape[0]
        self.record = list(record) if record is not None else [p for p in graph.outputs.values()
                                                              if graph.populations[p].spiking]
        wanted = set(self.record) | set(graph.outputs.values())
        self.latency = max(self.depth[p] for p in wanted)
        self.total = self.steps + self.latency
        ctx = BuildContext(graph, tag)
        if ctx.fixed:
            ctx.exact_float32 = {s.name for s in graph.synapses if exact_in_float32(graph, s, ctx.weights(s))}
        Source = lava_import("lava.proc.io.source").RingBuffer
        for name, pop in graph.populations.items():
            if pop.kind == "input":
                x = xs[name].numpy()
                data = np.zeros((self.total, *pop.shape))
                data[: self.steps] = x
                data = to_lava(data, pop.shape)  # (total, *lava_shape)
                data = np.moveaxis(data, 0, -1)
                ctx.procs[name] = Source(data=data.astype(np.int32) if ctx.fixed else data)
            else:
                ctx.procs[name] = _neuron(pop, ctx, self.depth[name])
        for syn in graph.synapses:
            builder = SYNAPSE_BUILDERS.get(syn.kind)
            if builder is None:
                raise LavaBuildError(f"synapse {syn.name}: no Lava builder for kind {syn.kind!r}")
            proc, s_in, a_out = builder(syn, ctx)
            ctx.synapses[syn.name] = proc
            src_port = ctx.procs[syn.source].s_out
            extra = self._lags[syn.name] - 1
            if extra > 0:
                from mksgn.deploy.lava_procs.process import DelayLine

                line = DelayLine(shape=lava_shape(graph.populations[syn.source].shape), delay=extra)
                src_port.connect(line.s_in)
                ctx.delays[syn.name] = line
                src_port = line.s_out
            target_shape = lava_shape(graph.populations[syn.target].shape)
            src_port = src_port.reshape(s_in.shape) if src_port.shape != s_in.shape else src_port
            src_port.connect(s_in)
            a_out = a_out.reshape(target_shape) if a_out.shape != target_shape else a_out
            a_out.connect(ctx.procs[syn.target].a_in)
        from mksgn.deploy.lava_procs.process import FileSink

        self._tmp = tempfile.TemporaryDirectory(prefix="mksgn-lava-")
        self.sinks: dict[str, str] = {}
        for i, name in enumerate(self.record):
            shape = lava_shape(graph.populations[name].shape)
            path = os.path.join(self._tmp.name, f"sink{i}.npy")
            np.lib.format.open_memmap(path, mode="w+", dtype=np.float64 if not ctx.fixed else np.int32,
                                      shape=(self.total, *shape)).flush()
            sink = FileSink(shape=shape, path=path)
            ctx.procs[name].s_out.connect(sink.a_in)
            self.sinks[name] = path
        self.ctx = ctx
        self.build_seconds = time.perf_counter() - start

    def run(self) -> LavaRun:
        """Run ``T + latency`` steps (pausing only to read non-spiking outputs' ``v``)."""
        import time

        RunSteps = lava_import("lava.magma.core.run_conditions").RunSteps
        Loihi2SimCfg = lava_import("lava.magma.core.run_configs").Loihi2SimCfg
        g, ctx = self.graph, self.ctx
        neurons = [n for n, p in g.populations.items() if p.kind != "input"]
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
            for stop in stops:
                if stop > done:
                    anchor.run(condition=RunSteps(num_steps=stop - done), run_cfg=cfg)
                    if compile_seconds is None:
                        compile_seconds = time.perf_counter() - start
                    done = stop
                for p, at in readouts.items():
                    if at == done:
                        values[p] = np.asarray(ctx.procs[p].v.get())
        finally:
            anchor.stop()
            if limits is not None:
                limits.restore_original_limits()
        spikes = {n: np.array(np.load(path, mmap_mode="r")) for n, path in self.sinks.items()}
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
                if self.ctx.fixed:
                    v = v * float(ctx.q_population(pop_name)["scale"]) / (1 << loihi.ACTIVATION_SHIFT)
                outputs[out] = v
        return LavaRun(outputs, aligned, self.latency, self.total, seconds)


def run_lava(graph: SynapseGraph, tag: str, inputs: dict[str, np.ndarray], record: list[str] | None = None) -> LavaRun:
    """Build and run one sample (see :class:`LavaNetwork`)."""
    return LavaNetwork(graph, tag, inputs, record).run()
