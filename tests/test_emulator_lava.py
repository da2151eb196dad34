"""The fixed-point emulator against Lava's own fixed_pt process models, spike for spike.

Small networks are built twice: as a quantised synapse graph for the emulator (Lava
timing) and by hand from stock Lava processes (RingBuffer source, Dense / Sparse / Conv,
LIF, RingBuffer sinks). Edge cases: weights beyond 8 bits (Dense clips them), odd
mixed-sign weights (Dense drops the lowest bit), negative and positive weight exponents,
a current that wraps at 24 bits, a voltage that saturates, a Conv output wrapped into 24
bits, a non-square strided kernel (the NCHW -> WHC layout and the kernel flip).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mksgn.core.fixed_point import FixedPoint
from mksgn.core.synapse_graph import Population, Synapse, SynapseGraph
from mksgn.core import loihi
from mksgn.core.emulator import Emulator
from mksgn.deploy.lava_compat import lava_import

STEPS = 12


def _pop(name: str, shape, du: int, dv: int, vth: int, bias_mant=0, bias_exp=0) -> tuple[Population, dict]:
    pop = Population(name, tuple(shape), du=np.ones(()), dv=np.ones(()), threshold=np.ones(()))
    q = {"scale": 1.0, "vth": vth, "du": du, "dv": dv, "bias_mant": np.broadcast_to(bias_mant, shape).copy(),
         "bias_exp": np.broadcast_to(bias_exp, shape).copy()}
    return pop, q


def _graph(in_shape, layers: list[tuple[Population, dict, Synapse, dict]]) -> SynapseGraph:
    pops = {"in": Population("in", tuple(in_shape), kind="input")}
    q = {"format": "test", "inputs": {"in": {"scale": 1.0, "bits": 2}}, "populations": {}, "synapses": {}}
    synapses = []
    for pop, qp, syn, qs in layers:
        pops[pop.name] = pop
        q["populations"][pop.name] = qp
        synapses.append(syn)
        q["synapses"][syn.name] = {"num_weight_bits": loihi.WEIGHT_BITS, **qs}
    outputs = {f"out_{p}": p for p in pops if p != "in"}
    return SynapseGraph(pops, synapses, ["in"], outputs, dt=1e-4, fixed=FixedPoint.from_metadata(q))


def _emulate(sg: SynapseGraph, spikes: np.ndarray) -> dict[str, np.ndarray]:
    """Aligned spikes per population from the emulator in Lava timing; ``spikes`` ``(T, *shape)``."""
    res = Emulator(sg, "fixed_pt", "lava").run({"in": torch.as_tensor(spikes[:, None])}, record_spikes=True)
    return {name: s[:, 0].numpy().astype(float) for name, s in res.spikes.items()}


def _lava_run(source_data: np.ndarray, build, sinks: dict[str, tuple[object, tuple]], steps: int) -> dict:
    Source = lava_import("lava.proc.io.source").RingBuffer
    Sink = lava_import("lava.proc.io.sink").RingBuffer
    RunSteps = lava_import("lava.magma.core.run_conditions").RunSteps
    Loihi2SimCfg = lava_import("lava.magma.core.run_configs").Loihi2SimCfg
    source = Source(data=source_data)
    procs = build(source)
    out_sinks = {}
    for name, shape in sinks.items():
        sink = Sink(shape=shape, buffer=steps)
        procs[name].s_out.connect(sink.a_in)
        out_sinks[name] = sink
    first = next(iter(out_sinks.values()))
    try:
        first.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return {name: np.asarray(s.data.get()) for name, s in out_sinks.items()}
    finally:
        first.stop()


def _random_spikes(shape, p: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((STEPS, *shape)) < p).astype(np.float64)


@pytest.mark.lava
def test_dense_and_sparse_chain_with_clipping_exponents_wrap_and_saturation():
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(0)
    n_in, n1, n2, n3 = 40, 12, 8, 5
    w1 = rng.integers(-300, 300, size=(n1, n_in))  # beyond 8 bits: clipped; odd values: truncated
    w1[0] = 255  # neuron 0: strong input, current barely decays (du = 0): it wraps at 24 bits
    w2 = rng.integers(-120, 200, size=(n2, n1))
    w2[rng.random((n2, n1)) < 0.4] = 0  # sparse
    w3 = rng.integers(-50, 250, size=(n3, n2))
    w3[0] = 250  # neuron 0 of layer 3: no leak (dv = 0), large exponent: its voltage saturates
    layers = [  # name, n, weights, kind, (du, dv, vth), weight_exp
        ("lif1", n1, w1, "dense", (0, 1200, 9000), 1),
        ("lif2", n2, w2, "sparse", (3000, 700, 40), -2),
        ("lif3", n3, w3, "dense", (4095, 0, 131071), 6),
    ]
    specs, prev = [], "in"
    for name, n, w, _, (du, dv, vth), exp in layers:
        pop, q = _pop(name, (n,), du, dv, vth)
        syn = Synapse(f"{prev}->{name}", prev, name, "dense", w.astype(float))
        specs.append((pop, q, syn, {"weight": w, "weight_exp": exp}))
        prev = name
    sg = _graph((n_in,), specs)
    spikes = _random_spikes((n_in,), 0.5, seed=1)
    spikes[:, :10] = 1.0
    emulated = _emulate(sg, spikes)
    res = Emulator(sg, "fixed_pt", "lava").run({"in": torch.as_tensor(spikes[:, None])})
    assert res.saturation["lif1"] > 0 and res.saturation["lif3"] > 0, (res.saturation, res.spike_counts)  # the edge cases happen

    Dense = lava_import("lava.proc.dense.process").Dense
    Sparse = lava_import("lava.proc.sparse.process").Sparse
    LIF = lava_import("lava.proc.lif.process").LIF

    def build(source):
        procs, port = {}, source.s_out
        for name, n, w, kind, (du, dv, vth), exp in layers:
            syn = Sparse(weights=csr_matrix(w), weight_exp=exp) if kind == "sparse" else Dense(weights=w, weight_exp=exp)
            lif = LIF(shape=(n,), du=du, dv=dv, vth=vth)
            port.connect(syn.s_in)
            syn.a_out.connect(lif.a_in)
            procs[name], port = lif, lif.s_out
        return procs

    data = np.concatenate([spikes, np.zeros((3, n_in))]).T
    got = _lava_run(data, build, {name: (n,) for name, n, *_ in layers}, STEPS + 3)
    for depth, (name, *_) in enumerate(layers, start=1):
        lava_aligned = got[name][:, depth:depth + STEPS].T
        assert lava_aligned.sum() > 0, name
        np.testing.assert_array_equal(emulated[name], lava_aligned, err_msg=name)


@pytest.mark.lava
def test_conv_with_strided_non_square_kernel_and_24_bit_wrap():
    rng = np.random.default_rng(3)
    c_in, h, w, c_out = 3, 9, 5, 4
    kernel = rng.integers(-60, 250, size=(c_out, c_in, 3, 1))  # torch layout (C_out, C_in, kH, kW)
    kernel[3] = 2_000_000  # channel 3: sums beyond 24 bits, wrapped by the Conv
    stride, padding = (2, 1), (1, 0)
    h_out = (h + 2 * padding[0] - 3) // stride[0] + 1
    out_shape = (c_out, h_out, w)
    pop, q = _pop("lif", out_shape, 4095, 2048, 200)
    syn = Synapse("in->lif", "in", "lif", "conv", kernel.astype(float), stride=stride, padding=padding,
                  dilation=(1, 1), groups=1)
    sg = _graph((c_in, h, w), [(pop, q, syn, {"weight": kernel, "weight_exp": 0})])
    spikes = _random_spikes((c_in, h, w), 0.4, seed=4)
    emulated = _emulate(sg, spikes)["lif"]

    Conv = lava_import("lava.proc.conv.process").Conv
    LIF = lava_import("lava.proc.lif.process").LIF
    # Lava: tensors (W, H, C), weight (C_out, kW, kH, C_in), a true convolution (flipped kernel)
    w_lava = np.flip(kernel, axis=(2, 3)).transpose(0, 3, 2, 1).copy()

    def build(source):
        conv = Conv(weight=w_lava, input_shape=(w, h, c_in), stride=stride[::-1], padding=padding[::-1])
        lif = LIF(shape=(w, h_out, c_out), du=4095, dv=2048, vth=200)
        source.s_out.reshape((w, h, c_in)).connect(conv.s_in)
        conv.a_out.connect(lif.a_in)
        return {"lif": lif}

    data = np.concatenate([spikes, np.zeros((1, c_in, h, w))]).transpose(0, 3, 2, 1).reshape(STEPS + 1, -1).T
    got = _lava_run(data, build, {"lif": (w, h_out, c_out)}, STEPS + 1)["lif"]  # (W, H, C, steps)
    lava_aligned = got[..., 1:STEPS + 1].transpose(3, 2, 1, 0)
    assert 0 < lava_aligned.sum() < lava_aligned.size
    np.testing.assert_array_equal(emulated, lava_aligned)


@pytest.mark.lava
def test_lif_bias_and_decay_match_the_shared_step_function():
    """No input, biases with exponents (both signs of the mantissa), fractional decays."""
    LIF = lava_import("lava.proc.lif.process").LIF
    mant = np.array([100, -37, 4095, 7, 900])
    exp = np.array([0, 3, 2, 7, 1])
    du, dv, vth = 1000, 300, 2000

    def build(source):
        return {"lif": LIF(shape=(5,), du=du, dv=dv, vth=vth, bias_mant=mant, bias_exp=exp)}

    got = _lava_run(np.zeros((1, STEPS)), build, {"lif": (5,)}, STEPS)["lif"]
    u = v = np.zeros(5, dtype=np.int64)
    expected = []
    for _ in range(STEPS):
        s, u, v = loihi.lif_fixed_step(np.zeros(5, dtype=np.int64), u, v, du, dv, vth,
                                       loihi.effective_bias(mant, exp))
        expected.append(s.astype(float))
    expected = np.stack(expected, axis=1)
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(got, expected)


def test_dense_weight_conditioning_matches_lava_utils():
    weightutils = lava_import("lava.utils.weightutils")
    rng = np.random.default_rng(5)
    for w in (rng.integers(-400, 400, size=(6, 7)), rng.integers(0, 400, size=(6, 7)),
              -rng.integers(0, 400, size=(6, 7))):
        mode = weightutils.determine_sign_mode(w)
        for bits in (8, 6):
            ref = weightutils.truncate_weights(weightutils.clip_weights(w, mode, num_bits=8), mode, bits)
            np.testing.assert_array_equal(loihi.dense_weights(w, bits), ref)


@pytest.mark.parametrize("du,dv", [(4095, 300), (1000, 0), (0, 4096 - 1), (2, 4096), (4095, 4096)])
def test_torch_lif_step_equals_the_reference_integer_step(du, dv):
    """``lif_fixed_step_torch`` (the emulator's) and ``lif_fixed_step`` (proven against Lava above)
    give the same integers, wraps of the current and clips of the voltage included."""
    rng = np.random.default_rng(du + dv)
    shape = (4, 300)
    limit = loihi.STATE_LIMIT
    u = torch.as_tensor(rng.integers(-limit + 1, limit, size=shape))
    v = torch.as_tensor(rng.integers(-limit + 1, limit, size=shape))
    bias = torch.as_tensor(rng.integers(-5000, 5000, size=shape[1:]))
    vth = 20000
    for a_in in (rng.integers(-300, 300, size=shape), rng.integers(-limit // 8, limit // 8, size=shape)):
        for as_float in (False, True):
            x = torch.as_tensor(a_in)
            x = x.to(torch.float32) if as_float else x
            for b in (bias, None):
                want = loihi.lif_fixed_step(torch.as_tensor(a_in), u, v, torch.tensor(du), torch.tensor(dv),
                                            torch.tensor(vth), bias if b is not None else torch.zeros_like(bias),
                                            count_events=True)
                u0, v0 = u.clone(), v.clone()
                got = loihi.lif_fixed_step_torch(x, u, v, du, dv, vth, b)
                for w, g in zip(want[:3], got[:3]):
                    assert torch.equal(w, g)
                assert want[3] == got[3]
                assert torch.equal(u, u0) and torch.equal(v, v0)  # the state passed in is not modified
    assert want[3] > 0  # the large inputs wrapped currents or clipped voltages
