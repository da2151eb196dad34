"""The Lava builder: mksgn's processes against stock ones, random DAGs and the student, fixed and float.

Lava ``fixed_pt`` must equal the fixed-point emulator spike for spike; Lava ``floating_pt``
the reference NIR executor (float64 both; the same float operations, so no ties occur in
these cases), after the latency alignment that the builder reports.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from helpers import graph_inputs, recurrent_cubalif_graph, tiny_graph

from mksgn.convert.quantize import quantize
from mksgn.core.fuse import fuse
from mksgn.core.emulator import Emulator
from mksgn.deploy.lava_builder import run_lava
from mksgn.deploy.lava_compat import lava_import
from mksgn.core.executor import NIRExecutor

pytestmark = pytest.mark.lava
STEPS = 8


def _through_lif(connect, tag: str, data: np.ndarray, out_shape, exception=None) -> np.ndarray:
    """Spikes of a LIF fed by ``connect(source) -> a_out`` (the synapse under test) from a RingBuffer of ``data``."""
    Source = lava_import("lava.proc.io.source").RingBuffer
    Sink = lava_import("lava.proc.io.sink").RingBuffer
    RunSteps = lava_import("lava.magma.core.run_conditions").RunSteps
    Loihi2SimCfg = lava_import("lava.magma.core.run_configs").Loihi2SimCfg
    LIF = lava_import("lava.proc.lif.process").LIF
    fixed = tag == "fixed_pt"
    lif = LIF(shape=out_shape, du=4095 if fixed else 1.0, dv=1500 if fixed else 0.4, vth=300 if fixed else 2.0)
    sink = Sink(shape=out_shape, buffer=data.shape[-1])
    connect(Source(data=data)).connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    try:
        sink.run(condition=RunSteps(num_steps=data.shape[-1]),
                 run_cfg=Loihi2SimCfg(select_tag=tag, exception_proc_model_map=exception or {}))
        return np.asarray(sink.data.get())
    finally:
        sink.stop()


def _feed(proc, port):
    """Connect ``port`` to the synapse ``proc`` and return its output port."""
    port.connect(proc.s_in)
    return proc.a_out


@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_fast_sparse_model_equals_the_stock_sparse_model(tag):
    from scipy.sparse import csr_matrix

    from mksgn.deploy.lava_procs.models import fast_sparse_models

    Sparse = lava_import("lava.proc.sparse.process").Sparse
    rng = np.random.default_rng(4)
    n_in, n_out = 30, 12
    w = rng.integers(-300, 300, size=(n_out, n_in)) * (rng.random((n_out, n_in)) < 0.4)
    if tag == "floating_pt":
        w = w / 60.0
    data = (rng.random((n_in, STEPS)) < 0.5).astype(np.int32)

    def build(source):
        return _feed(Sparse(weights=csr_matrix(w), weight_exp=-1), source.s_out)

    fast = _through_lif(build, tag, data, (n_out,), exception=fast_sparse_models()[tag])
    stock = _through_lif(build, tag, data, (n_out,))
    assert 0 < stock.sum() < stock.size
    np.testing.assert_array_equal(fast, stock)


@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_fast_conv_model_equals_the_stock_conv_model(tag):
    from mksgn.deploy.lava_procs.models import fast_conv_models

    Conv = lava_import("lava.proc.conv.process").Conv
    rng = np.random.default_rng(1)
    h, w, c_in, c_out = 9, 6, 4, 6
    weight = rng.integers(-80, 120, size=(c_out, 3, 2, c_in // 2))  # groups = 2
    weight[5] = 3_000_000  # beyond 24 bits: wraps in fixed point
    if tag == "floating_pt":
        weight = weight / 50.0
    data = (rng.random((h, w, c_in, STEPS)) < 0.5).astype(np.int32)
    kwargs = dict(weight=weight, input_shape=(h, w, c_in), padding=(1, 1), stride=(2, 1), dilation=(1, 2), groups=2)

    def conv(source):
        return _feed(Conv(**kwargs), source.s_out)

    out_shape = (5, 6, c_out)
    fast = _through_lif(conv, tag, data, out_shape, exception=fast_conv_models()[tag])
    stock = _through_lif(conv, tag, data, out_shape)
    assert 0 < stock.sum() < stock.size
    np.testing.assert_array_equal(fast, stock)


def _delayed_synapses(tag: str, steps: int) -> tuple[dict, list]:
    """Source data and ``(name, build(sources) -> a_out)`` of stock DelaySparse / DelayDense cases: binary
    and graded input, uniform and mixed delays 0..5, weights beyond 8 bits and odd mixed-sign ones
    (fixed point clips and truncates them), positive and negative weight exponents."""
    from scipy.sparse import csr_matrix

    DelayDense = lava_import("lava.proc.dense.process").DelayDense
    DelaySparse = lava_import("lava.proc.sparse.process").DelaySparse
    fixed = tag == "fixed_pt"
    rng = np.random.default_rng(7)
    n_in, n_out, active = 20, 9, steps - 6  # the last 6 steps flush the delays
    binary = (rng.random((n_in, steps)) < 0.4).astype(np.int32)
    graded = rng.integers(-3000, 5000, size=(n_in, steps)) if fixed else rng.normal(0.0, 3.0, (n_in, steps))
    binary[:, active:] = 0
    graded[:, active:] = 0
    data = {"binary": binary, "graded": graded.astype(np.int32) if fixed else graded}
    cases = []
    for i, (delays, exp) in enumerate([(3, 2), (0, -3), ("mixed", -1), ("mixed", 3)]):
        w = rng.integers(-300, 300, size=(n_out, n_in)) * (rng.random((n_out, n_in)) < 0.6)
        if i == 1:
            w = np.abs(w)  # excitatory only: no truncation
        w = w if fixed else w / 37.0
        d = rng.integers(0, 6, size=w.shape) if delays == "mixed" else np.full(w.shape, delays, dtype=int)
        for source in data:
            bits = 24 if source == "graded" else 0
            sparse = csr_matrix(w)
            d_sparse = csr_matrix((d[sparse.nonzero()], sparse.indices, sparse.indptr), shape=w.shape)
            kwargs = dict(weight_exp=exp, num_message_bits=bits)
            cases.append((f"sparse {delays} exp {exp} {source}", source,
                          lambda sparse=sparse, d_sparse=d_sparse, kwargs=kwargs: DelaySparse(
                              weights=sparse, delays=d_sparse, max_delay=5, **kwargs)))
            cases.append((f"dense {delays} exp {exp} {source}", source,
                          lambda w=w, d=d, kwargs=kwargs: DelayDense(weights=w, delays=d, max_delay=5, **kwargs)))
    return data, cases


def _synapse_outputs(tag: str, exception: dict | None) -> dict[str, np.ndarray]:
    """``a_out`` of every :func:`_delayed_synapses` case at every step: one Lava run per source (a run
    takes the processes connected to the one it is called on)."""
    Source = lava_import("lava.proc.io.source").RingBuffer
    Sink = lava_import("lava.proc.io.sink").RingBuffer
    RunSteps = lava_import("lava.magma.core.run_conditions").RunSteps
    Loihi2SimCfg = lava_import("lava.magma.core.run_configs").Loihi2SimCfg
    steps = 16
    data, cases = _delayed_synapses(tag, steps)
    sources = {name: Source(data=x) for name, x in data.items()}
    sinks: dict[str, dict] = {name: {} for name in data}
    for name, source, build in cases:
        proc = build()
        sinks[source][name] = Sink(shape=proc.a_out.shape, buffer=steps)
        sources[source].s_out.connect(proc.s_in)
        proc.a_out.connect(sinks[source][name].a_in)
    out = {}
    for source in data:
        try:
            sources[source].run(condition=RunSteps(num_steps=steps),
                                run_cfg=Loihi2SimCfg(select_tag=tag, exception_proc_model_map=exception or {}))
            out.update({name: np.asarray(sink.data.get()) for name, sink in sinks[source].items()})
        finally:
            sources[source].stop()
    return out


@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_fast_delay_models_equal_the_stock_models(tag):
    from mksgn.deploy.lava_procs.models import fast_delay_models

    fast = _synapse_outputs(tag, fast_delay_models()[tag])
    stock = _synapse_outputs(tag, None)
    assert len(stock) == 16
    for name, out in stock.items():
        assert np.count_nonzero(out) > out.size // 4, name
        np.testing.assert_array_equal(fast[name], out, err_msg=name)
    # the delays are real: the same weights delayed 3 steps and 0 steps
    assert np.count_nonzero(stock["dense 3 exp 2 binary"][:, :4]) == 0
    assert np.count_nonzero(stock["dense 0 exp -3 binary"][:, 1]) > 0


# --------------------------------------------------------------------------- whole graphs


def _random_dag(seed: int) -> nir.NIRGraph:
    """Residual branch, convolutions, pooling, a coincidence neuron, a leaky read-out."""
    rng = np.random.default_rng(seed)
    dt = 1e-4
    c = int(rng.integers(2, 5))

    def lif(shape, beta=0.5, thr=1.0):
        tau = dt / (1 - beta)
        return nir.LIF(tau=np.full(shape, tau), r=np.full(shape, tau / dt), v_leak=np.zeros(shape),
                       v_threshold=np.full(shape, thr), v_reset=np.zeros(shape))

    def conv(ci, co, k, pad, scale):
        return nir.Conv2d(input_shape=None, weight=rng.normal(0.15, scale, (co, ci, k, k)), stride=1, padding=pad,
                          dilation=1, groups=1, bias=rng.normal(0.05, 0.05, co))

    shape = (c, 6, 6)
    nodes = {
        "input": nir.Input(np.array([2, 6, 6])),
        "conv_a": conv(2, c, 3, 1, 0.7), "a": lif(shape),
        "conv_b": conv(c, c, 1, 0, 0.8), "b": lif(shape),
        "conv_c": conv(c, c, 3, 1, 0.5), "c": lif(shape),          # c gets conv(b) + a (residual)
        "and": nir.IF(r=np.full(shape, 1 / dt), v_threshold=np.full(shape, 1.5), v_reset=np.zeros(shape)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "conv_d": conv(c, 3, 1, 0, 0.6), "d": lif((3, 3, 3), beta=0.7),
        "flat": nir.Flatten(input_type={"input": np.array([3, 3, 3])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(0, 0.6, (4, 27)), bias=np.zeros(4)),
        "readout": nir.LI(tau=np.full(4, 4e-4), r=np.ones(4), v_leak=np.zeros(4)),
        "output": nir.Output(np.array([4])),
    }
    # the AND: a coincidence of b and c (weights 1, threshold 1.5, IF reset each spike; memory is
    # kept by IF, so it is the emitted spikes that are compared, whatever they mean)
    edges = [("input", "conv_a"), ("conv_a", "a"), ("a", "conv_b"), ("conv_b", "b"), ("b", "conv_c"),
             ("conv_c", "c"), ("a", "c"), ("b", "and"), ("c", "and"), ("and", "pool"), ("pool", "conv_d"),
             ("conv_d", "d"), ("d", "flat"), ("flat", "fc"), ("fc", "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt}, type_check=False)


def _compare(graph: nir.NIRGraph, inputs: dict[str, torch.Tensor], row: int = 0) -> dict:
    """Lava fixed vs emulator fixed, Lava float vs the reference executor, on one input row."""
    sg = fuse(graph)
    one = {k: v[:, row:row + 1] for k, v in inputs.items()}
    spiking = [n for n, p in sg.populations.items() if p.spiking]
    ref = NIRExecutor(graph).run(one)
    lava_float = run_lava(sg, "floating_pt", {k: v[:, 0].numpy() for k, v in one.items()}, record=spiking)
    for name in spiking:
        np.testing.assert_array_equal(lava_float.spikes[name], ref.records[name][:, 0].numpy(), err_msg=name)
    out = next(iter(sg.outputs))
    np.testing.assert_allclose(lava_float.outputs[out][-1], ref.outputs[out][-1, 0].numpy(), rtol=1e-9, atol=1e-9)
    sg, _ = quantize(sg, inputs)
    emu = Emulator(sg, "fixed_pt").run(one, record_spikes=True)
    lava_fixed = run_lava(sg, "fixed_pt", {k: v[:, 0].numpy() for k, v in one.items()}, record=spiking)
    for name in spiking:
        np.testing.assert_array_equal(lava_fixed.spikes[name], emu.spikes[name][:, 0].numpy(), err_msg=name)
    np.testing.assert_array_equal(lava_fixed.outputs[out][-1], emu.outputs[out][-1, 0].numpy())
    assert lava_fixed.latency == max(sg.depth()[p] for p in spiking + list(sg.outputs.values()))
    return {"spikes": sum(float(s.sum()) for s in lava_fixed.spikes.values()), "latency": lava_fixed.latency}


@pytest.mark.parametrize("seed", [0, 1])
def test_random_dags_match_in_fixed_and_floating_point(seed):
    graph = _random_dag(seed)
    x = torch.as_tensor(np.random.default_rng(seed + 10).random((STEPS, 6, 2, 6, 6)) * 2.0, dtype=torch.float64)
    result = _compare(graph, {"input": x})
    assert result["spikes"] > 0 and result["latency"] == 6


@pytest.mark.slow  # 2 Lava builds of tiny (~55 s on 2 cores); make test: random graphs here, tiny in test_parity
def test_tiny_student_matches_in_fixed_and_floating_point():
    graph, _, rows = tiny_graph(seed=2)
    result = _compare(graph, graph_inputs(graph, rows))
    assert result["latency"] == 27 and result["spikes"] > 0  # 18 synaptic layers, 9 of them graded relays


@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_bias_start_equals_setting_the_bias_during_a_paused_run(tag):
    from mksgn.deploy.lava_procs.models import gated_lif_models

    LIF = lava_import("lava.proc.lif.process").LIF
    Dense = lava_import("lava.proc.dense.process").Dense
    Source = lava_import("lava.proc.io.source").RingBuffer
    Sink = lava_import("lava.proc.io.sink").RingBuffer
    RunSteps = lava_import("lava.magma.core.run_conditions").RunSteps
    Loihi2SimCfg = lava_import("lava.magma.core.run_configs").Loihi2SimCfg
    rng = np.random.default_rng(5)
    n, start, steps = 6, 3, 10
    fixed = tag == "fixed_pt"
    bias = rng.integers(-200, 900, size=n) if fixed else rng.normal(0.3, 0.4, size=n)
    params = dict(shape=(n,), du=300 if fixed else 0.2, dv=1000 if fixed else 0.3, vth=400 if fixed else 1.0)
    if fixed:
        params["bias_exp"] = np.full(n, 2)
    data = (rng.random((n, steps)) < 0.4).astype(np.int32)
    weights = rng.integers(-50, 200, size=(n, n)) if fixed else rng.normal(0.2, 0.5, size=(n, n))

    def network(**lif_kwargs):
        source, dense = Source(data=data), Dense(weights=weights)
        lif = LIF(**params, **lif_kwargs)
        sink = Sink(shape=(n,), buffer=steps)
        source.s_out.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        lif.s_out.connect(sink.a_in)
        return lif, sink

    lif, sink = network(bias_mant=np.zeros(n, dtype=int if fixed else float))
    try:
        lif.run(condition=RunSteps(num_steps=start), run_cfg=Loihi2SimCfg(select_tag=tag))
        lif.bias_mant.set(bias)
        lif.run(condition=RunSteps(num_steps=steps - start), run_cfg=Loihi2SimCfg(select_tag=tag))
        expected = np.asarray(sink.data.get())
    finally:
        lif.stop()
    lif, sink = network(bias_mant=bias, bias_start=start)
    try:
        lif.run(condition=RunSteps(num_steps=steps),
                run_cfg=Loihi2SimCfg(select_tag=tag, exception_proc_model_map=gated_lif_models()[tag]))
        got = np.asarray(sink.data.get())
    finally:
        lif.stop()
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(got, expected)


def test_a_recurrent_cubalif_subgraph_matches_in_fixed_and_floating_point():
    rng = np.random.default_rng(2)
    graph = recurrent_cubalif_graph(rng, 10, 5)
    x = torch.as_tensor(rng.random((STEPS, 4, 5)), dtype=torch.float64)
    assert _compare(graph, {"input": x})["spikes"] > 0
