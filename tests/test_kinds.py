"""Kinds are one object each: a toy population kind, one file (``toy_relay_kind.py``) plus one
registration line, with the built-in ``sumpool`` synapse kind, run through fuse,
quantise, the emulator (float and fixed point, both timings) and Lava (fixed point, spike for
spike against the emulator); and the built-in registry behaves as documented."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from toy_relay_kind import GradedRelay, Relay

from mksgn.convert.quantize import quantize
from mksgn.core.emulator import Emulator, fan_in, fanout
from mksgn.core.executor import NIRExecutor
from mksgn.core.fuse import fuse
from mksgn.core.kinds import UnknownKindError, default_kinds
from mksgn.deploy.lava_builder import LavaBuildError, LavaNetwork

STEPS, BATCH = 6, 3


def _lif(shape: tuple[int, ...], threshold: float = 1.0) -> nir.LIF:
    ones = np.ones(shape)
    return nir.LIF(tau=2.0 * ones, r=2.0 * ones, v_leak=0 * ones, v_threshold=threshold * ones, v_reset=0 * ones)


def _toy_graph() -> nir.NIRGraph:
    rng = np.random.default_rng(3)
    nodes = {
        "in": nir.Input(input_type={"input": np.array([2, 4, 4])}),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "a": _lif((2, 2, 2), 1.5),
        "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0, end_dim=-1),
        "fc1": nir.Linear(weight=rng.normal(0.0, 1.0, (6, 8))),
        "relay": Relay(),
        "fc2": nir.Affine(weight=rng.normal(0.0, 0.8, (3, 6)), bias=np.array([0.25, 0.0, -0.125])),
        "b": _lif((3,), 0.5),
        "out": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("in", "pool"), ("pool", "a"), ("a", "flat"), ("flat", "fc1"), ("fc1", "relay"), ("relay", "fc2"),
             ("fc2", "b"), ("b", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


@pytest.fixture(scope="module")
def kinds():
    return default_kinds().with_population(GradedRelay())  # one line per kind


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"in": torch.rand(STEPS, BATCH, 2, 4, 4, generator=g, dtype=torch.float64) * 0.9}


def test_the_toy_kinds_are_fused_where_their_nodes_are(kinds):
    sg = fuse(_toy_graph(), kinds)
    by_name = {s.name: s.kind for s in sg.synapses}
    assert by_name == {"in->a": "sumpool", "a->relay": "dense", "relay->b": "dense"}
    assert sg.populations["relay"].kind == "toyrelay" and not sg.populations["relay"].spiking
    assert sg.kinds is kinds
    with pytest.raises(Exception, match="Relay"):  # without the registration line the node is unknown
        fuse(_toy_graph())


def test_toy_synapse_forward_dense_form_and_fans(kinds):
    sg = fuse(_toy_graph(), kinds)
    syn = next(s for s in sg.synapses if s.kind == "sumpool")
    kind = kinds.synapse("sumpool")
    x = torch.rand(1, 2, 4, 4, dtype=torch.float64)
    y = kind.forward(syn, x, torch.as_tensor(syn.weight), (2, 2, 2))
    dense = kind.dense(syn, syn.weight, (2, 4, 4), (2, 2, 2))
    np.testing.assert_allclose(dense @ x.reshape(-1).numpy(), y.reshape(-1).numpy(), rtol=1e-12)
    assert torch.equal(fanout(sg, syn), torch.ones(2, 4, 4))  # every input neuron drives one pool output
    assert torch.equal(fan_in(sg, syn), torch.full((2, 2, 2), 4.0))


def test_float_emulator_equals_the_reference_executor(kinds, inputs):
    graph = _toy_graph()
    sg = fuse(graph, kinds)
    ref = NIRExecutor(graph, node_steps=kinds.node_steps()).run(inputs)
    for timing in ("aligned", "lava"):
        emu = Emulator(sg, "floating_pt", timing).run(inputs, record_spikes=True)
        assert torch.equal(emu.outputs["out"], ref.outputs["out"]), timing
        assert torch.equal(emu.spikes["a"].double(), ref.records["a"]), timing
    assert float(ref.records["a"].sum()) > 0 and float(ref.records["b"].sum()) > 0  # both layers fire


def test_quantize_and_fixed_point_emulator_with_the_toy_kinds(kinds, inputs):
    sg, reports = quantize(fuse(_toy_graph(), kinds), inputs)
    fixed = sg.fixed
    assert fixed.synapses["in->a"].weight_exp == 0  # the toy synapse has no exponent, like Lava's Conv
    relay = fixed.populations["relay"]
    assert relay.scale > 0 and {r.population for r in reports} == {"a", "relay", "b"}
    unit = fixed.inputs["in"].scale  # the relay's graded output is weighted in its own unit
    assert kinds.population("toyrelay").output_unit("relay", fixed) == relay.scale != unit
    aligned = Emulator(sg, "fixed_pt").run(inputs, record_spikes=True)
    lava_timed = Emulator(sg, "fixed_pt", "lava").run(inputs, record_spikes=True)
    assert torch.equal(aligned.outputs["out"], lava_timed.outputs["out"])
    floating = Emulator(sg, "floating_pt").run(inputs, record_spikes=True)
    agree = float((aligned.spikes["b"] == floating.spikes["b"]).double().mean())
    assert agree > 0.8 and sum(r.saturated for r in reports) == 0


@pytest.mark.lava
def test_lava_runs_the_toy_kinds_spike_for_spike(kinds, inputs):
    sg, _ = quantize(fuse(_toy_graph(), kinds), inputs)
    emu = Emulator(sg, "fixed_pt", "lava").run(inputs, record_spikes=True)
    for row in range(2):
        net = LavaNetwork(sg, "fixed_pt", {"in": inputs["in"][:, row].numpy()}, record=["a", "b"])
        assert type(net.ctx.procs["relay"]).__name__ == "GradedVec"
        assert type(net.ctx.synapses["in->a"]).__name__ == "Conv"
        res = net.run()
        for name in ("a", "b"):
            np.testing.assert_array_equal(res.spikes[name], emu.spikes[name][:, row].numpy().astype(float))
    with pytest.raises(LavaBuildError, match="'relay'.*fixed_pt model only"):
        LavaNetwork(sg, "floating_pt", {"in": inputs["in"][:, 0].numpy()})


def test_registry_order_and_unknown_kinds(kinds):
    assert list(kinds.synapses) == ["elementwise", "conv", "jointmix", "sumpool", "mix", "dense"]
    assert list(default_kinds().populations) == ["input", "constant", "neuron", "relay"]
    with pytest.raises(UnknownKindError, match="unknown synapse kind 'nope'"):
        kinds.synapse("nope")


def test_the_emulator_skips_a_kinds_fixed_output_only_where_it_provably_changes_nothing():
    from mksgn.core.fixed_point import QuantizedSynapse
    from mksgn.core.kinds.conv import Conv
    from mksgn.core.kinds.dense import Dense

    kinds = default_kinds()
    w = np.ones((2, 2), dtype=np.int64)
    dense, conv = kinds.synapse("dense"), kinds.synapse("conv")
    assert dense.passes_sum(QuantizedSynapse(w, 0), 1e9) and not dense.passes_sum(QuantizedSynapse(w, -2), 10)
    assert conv.passes_sum(QuantizedSynapse(w), 2**23 - 1) and not conv.passes_sum(QuantizedSynapse(w), 2**23)

    class Saturating(Dense):  # a user kind with its own output rule: never skipped
        def fixed_output(self, y, q):
            return y.clamp(-100, 100)

    class Halving(Conv):
        def fixed_output(self, y, q):
            return y >> 1

    assert not Saturating().passes_sum(QuantizedSynapse(w, 0), 1.0)
    assert not Halving().passes_sum(QuantizedSynapse(w), 1.0)
