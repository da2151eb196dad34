"""Synapse fusion, quantisation and the emulator on the student and on graphs from other tools."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from helpers import graph_inputs, recurrent_cubalif_graph, tiny_graph

from mksgn.convert.quantize import (
    WEIGHT_LIMIT_MIXED, QuantizeError, quantize, read_quantized, write_quantized,
)
from mksgn.core.fuse import fuse
from mksgn.core.synapse_graph import FusionError
from mksgn.core import loihi
from mksgn.core.emulator import Emulator, EmulatorError
from mksgn.core.executor import NIRExecutor


@pytest.fixture(scope="module")
def student():
    graph, model, rows = tiny_graph()
    return graph, graph_inputs(graph, rows)


def _spike_mismatches(sg, result, reference) -> dict[str, int]:
    return {name: int((result.spikes[name].double() != reference.records[name]).sum()) for name in result.spikes}


def test_student_fuses_into_factorised_graph_convolutions_and_one_dense_readout(student):
    graph, _ = student
    sg = fuse(graph)
    kinds = {}
    for s in sg.synapses:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    # per graph convolution (4 branches, 3 blocks): 3 joint mixes into relays, 3 1x1 convs out of them;
    # per gate: squeeze conv into a relay, joint mix; read-out: sum pool into a relay, one dense
    assert kinds["dense"] == 1 and kinds["sumpool"] == 1 and kinds["jointmix"] == 7 * 3 + 7
    assert "mix" not in kinds and kinds["elementwise"] >= 7
    assert sum(p.kind == "relay" for p in sg.populations.values()) == 7 * 3 + 7 + 1
    graph_conv = [s for s in sg.synapses if s.target == "blocks_0_lif_s"]
    assert [s.kind for s in graph_conv] == ["conv"] * 3 and all(sg.is_graded(s.source) for s in graph_conv)
    assert all(s.weight.shape == (16, 16, 1, 1) for s in graph_conv)  # W_k alone: no (V, C, V, C) map
    assert sg.depth()["readout"] == 27  # 18 layers of neurons, 9 of relays


@pytest.mark.parametrize("timing", ["aligned", "lava"])
def test_float_emulator_equals_the_reference_executor(student, timing):
    graph, inputs = student
    sg = fuse(graph)
    ref = NIRExecutor(graph).run(inputs)
    res = Emulator(sg, "floating_pt", timing).run(inputs, record_spikes=True)
    assert len(res.spikes) == 29 and all(v.any() for v in res.spikes.values())
    assert sum(_spike_mismatches(sg, res, ref).values()) == 0
    torch.testing.assert_close(res.outputs["output"], ref.outputs["output"], rtol=0, atol=1e-9)
    assert res.latency == 27


def test_quantized_graph_is_valid_loihi_and_round_trips(student, tmp_path):
    graph, inputs = student
    sg, reports = quantize(fuse(graph), inputs)
    q = sg.fixed
    for name, p in q.populations.items():
        assert 0 <= p.du <= loihi.DECAY_MAX and 0 <= p.dv <= loihi.DECAY_MAX
        assert 1 <= p.vth <= loihi.VTH_MAX or sg.is_graded(name)  # a relay has no threshold
        assert np.all(np.abs(p.bias_mant) <= loihi.BIAS_MANT_MAX)
        assert np.all((p.bias_exp >= 0) & (p.bias_exp <= loihi.BIAS_EXP_MAX))
    for name, s in q.synapses.items():
        w = s.weight
        if loihi.sign_mode(w) == loihi.SIGN_MIXED:
            assert np.all(w % 2 == 0) and w.min() >= loihi.WEIGHT_MIN_MIXED and w.max() <= WEIGHT_LIMIT_MIXED
        np.testing.assert_array_equal(loihi.dense_weights(w), w)  # Lava's Dense leaves them unchanged
    conv = [s for s in sg.synapses if s.kind == "conv"]
    assert all(q.synapses[s.name].weight_exp == 0 for s in conv)  # Lava's Conv has no exponent
    assert {r.population for r in reports} == {n for n, p in sg.populations.items() if p.kind != "input"}
    assert sum(r.saturated for r in reports) == 0
    path = tmp_path / "m.q.nir"
    write_quantized(graph, sg, reports, path)
    back, sg2 = read_quantized(path)
    assert set(back.nodes) == set(graph.nodes)
    a = Emulator(sg, "fixed_pt").run(inputs)
    b = Emulator(sg2, "fixed_pt").run(inputs)
    assert torch.equal(a.outputs["output"], b.outputs["output"])


def test_fixed_point_lava_timing_equals_aligned_and_tracks_float(student):
    graph, inputs = student
    sg, _ = quantize(fuse(graph), inputs)
    aligned = Emulator(sg, "fixed_pt", "aligned").run(inputs, record_spikes=True)
    lava = Emulator(sg, "fixed_pt", "lava").run(inputs, record_spikes=True)
    for name in aligned.spikes:
        assert torch.equal(aligned.spikes[name], lava.spikes[name]), name
    assert torch.equal(aligned.outputs["output"], lava.outputs["output"])
    assert aligned.synops == lava.synops and aligned.spike_counts == lava.spike_counts
    flt = Emulator(sg, "floating_pt").run(inputs, record_spikes=True)
    agree = np.mean([float((flt.spikes[n] == aligned.spikes[n]).double().mean()) for n in flt.spikes])
    assert agree > 0.9, agree
    fixed_logits, float_logits = aligned.outputs["output"][-1], flt.outputs["output"][-1]
    assert torch.corrcoef(torch.stack([fixed_logits.flatten(), float_logits.flatten()]))[0, 1] > 0.9


def test_wider_graded_inputs(student):
    graph, inputs = student
    sg, _ = quantize(fuse(graph), inputs, input_bits=12)
    q = sg.fixed.inputs
    assert all(v.bits == 12 for v in q.values())
    narrow, _ = quantize(fuse(graph), inputs)
    for name, v in q.items():  # 16x finer input unit
        assert v.scale == pytest.approx(narrow.fixed.inputs[name].scale * 127 / 2047)
    x = Emulator(sg, "fixed_pt").quantize_inputs(inputs)
    assert float(max(v.abs().max() for v in x.values())) <= 2047
    Emulator(sg, "fixed_pt").run(inputs)
    with pytest.raises(QuantizeError, match="input_bits must be 2..24"):
        quantize(fuse(graph), inputs, input_bits=30)


def test_fixed_point_needs_a_quantized_graph(student):
    graph, _ = student
    with pytest.raises(EmulatorError, match="quantised"):
        Emulator(fuse(graph), "fixed_pt")


# --------------------------------------------------------------------------- other tools' graphs


def _check_generic(graph: nir.NIRGraph, inputs: dict[str, torch.Tensor]) -> None:
    """Fuse, compare the float emulator with the reference executor, quantise, run fixed point."""
    sg = fuse(graph)
    ref = NIRExecutor(graph).run(inputs)
    for timing in ("aligned", "lava"):
        res = Emulator(sg, "floating_pt", timing).run(inputs, record_spikes=True)
        assert sum(_spike_mismatches(sg, res, ref).values()) == 0, timing
        for out, value in res.outputs.items():
            torch.testing.assert_close(value, ref.outputs[out].double(), rtol=0, atol=1e-9)
    assert any(v.any() for v in res.spikes.values())
    sg, reports = quantize(sg, inputs)
    fixed = Emulator(sg, "fixed_pt").run(inputs, record_spikes=True)
    lava = Emulator(sg, "fixed_pt", "lava").run(inputs, record_spikes=True)
    assert all(torch.equal(fixed.spikes[n], lava.spikes[n]) for n in fixed.spikes)
    agree = np.mean([float((fixed.spikes[n] == res.spikes[n]).double().mean()) for n in fixed.spikes])
    assert agree > 0.9, agree


def test_an_snntorch_export_quantizes_and_runs():
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 16), snn.Leaky(beta=torch.full((16,), 0.8), threshold=torch.ones(16),
                                                                 init_hidden=True),
                              torch.nn.Linear(16, 4), snn.Leaky(beta=torch.full((4,), 0.7), threshold=torch.ones(4),
                                                                init_hidden=True, output=True))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    graph = export_to_nir(net, torch.zeros(1, 10), ignore_dims=[0])
    x = torch.rand(20, 8, 10, dtype=torch.float64) * 2
    _check_generic(graph, {"input": x})


def test_an_if_sumpool_conv_net_quantizes_and_runs():
    rng = np.random.default_rng(1)
    dt = 1e-4
    nodes = {
        "input": nir.Input(np.array([2, 8, 8])),
        "conv1": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 0.8, (4, 2, 3, 3)), stride=1, padding=1,
                            dilation=1, groups=1, bias=np.full(4, 0.1)),
        "if1": nir.IF(r=np.full((4, 8, 8), 1 / dt), v_threshold=np.ones((4, 8, 8)), v_reset=np.zeros((4, 8, 8))),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "conv2": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 0.6, (6, 4, 3, 3)), stride=1, padding=1,
                            dilation=1, groups=1, bias=np.zeros(6)),
        "if2": nir.IF(r=np.full((6, 4, 4), 1 / dt), v_threshold=np.ones((6, 4, 4)), v_reset=np.zeros((6, 4, 4))),
        "flat": nir.Flatten(input_type={"input": np.array([6, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(0, 0.3, (5, 96)), bias=np.zeros(5)),
        "if3": nir.IF(r=np.full(5, 1 / dt), v_threshold=np.ones(5), v_reset=np.zeros(5)),
        "output": nir.Output(np.array([5])),
    }
    names = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), metadata={"dt": dt}, type_check=False)
    x = torch.as_tensor(rng.random((10, 4, 2, 8, 8)) < 0.3, dtype=torch.float64)
    _check_generic(graph, {"input": x})
    kinds = {s.target: s.kind for s in fuse(graph).synapses}
    assert kinds == {"if1": "conv", "if2": "dense", "if3": "dense"}  # pool + conv becomes one dense synapse


def test_a_recurrent_cubalif_subgraph_quantizes_and_runs():
    rng = np.random.default_rng(2)
    graph = recurrent_cubalif_graph(rng, 12, 6)
    sg = fuse(graph)
    rec = [s for s in sg.synapses if s.recurrent]
    assert len(rec) == 1 and rec[0].source == rec[0].target == "rnn.lif"
    assert sg.outputs == {"output": "output.readout"}  # a linear read-out becomes a memoryless population
    x = torch.as_tensor(rng.random((15, 6, 6)), dtype=torch.float64)
    _check_generic(graph, {"input": x})


def test_unsupported_and_unfusable_graphs_are_named():
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])),
                                "lif": nir.LIF(tau=np.full(3, 2e-4), r=np.ones(3), v_leak=np.zeros(3),
                                               v_threshold=np.ones(3), v_reset=np.full(3, 0.5)),
                                "output": nir.Output(np.array([3]))},
                         edges=[("input", "lif"), ("lif", "output")], metadata={"dt": 1e-4}, type_check=False)
    with pytest.raises(FusionError, match="'lif'.*v_reset must be 0"):
        fuse(graph)
    with pytest.raises(FusionError, match="invalid graph"):
        fuse(nir.NIRGraph(nodes={"input": nir.Input(np.array([3]))}, edges=[], type_check=False))


def test_a_bias_into_a_cubalif_current_is_held_in_the_current_not_folded_into_its_membrane():
    """NIR adds an Affine bias before a CubaLIF to its synaptic current I (the reference executor
    does); a population's bias is its membrane's. Folding it there gave Lava and the emulator
    another answer than the executor; a ``constant`` source now carries it into the current
    (more cases: tests/test_current_bias.py)."""
    def graph(bias):
        return nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "fc": nir.Affine(weight=np.eye(3), bias=bias),
                                   "cuba": nir.CubaLIF(tau_syn=np.full(3, 4e-4), tau_mem=np.full(3, 2e-4),
                                                       r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.ones(3),
                                                       v_reset=np.zeros(3), w_in=np.ones(3)),
                                   "output": nir.Output(np.array([3]))},
                            edges=[("input", "fc"), ("fc", "cuba"), ("cuba", "output")], metadata={"dt": 1e-4},
                            type_check=False)

    x = torch.rand(6, 2, 3, dtype=torch.float64)
    for bias in (np.array([0.3, 0.0, -0.2]), np.zeros(3)):
        sg = fuse(graph(bias))
        assert np.all(sg.populations["cuba"].bias == 0)
        assert ("cuba:current-bias" in sg.populations) == bool(np.any(bias))
        ref = NIRExecutor(graph(bias)).run({"input": x})
        np.testing.assert_array_equal(Emulator(sg).run({"input": x}).outputs["output"].numpy(),
                                      ref.outputs["output"].numpy())


@pytest.mark.parametrize("reset", ["to-v-reset", "subtract", "zero", "subtract-next"])
def test_per_neuron_thresholds_are_folded_into_the_gains_exactly(reset):
    """``v > theta_i`` is ``f_i v > max(theta)`` with ``f_i = max(theta) / theta_i``: the membrane is linear up
    to the threshold test under every reset; powers of two keep the float arithmetic exact too."""
    from mksgn.core.semantics import Semantics

    theta = np.array([1.0, 2.0, 0.5, 4.0])
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([4])), "fc": nir.Affine(weight=np.eye(4) * 0.75,
                                                                                       bias=np.full(4, 0.125)),
                                "lif": nir.LIF(tau=np.full(4, 2e-4), r=np.full(4, 2.0), v_leak=np.zeros(4),
                                               v_threshold=theta, v_reset=np.zeros(4)),
                                "output": nir.Output(np.array([4]))},
                         edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], metadata={"dt": 1e-4},
                         type_check=False)
    semantics = Semantics(dt=1e-4, reset=reset, threshold=">=", spikes="multi", v_min=-0.5)
    x = torch.as_tensor(np.random.default_rng(0).integers(0, 9, (24, 3, 4)) / 4.0, dtype=torch.float64)
    sg = fuse(graph, semantics=semantics)
    lif = sg.populations["lif"]
    assert np.all(lif.threshold == 4.0) and np.allclose(lif.v_min, -0.5 * 4.0 / theta)
    ref = NIRExecutor(graph, semantics=semantics).run({"input": x})
    emu = Emulator(sg).run({"input": x}, record_spikes=True)
    assert ref.records["lif"].sum() > 0 and ref.records["lif"].max() > 1  # several spikes at once
    np.testing.assert_array_equal(emu.spikes["lif"].double().numpy(), ref.records["lif"].numpy())
    qsg, _ = quantize(sg, {"input": x})
    assert qsg.fixed.populations["lif"].vth >= 1  # one integer threshold for the population
    fixed = Emulator(qsg, "fixed_pt").run({"input": x}, record_spikes=True)
    assert (fixed.spikes["lif"].double() == ref.records["lif"]).double().mean() > 0.9


def test_delays_average_pooling_scales_and_a_leaky_readout():
    """Delay, AvgPool2d, Scale and LI nodes, with a skip path that is two steps late."""
    rng = np.random.default_rng(3)
    dt = 1e-4
    lif = dict(tau=np.full((3, 6, 6), 2e-4), r=np.full((3, 6, 6), 2.0), v_leak=np.zeros((3, 6, 6)),
               v_threshold=np.ones((3, 6, 6)), v_reset=np.zeros((3, 6, 6)))
    nodes = {
        "input": nir.Input(np.array([3, 6, 6])),
        "scale": nir.Scale(scale=np.array([1.5, 0.8, 1.2])),
        "lif1": nir.LIF(**lif),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0.1, 0.5, (3, 3, 3, 3)), stride=1, padding=1,
                           dilation=1, groups=1, bias=np.zeros(3)),
        "delay": nir.Delay(delay=np.full((3, 6, 6), 2 * dt)),
        "lif2": nir.LIF(**lif),
        "pool": nir.AvgPool2d(kernel_size=np.array([3, 3]), stride=np.array([3, 3]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(0, 1.0, (4, 12)), bias=np.full(4, 0.05)),
        "li": nir.LI(tau=np.full(4, 5e-4), r=np.ones(4), v_leak=np.zeros(4)),
        "output": nir.Output(np.array([4])),
    }
    edges = [("input", "scale"), ("scale", "lif1"), ("lif1", "conv"), ("conv", "lif2"), ("lif1", "delay"),
             ("delay", "lif2"), ("lif2", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "li"), ("li", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt}, type_check=False)
    sg = fuse(graph)
    into_lif2 = {s.kind: s.delay for s in sg.synapses if s.target == "lif2"}
    assert into_lif2 == {"conv": 0, "elementwise": 2}
    assert sg.outputs == {"output": "li"} and not sg.populations["li"].spiking
    x = torch.as_tensor(rng.random((12, 5, 3, 6, 6)) * 1.5, dtype=torch.float64)
    _check_generic(graph, {"input": x})


def test_a_batch_run_in_row_chunks_gives_the_same_numbers(student, monkeypatch):
    import mksgn.core.emulator as emulator_module

    graph, inputs = student
    sg, _ = quantize(fuse(graph), inputs)
    whole = Emulator(sg, "fixed_pt").run(inputs, record_spikes=True)
    monkeypatch.setattr(emulator_module, "CHUNK_BYTES", 1)  # one row per chunk
    em = Emulator(sg, "fixed_pt")
    assert em.rows_per_chunk() == 1 < next(iter(inputs.values())).shape[1]
    chunked = em.run(inputs, record_spikes=True)
    assert torch.equal(chunked.outputs["output"], whole.outputs["output"])
    assert all(torch.equal(chunked.spikes[k], whole.spikes[k]) for k in whole.spikes)
    assert chunked.spike_counts == whole.spike_counts and chunked.synops == whole.synops
    assert chunked.saturation == whole.saturation and chunked.peaks == whole.peaks
