"""Stock Lava processes only: the built networks are walked process by process.

Every process connected to a built network must be a stock compute process (``LIF``,
``LIFReset``, ``Dense``, ``DelayDense``, ``Sparse``, ``DelaySparse``, ``Conv``, ``GradedVec``)
or I/O (a ``RingBuffer`` source, a ``Monitor`` or mksgn's ``FileSink``: no input port, or no
output port). Every model the builder swaps in for a stock one is proven equal to it by a named
test (:data:`mksgn.deploy.lava_procs.models.PROVEN`). Lagged ``elementwise`` and ``dense``
synapses are stock ``DelaySparse``/``DelayDense`` (no delay line) and run bit-exact.
"""

from __future__ import annotations

import re
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from test_lava_builder import _random_dag

from mksgn.core.emulator import Emulator, synapse_lag
from mksgn.core.executor import NIRExecutor
from mksgn.core.fuse import fuse
from mksgn.core.synapse_graph import Population, Synapse, SynapseGraph
from mksgn.convert.quantize import quantize
from mksgn.deploy.lava_builder import LavaBuildError, LavaNetwork, run_lava_rows
from mksgn.deploy.lava_compat import lava_import
from mksgn.deploy.run import load_model

pytestmark = pytest.mark.lava
TAGS = ["fixed_pt", "floating_pt"]


def _stock_classes() -> tuple[set[type], set[type]]:
    """The allowed stock compute classes and I/O classes."""
    lif, dense = lava_import("lava.proc.lif.process"), lava_import("lava.proc.dense.process")
    sparse, conv = lava_import("lava.proc.sparse.process"), lava_import("lava.proc.conv.process")
    graded = lava_import("lava.proc.graded.process")
    from mksgn.deploy.lava_procs.process import FileSink

    compute = {lif.LIF, lif.LIFReset, dense.Dense, dense.DelayDense, sparse.Sparse, sparse.DelaySparse, conv.Conv,
               graded.GradedVec}
    io = {lava_import("lava.proc.io.source").RingBuffer, lava_import("lava.proc.monitor.process").Monitor, FileSink}
    return compute, io


def _walk(net: LavaNetwork) -> list:
    """Every process connected to the network, fails naming each one that is neither stock nor I/O."""
    find_processes = lava_import("lava.magma.compiler.compiler_graphs").find_processes
    compute, io = _stock_classes()
    procs = find_processes(next(iter(net.ctx.procs.values())))
    wrong = []
    for p in procs:
        cls = type(p)
        if cls in io:
            if p.in_ports.members and p.out_ports.members:
                wrong.append(f"I/O process {cls.__name__} ({cls.__module__}) has input and output ports")
        elif cls not in compute:
            wrong.append(f"{cls.__name__} ({cls.__module__})")
    assert not wrong, f"processes that are neither stock Lava nor I/O: {sorted(set(wrong))}"
    return procs


def _names(procs) -> set[str]:
    return {type(p).__name__ for p in procs}


def _lif(shape, beta: float = 0.5, thr: float = 1.0, dt: float = 1e-4) -> nir.LIF:
    tau = dt / (1 - beta)
    return nir.LIF(tau=np.full(shape, tau), r=np.full(shape, tau / dt), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, thr), v_reset=np.zeros(shape))


def _lagged_dag(seed: int) -> nir.NIRGraph:
    """A chain ``input -> a -> b -> c -> d -> read-out`` with skips that wait: ``a -> c`` and
    ``input -> c`` elementwise (lags 2 and 3), ``a -> d`` and ``input -> d`` dense (lags 3 and 4);
    the input's skips carry graded values."""
    rng = np.random.default_rng(seed)
    n, m = 8, 5

    def linear(n_out, n_in, mean, std):
        return nir.Linear(weight=rng.normal(mean, std, (n_out, n_in)))

    nodes = {
        "input": nir.Input(np.array([n])),
        "fc_a": linear(n, n, 0.3, 0.6), "a": _lif((n,)),
        "fc_b": linear(n, n, 0.2, 0.6), "b": _lif((n,)),
        "fc_c": linear(n, n, 0.1, 0.5), "c": _lif((n,), beta=0.7),
        "skip_ac": nir.Scale(scale=rng.uniform(0.3, 1.2, n)),
        "skip_in_c": nir.Scale(scale=rng.uniform(-0.4, 0.8, n)),
        "fc_d": linear(m, n, 0.15, 0.5), "d": _lif((m,)),
        "skip_ad": linear(m, n, 0.1, 0.5), "skip_in_d": linear(m, n, 0.05, 0.4),
        "fc_out": nir.Affine(weight=rng.normal(0, 0.6, (3, m)), bias=np.zeros(3)),
        "readout": nir.LI(tau=np.full(3, 4e-4), r=np.ones(3), v_leak=np.zeros(3)),
        "output": nir.Output(np.array([3])),
    }
    edges = [("input", "fc_a"), ("fc_a", "a"), ("a", "fc_b"), ("fc_b", "b"), ("b", "fc_c"), ("fc_c", "c"),
             ("a", "skip_ac"), ("skip_ac", "c"), ("input", "skip_in_c"), ("skip_in_c", "c"),
             ("c", "fc_d"), ("fc_d", "d"), ("a", "skip_ad"), ("skip_ad", "d"), ("input", "skip_in_d"),
             ("skip_in_d", "d"), ("d", "fc_out"), ("fc_out", "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-4}, type_check=False)


def _dag_rows(rows: int = 3, steps: int = 8) -> torch.Tensor:
    x = torch.as_tensor(np.random.default_rng(3).random((steps, rows, 8)) * 2.0, dtype=torch.float64)
    x[:, 1, 4:] = 0.0  # a row with half its input absent
    return x


def _built(sg: SynapseGraph, tag: str, rows: int = 2) -> LavaNetwork:
    """The network of ``sg`` for ``rows`` zero rows, recording every spiking population (built, not run)."""
    inputs = {name: np.zeros((4, rows, *sg.populations[name].shape)) for name in sg.inputs}
    return LavaNetwork(sg, tag, inputs, record=[n for n, p in sg.populations.items() if p.spiking], rows=True)


@pytest.fixture(scope="module")
def dags() -> dict[str, dict[str, SynapseGraph]]:
    """Both random DAGs, fused (float) and quantised (fixed point)."""
    out = {}
    residual_rows = torch.as_tensor(np.random.default_rng(4).random((8, 2, 2, 6, 6)) * 2.0)
    for name, graph, x in [("lagged", _lagged_dag(0), _dag_rows()), ("residual", _random_dag(0), residual_rows)]:
        sg = fuse(graph)
        out[name] = {"floating_pt": sg, "fixed_pt": quantize(sg, {"input": x})[0]}
    return out


def test_the_lagged_dag_has_lagged_elementwise_and_dense_synapses(dags):
    sg = dags["lagged"]["floating_pt"]
    depth = sg.depth()
    lags = {(s.kind, s.source in sg.inputs): synapse_lag(s, depth, "lava") for s in sg.synapses
            if synapse_lag(s, depth, "lava") > 1}
    assert lags == {("elementwise", False): 2, ("elementwise", True): 3, ("dense", False): 3, ("dense", True): 4}


@pytest.mark.parametrize("tag", TAGS)
def test_random_dags_are_stock_lava_with_delayed_synapses_and_no_delay_line(dags, tag):
    for name, graphs in dags.items():
        sg = graphs[tag]
        net = _built(sg, tag)
        try:
            procs = _walk(net)
        finally:
            net._tmp.cleanup()
        assert "DelayLine" not in _names(procs) and not net.ctx.delays, name
        if name == "lagged":
            assert {"DelaySparse", "DelayDense"} <= _names(procs)
        depth = sg.depth()
        for syn in sg.synapses:
            lag, proc = synapse_lag(syn, depth, "lava"), net.ctx.synapses[syn.name]
            stock = {"elementwise": "Sparse", "dense": "Dense"}.get(syn.kind)
            if stock is None:
                continue
            assert type(proc).__name__ == (f"Delay{stock}" if lag > 1 else stock), syn.name
            if lag > 1:  # one delay, lag - 1, on every weight
                delays = proc.delays.init
                delays = delays.data if hasattr(delays, "data") else np.asarray(delays).reshape(-1)
                assert set(np.unique(delays).tolist()) == {lag - 1}, syn.name


@pytest.mark.parametrize("tag", TAGS)
def test_the_snapped_tiny_student_is_stock_lava(snapped, tag):
    path = snapped / ("snapped.q.nir" if tag == "fixed_pt" else "snapped.nir")
    sg = load_model(path, "lava", tag).sg
    net = _built(sg, tag)
    try:
        names = _names(_walk(net))
    finally:
        net._tmp.cleanup()
    assert {"LIFReset", "Conv", "DelaySparse", "GradedVec", "RingBuffer", "FileSink", "Monitor"} <= names
    kinds = {s.kind for s in sg.synapses if s.name in net.ctx.delays}
    assert kinds == {"conv"}, kinds  # the strided residual: a delayed relay in front, the kernel shared


def test_every_model_swapped_in_is_proven_by_a_named_test():
    from mksgn.deploy.lava_procs.models import PROVEN, fast_models

    compute, _ = _stock_classes()
    sources = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    for tag in TAGS:
        for gated in (False, True):
            used = fast_models(tag, gated)
            assert set(used) <= set(PROVEN), set(used) - set(PROVEN)
            assert set(used) <= compute
    for cls, test in PROVEN.items():
        assert re.search(rf"^def {test}\(", sources, re.MULTILINE), f"{cls.__name__}: no test {test}"


def _delay_graph(delay: int) -> SynapseGraph:
    """``in -> a`` dense and ``in -> b`` elementwise, both with ``delay`` Delay steps."""
    pops = {"in": Population("in", (3,), kind="input"), "a": Population("a", (3,), threshold=np.full(3, 0.5)),
            "b": Population("b", (3,), threshold=np.full(3, 0.5))}
    syns = [Synapse("in->a", "in", "a", "dense", np.array([[0.6, 0, 0.2], [0, 0.3, 0], [0.1, 0, 0.9]]), delay=delay),
            Synapse("in->b", "in", "b", "elementwise", np.array([0.4, 0.7, 1.0]), delay=delay)]
    return SynapseGraph(pops, syns, ["in"], {"out_a": "a", "out_b": "b"}, dt=1e-4)


def _synapse_procs(sg: SynapseGraph, x: np.ndarray) -> list:
    """The synapse processes of ``sg``'s network (built, not run)."""
    net = LavaNetwork(sg, "floating_pt", {"in": x})
    net._tmp.cleanup()
    return list(net.ctx.synapses.values())


def test_delay_steps_wait_in_the_stock_delayed_synapses():
    x = np.random.default_rng(0).random((10, 3))
    sg = _delay_graph(3)
    res = LavaNetwork(sg, "floating_pt", {"in": x}, record=["a", "b"]).run()
    assert {type(p).__name__ for p in _synapse_procs(sg, x)} == {"DelayDense", "DelaySparse"}
    emu = Emulator(sg, "floating_pt").run({"in": torch.as_tensor(x[:, None])}, record_spikes=True)
    for name in ("a", "b"):
        assert res.spikes[name][:3].sum() == 0 < res.spikes[name].sum(), name
        np.testing.assert_array_equal(res.spikes[name], emu.spikes[name][:, 0].numpy(), err_msg=name)


def test_a_delay_beyond_loihi_is_refused_naming_the_synapse():
    x = np.ones((4, 3))
    assert len(_synapse_procs(_delay_graph(63), x)) == 2  # at Loihi's limit: 63 steps beyond Lava's one
    with pytest.raises(LavaBuildError, match=r"synapse 'in->a' must wait 64 steps.* at most 63"):
        LavaNetwork(_delay_graph(64), "floating_pt", {"in": x})


@pytest.mark.parametrize("tag", TAGS)
def test_lagged_elementwise_and_dense_rows_equal_the_emulator_exactly(dags, tag):
    sg = dags["lagged"][tag]
    x = _dag_rows()
    spiking = [n for n, p in sg.populations.items() if p.spiking]
    res = run_lava_rows(sg, tag, {"input": x.numpy()}, record=spiking)
    emu = Emulator(sg, tag).run({"input": x}, record_spikes=True)
    assert res.builds == 1
    for name in spiking:
        assert 0 < res.spikes[name].sum() < res.spikes[name].size, name
        np.testing.assert_array_equal(res.spikes[name], emu.spikes[name].numpy(), err_msg=name)
    out = next(iter(sg.outputs))
    np.testing.assert_array_equal(res.outputs[out][-1], emu.outputs[out][-1].numpy())
    if tag == "floating_pt":  # and the reference executor
        ref = NIRExecutor(_lagged_dag(0)).run({"input": x}, record=spiking)
        for name in spiking:
            np.testing.assert_array_equal(res.spikes[name], ref.records[name].numpy().astype(bool), err_msg=name)
