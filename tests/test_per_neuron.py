"""Per-neuron parameters (learned by snnTorch, given per neuron by norse): gains behind shared conv
kernels, thresholds made one, decays one per neuron, through fusion, fixed point and Lava."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from mksgn.convert.quantize import quantize
from mksgn.core.emulator import Emulator
from mksgn.core.executor import NIRExecutor
from mksgn.core.fuse import fuse
from mksgn.core.synapse_graph import FusionError
from mksgn.deploy.lava_builder import run_lava_rows

DT = 1e-4
SHAPE = (2, 4, 4)


def conv_graph(tau: np.ndarray, threshold: np.ndarray) -> nir.NIRGraph:
    """Input (1, 4, 4) -> Conv2d 3x3 (bias) -> LIF with per-position tau and thresholds."""
    rng = np.random.default_rng(4)
    conv = nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0.6, 0.4, (2, 1, 3, 3)), stride=1, padding=1,
                      dilation=1, groups=1, bias=np.array([0.05, -0.02]))
    lif = nir.LIF(tau=tau, r=np.full(SHAPE, 2.0), v_leak=np.zeros(SHAPE), v_threshold=threshold,
                  v_reset=np.zeros(SHAPE))
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([1, 4, 4])), "conv": conv, "lif": lif,
                               "output": nir.Output(np.array(SHAPE))},
                        edges=[("input", "conv"), ("conv", "lif"), ("lif", "output")], metadata={"dt": DT},
                        type_check=False)


def per_position() -> nir.NIRGraph:
    rng = np.random.default_rng(5)
    tau = DT * rng.choice([1.5, 2.0, 3.0, 4.0], size=SHAPE)
    return conv_graph(tau, rng.choice([0.5, 1.0, 2.0], size=SHAPE))


def inputs() -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(6).random((12, 3, 1, 4, 4)) < 0.5, dtype=torch.float64)


def test_a_per_position_gain_behind_a_conv_kernel_is_a_relay_and_an_elementwise_gain():
    sg = fuse(per_position())
    assert sg.populations["lif:gain"].kind == "relay"  # the kernel stays shared: the gain follows it
    kinds = {s.name: s.kind for s in sg.synapses}
    assert kinds == {"input->lif:gain": "conv", "lif:gain->lif": "elementwise"}
    lif = sg.populations["lif"]
    assert np.unique(lif.threshold).size == 1 and np.unique(lif.dv).size > 1  # thresholds one, decays per neuron
    assert list(sg.populations).index("lif:gain") < list(sg.populations).index("lif")


def test_the_float_emulator_equals_the_executor_with_per_neuron_parameters():
    graph, x = per_position(), inputs()
    ref = NIRExecutor(graph).run({"input": x})
    res = Emulator(fuse(graph)).run({"input": x}, record_spikes=True)
    assert 0 < int(ref.records["lif"].sum()) < ref.records["lif"].numel()
    np.testing.assert_array_equal(res.spikes["lif"].double().numpy(), ref.records["lif"].numpy())


@pytest.mark.parametrize("tag", ["floating_pt", "fixed_pt"])
def test_lava_runs_per_neuron_decays_equal_to_the_emulator(tag):
    graph, x = per_position(), inputs()
    sg = fuse(graph)
    if tag == "fixed_pt":
        sg, reports = quantize(sg, {"input": x})
        report = next(r for r in reports if r.population == "lif")
        assert report.decay_groups == len(report.dv) > 1  # one stock LIF per group; RuleLIF holds them all
    emu = Emulator(sg, tag).run({"input": x}, record_spikes=True)
    lava = run_lava_rows(sg, tag, {"input": x.numpy()}, record=["lif"])
    assert emu.spikes["lif"].any()
    np.testing.assert_array_equal(lava.spikes["lif"].astype(np.float64), emu.spikes["lif"].double().numpy())
    assert lava.non_stock == {}  # one stock LIF per decay group, the elementwise gain cut into one Sparse each


def test_decay_groups_are_stock_lifs_and_a_conv_into_them_keeps_rulelif():
    from mksgn.deploy.lava_builder import LavaNetwork

    graph, x = per_position(), inputs()
    sg, _ = quantize(fuse(graph), {"input": x})
    net = LavaNetwork(sg, "fixed_pt", {"input": x[:, 0].numpy()}, record=["lif"])
    net._tmp.cleanup()
    groups = net.groups["lif"]
    assert len(net.split["lif"]) == len(groups) == len(np.unique(sg.fixed.populations["lif"].dv))
    assert sorted(np.concatenate(groups).tolist()) == list(range(32))  # every neuron in one group
    assert {type(p).__name__ for p in net.split["lif"]} == {"LIFReset"}
    # snnTorch writes r = tau / dt: the input gain is 1 whatever beta, and the conv feeds the LIF itself
    rng = np.random.default_rng(5)
    tau = DT * rng.choice([1.5, 2.0, 3.0], size=SHAPE)
    lif = nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(SHAPE), v_threshold=np.ones(SHAPE), v_reset=np.zeros(SHAPE))
    direct = conv_graph(tau, np.ones(SHAPE))
    direct.nodes["lif"] = lif
    sg = fuse(direct)
    assert [s.kind for s in sg.synapses] == ["conv"]  # no relay: the gain is uniform
    lava = run_lava_rows(sg, "floating_pt", {"input": x.numpy()}, record=["lif"])
    emu = Emulator(sg).run({"input": x}, record_spikes=True)
    np.testing.assert_array_equal(lava.spikes["lif"].astype(np.float64), emu.spikes["lif"].double().numpy())
    assert lava.non_stock == {"lif": "RuleLIF"}  # a conv kernel cannot be cut by neuron: one process, not stock


def test_uniform_parameters_keep_stock_processes_and_no_relay():
    graph = conv_graph(np.full(SHAPE, 2 * DT), np.ones(SHAPE))
    sg = fuse(graph)
    assert "lif:gain" not in sg.populations
    lava = run_lava_rows(sg, "floating_pt", {"input": inputs().numpy()}, record=["lif"])
    assert lava.non_stock == {}


def test_thresholds_that_cannot_be_made_one_are_named():
    theta = np.ones(SHAPE)
    theta[0, 0, 0] = -1.0
    with pytest.raises(FusionError, match="node 'lif' \\(LIF\\): thresholds must be > 0"):
        fuse(conv_graph(np.full(SHAPE, 2 * DT), theta))


def test_per_neuron_decays_survive_the_quantised_file(tmp_path):
    from mksgn.convert.quantize import read_quantized, write_quantized

    graph = per_position()
    sg, reports = quantize(fuse(graph), {"input": inputs()})
    write_quantized(graph, sg, reports, tmp_path / "g.q.nir")
    _, back = read_quantized(tmp_path / "g.q.nir")
    np.testing.assert_array_equal(back.fixed.populations["lif"].dv, sg.fixed.populations["lif"].dv)
    assert back.fixed.populations["lif"].du == sg.fixed.populations["lif"].du  # one du: an int
    x = inputs()
    assert torch.equal(Emulator(back, "fixed_pt").run({"input": x}).outputs["output"],
                       Emulator(sg, "fixed_pt").run({"input": x}).outputs["output"])


def test_a_read_out_with_per_neuron_decays_outputs_its_value_in_fixed_point():
    """A non-spiking LI whose tau differs per neuron: the fixed-point emulator and Lava output its ``v``."""
    tau = DT * np.array([2.0, 3.0, 5.0])
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([4])),
                                "fc": nir.Affine(weight=np.random.default_rng(7).normal(0.3, 0.2, (3, 4)),
                                                 bias=np.zeros(3)),
                                "li": nir.LI(tau=tau, r=np.ones(3), v_leak=np.zeros(3)),
                                "output": nir.Output(np.array([3]))},
                         edges=[("input", "fc"), ("fc", "li"), ("li", "output")], metadata={"dt": DT},
                         type_check=False)
    x = torch.as_tensor(np.random.default_rng(8).random((10, 2, 4)), dtype=torch.float64)
    sg, _ = quantize(fuse(graph), {"input": x})
    float_out = Emulator(sg).run({"input": x}).outputs["output"]
    fixed_out = Emulator(sg, "fixed_pt").run({"input": x}).outputs["output"]
    torch.testing.assert_close(fixed_out, float_out, rtol=0.05, atol=0.02)
    lava = run_lava_rows(sg, "fixed_pt", {"input": x.numpy()})
    np.testing.assert_array_equal(lava.outputs["output"][-1], fixed_out[-1].numpy())


def test_several_conv_chains_share_one_gain_relay():
    """Two convolutions into one LIF of per-position tau: one relay, its gain applied once."""
    graph = per_position()
    second = nir.Conv2d(input_shape=(4, 4), weight=np.random.default_rng(9).normal(0.3, 0.2, (2, 1, 3, 3)), stride=1,
                        padding=1, dilation=1, groups=1, bias=np.zeros(2))
    graph = nir.NIRGraph(nodes={**graph.nodes, "conv2": second},
                         edges=[*graph.edges, ("input", "conv2"), ("conv2", "lif")], metadata={"dt": DT},
                         type_check=False)
    sg = fuse(graph)
    gains = [s for s in sg.synapses if s.source == "lif:gain"]
    assert len(gains) == 1
    x = inputs()
    ref = NIRExecutor(graph).run({"input": x})
    res = Emulator(sg).run({"input": x}, record_spikes=True)
    assert ref.records["lif"].sum() > 0
    np.testing.assert_array_equal(res.spikes["lif"].double().numpy(), ref.records["lif"].numpy())


def test_a_weight_of_minus_256_keeps_the_population_whole():
    """Lava treats a piece without positive weights as inhibitory and clips -256 to -255: no cut there."""
    from mksgn.deploy.lava_split import split_groups

    sg, _ = quantize(fuse(per_position()), {"input": inputs()})
    assert split_groups(sg, "lif", "fixed_pt") is not None
    gain = sg.fixed.synapses["lif:gain->lif"]
    gain.weight = np.where(np.arange(gain.weight.size).reshape(gain.weight.shape) == 0, -256, gain.weight)
    assert split_groups(sg, "lif", "fixed_pt") is None
