"""A batched torch emulator of what Lava computes for a :class:`~mksgn.core.synapse_graph.SynapseGraph`.

Two arithmetic tags, as Lava's process models:

``floating_pt``
    Float64 (or float32) ``PyLifModelFloat`` neurons and float synapses.
``fixed_pt``
    Integers, bit for bit as ``PyLifModelBitAcc`` with ``PyDenseModelBitAcc`` (for
    ``elementwise``, ``mix`` and ``dense`` synapses: weights clipped and truncated, the sum
    shifted by ``weight_exp``) or ``PyConvModelFixed`` (``conv`` synapses: the sum wrapped
    to 24 bits, no exponent); inputs are graded integers. It needs a quantised graph
    (:mod:`mksgn.convert.quantize`).

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
    proves it); ``latency`` says by how much Lava's output is late.

The integer arithmetic runs as float64 matrix products and convolutions on integer values
(float32 where the largest possible sum of a synapse stays below 2**24, else float64: exact
either way) and is rounded back to int64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mksgn.core.synapse_graph import Population, Synapse, SynapseGraph
from mksgn.core import loihi
from mksgn.errors import MksgnError

TAGS = ("floating_pt", "fixed_pt")
TIMINGS = ("aligned", "lava")
DENSE_LIKE = ("elementwise", "mix", "dense")
"""Synapse kinds with Lava Dense/Sparse fixed-point semantics (``conv``: Conv semantics)."""


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


def graded_input(x: torch.Tensor, q: dict) -> torch.Tensor:
    """Real inputs as the signed ``q["bits"]``-bit integers of scale ``q["scale"]`` (still a float tensor)."""
    limit = (1 << (int(q["bits"]) - 1)) - 1
    return torch.round(torch.as_tensor(x, dtype=torch.float64) / float(q["scale"])).clamp(-limit, limit)


def exact_in_float32(graph: SynapseGraph, syn: Synapse, w: np.ndarray) -> bool:
    """Whether every partial sum of ``syn``'s integer weights ``w`` and its inputs stays below 2**24."""
    src = graph.populations[syn.source]
    if src.kind == "input":
        x_max = float(1 << (int(graph.metadata["quantization"]["inputs"][syn.source]["bits"]) - 1))
    elif src.spiking:
        x_max = 1.0
    else:
        return False
    w_abs = np.abs(w)
    if syn.kind == "dense":
        bound = float(w_abs.sum(axis=1).max())
    elif syn.kind == "mix":
        bound = float(w_abs.sum(axis=(2, 3)).max())
    elif syn.kind == "conv":
        bound = float(w_abs.reshape(w_abs.shape[0], -1).sum(axis=1).max())
    else:
        bound = float(w_abs.max())
    return bound * x_max < EXACT_FLOAT32


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


def _fanout(syn: Synapse, src: Population, dst: Population, weight: np.ndarray | None = None) -> torch.Tensor:
    """Non-zero weights each source neuron drives, shape of the source population.

    ``weight``: the weights that count (the quantised integers in fixed point, where weights
    rounded to zero are no synapse); default the synapse's float weights.
    """
    nz = torch.as_tensor(np.asarray(syn.weight if weight is None else weight) != 0, dtype=torch.float64)
    if syn.kind == "elementwise":
        return torch.broadcast_to(nz, src.shape).contiguous()
    if syn.kind == "dense":
        return nz.sum(dim=0).reshape(src.shape)
    if syn.kind == "mix":
        per = nz.sum(dim=(0, 1))  # (W_in, C_in)
        c, h, w = src.shape
        return per.T.reshape(c, 1, w).expand(c, h, w).contiguous()
    x = torch.zeros((1, *src.shape), dtype=torch.float64, requires_grad=True)
    y = _conv(syn, x, nz)
    y.sum().backward()
    return x.grad[0].detach()


def fan_in(syn: Synapse, src: Population, dst: Population, weight: np.ndarray | None = None) -> torch.Tensor:
    """Non-zero synapses arriving at each target neuron, shape of the target population."""
    nz = torch.as_tensor(np.asarray(syn.weight if weight is None else weight) != 0, dtype=torch.float64)
    ones = torch.ones((1, *src.shape), dtype=torch.float64)
    return synapse_forward(syn, ones, nz, dst.shape)[0]


def synapse_forward(syn: Synapse, x: torch.Tensor, w: torch.Tensor, target_shape: tuple[int, ...]) -> torch.Tensor:
    """The synapse's linear map on a batch ``x`` ``(B, *source shape)`` with weights ``w``."""
    b = x.shape[0]
    if syn.kind == "elementwise":
        return x * w
    if syn.kind == "conv":
        return _conv(syn, x, w)
    if syn.kind == "mix":
        _, c, h, wi = x.shape
        wo, co = w.shape[:2]
        y = x.permute(0, 2, 3, 1).reshape(b, h, wi * c) @ w.reshape(wo * co, wi * c).T
        return y.reshape(b, h, wo, co).permute(0, 3, 1, 2)
    return (x.reshape(b, -1) @ w.T).reshape(b, *target_shape)


def _conv(syn: Synapse, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    fn = F.conv1d if w.dim() == 3 else F.conv2d
    return fn(x, w, None, syn.stride, syn.padding, syn.dilation, syn.groups)


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
        if self.fixed and "quantization" not in graph.metadata:
            raise EmulatorError("fixed_pt needs a quantised graph (mksgn-quantize)")
        self.depth = graph.depth()
        self.latency = max((self.depth[p] for p in graph.outputs.values()), default=0)
        self._weights: dict[str, torch.Tensor] = {}
        self._fanout: dict[str, torch.Tensor] = {}
        for syn in graph.synapses:
            w = np.asarray(syn.weight, dtype=np.float64)
            if self.fixed:
                w = self._fixed_weights(syn, w)
            exact = self.fixed and exact_in_float32(graph, syn, w)
            dtype = torch.float32 if exact else (torch.float64 if self.fixed else self.dtype)
            self._weights[syn.name] = torch.as_tensor(w, dtype=dtype, device=self.device)
            self._fanout[syn.name] = _fanout(syn, graph.populations[syn.source], graph.populations[syn.target],
                                             w if self.fixed else None).to(self.device)
        self._params = {name: self._neuron_params(p) for name, p in graph.populations.items() if p.kind != "input"}
        self._lag = {syn.name: synapse_lag(syn, self.depth, timing) for syn in graph.synapses}
        self.history = max(self._lag.values(), default=0) + 1

    # ------------------------------------------------------------------ set-up

    def weight(self, synapse: str) -> torch.Tensor:
        """The weights the emulator uses for ``synapse`` (Lava's integers in fixed point)."""
        return self._weights[synapse]

    def fanout(self, synapse: str) -> torch.Tensor:
        """Non-zero synapses each source neuron of ``synapse`` drives (quantised weights in fixed point)."""
        return self._fanout[synapse]

    def _fixed_weights(self, syn: Synapse, w: np.ndarray) -> np.ndarray:
        """The synapse's quantised integer weights as the Lava model uses them."""
        q = self.graph.metadata["quantization"]["synapses"][syn.name]
        w = np.asarray(q["weight"], dtype=np.int64)
        if syn.kind in DENSE_LIKE:
            return loihi.dense_weights(w, q.get("num_weight_bits", loihi.WEIGHT_BITS)).astype(np.float64)
        return w.astype(np.float64)

    def _neuron_params(self, pop: Population) -> dict[str, torch.Tensor]:
        def t(x, dtype=None) -> torch.Tensor:
            return torch.as_tensor(np.broadcast_to(np.asarray(x), pop.shape).copy(),
                                   dtype=dtype or self.dtype, device=self.device)

        if self.fixed:
            q = self.graph.metadata["quantization"]["populations"][pop.name]
            i64 = torch.int64
            bias = loihi.effective_bias(t(q["bias_mant"], i64), t(q["bias_exp"], i64))
            return {"du": torch.tensor(int(q["du"]), dtype=i64), "dv": torch.tensor(int(q["dv"]), dtype=i64),
                    "vth": torch.tensor(int(q["vth"]), dtype=i64), "bias": bias,
                    "scale": torch.tensor(float(q["scale"]), dtype=torch.float64)}
        threshold = t(pop.threshold) if pop.spiking else None
        return {"du": t(pop.du), "dv": t(pop.dv), "bias": t(pop.bias), "vth": threshold}

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
                x = graded_input(x, self.graph.metadata["quantization"]["inputs"][name])
            out[name] = x.to(self.dtype)
        return out

    def _synapse(self, syn: Synapse, x: torch.Tensor) -> torch.Tensor:
        y = synapse_forward(syn, x, self._weights[syn.name], self.graph.populations[syn.target].shape)
        if not self.fixed:
            return y
        y = torch.round(y).to(torch.int64)
        if syn.kind in DENSE_LIKE:
            exp = int(self.graph.metadata["quantization"]["synapses"][syn.name].get("weight_exp", 0))
            return loihi.shift(y, exp)
        return loihi.wrap_signed(y, loihi.CONV_OUTPUT_BITS)

    def run(self, inputs: dict[str, torch.Tensor], record_spikes: bool = False) -> EmulatorResult:
        """Run ``T`` aligned steps on ``inputs`` (input name -> ``(T, B, *shape)``)."""
        xs = self.quantize_inputs(inputs)
        steps, batch = next(iter(xs.values())).shape[:2]
        total = steps + (self.latency if self.timing == "lava" else 0)
        g = self.graph
        int_dtype = torch.int64
        state: dict[str, dict[str, torch.Tensor]] = {}
        for name, pop in g.populations.items():
            if pop.kind == "input":
                continue
            zero = torch.zeros((batch, *pop.shape), dtype=int_dtype if self.fixed else self.dtype, device=self.device)
            state[name] = {"u": zero, "v": zero.clone()}
        hist: dict[str, list[torch.Tensor]] = {name: [] for name in g.populations}
        outputs: dict[str, list[torch.Tensor]] = {o: [] for o in g.outputs}
        spikes: dict[str, list[torch.Tensor]] = {}
        counts = dict.fromkeys((n for n, p in g.populations.items() if p.spiking), 0)
        synops = dict.fromkeys((s.name for s in g.synapses), 0)
        saturation = dict.fromkeys(state, 0)
        incoming = {name: g.incoming(name) for name in state}
        peaks = {name: {"a_in": 0.0, "v": 0.0} for name in g.populations}
        for tau in range(total):
            current: dict[str, torch.Tensor] = {}
            for name, pop in g.populations.items():
                if pop.kind == "input":
                    x = xs[name][tau] if tau < steps else torch.zeros_like(xs[name][0])
                    current[name] = x
                    peaks[name]["v"] = max(peaks[name]["v"], float(x.abs().max()))
                    continue
                k = tau - (self.depth[name] if self.timing == "lava" else 0)  # aligned step
                a_in = None
                for syn in incoming[name]:
                    lag = self._lag[syn.name]
                    src_out = current[syn.source] if lag == 0 else (
                        hist[syn.source][-lag] if len(hist[syn.source]) >= lag else None)
                    if src_out is None:
                        continue
                    if 0 <= k < steps:
                        events_per_neuron = src_out.ne(0).sum(dim=0)  # presynaptic events, summed over the batch
                        synops[syn.name] += int((events_per_neuron.to(torch.float64) * self._fanout[syn.name]).sum())
                    contrib = self._synapse(syn, src_out.to(self._weights[syn.name].dtype))
                    a_in = contrib if a_in is None else a_in + contrib
                p = self._params[name]
                st = state[name]
                if a_in is None:
                    a_in = torch.zeros_like(st["u"])
                bias = p["bias"] if k >= 0 else p["bias"] * 0
                if self.fixed:
                    s, u, v, events = loihi.lif_fixed_step(a_in, st["u"], st["v"], p["du"], p["dv"], p["vth"], bias,
                                                           count_events=True)
                    if 0 <= k < steps:
                        if not pop.spiking:  # a read-out crossing the largest threshold resets: an overflow
                            events += int(s.sum())
                        saturation[name] += events
                    if not pop.spiking:
                        s = torch.zeros_like(s)
                else:
                    u, v = loihi.lif_float_membrane(a_in, st["u"], st["v"], p["du"], p["dv"], bias)
                    if 0 <= k < steps:
                        peaks[name]["a_in"] = max(peaks[name]["a_in"], float(a_in.abs().max()))
                        peaks[name]["v"] = max(peaks[name]["v"], float(v.abs().max()), float(u.abs().max()))
                    if pop.spiking:
                        s = v > p["vth"]
                        v = v.masked_fill(s, 0)
                    else:
                        s = torch.zeros_like(v, dtype=torch.bool)
                st["u"], st["v"] = u, v
                out = s if pop.spiking else v
                current[name] = out.to(self.dtype) if pop.spiking else out
                if 0 <= k < steps and pop.spiking:
                    counts[name] += int(s.sum())
                    if record_spikes:
                        spikes.setdefault(name, []).append(s)
            for name in g.populations:
                hist[name].append(current[name])
                if len(hist[name]) > self.history:
                    hist[name].pop(0)
            for out_name, pop_name in g.outputs.items():
                k = tau - (self.depth[pop_name] if self.timing == "lava" else 0)
                if 0 <= k < steps:
                    outputs[out_name].append(self._readout(pop_name, current[pop_name]))
        return EmulatorResult(
            outputs={o: torch.stack(v) for o, v in outputs.items()},
            spikes={n: torch.stack(v) for n, v in spikes.items()},
            spike_counts=counts, synops=synops, saturation=saturation if self.fixed else {},
            latency=self.latency, peaks=peaks,
        )

    def _readout(self, name: str, value: torch.Tensor) -> torch.Tensor:
        pop = self.graph.populations[name]
        if pop.spiking or pop.kind == "input":
            return value.to(torch.float64)
        if self.fixed:  # v is in units of 2**-6 of one synaptic unit
            return value.to(torch.float64) * (float(self._params[name]["scale"]) / (1 << loihi.ACTIVATION_SHIFT))
        return value.to(torch.float64)

