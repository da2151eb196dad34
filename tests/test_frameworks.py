"""Graphs written by snnTorch, sinabs and norse themselves, run under each producer's preset.

The fixtures (``tests/fixtures/frameworks``: ``NAME.nir`` from the framework's own exporter,
``NAME.npz`` with its ``input`` and its own ``output``) are made by ``make_fixtures.py`` there;
the tests never need the frameworks. The reference executor in float32 must give the
framework's outputs exactly (the same float32 arithmetic up to the order of sums: every
fixture gives 0 mismatches); the float emulator of the fused graph must give the reference's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mksgn.core.emulator import Emulator
from mksgn.core.executor import NIRExecutor
from mksgn.core.fuse import fuse
from mksgn.core.nir_file import read_graph
from mksgn.core.semantics import SemanticsWarning, preset

FIXTURES = Path(__file__).parent / "fixtures" / "frameworks"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())

PRESET = {name: entry["mksgn_preset"] for name, entry in MANIFEST.items()}
"""The preset each fixture's producer used (``mksgn_preset`` in its manifest entry; ``make_fixtures.py`` writes it)."""


def load(name: str) -> tuple:
    data = np.load(FIXTURES / f"{name}.npz")
    return read_graph(FIXTURES / f"{name}.nir"), torch.as_tensor(data["input"]), data["output"]


def test_every_fixture_has_a_preset():
    assert set(PRESET) == set(MANIFEST)
    frameworks = {entry["framework"] for entry in MANIFEST.values()}
    assert frameworks == {"snntorch", "sinabs", "norse"}


@pytest.mark.parametrize("name", sorted(PRESET))
def test_the_reference_executor_gives_the_frameworks_own_output(name):
    graph, x, expected = load(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SemanticsWarning)  # a preset states dt: nothing assumed
        ex = NIRExecutor(graph, dtype=torch.float32, semantics=preset(PRESET[name]))
    out = ex.run(x).outputs[MANIFEST[name]["output_nodes"][0]].numpy()
    assert out.shape == expected.shape
    assert 0 < np.count_nonzero(expected) < expected.size, "the framework's own output spikes"
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("name", ["snntorch_mlp", "sinabs_mlp", "norse_mlp", "snntorch_rsynaptic"])
def test_without_the_preset_the_output_differs(name):
    """NIR's reading at the default dt: what mksgn did before presets (and warns about)."""
    graph, x, expected = load(name)
    with pytest.warns(SemanticsWarning, match="states no dt"):
        out = NIRExecutor(graph, dtype=torch.float32).run(x).outputs["output"].numpy()
    assert np.count_nonzero(out != expected) > 0


@pytest.mark.parametrize("name", sorted(PRESET))
def test_the_float_emulator_equals_the_reference(name):
    graph, x, _ = load(name)
    semantics = preset(PRESET[name])
    ref = NIRExecutor(graph, semantics=semantics).run(x.double())
    sg = fuse(graph, semantics=semantics)
    res = Emulator(sg).run({sg.inputs[0]: x.double()}, record_spikes=True)
    for pop, spikes in res.spikes.items():
        np.testing.assert_array_equal(spikes.double().numpy(), ref.records[pop].numpy(), err_msg=pop)
    out = next(iter(sg.outputs))
    np.testing.assert_allclose(res.outputs[out].numpy(), ref.outputs[out].numpy(), rtol=0, atol=1e-9)


PER_NEURON = ("snntorch_per_neuron", "sinabs_per_neuron", "norse_per_neuron")
"""Fixtures with per-neuron decays and thresholds (learned by snnTorch, given by sinabs and norse)."""


LAVA_SLOW = {"norse_per_neuron"}
"""Split into one stock LIF per decay group (20 LIFs and their synapse pieces, :mod:`mksgn.deploy.lava_split`):
about 36 s of Lava on 2 cores, so under ``make bench``; ``tests/test_per_neuron.py`` runs a split in ``make test``."""


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LAVA_SLOW else n
                                  for n in sorted(PRESET)])
def test_lava_equals_the_emulator_in_both_tags_quantised_on_the_fixtures_own_inputs(name):
    """Lava ``fixed_pt`` = the fixed-point emulator and ``floating_pt`` = the float emulator, spike for
    spike, on every spiking population; stock LIFs where the rule is a LIF's, mksgn's ``RuleLIF``
    (named as not stock) where it is not."""
    from mksgn.convert.quantize import quantize
    from mksgn.deploy.lava_builder import run_lava_rows

    graph, x, expected = load(name)
    sg = fuse(graph, semantics=preset(PRESET[name]))
    qsg, _ = quantize(sg, {sg.inputs[0]: x.double()})
    spiking = [n for n, p in sg.populations.items() if p.spiking]
    for tag, g in (("floating_pt", sg), ("fixed_pt", qsg)):
        emu = Emulator(g, tag).run({sg.inputs[0]: x.double()}, record_spikes=True)
        lava = run_lava_rows(g, tag, {sg.inputs[0]: x.double().numpy()}, record=spiking)
        for pop in spiking:
            assert emu.spikes[pop].any(), (tag, pop)
            np.testing.assert_array_equal(lava.spikes[pop].astype(np.float64), emu.spikes[pop].double().numpy(),
                                          err_msg=f"{tag} {pop}")
        rules = {p for p in spiking if not sg.populations[p].rule.spike_rule_is_lavas}
        if name not in PER_NEURON:
            assert set(lava.non_stock) == rules
        assert set(lava.non_stock) >= rules and set(lava.non_stock.values()) <= {"RuleLIF"}
    out = next(iter(sg.outputs))
    fixed = Emulator(qsg, "fixed_pt").run({sg.inputs[0]: x.double()}).outputs[out].numpy()
    assert (fixed == expected).mean() > 0.85  # how far fixed point is from the framework: quantisation only
