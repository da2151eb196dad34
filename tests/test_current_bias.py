"""A bias that NIR adds to a synaptic current, held exactly: a ``constant`` source and its synapse.

NIR adds an Affine's bias in front of a CubaLIF to its current ``I``, whose decay shapes it; a
bias on a chain that closes a cycle arrives one step late (the back edge delivers zeros at
``t = 0``), and one before a Delay waits for it. Folding any of them into the population's
membrane bias (what ``fuse`` once did for the first) gives another answer than the reference
executor; these tests would have caught it.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from mksgn.convert.quantize import quantize
from mksgn.core.emulator import Emulator
from mksgn.core.executor import NIRExecutor
from mksgn.core.fuse import fuse
from mksgn.deploy.lava_builder import run_lava_rows

N, N_IN, T, B = 6, 4, 14, 3


def _cuba(n: int) -> nir.CubaLIF:
    return nir.CubaLIF(tau_syn=np.full(n, 4e-4), tau_mem=np.full(n, 2e-4), r=np.full(n, 2.0), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.full(n, 1.5))


def biased_graph(seed: int = 0, scale: float = 1.0) -> nir.NIRGraph:
    """Input -> Affine (bias) -> CubaLIF with a recurrent Affine (bias) -> Affine (bias) -> Delay -> LIF."""
    rng = np.random.default_rng(seed)
    lif = nir.LIF(tau=np.full(3, 2e-4), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.ones(3),
                  v_reset=np.zeros(3))
    nodes = {"input": nir.Input(np.array([N_IN])),
             "fc": nir.Affine(weight=rng.normal(0, 0.8, (N, N_IN)), bias=scale * rng.normal(0.2, 0.3, N)),
             "cuba": _cuba(N),
             "rec": nir.Affine(weight=rng.normal(0, 0.4, (N, N)), bias=scale * rng.normal(0, 0.3, N)),
             "out_fc": nir.Affine(weight=rng.normal(0, 1.0, (3, N)), bias=scale * np.array([0.4, -0.2, 0.3])),
             "delay": nir.Delay(delay=np.full(3, 2e-4)),
             "lif": lif, "output": nir.Output(np.array([3]))}
    edges = [("input", "fc"), ("fc", "cuba"), ("cuba", "rec"), ("rec", "cuba"), ("cuba", "out_fc"),
             ("out_fc", "delay"), ("delay", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-4}, type_check=False)


def _inputs(seed: int = 1) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).random((T, B, N_IN)), dtype=torch.float64)


def test_each_bias_gets_the_carrier_its_timing_needs():
    sg = fuse(biased_graph())
    assert sg.populations["cuba:current-bias"].kind == "constant"
    assert sg.populations["lif:current-bias"].kind == "constant"
    carriers = {s.name: (s.recurrent, s.delay) for s in sg.synapses if s.source.endswith(":current-bias")}
    # the input chain's bias enters the current every step; the recurrent one from t = 1; the read-out's
    # bias waits for its Delay (2 steps) before reaching the LIF
    assert carriers == {"cuba:current-bias->cuba": (False, 0), "cuba:current-bias->cuba#1": (True, 0),
                        "lif:current-bias->lif": (False, 2)}
    assert np.all(sg.populations["cuba"].bias == 0) and np.all(sg.populations["lif"].bias == 0)
    assert list(sg.populations)[:3] == ["input", "cuba:current-bias", "lif:current-bias"]  # sources first
    assert sg.depth()["cuba:current-bias"] == 0


@pytest.mark.parametrize("timing", ["aligned", "lava"])
def test_the_float_emulator_equals_the_reference_executor_with_every_bias(timing):
    graph, x = biased_graph(), _inputs()
    ref = NIRExecutor(graph).run({"input": x})
    res = Emulator(fuse(graph), "floating_pt", timing).run({"input": x}, record_spikes=True)
    for name in ("cuba", "lif"):
        spikes = ref.records[name]
        assert 0 < int(spikes.sum()) < spikes.numel(), name
        np.testing.assert_array_equal(res.spikes[name].double().numpy(), spikes.numpy(), err_msg=name)
    # folding the biases into the membranes would have changed the spikes
    folded = NIRExecutor(biased_graph(scale=0.0)).run({"input": x})
    assert not torch.equal(folded.records["cuba"], ref.records["cuba"])


@pytest.mark.parametrize("tag", ["floating_pt", "fixed_pt"])
def test_lava_runs_the_constant_sources_equal_to_the_emulator(tag):
    graph, x = biased_graph(), _inputs()
    sg = fuse(graph)
    if tag == "fixed_pt":
        sg, _ = quantize(sg, {"input": _inputs(seed=5)})
    emu = Emulator(sg, tag).run({"input": x}, record_spikes=True)
    lava = run_lava_rows(sg, tag, {"input": x.numpy()}, record=["cuba", "lif"])
    assert lava.builds == B  # recurrent: one build per row
    for name in ("cuba", "lif"):
        assert emu.spikes[name].any(), name
        np.testing.assert_array_equal(lava.spikes[name], emu.spikes[name].numpy(), err_msg=name)
    if tag == "fixed_pt":  # the biases are quantised like weights, at the target's scale
        q = sg.fixed.synapses["cuba:current-bias->cuba"]
        assert np.count_nonzero(q.weight) == N


def test_a_bias_shared_by_two_chains_counts_once():
    """Two Inputs feed one Affine: the chains input_a -> fc -> lif and input_b -> fc -> lif share fc's bias,
    which the executor adds once per step."""
    lif = nir.LIF(tau=np.full(2, 2e-4), r=np.full(2, 2.0), v_leak=np.zeros(2), v_threshold=np.ones(2),
                  v_reset=np.zeros(2))
    graph = nir.NIRGraph(nodes={"input_a": nir.Input(np.array([2])), "input_b": nir.Input(np.array([2])),
                                "fc": nir.Affine(weight=np.eye(2) * 0.5, bias=np.array([0.3, 0.6])), "lif": lif,
                                "output": nir.Output(np.array([2]))},
                         edges=[("input_a", "fc"), ("input_b", "fc"), ("fc", "lif"), ("lif", "output")],
                         metadata={"dt": 1e-4}, type_check=False)
    x = {k: torch.as_tensor(np.random.default_rng(i).random((10, 2, 2)), dtype=torch.float64)
         for i, k in enumerate(("input_a", "input_b"))}
    sg = fuse(graph)
    np.testing.assert_allclose(sg.populations["lif"].bias, [0.3, 0.6])  # once, times the gain r dt/tau = 1
    ref = NIRExecutor(graph).run(x)
    res = Emulator(sg).run(x, record_spikes=True)
    np.testing.assert_array_equal(res.spikes["lif"].double().numpy(), ref.records["lif"].numpy())
