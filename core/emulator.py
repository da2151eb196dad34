"""A batched torch emulator of what Lava computes for a :class:`~mksgn.core.synapse_graph.SynapseGraph`.

Two arithmetic tags, as Lava's process models:

``floating_pt``
    Float64 (or float32) ``PyLifModelFloat`` neurons and float synapses.
``fixed_pt``
    Integers, bit for bit as Lava's fixed-point models: ``PyLifModelBitAcc`` neurons and, per
    synapse kind, ``PyDenseModelBitAcc`` semantics (``elementwise``, ``mix``, ``dense``:
    weights clipped and truncated, the sum shifted by ``weight_exp``) or ``PyConvModelFixed``
    (``conv``: the sum wrapped to 24 bits, no exponent); inputs are graded integers. It needs a
    quantised graph (:mod:`mksgn.convert.quantize`).

What each population and synapse computes is its kind's (:mod:`mksgn.core.kinds`); this
module steps the graph, aligns its timing and counts what happened.

Two timings:

``aligned``
    As the reference NIR executor: within a step every population sees its sources'
    output of the same step (of the previous step for recurrent synapses), plus the
    chains' Delay steps.
``lava``
    As Lava runs it: every synapse delivers at step ``t`` what it accumulated at ``t - 1``,
    and the Lava builder delays each synapse so that all inputs of a population arrive
    together: a population at synaptic depth ``D`` (see ``SynapseGraph.depth``) runs
    aligned step ``k`` at Lava step ``k + D``, its bias switched on from step ``D`` (before
    that nothing has arrived and its state stays zero). ``T + max D`` steps run; the
    results are returned already aligned, so both timings give identical records (a test
    proves it); ``latency`` says by how much Lava's output is late. (Lava's ``LIFReset``
    neurons, which run many rows per build, keep their bias on before their first row
    too: that differs only outside the windows, which are never compared; see
    :mod:`mksgn.deploy.lava_builder`.)

The integer arithmetic runs as matrix products and convolutions on integer values, in float32
where the largest possible sum of a synapse stays below 2**24, else in float64: exact either
way. Where every synapse into a population provably neither wraps nor shifts its sum and the
population's whole input stays below 2**24 (:meth:`Emulator.float_input`), its input is summed
in float32 and handed to the population as is (a graded relay passes it on, a neuron converts
it to int64 once); elsewhere each synapse's sum is converted to int64 and wrapped or shifted as
its kind's fixed-point model does. Spikes are float32 0/1 values in fixed point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from mksgn.core import loihi
from mksgn.core.synapse_graph import Synapse, SynapseGraph
from mksgn.errors import MksgnError

TAGS = ("floating_pt", "fixed_pt")
TIMINGS = ("aligned", "lava")
CHUNK_BYTES = 1 << 27
"""Bytes of one value per neuron of every population that a chunk of rows may hold (128 MiB;
the state, outputs and history take a few times that). A larger batch runs in chunks: it
would allocate and fault in more memory per step than the arithmetic costs, and calibrating
the random ``ntu`` student (21 rows, 4.9 M neurons) held 2.7 GiB in one chunk, 1.2 GiB in
chunks of 3 rows. Random calibrated ``ntu``, fixed point, 64 samples (87 rows), float32 input
sums: 11.1 s in chunks of 1 row, 9.3 s of 3 (this budget), 9.4 s of 6 and of 13."""
EXACT_FLOAT32 = float(1 << 24)
"""Integers (and every partial sum of them) below this are exact in float32."""


class EmulatorError(MksgnError, ValueError):
    """A graph or input the emulator cannot run; names the population or synapse."""


@dataclass
class EmulatorResult:
    """Per output: ``(T, B, *shape)`` (spikes, or values of non-spiking populations, in float).

    ``spikes`` holds every spiking population's spikes ``(T, B, *shape)`` (bool) when
    recorded; ``spike_counts`` the total per population; ``synops`` the synaptic
    operations per synapse (presynaptic events times their non-zero fan-out; for graded
    inputs every non-zero input value counts); ``saturation`` per population the number of
    current wraps and voltage clips (fixed point only).
    """

    outputs: dict[str, torch.Tensor]
    spikes: dict[str, torch.Tensor] = field(default_factory=dict)
    spike_counts: dict[str, int] = field(default_factory=dict)
    synops: dict[str, int] = field(default_factory=dict)
    saturation: dict[str, int] = field(default_factory=dict)
    latency: int = 0
    peaks: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per population the largest ``|a_in|`` and ``|v|`` (before reset) seen, per input ``|x|``;
    in float units (``floating_pt``) or integer units (``fixed_pt``)."""


def output_bound(graph: SynapseGraph, name: str, memo: dict[str, float] | None = None) -> float | None:
    """The largest ``|integer|`` population ``name`` can send in fixed point (``None``: unbounded, a
    non-spiking neuron). A spike is 1 (a multi-spike count at most the thresholds the voltage holds),
    an input ``2**(bits-1)``, a graded relay its input sum: the row bounds of its incoming integer
    weights times their sources' bounds, at most the 24-bit payload."""
    memo = {} if memo is None else memo
    if name in memo:
        return memo[name]
    pop = graph.populations[name]
    if name in graph.fixed.inputs:
        bound: float | None = float(1 << (graph.fixed.inputs[name].bits - 1))
    elif graph.kinds.population(pop.kind).always_on:
        bound = 1.0
    elif graph.is_graded(name):
        memo[name] = float(1 << (loihi.GRADED_MESSAGE_BITS - 1))  # a cycle through relays: the payload limit
        terms = [synapse_bound(graph, syn, memo) for syn in graph.incoming(name)]
        bound = memo[name] if None in terms else min(sum(terms), memo[name])
    elif pop.spiking and pop.rule.spikes == "multi":  # as many spikes as thresholds the 24-bit voltage holds
        vth_eff = int(graph.fixed.populations[name].vth) << loihi.THRESHOLD_SHIFT
        bound = float(max(1, (loihi.STATE_LIMIT - 1) // max(vth_eff, 1)))
    else:
        bound = 1.0 if pop.spiking else None
    memo[name] = bound
    return bound


def synapse_bound(graph: SynapseGraph, syn: Synapse, memo: dict[str, float] | None = None) -> float | None:
    """The largest ``|integer sum|`` synapse ``syn`` can deliver in fixed point before its kind's
    output rule (``None``: its source is unbounded): its integer weights' row bound times the
    source's :func:`output_bound`."""
    source = output_bound(graph, syn.source, memo)
    if source is None:
        return None
    kind = graph.kinds.synapse(syn.kind)
    return kind.row_bound(np.abs(kind.fixed_weights(graph.fixed.synapses[syn.name]))) * source


def exact_in_float32(graph: SynapseGraph, syn: Synapse, memo: dict[str, float] | None = None) -> bool:
    """Whether every partial sum of ``syn``'s integer weights and its inputs stays below 2**24."""
    bound = synapse_bound(graph, syn, memo)
    return bound is not None and bound < EXACT_FLOAT32


def synapse_lag(syn: Synapse, depth: dict[str, int], timing: str) -> int:
    """Steps between a synapse's source output and its arrival at the target, in ``timing``."""
    if timing == "aligned":
        return syn.delay + (1 if syn.recurrent else 0)
    d_src, d_dst = depth[syn.source], depth[syn.target]
    extra = d_dst - d_src - (0 if syn.recurrent else 1) + syn.delay
    if extra < 0:
        raise EmulatorError(f"synapse {syn.name}: a recurrent connection from a deeper population "
                            f"(depth {d_src} -> {d_dst}) cannot be latency-aligned")
    return 1 + extra


def _nonzero(syn: Synapse, weight: np.ndarray | None) -> torch.Tensor:
    return torch.as_tensor(np.asarray(syn.weight if weight is None else weight) != 0, dtype=torch.float64)


def fanout(graph: SynapseGraph, syn: Synapse, weight: np.ndarray | None = None) -> torch.Tensor:
    """Non-zero weights each source neuron drives, shape of the source population.

    ``weight``: the weights that count (the quantised integers in fixed point, where weights
    rounded to zero are no synapse); default the synapse's float weights.
    """
    src, dst = graph.populations[syn.source], graph.populations[syn.target]
    return graph.kinds.synapse(syn.kind).fanout(syn, src.shape, dst.shape, _nonzero(syn, weight))


def fan_in(graph: SynapseGraph, syn: Synapse, weight: np.ndarray | None = None) -> torch.Tensor:
    """Non-zero synapses arriving at each target neuron, shape of the target population."""
    src, dst = graph.populations[syn.source], graph.populations[syn.target]
    return graph.kinds.synapse(syn.kind).fan_in(syn, src.shape, dst.shape, _nonzero(syn, weight))


class Emulator:
    """Runs a synapse graph over a batch (see the module docstring).

    Parameters
    ----------
    graph
        Float (``floating_pt``) or quantised (``fixed_pt``) synapse graph.
    tag
        ``"floating_pt"`` or ``"fixed_pt"``.
    timing
        ``"aligned"`` or ``"lava"``.
    device
        Torch device.
    dtype
        Float dtype of the floating-point tag.
    """

    def __init__(self, graph: SynapseGraph, tag: str = "floating_pt", timing: str = "aligned",
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64) -> None:
        if tag not in TAGS:
            raise EmulatorError(f"unknown tag {tag!r}; choose one of {TAGS}")
        if timing not in TIMINGS:
            raise EmulatorError(f"unknown timing {timing!r}; choose one of {TIMINGS}")
        self.graph, self.tag, self.timing = graph, tag, timing
        self.device = torch.device(device)
        self.fixed = tag == "fixed_pt"
        self.dtype = torch.float64 if self.fixed else dtype
        if self.fixed and graph.fixed is None:
            raise EmulatorError("fixed_pt needs a quantised graph (mksgn-quantize)")
        self.depth = graph.depth()
        self.latency = max((self.depth[p] for p in graph.outputs.values()), default=0)
        self._weights: dict[str, torch.Tensor] = {}
        self._fanout: dict[str, torch.Tensor] = {}
        bounds: dict[str, float] = {}
        for syn in graph.synapses:
            w = np.asarray(syn.weight, dtype=np.float64)
            if self.fixed:
                w = graph.kinds.synapse(syn.kind).fixed_weights(graph.fixed.synapses[syn.name]).astype(np.float64)
            exact = self.fixed and exact_in_float32(graph, syn, bounds)
            dtype = torch.float32 if exact else (torch.float64 if self.fixed else self.dtype)
            self._weights[syn.name] = torch.as_tensor(w, dtype=dtype, device=self.device)
            self._fanout[syn.name] = fanout(graph, syn, w if self.fixed else None).to(self.device)
        self._kinds = {name: graph.kinds.population(p.kind) for name, p in graph.populations.items()}
        self._params = {name: self._kinds[name].params(p, graph.fixed.populations[name] if self.fixed else None,
                                                       self.dtype, self.device)
                        for name, p in graph.populations.items() if not self._kinds[name].source}
        self._float_input: dict[str, bool] = {}
        for name in self._params:
            bound = self._input_bound(name, bounds)
            self._float_input[name] = bound is not None and bound < EXACT_FLOAT32
            if self.fixed:
                self._params[name]["input_bound"] = math.inf if bound is None else bound
        self.spike_dtype = torch.float32 if self.fixed else self.dtype
        self._lag = {syn.name: synapse_lag(syn, self.depth, timing) for syn in graph.synapses}
        self.history = max(self._lag.values(), default=0) + 1

    # ------------------------------------------------------------------ set-up

    def _input_bound(self, name: str, bounds: dict[str, float]) -> float | None:
        """The largest ``|a_in|`` population ``name`` can receive in fixed point, where every synapse
        into it passes its integer sum on unchanged (no wrap, no shift); else ``None``."""
        if not self.fixed:
            return None
        total = 0.0
        for syn in self.graph.incoming(name):
            bound = synapse_bound(self.graph, syn, bounds)
            if bound is None or not self.graph.kinds.synapse(syn.kind).passes_sum(self.graph.fixed.synapses[syn.name],
                                                                                    bound):
                return None
            total += bound
        return total

    def float_input(self, population: str) -> bool:
        """Whether ``population``'s fixed-point input is summed in float32 (exact: below 2**24, and
        no synapse into it wraps or shifts its sum)."""
        return self._float_input.get(population, False)

    def weight(self, synapse: str) -> torch.Tensor:
        """The weights the emulator uses for ``synapse`` (Lava's integers in fixed point)."""
        return self._weights[synapse]

    def fanout(self, synapse: str) -> torch.Tensor:
        """Non-zero synapses each source neuron of ``synapse`` drives (quantised weights in fixed point)."""
        return self._fanout[synapse]

    # ------------------------------------------------------------------ running

    def quantize_inputs(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Graded integer inputs (fixed point), or the inputs in the float dtype."""
        out = {}
        for name in self.graph.inputs:
            if name not in inputs:
                raise EmulatorError(f"input {name!r} is missing; inputs: {self.graph.inputs}")
            x = torch.as_tensor(inputs[name]).to(self.device, torch.float64)
            shape = self.graph.populations[name].shape
            if tuple(x.shape[2:]) != shape:
                raise EmulatorError(f"input {name!r}: expected (T, B, {', '.join(map(str, shape))}), "
                                    f"got {tuple(x.shape)}")
            if not bool(torch.isfinite(x).all()):
                raise EmulatorError(f"input {name!r} has non-finite values")
            if self.fixed:
                x = self.graph.fixed.inputs[name].encode(x)
            out[name] = x.to(self.dtype)
        return out

    def _synapse(self, syn: Synapse, x: torch.Tensor) -> torch.Tensor:
        kind = self.graph.kinds.synapse(syn.kind)
        y = kind.forward(syn, x, self._weights[syn.name], self.graph.populations[syn.target].shape)
        if not self.fixed or self._float_input[syn.target]:
            return y
        # integer weights and inputs: every sum is already a whole number (exact in its float dtype)
        return kind.fixed_output(y.to(torch.int64), self.graph.fixed.synapses[syn.name])

    def rows_per_chunk(self) -> int:
        """Rows run together: as many as keep one 8-byte value per neuron of the graph within
        :data:`CHUNK_BYTES` (a larger batch runs in chunks, the results joined: the same numbers)."""
        neurons = sum(p.size for p in self.graph.populations.values())
        return max(1, CHUNK_BYTES // (8 * max(neurons, 1)))

    def run(self, inputs: dict[str, torch.Tensor], record_spikes: bool = False) -> EmulatorResult:
        """Run ``T`` aligned steps on ``inputs`` (input name -> ``(T, B, *shape)``), in chunks of
        :meth:`rows_per_chunk` rows."""
        xs = self.quantize_inputs(inputs)
        rows, chunk = next(iter(xs.values())).shape[1], self.rows_per_chunk()
        parts = [self._run({k: v[:, i:i + chunk] for k, v in xs.items()}, record_spikes)
                 for i in range(0, rows, chunk)]
        return parts[0] if len(parts) == 1 else _joined(parts)

    def _run(self, xs: dict[str, torch.Tensor], record_spikes: bool) -> EmulatorResult:
        state = _RunState(self, xs, record_spikes)
        for tau in range(state.total):
            current: dict[str, torch.Tensor] = {}
            for name in self.graph.populations:
                current[name] = state.step(name, tau, current)
            state.advance(tau, current)
        return state.result()

    def _readout(self, name: str, value: torch.Tensor) -> torch.Tensor:
        pop = self.graph.populations[name]
        if pop.spiking or self._kinds[name].source:
            return value.to(torch.float64)
        return self._kinds[name].readout(value, self._params[name], self.fixed)


def _joined(parts: list[EmulatorResult]) -> EmulatorResult:
    """The results of consecutive row chunks as one (rows joined; counts summed; peaks the largest)."""
    first = parts[0]

    def total(key: str) -> dict[str, int]:
        return {k: sum(getattr(p, key)[k] for p in parts) for k in getattr(first, key)}

    return EmulatorResult(
        outputs={k: torch.cat([p.outputs[k] for p in parts], dim=1) for k in first.outputs},
        spikes={k: torch.cat([p.spikes[k] for p in parts], dim=1) for k in first.spikes},
        spike_counts=total("spike_counts"), synops=total("synops"), saturation=total("saturation"),
        latency=first.latency,
        peaks={n: {k: max(p.peaks[n][k] for p in parts) for k in first.peaks[n]} for n in first.peaks},
    )


class _RunState:
    """The state of one :meth:`Emulator.run`: neuron states, histories, outputs and counts."""

    def __init__(self, emulator: Emulator, xs: dict[str, torch.Tensor], record_spikes: bool) -> None:
        self.em, self.xs, self.record_spikes = emulator, xs, record_spikes
        g = emulator.graph
        self.steps, batch = next(iter(xs.values())).shape[:2]
        self.total = self.steps + (emulator.latency if emulator.timing == "lava" else 0)
        int_dtype = torch.int64
        self.state = {name: emulator._kinds[name].initial_state(
                          pop, batch, int_dtype if emulator.fixed else emulator.dtype, emulator.device)
                      for name, pop in g.populations.items() if not emulator._kinds[name].source}
        self.hist: dict[str, list[torch.Tensor]] = {name: [] for name in g.populations}
        self.outputs: dict[str, list[torch.Tensor]] = {o: [] for o in g.outputs}
        self.spikes: dict[str, list[torch.Tensor]] = {}
        self.counts = dict.fromkeys((n for n, p in g.populations.items() if p.spiking), 0)
        self.synops = dict.fromkeys((s.name for s in g.synapses), 0)
        self.saturation = dict.fromkeys(self.state, 0)
        self.incoming = {name: g.incoming(name) for name in self.state}
        self.events: dict[str, torch.Tensor] = {}
        """Per synapse: presynaptic events per source neuron, summed over its window and the batch."""
        self.step_events: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.peaks = {name: {"a_in": 0.0, "v": 0.0} for name in g.populations}
        self.constant = {name for name, x in xs.items() if bool((x == x[:1]).all())}
        self.constant |= {name for name, kind in emulator._kinds.items() if kind.always_on}
        self.batch = batch
        self.filled: dict[str, torch.Tensor] = {}
        """Source values that are the same at every step they are read: zeros after the input, ones of a constant."""
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def aligned(self, name: str, tau: int) -> int:
        """The aligned step population ``name`` runs at Lava step ``tau``."""
        return tau - (self.em.depth[name] if self.em.timing == "lava" else 0)

    def _input(self, name: str, tau: int) -> torch.Tensor:
        """The input at step ``tau``: one tensor object for every step of a constant input (direct
        encoding), so that the synapses out of it are computed once (:meth:`_contribution`)."""
        if self.em._kinds[name].always_on:  # one spike per neuron every step
            shape = (self.batch, *self.em.graph.populations[name].shape)
            return self.filled.setdefault(name, torch.ones(shape, dtype=self.em.spike_dtype, device=self.em.device))
        if tau >= self.steps:
            x = self.filled.setdefault(name, torch.zeros_like(self.xs[name][0]))
        else:
            x = self.xs[name][0] if name in self.constant else self.xs[name][tau]
        self.peaks[name]["v"] = max(self.peaks[name]["v"], float(x.abs().max()))
        return x

    def _contribution(self, syn: Synapse, src_out: torch.Tensor) -> torch.Tensor:
        """What ``syn`` delivers for ``src_out``; reused while a constant input sends the same tensor."""
        cached = self.cache.get(syn.name)
        if cached is not None and cached[0] is src_out:
            return cached[1]
        contrib = self.em._synapse(syn, src_out.to(self.em._weights[syn.name].dtype))
        if syn.source in self.constant:
            self.cache[syn.name] = (src_out, contrib)
        return contrib

    def _events(self, source: str, src_out: torch.Tensor) -> torch.Tensor:
        """Presynaptic events per neuron of ``src_out`` summed over the batch (once per output tensor)."""
        cached = self.step_events.get(source)
        if cached is not None and cached[0] is src_out:
            return cached[1]
        events = src_out.sum(dim=0) if self.em.graph.populations[source].spiking else src_out.sign().abs_().sum(dim=0)
        self.step_events[source] = (src_out, events)
        return events

    def _a_in(self, name: str, k: int, current: dict[str, torch.Tensor]) -> torch.Tensor | None:
        a_in = None
        for syn in self.incoming[name]:
            lag = self.em._lag[syn.name]
            hist = self.hist[syn.source]
            src_out = current[syn.source] if lag == 0 else (hist[-lag] if len(hist) >= lag else None)
            if src_out is None:
                continue
            if 0 <= k < self.steps:
                events = self._events(syn.source, src_out)
                self.events[syn.name] = events if syn.name not in self.events else self.events[syn.name] + events
            contrib = self._contribution(syn, src_out)
            a_in = contrib if a_in is None else a_in + contrib
        return a_in

    def step(self, name: str, tau: int, current: dict[str, torch.Tensor]) -> torch.Tensor:
        """The output of population ``name`` at Lava step ``tau``."""
        em, pop, kind = self.em, self.em.graph.populations[name], self.em._kinds[name]
        if kind.source:
            return self._input(name, tau)
        k = self.aligned(name, tau)
        window = 0 <= k < self.steps
        st = self.state[name]
        a_in = self._a_in(name, k, current)
        if a_in is None:
            a_in = torch.zeros_like(st["u"])
        if em.fixed:
            out, events = kind.step_fixed(pop, a_in, st, em._params[name], k >= 0)
            if window:
                self.saturation[name] += events
        else:
            out, peak = kind.step_float(pop, a_in, st, em._params[name], k >= 0, track=window)
            if window:
                self.peaks[name]["a_in"] = max(self.peaks[name]["a_in"], float(a_in.abs().max()))
                self.peaks[name]["v"] = max(self.peaks[name]["v"], peak)
        if not pop.spiking:
            return out
        spikes = out.to(em.spike_dtype)  # 0/1: what the synapses out of it multiply
        if window:
            exact = spikes.numel() < EXACT_FLOAT32  # a float32 count below 2**24 is exact
            self.counts[name] += int(spikes.sum() if exact else spikes.sum(dtype=torch.float64))
            if self.record_spikes:
                self.spikes.setdefault(name, []).append(out)
        return spikes

    def advance(self, tau: int, current: dict[str, torch.Tensor]) -> None:
        """Keep this step's outputs for later steps and read the outputs."""
        for name, value in current.items():
            self.hist[name].append(value)
            if len(self.hist[name]) > self.em.history:
                self.hist[name].pop(0)
        for out_name, pop_name in self.em.graph.outputs.items():
            if 0 <= self.aligned(pop_name, tau) < self.steps:
                self.outputs[out_name].append(self.em._readout(pop_name, current[pop_name]))

    def result(self) -> EmulatorResult:
        for name, events in self.events.items():
            self.synops[name] = int((events.to(torch.float64) * self.em._fanout[name]).sum())
        return EmulatorResult(
            outputs={o: torch.stack(v) for o, v in self.outputs.items()},
            spikes={n: torch.stack(v) for n, v in self.spikes.items()},
            spike_counts=self.counts, synops=self.synops, saturation=self.saturation if self.em.fixed else {},
            latency=self.em.latency, peaks=self.peaks,
        )
