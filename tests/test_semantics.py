"""Neuron semantics beyond NIR: each mode against a hand-computed trace, stored and read back.

One neuron, ``a = 1 - dt/tau = 0.5``, ``b = r dt/tau = 1``, threshold 1, unless said otherwise:
``v_t = 0.5 v'_{t-1} + x_t``. The expected traces below were worked out by hand from the
definitions in :mod:`mksgn.core.semantics`; binary fractions where the membrane is compared.
"""

from __future__ import annotations

import dataclasses
import warnings

import nir
import numpy as np
import pytest
import torch

from mksgn.core.executor import NIRExecutionError, NIRExecutor
from mksgn.core.nir_file import read_graph, write_graph
from mksgn.core.semantics import (
    PRESETS, Semantics, SemanticsError, SemanticsWarning, from_metadata, preset, resolve,
)

DT = 1e-3


def lif_graph(threshold: float = 1.0, dt: float | None = DT) -> nir.NIRGraph:
    lif = nir.LIF(tau=np.array([2 * DT]), r=np.array([2.0]), v_leak=np.zeros(1), v_threshold=np.array([threshold]),
                  v_reset=np.zeros(1))
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([1])), "lif": lif, "output": nir.Output(np.array([1]))},
                        edges=[("input", "lif"), ("lif", "output")],
                        metadata={} if dt is None else {"dt": dt}, type_check=False)


def run(graph: nir.NIRGraph, x: list[float], **fields) -> tuple[list[float], list[float]]:
    """Spikes and membranes (before the reset) of node ``lif`` for a one-neuron input trace."""
    semantics = dataclasses.replace(Semantics(dt=DT), **fields)
    res = NIRExecutor(graph, semantics=semantics).run(torch.tensor(x, dtype=torch.float64).reshape(-1, 1, 1))
    membrane = res.membranes.get("lif", res.records["lif"])  # a non-spiking neuron outputs its membrane
    return res.records["lif"].flatten().tolist(), membrane.flatten().tolist()


X = [0.5, 0.5, 1.0, 0.25, 1.5, 0.0, 1.0, 0.25]


def test_reset_to_v_reset_strict_is_nirs_reading():
    spikes, v = run(lif_graph(), X)
    assert spikes == [0, 0, 1, 0, 1, 0, 0, 0]
    assert v == [0.5, 0.75, 1.375, 0.25, 1.625, 0.0, 1.0, 0.75]


def test_a_non_strict_threshold_fires_at_equality():
    spikes, v = run(lif_graph(), X, threshold=">=")
    assert spikes == [0, 0, 1, 0, 1, 0, 1, 0]
    assert v == [0.5, 0.75, 1.375, 0.25, 1.625, 0.0, 1.0, 0.25]


def test_reset_by_subtraction_keeps_the_excess_and_decays_it():
    spikes, v = run(lif_graph(), X, reset="subtract")
    assert spikes == [0, 0, 1, 0, 1, 0, 1, 0]
    # 1.375 - 1 = 0.375 -> 0.1875 + 0.25; 0.4375 -> 0.21875 + 1.5 = 1.71875 - 1 -> 0.359375 ...
    assert v == [0.5, 0.75, 1.375, 0.4375, 1.71875, 0.359375, 1.1796875, 0.33984375]


def test_reset_zero_zeroes_the_whole_next_membrane_input_included():
    spikes, v = run(lif_graph(), X, reset="zero")  # snnTorch Synaptic's "zero"
    assert spikes == [0, 0, 1, 0, 1, 0, 0, 0]
    assert v == [0.5, 0.75, 1.375, 0.0, 1.5, 0.0, 1.0, 0.75]


def test_subtract_next_takes_the_threshold_after_the_decay():
    spikes, v = run(lif_graph(), X, reset="subtract-next")  # snnTorch's "subtract"
    assert spikes == [0, 0, 1, 0, 1, 0, 0, 0]
    # 0.5 * 1.375 + 0.25 - 1 = -0.0625; 0.5 * -0.0625 + 1.5 = 1.46875; 0.734375 - 1 = -0.265625 ...
    assert v == [0.5, 0.75, 1.375, -0.0625, 1.46875, -0.265625, 0.8671875, 0.68359375]


def test_multi_spike_sends_whole_thresholds_and_subtracts_them():
    spikes, v = run(lif_graph(), [2.5, 0.0, 0.5, 3.0], reset="subtract", threshold=">=", spikes="multi")
    assert spikes == [2, 0, 0, 3]
    assert v == [2.5, 0.25, 0.625, 3.3125]
    strict, _ = run(lif_graph(), [2.0, 0.0], reset="subtract", spikes="multi")  # v > k theta: 2.0 holds one
    assert strict == [1, 0]


def test_a_membrane_floor_stops_the_fall():
    _, v = run(lif_graph(), [-2.0, 0.0, 1.25], reset="subtract", v_min=-0.5)
    assert v == [-2.0, -0.25, 1.125]
    _, free = run(lif_graph(), [-2.0, 0.0, 1.25], reset="subtract")
    assert free == [-2.0, -1.0, 0.75]


def cuba_graph() -> nir.NIRGraph:
    """CubaLI: ``a_syn = 0.5``, ``b_syn = w_in dt/tau_syn = 1``, ``a = 0.5``, ``b = r dt/tau_mem = 1``."""
    cuba = nir.CubaLI(tau_syn=np.array([2 * DT]), tau_mem=np.array([2 * DT]), r=np.array([2.0]),
                      v_leak=np.zeros(1), w_in=np.array([2.0]))
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([1])), "lif": cuba, "output": nir.Output(np.array([1]))},
                        edges=[("input", "lif"), ("lif", "output")], metadata={"dt": DT}, type_check=False)


def test_the_current_integrates_its_input_or_the_input_jumps_into_it():
    first, _ = run(cuba_graph(), [1.0, 0.0, 0.0, 0.0])
    assert first == [1.0, 1.0, 0.75, 0.5]  # i = 1, 0.5, 0.25, 0.125 (b_syn = w_in dt/tau_syn = 1); v = 0.5 v + i
    jump, _ = run(cuba_graph(), [1.0, 0.0, 0.0, 0.0], current_input="jump")  # norse: b_syn = w_in = 2
    assert jump == [2.0, 2.0, 1.5, 1.0]


def test_the_exponential_discretisation_decays_by_exp_minus_dt_over_tau():
    """sinabs' LIF: ``a = exp(-dt/tau)``, ``b = r (1 - a)``; here tau = 2 dt."""
    a = float(np.exp(-0.5))
    _, v = run(lif_graph(threshold=10.0), [1.0, 0.0, 0.0], discretisation="exponential")
    b = 2.0 * (1 - a)  # r = 2
    np.testing.assert_allclose(v, [b, a * b, a * a * b], rtol=1e-15)


def recurrent_graph() -> nir.NIRGraph:
    lif = lif_graph().nodes["lif"]
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([1])), "lif": lif,
                               "rec": nir.Affine(weight=np.zeros((1, 1)), bias=np.array([0.75])),
                               "output": nir.Output(np.array([1]))},
                        edges=[("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")],
                        metadata={"dt": DT}, type_check=False)


def test_a_back_edge_starts_at_zero_or_with_its_bias():
    zero, v0 = run(recurrent_graph(), [0.5, 0.0, 0.0])
    assert (zero, v0) == ([0, 0, 1], [0.5, 1.0, 1.25])  # the bias arrives from t = 1
    bias, v1 = run(recurrent_graph(), [0.5, 0.0, 0.0], recurrent_initial="bias")  # snnTorch RLeaky
    assert (bias, v1) == ([1, 0, 1], [1.25, 0.75, 1.125])


def test_overrides_by_node_type():
    snn = preset("snntorch-zero")  # Leaky resets to zero; Synaptic and RLeaky zero the whole next membrane
    assert snn.for_type("CubaLIF").reset == "zero" and snn.for_type("LIF").reset == "to-v-reset"
    assert snn.for_type("LIF", recurrent=True).reset == "zero"
    assert preset("snntorch").for_type("LIF").reset == "subtract-next"
    spikes, v = run(lif_graph(), X, by_type={"LIF": {"reset": "zero"}})
    assert v == [0.5, 0.75, 1.375, 0.0, 1.5, 0.0, 1.0, 0.75]
    with pytest.raises(SemanticsError, match="by_type names 'Conv2d'"):
        Semantics(by_type={"Conv2d": {"reset": "zero"}})
    with pytest.raises(SemanticsError, match="by_type\\['LIF'\\] reset 'half'"):
        Semantics(by_type={"LIF": {"reset": "half"}})


def test_bad_values_are_named():
    with pytest.raises(SemanticsError, match="reset 'sideways' is not one of"):
        Semantics(reset="sideways")
    with pytest.raises(SemanticsError, match="dt must be a finite number > 0"):
        Semantics(dt=-1.0)
    with pytest.raises(SemanticsError, match="unknown semantics preset 'brian'"):
        preset("brian")
    with pytest.raises(SemanticsError, match="unknown fields \\['colour'\\]"):
        from_metadata({"neuron_semantics": '{"colour": "red"}'})
    with pytest.raises(NIRExecutionError, match="not a JSON record"):
        NIRExecutor(nir.NIRGraph(nodes=lif_graph().nodes, edges=lif_graph().edges,
                                 metadata={"dt": DT, "neuron_semantics": "{oops"}, type_check=False))


def test_a_graph_without_dt_warns_naming_the_default_and_a_stated_one_is_silent():
    with pytest.warns(SemanticsWarning, match="states no dt .*dt=0.0001"):
        assert NIRExecutor(lif_graph(dt=None)).dt == 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert NIRExecutor(lif_graph(dt=DT)).dt == DT
        assert NIRExecutor(lif_graph(dt=None), dt=1.0).dt == 1.0
        assert resolve({}, preset_name="sinabs").dt == 1.0
        assert resolve({"dt": 0.5}, preset_name="sinabs").dt == 0.5  # the graph's own dt wins over a preset's


def test_semantics_survive_a_nir_file(tmp_path):
    semantics = dataclasses.replace(preset("sinabs"), dt=0.5)
    graph = lif_graph(dt=None)
    graph = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=semantics.to_metadata(), type_check=False)
    write_graph(graph, tmp_path / "g.nir")
    back = read_graph(tmp_path / "g.nir")
    assert from_metadata(back.metadata) == semantics
    assert NIRExecutor(back).semantics == semantics  # the stored semantics run it, no warning needed
    assert all(name in PRESETS for name in ("nir", "snntorch", "sinabs", "norse"))


def test_command_line_fields_override_a_preset_for_every_type():
    chosen = resolve({}, preset_name="snntorch-zero", overrides={"reset": "subtract", "v_min": -2.0})
    assert chosen.for_type("CubaLIF").reset == "subtract" and chosen.for_type("LIF", True).reset == "subtract"
    assert chosen.v_min == -2.0 and chosen.dt == 1e-4 and chosen.recurrent_initial == "bias"
    assert chosen.preset == "snntorch-zero with reset=subtract, v_min=-2.0"
    with pytest.raises(SemanticsError, match="cannot set \\['dt_scale'\\]"):
        resolve({}, overrides={"dt_scale": 2})


def test_the_integer_rules_by_hand():
    """The fixed-point twins (mksgn.core.loihi), on ``vth_eff = 64`` (a threshold of 1 unit): numpy and torch alike."""
    from mksgn.core import loihi

    for array in (np.array, torch.tensor):
        v = array([-70, 63, 64, 65, 200])
        assert loihi.spike_count_fixed(v, 64, ">", False).tolist() == [0, 0, 0, 1, 1]
        assert loihi.spike_count_fixed(v, 64, ">=", False).tolist() == [0, 0, 1, 1, 1]
        assert loihi.spike_count_fixed(v, 64, ">=", True).tolist() == [0, 0, 1, 1, 3]  # 200 holds 3 x 64
        assert loihi.spike_count_fixed(v, 64, ">", True).tolist() == [0, 0, 0, 1, 3]  # 64 is not above 64
        s = array([0, 0, 1, 1, 3])
        assert loihi.reset_fixed(v, s, 64, "to-v-reset", None).tolist() == [-70, 63, 0, 0, 0]
        assert loihi.reset_fixed(v, s, 64, "subtract", -64).tolist() == [-64, 63, 0, 1, 8]
        assert loihi.reset_fixed(v, s, 64, "zero", None).tolist() == [-70, 63, 64, 65, 200]  # acts next step
        assert loihi.pending_reset_fixed(v, s, 64, "zero").tolist() == [-70, 63, 0, 0, 0]
        assert loihi.pending_reset_fixed(v, s, 64, "subtract-next").tolist() == [-70, 63, 0, 1, 8]
    assert loihi.voltage_floor(-1.0, 0.5) == -128 and loihi.voltage_floor(None, 0.5) is None
