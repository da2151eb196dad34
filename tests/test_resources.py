"""The resource map: shared weights counted once per core where the profile shares weights, graded
populations only where it has graded spikes, the fan-in limit, and the profiles' feature records."""

from __future__ import annotations

import numpy as np
import pytest
from toy_relay_kind import GradedRelay

from mksgn.core.kinds import default_kinds
from mksgn.core.synapse_graph import Population, Synapse, SynapseGraph
from mksgn.hw_profiles.profile import FEATURES, ProfileError, builtin_profiles, load_profile
from mksgn.hw_profiles.resources import graph_resources, resource_map

TOY = """
[profile]
name = "toy"
description = "a test chip: 4 neurons and 10 synapses per core, 4 cores per chip"
kind = "neuromorphic"

[energy.synaptic_op]
value = 1
unit = "pJ"
source = "made up for a test"
evidence = "estimate"

[limits.core_neurons]
value = 4
unit = "count"
source = "made up"
evidence = "estimate"

[limits.core_synapses]
value = 10
unit = "count"
source = "made up"
evidence = "estimate"

[limits.core_fan_in]
value = 4
unit = "count"
source = "made up"
evidence = "estimate"

[limits.chip_cores]
value = 4
unit = "count"
source = "made up"
evidence = "estimate"

[features.weight_sharing]
value = SHARING
source = "made up for a test"
evidence = "estimate"

[features.graded_spikes]
value = false
source = "made up for a test"
evidence = "estimate"
"""


def _toy(tmp_path, sharing: bool, text: str = TOY):
    path = tmp_path / f"toy_{sharing}.toml"
    path.write_text(text.replace("SHARING", str(sharing).lower()))
    return load_profile(path)


def _neuron(name, shape):
    return Population(name, shape, du=np.ones(()), dv=np.ones(()), bias=np.zeros(()), threshold=np.full((), 0.5))


def _conv_graph() -> SynapseGraph:
    # in (1, 8) -> a (1, 8) elementwise: 8 synapses, no sharing.
    # a -> c (2, 8): a conv, kernel (2, 1, 3) of ones, padding 1: per output channel 8 positions x 3 taps less
    #   the 2 taps that fall on the padding = 22 instances, 44 in all, from 6 unique weights; and a dense
    #   (16 x 8) with 24 non-zero weights (targets 0-7: one each, targets 8-15: two each), not shared.
    #   Largest fan-in: 3 (conv) + 2 (dense) = 5.
    dense = np.zeros((16, 8))
    for t in range(16):
        dense[t, t % 8] = 1.0
        if t >= 8:
            dense[t, (t + 1) % 8] = 1.0
    pops = {"in": Population("in", (1, 8), kind="input"), "a": _neuron("a", (1, 8)), "c": _neuron("c", (2, 8))}
    syns = [Synapse("in->a", "in", "a", "elementwise", np.ones((1, 8))),
            Synapse("a->c conv", "a", "c", "conv", np.ones((2, 1, 3)), stride=(1,), padding=(1,), dilation=(1,)),
            Synapse("a->c dense", "a", "c", "dense", dense)]
    return SynapseGraph(pops, syns, ["in"], {"out": "c"}, dt=1e-3)


def test_shared_conv_weights_count_once_per_core_only_where_the_profile_shares_weights(tmp_path):
    layers = {x.name: x for x in graph_resources(_conv_graph())}
    c = layers["c"]
    assert (c.synapses, c.shared_synapses, c.unique_weights, c.max_fan_in) == (68, 44, 6, 5)
    assert (layers["a"].synapses, layers["a"].shared_synapses) == (8, 0)
    # without sharing: a takes ceil(8 / 4) = 2 cores (neurons); c max(ceil(16 / 4), ceil(68 / 10)) = 7.
    plain = resource_map(list(layers.values()), _toy(tmp_path, False))
    assert [(x.name, x.cores, x.stored_synapses) for x in plain.layers] == [("a", 2, 8), ("c", 7, 68)]
    assert (plain.cores, plain.chips) == (9, 3) and plain.features["weight_sharing"] is False
    # with sharing: c needs 4 cores for its neurons, but at 4 cores a core holds 24 / 4 dense weights + the 6
    # shared ones = 12 > 10; at 5, 4.8 + 6 > 10; at 6, 4 + 6 = 10 fits (the kernel is stored in each of the 6).
    shared = resource_map(list(layers.values()), _toy(tmp_path, True))
    assert [(x.name, x.cores, x.stored_synapses) for x in shared.layers] == [("a", 2, 8), ("c", 6, 24 + 6 * 6)]
    assert (shared.cores, shared.chips) == (8, 2) and shared.features["weight_sharing"] is True
    # the energy side is unchanged: the emulator's fan-out still counts one synapse per instance
    assert [x.synapses for x in shared.layers] == [x.synapses for x in plain.layers] == [8, 68]
    # the fan-in limit is still checked, with or without sharing
    assert shared.unmappable == plain.unmappable == ["c"]
    assert shared.layers[1].problem == "fan-in 5 > 4 per core"


def test_a_kernel_too_large_for_a_core_splits_by_instance(tmp_path):
    # a kernel of 10 unique weights leaves no room in a 10-synapse core: its 2 x (8 x 5 - 2 x (1 + 2)) = 68
    # instances are split like unshared ones, exactly as without sharing.
    pops = {"in": Population("in", (1, 8), kind="input"), "a": _neuron("a", (1, 8)), "c": _neuron("c", (2, 8))}
    syns = [Synapse("in->a", "in", "a", "elementwise", np.ones((1, 8))),
            Synapse("a->c", "a", "c", "conv", np.ones((2, 1, 5)), stride=(1,), padding=(2,), dilation=(1,))]
    layers = graph_resources(SynapseGraph(pops, syns, ["in"], {"out": "c"}, dt=1e-3))
    c = layers[1]
    assert (c.unique_weights, c.synapses, c.shared_synapses) == (10, 68, 68)
    with_sharing, without = (resource_map(layers, _toy(tmp_path, s)).layers[1] for s in (True, False))
    assert with_sharing.cores == without.cores == 7  # ceil(68 / 10), above the 4 its 16 neurons need


def _relay_graph() -> SynapseGraph:
    # in (4,) -> r (4,), a graded relay (toy kind) -> b (2,) dense
    kinds = default_kinds().with_population(GradedRelay())
    pops = {"in": Population("in", (4,), kind="input"),
            "r": Population("r", (4,), kind="relay", du=np.ones(4), dv=np.ones(4), bias=np.zeros(4),
                            nir_type="Relay"),
            "b": _neuron("b", (2,))}
    syns = [Synapse("in->r", "in", "r", "elementwise", np.ones(4)),
            Synapse("r->b", "r", "b", "dense", np.ones((2, 4)))]
    return SynapseGraph(pops, syns, ["in"], {"out": "b"}, dt=1e-3, kinds=kinds)


def test_a_graded_population_is_not_mappable_without_graded_spikes():
    layers = graph_resources(_relay_graph())
    assert [(x.name, x.graded, x.kind) for x in layers] == [("r", True, "relay"), ("b", False, "neuron")]
    loihi = resource_map(layers, load_profile("loihi"))
    assert loihi.unmappable == ["r"] and loihi.features == {"weight_sharing": True, "graded_spikes": False}
    problem = loihi.layers[0].problem
    assert "graded population (kind 'relay')" in problem and "loihi sends binary spikes only" in problem
    assert "fused" in problem and "fan-in" in problem
    loihi2 = resource_map(layers, load_profile("loihi2"))
    assert loihi2.unmappable == [] and loihi2.features == {"weight_sharing": True, "graded_spikes": True}
    assert resource_map(layers, load_profile("truenorth")).unmappable == ["r"]


def test_the_fan_in_limit_on_loihi2_is_reported():
    # a neuron with 4,097 inputs exceeds the 4,096 carried over from Loihi (an estimate, said so)
    pops = {"in": Population("in", (4097,), kind="input"), "a": _neuron("a", (4097,)), "b": _neuron("b", (1,))}
    syns = [Synapse("in->a", "in", "a", "elementwise", np.ones(4097)),
            Synapse("a->b", "a", "b", "dense", np.ones((1, 4097)))]
    layers = graph_resources(SynapseGraph(pops, syns, ["in"], {"out": "b"}, dt=1e-3))
    profile = load_profile("loihi2")
    fan_in = profile.get("limits", "core_fan_in")
    assert fan_in.value == 4096 and fan_in.evidence == "estimate" and "carried over" in fan_in.note
    rmap = resource_map(layers, profile)
    assert rmap.unmappable == ["b"] and rmap.layers[1].problem == "fan-in 4097 > 4096 per core"


def test_every_builtin_profile_states_its_features_with_a_source():
    for name in builtin_profiles():
        p = load_profile(name)
        assert set(p.features) == set(FEATURES), name
        for f in p.features.values():
            assert f.source and f.evidence
        if p.kind == "ann":
            assert p.supports("weight_sharing") is None and p.supports("graded_spikes") is None
    assert load_profile("loihi").supports("graded_spikes") is False
    assert load_profile("loihi2").supports("graded_spikes") is True
    assert load_profile("truenorth").supports("weight_sharing") is False
    assert load_profile("loihi2").to_dict()["features"]["graded_spikes"]["value"] is True


SHARING = 'value = SHARING\nsource = "made up for a test"\nevidence = "estimate"'


def _sharing(table: str):
    """An edit of TOY that writes ``table`` as the body of [features.weight_sharing]."""
    return lambda t: t.replace(SHARING, table)


@pytest.mark.parametrize("edit, needle", [
    (_sharing('value = "yes"\nsource = "x"\nevidence = "estimate"'),
     "features.weight_sharing.value: expected true or false, got 'yes'"),
    (lambda t: t + '\n[features.teleport]\nvalue = true\nsource = "x"\nevidence = "estimate"\n',
     "features.teleport: unknown feature"),
    (_sharing('value = true\nevidence = "estimate"'), "features.weight_sharing: missing 'source'"),
    (_sharing('value = true\nsource = "x"\nevidence = "measured"'),
     "features.weight_sharing.evidence: 'measured' is not one of"),
    (_sharing('value = true\nsource = "x"\nevidence = "not_applicable"'),
     "features.weight_sharing.value: a feature that does not apply cannot be true"),
    (_sharing('value = true\nsource = ""\nevidence = "estimate"'), "features.weight_sharing.source: say where"),
    (lambda t: t.replace("[features.graded_spikes]\nvalue = false",
                         '[features.graded_spikes]\nvalue = false\nunit = "bit"'),
     "features.graded_spikes: unknown key 'unit'"),
    (lambda t: t.replace("[features.weight_sharing]\n" + SHARING, "[features]\nweight_sharing = true"),
     "features.weight_sharing: expected a table with value, source and evidence"),
])
def test_bad_features_name_the_file_and_field(tmp_path, edit, needle):
    path = tmp_path / "toy.toml"
    path.write_text(edit(TOY).replace("SHARING", "true"))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_the_report_says_which_profile_shares_weights_and_has_graded_spikes(tmp_path):
    import torch

    from mksgn.core.emulator import Emulator
    from mksgn.hw_profiles.counts import count_layers
    from mksgn.hw_profiles.estimate import BASELINE_PROFILE, EnergyResult, _priced, load_profiles
    from mksgn.hw_profiles.report import render_markdown, terminal_table, write_report

    sg = _relay_graph()
    res = Emulator(sg, "floating_pt").run({"in": torch.tensor([1.0, 0.0, 2.0, 3.0]).expand(2, 1, 4).clone()})
    counts = count_layers(sg, res.spike_counts, res.synops, 1, 1, 2, "hand-made inputs", "emulator")
    profiles = load_profiles(["cmos45nm", "loihi", "loihi2", "truenorth"])
    result = EnergyResult("relay.nir", "floating_pt", counts, 1.0, None, BASELINE_PROFILE,
                          _priced(counts, None, profiles, graph_resources(sg), 1.0), 1.0).to_dict()
    rows = {line.split()[0]: line for line in terminal_table(result).splitlines()[2:]}
    assert "shared w / graded" in terminal_table(result)
    assert "yes / no" in rows["loihi"] and "yes / yes" in rows["loihi2"] and "no / no" in rows["truenorth"]
    assert "n/a / n/a" in rows["cmos45nm"]
    md = render_markdown(result)
    loihi = next(line for line in md.splitlines() if line.startswith("- **loihi** (weight sharing"))
    assert "weight sharing: yes, graded spikes: no" in loihi and "`r` (graded population (kind 'relay')" in loihi
    loihi2 = next(line for line in md.splitlines() if line.startswith("- **loihi2** (weight sharing"))
    assert "graded spikes: yes" in loihi2 and "not mappable: none" in loihi2
    assert "sharing saves memory, not operations" in md
    assert "features.graded_spikes = true (documented): Intel" in md
    write_report(result, tmp_path)
    assert '"graded_spikes": false' in (tmp_path / "energy.json").read_text()
