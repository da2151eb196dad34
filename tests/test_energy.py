"""Hardware profiles, operation counts checked by hand, the estimator, the resource map, mksgn-energy."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
from helpers import tiny_graph

from mksgn.core.synapse_graph import Population, Synapse, SynapseGraph
from mksgn.core.emulator import Emulator
from mksgn.hw_profiles.counts import ANNCounts, count_layers, onnx_counts, teacher_counts
from mksgn.hw_profiles.energy_cli import main as energy_main
from mksgn.hw_profiles.estimator import ann_energy, snn_energy
from mksgn.hw_profiles.profile import ProfileError, builtin_profiles, load_profile
from mksgn.hw_profiles.resources import graph_resources, resource_map

GOOD = """
[profile]
name = "mine"
description = "a test chip"
kind = "neuromorphic"

[energy.synaptic_op]
value = 2
unit = "pJ"
source = "made up for a test"
evidence = "estimate"

[energy.neuron_update]
value = 1
unit = "pJ"
source = "made up"
evidence = "estimate"

[energy.spike]
value = 10
unit = "pJ"
source = "made up"
evidence = "estimate"

[energy.graded_op]
value = 5
unit = "pJ"
source = "made up"
evidence = "estimate"

[limits.core_neurons]
value = 2
unit = "count"
source = "made up"
evidence = "estimate"
"""


def _pop(name, shape, threshold=0.5, kind="neuron"):
    if kind == "input":
        return Population(name, shape, kind="input")
    return Population(name, shape, du=np.ones(()), dv=np.ones(()), bias=np.zeros(()),
                      threshold=None if threshold is None else np.full((), threshold))


def _counts(sg, inputs):
    res = Emulator(sg, "floating_pt").run(inputs)
    steps, rows = next(iter(inputs.values())).shape[:2]
    return count_layers(sg, res.spike_counts, res.synops, rows, rows, steps, "hand-made inputs", "emulator"), res


def test_hand_computed_counts_linear_conv_graph_conv_pooling_coincidence():
    # in (3) -> a (3, memoryless, threshold 0.5) elementwise 1; x = [1, 0, 2]: a0 and a2 spike at every step.
    # a -> b (2) dense W = [[1, 0, 1], [0, 0, 1]]: fan-out a0 = 1, a1 = 0, a2 = 2.
    # a -> c (1, 3) conv kernel 3 of ones, padding 1 (channels 1, length 3): fan-out 2, 3, 2.
    # a -> g (1, 1, 3) mix over joints with adjacency [[1,1,0],[1,1,1],[0,1,1]]: fan-out 2, 3, 2 (column counts).
    # a -> p (1, 1) sum pool, kernel 2 stride 2 over length 3 (no padding): a0, a1 pooled, a2 dropped: fan-out 1, 1, 0.
    # a and b0 -> k (1) coincidence: weights 1 and 1, threshold 1.5.
    pops = {"in": _pop("in", (3,), kind="input"), "a": _pop("a", (3,)), "a3": _pop("a3", (1, 1, 3)), "b": _pop("b", (2,)),
            "c": _pop("c", (1, 3)), "g": _pop("g", (1, 1, 3)), "p": _pop("p", (1, 1)), "k": _pop("k", (1,), 1.5)}
    adjacency = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float64)
    syns = [
        Synapse("in->a", "in", "a", "elementwise", np.ones(3)),
        Synapse("a->b", "a", "b", "dense", np.array([[1.0, 0, 1], [0, 0, 1]])),
        Synapse("a->c", "a", "c", "conv", np.ones((1, 1, 3)), stride=(1,), padding=(1,), dilation=(1,)),
        Synapse("a->p", "a", "p", "conv", np.ones((1, 1, 2)), stride=(2,), padding=(0,), dilation=(1,)),
        Synapse("b->k", "b", "k", "dense", np.array([[1.0, 0.0]])),
        Synapse("a->k", "a", "k", "dense", np.array([[1.0, 0.0, 0.0]])),
    ]
    # the mix synapse works on (C, F, V) populations: a3 is a copy of a shaped (1, 1, 3)
    syns.append(Synapse("a->a3", "a", "a3", "dense", np.eye(3)))
    syns.append(Synapse("a3->g", "a3", "g", "mix", adjacency.reshape(3, 1, 3, 1)))
    sg = SynapseGraph(pops, syns, ["in"], {"out": "k"}, dt=1e-3)
    steps, rows = 4, 1
    x = torch.tensor([1.0, 0.0, 2.0]).expand(steps, rows, 3).clone()
    counts, res = _counts(sg, {"in": x})
    by = {layer.name: layer for layer in counts.layers}
    assert res.spike_counts["a"] == 2 * steps and res.spike_counts["a3"] == 2 * steps
    assert by["a"].graded_ops == 2 * steps  # two non-zero inputs x fan-out 1
    assert by["b"].synaptic_ops == (1 + 2) * steps
    assert by["c"].synaptic_ops == (2 + 2) * steps  # a0 (edge: 2) and a2 (edge: 2)
    assert by["g"].synaptic_ops == (2 + 2) * steps  # joints 0 and 2: two neighbours each
    assert by["p"].synaptic_ops == 1 * steps  # a0 pooled, a2 falls off the stride
    # b0 = a0 + a2 = 2 > 0.5 spikes every step; k gets b0 (1) and a0 (1): coincidence 2 > 1.5
    assert by["k"].synaptic_ops == (1 + 1) * steps and res.spike_counts["k"] == steps
    assert by["k"].neuron_updates == 1 * steps and by["c"].neuron_updates == 3 * steps
    assert by["b"].spikes == res.spike_counts["b"]


def test_fixed_point_counts_drop_weights_rounded_to_zero():
    pops = {"in": _pop("in", (2,), kind="input"), "a": _pop("a", (2,)), "b": _pop("b", (1,), 100.0)}
    syns = [Synapse("in->a", "in", "a", "elementwise", np.ones(2)),
            Synapse("a->b", "a", "b", "dense", np.array([[1.0, 1e-6]]))]
    sg = SynapseGraph(pops, syns, ["in"], {"out": "b"}, dt=1e-3)
    from mksgn.convert.quantize import quantize

    x = torch.ones(2, 1, 2)
    sg, _ = quantize(sg, {"in": x})
    fixed = Emulator(sg, "fixed_pt").run(x := {"in": x})
    floating = Emulator(sg, "floating_pt").run(x)
    assert floating.synops["a->b"] == 2 * 2 and fixed.synops["a->b"] == 1 * 2


def test_builtin_profiles_load_with_units_and_sources():
    names = builtin_profiles()
    assert {"cmos45nm", "loihi", "loihi2", "spinnaker2", "truenorth", "cpu", "gpu"} <= set(names)
    for name in names:
        p = load_profile(name)
        for keys in p.quantities.values():
            for q in keys.values():
                assert q.unit and q.source and q.si >= 0
    cmos = load_profile("cmos45nm")
    assert cmos.si("energy", "synaptic_op") == pytest.approx(0.9e-12)
    assert cmos.si("energy", "mac") == pytest.approx(4.6e-12)
    assert load_profile("loihi2").get("energy", "synaptic_op").evidence == "estimate"


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.replace('unit = "pJ"\nsource = "made up for a test"', 'source = "made up for a test"'),
     "energy.synaptic_op: missing 'unit'"),
    (lambda t: t.replace("value = 2\n", "value = -2\n"), "energy.synaptic_op.value: a cost or limit cannot be negative"),
    (lambda t: t + '\n[energy.teleport]\nvalue = 1\nunit = "pJ"\nsource = "x"\nevidence = "estimate"\n',
     "energy.teleport: unknown key"),
    (lambda t: t.replace('[limits.core_neurons]\nvalue = 2\nunit = "count"', '[limits.core_neurons]\nvalue = 2\nunit = "pJ"'),
     "limits.core_neurons.unit: 'pJ' is not a unit"),
    (lambda t: t.replace('source = "made up for a test"', 'source = ""'), "energy.synaptic_op.source"),
    (lambda t: t.replace("[energy.synaptic_op]", "[energy.synaptic_op]\ncolour = 1"), "unknown key 'colour'"),
    (lambda t: t + "\n[weather]\n", "unknown section [weather]"),
    (lambda t: t.replace("value = 2\n", "value = nan\n"), "expected a finite number"),
    (lambda t: t + "\n[[[", "not valid TOML"),
])
def test_profile_schema_errors_name_the_file_and_key(tmp_path, edit, needle):
    path = tmp_path / "mine.toml"
    path.write_text(edit(GOOD))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_unknown_profile_name_lists_the_builtins():
    with pytest.raises(ProfileError, match="unknown profile 'tpu'.*cmos45nm"):
        load_profile("tpu")


def test_estimator_sums_counts_times_costs_and_names_unpriced_terms(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    mine = load_profile(path)
    pops = {"in": _pop("in", (3,), kind="input"), "a": _pop("a", (3,)), "b": _pop("b", (2,))}
    syns = [Synapse("in->a", "in", "a", "elementwise", np.ones(3)),
            Synapse("a->b", "a", "b", "dense", np.array([[1.0, 0, 1], [0, 0, 1]]))]
    sg = SynapseGraph(pops, syns, ["in"], {"out": "b"}, dt=1e-3)
    counts, res = _counts(sg, {"in": torch.tensor([1.0, 0.0, 2.0]).expand(2, 1, 3).clone()})
    e = snn_energy(counts, mine)
    spikes = sum(res.spike_counts.values())
    expected = (6 * 2e-12) + (4 * 5e-12) + (5 * 2 * 1e-12) + spikes * 10e-12
    assert e.total == pytest.approx(expected) and not e.unpriced
    cmos = snn_energy(counts, load_profile("cmos45nm"))  # arithmetic only: 6 ACs + 4 MACs
    assert cmos.total == pytest.approx(6 * 0.9e-12 + 4 * 4.6e-12) and cmos.terms["neuron"] == 0
    spinnaker = snn_energy(counts, load_profile("spinnaker2"))
    assert spinnaker.unpriced == ["spike"]
    assert snn_energy(counts, load_profile("cpu")) is None
    ann = ANNCounts({"conv": 1000, "fc": 10})
    assert ann_energy(ann, 1.5, load_profile("cmos45nm")).total == pytest.approx(1010 * 1.5 * 4.6e-12)
    assert ann_energy(ann, 1.0, load_profile("loihi")) is None
    rmap = resource_map(graph_resources(sg), mine)
    assert [x.cores for x in rmap.layers] == [2, 1] and rmap.cores == 3 and rmap.split_layers == ["a"]
    assert [x.max_fan_in for x in rmap.layers] == [1, 2] and [x.synapses for x in rmap.layers] == [3, 3]


def test_teacher_counts_equal_onnx_counts_and_ntu_baseline_is_30_to_40_mj(tmp_path):
    from mksgn.convert.onnx_export import export_teacher_onnx
    from mksgn.train.config import preset
    from mksgn.train.run import build_teacher

    def teacher(name):
        cfg = preset(name)
        data = {"layout": "ntu25", "class_names": [str(i) for i in range(60)], "modalities": list(cfg.data.modalities)}
        return build_teacher(cfg, data).eval(), cfg.data.frames

    tiny, frames = teacher("tiny")
    hooks = teacher_counts(tiny, frames, 25)
    export_teacher_onnx(tiny, frames, 25, tmp_path / "teacher.onnx")
    from_onnx = onnx_counts(tmp_path / "teacher.onnx")
    assert from_onnx.total == hooks.total > 0
    assert any("mix" in k for k in hooks.macs)  # the adjacency products are counted
    ntu, frames = teacher("ntu")
    assert frames == 64
    mj = ann_energy(teacher_counts(ntu, frames, 25), 1.0, load_profile("cmos45nm")).total * 1e3
    print(f"\nntu teacher (4 streams, F = 64, V = 25, 60 classes) on cmos45nm: {mj:.2f} mJ per person row")
    assert 30.0 <= mj <= 40.0


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from mksgn.convert.quantize_cli import main as quantize_main

    tmp = tmp_path_factory.mktemp("energy")
    graph, _, _ = tiny_graph()
    nir.write(str(tmp / "student.nir"), graph)
    assert quantize_main([str(tmp / "student.nir"), "-o", str(tmp / "student.q.nir"), "--samples", "8", "--quiet"]) == 0
    return tmp


def test_mksgn_energy_writes_report_and_agrees_with_mksgn_run(files, capsys):
    from mksgn.deploy.run_cli import main as run_main

    out = files / "report"
    assert energy_main([str(files / "student.q.nir"), "--limit", "2", "--teacher-config", "tiny", "--out", str(out),
                        "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "loihi" in printed and "measured on 2 of 602 test samples" in printed and "stratified by class" in printed
    assert "SNN on loihi vs ANN on cmos45nm" in printed
    result = json.loads((out / "energy.json").read_text())
    for name in ("energy.md", "energy_ops.png", "energy_profiles.png", "energy_snn_vs_ann.png"):
        assert (out / name).stat().st_size > 0
    assert set(result["profiles"]) == set(builtin_profiles()) and result["tag"] == "fixed_pt"
    assert run_main([str(files / "student.q.nir"), "--limit", "2", "--out", str(files / "run.json"), "--quiet"]) == 0
    run = json.loads((files / "run.json").read_text())
    totals = result["counts"]["totals"]
    assert (totals["synaptic_ops"] + totals["graded_ops"]) * 2 == pytest.approx(sum(run["synops_per_synapse"].values()))
    assert totals["spikes"] * 2 == pytest.approx(sum(run["spikes_per_population"].values()))
    assert 0 < result["profiles"]["cmos45nm"]["reduction_vs_baseline"] < 1
    loihi = result["profiles"]["loihi"]
    assert loihi["resources"]["cores"] > 0 and loihi["snn"]["total"] > 0
    assert any("spike_hop not charged" in n for n in loihi["snn"]["notes"])
    assert "How each profile was charged" in (out / "energy.md").read_text()


@pytest.mark.parametrize("args, needle", [
    (["--profile", "tpu"], "unknown profile 'tpu'"),
    (["--onnx", "missing.onnx"], "missing.onnx: no such ONNX file"),
])
def test_mksgn_energy_bad_input_one_line_status_2(files, capsys, args, needle):
    code = energy_main([str(files / "student.q.nir"), "--limit", "1", "--quiet", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_onnx_counts_refuse_a_non_onnx_file(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(Exception, match="x.onnx: not a readable ONNX model"):
        onnx_counts(bad)


def _count_calls(monkeypatch, module, name: str) -> list:
    """Count calls of ``module.name`` wherever mksgn looks it up (its module, and every module holding it)."""
    import sys

    real = getattr(module, name)
    calls: list = []

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("mksgn") and getattr(mod, name, None) is real:
            monkeypatch.setattr(mod, name, counted)
    return calls


def test_mksgn_energy_reads_and_fuses_its_model_once(files, monkeypatch, capsys):
    import mksgn.convert.quantize
    import mksgn.core.fuse
    import mksgn.core.nir_file
    import mksgn.deploy.run
    import mksgn.hw_profiles.estimate  # noqa: F401  (imported before counting: no module binds the counter)

    reads = _count_calls(monkeypatch, mksgn.core.nir_file, "read_graph")
    fuses = _count_calls(monkeypatch, mksgn.core.fuse, "fuse")
    assert energy_main([str(files / "student.q.nir"), "--limit", "1", "--profile", "loihi", "--quiet"]) == 0
    assert "loihi" in capsys.readouterr().out
    assert len(reads) == 1 and len(fuses) == 1, (len(reads), len(fuses))
    from mksgn.deploy.run import load_model
    from mksgn.hw_profiles.estimate import estimate
    from mksgn.data.builtin import load_dataset

    loaded = load_model(files / "student.q.nir")
    assert loaded.tag == "fixed_pt" and loaded.sg.fixed is not None
    assert len(reads) == 2 and len(fuses) == 2
    result = estimate(loaded, load_dataset(None).test, limit=1, profiles=["loihi"], progress=False)
    assert len(reads) == 2 and len(fuses) == 2  # the service reuses the loaded graph
    assert result.tag == "fixed_pt" and set(result.to_dict()["profiles"]) == {"loihi"}


def _hand_report():
    """A real estimate (counts of the hand-made graph priced on four profiles) as ``energy.json`` holds it."""
    from mksgn.hw_profiles.estimate import BASELINE_PROFILE, EnergyResult, _priced, load_profiles

    pops = {"in": _pop("in", (3,), kind="input"), "a": _pop("a", (3,)), "b": _pop("b", (2,))}
    syns = [Synapse("in->a", "in", "a", "elementwise", np.ones(3)),
            Synapse("a->b", "a", "b", "dense", np.array([[1.0, 0, 1], [0, 0, 1]]))]
    sg = SynapseGraph(pops, syns, ["in"], {"out": "b"}, dt=1e-3)
    counts, _ = _counts(sg, {"in": torch.tensor([1.0, 0.0, 2.0]).expand(2, 1, 3).clone()})
    ann = ANNCounts({"conv": 1000, "fc": 10}, "a made-up ANN")
    profiles = load_profiles(["cmos45nm", "cpu", "loihi", "spinnaker2"])
    priced = _priced(counts, ann, profiles, graph_resources(sg), 1.0)
    return EnergyResult("hand.nir", "floating_pt", counts, 1.0, ann, BASELINE_PROFILE, priced, 1.0).to_dict()


def test_each_comparison_names_both_sides_and_an_unpriced_term_makes_it_incomplete(tmp_path):
    from mksgn.hw_profiles.report import render_markdown, snn_vs_ann_figure, terminal_table, write_report

    result = _hand_report()
    p = result["profiles"]
    ann = p["cmos45nm"]["ann"]["total"]
    loihi = p["loihi"]["comparison"]
    assert loihi["label"] == "SNN on loihi vs ANN on cmos45nm" and loihi["complete"] and not loihi["same_profile"]
    assert loihi["reduction"] == pytest.approx(1 - p["loihi"]["snn"]["total"] / ann)
    assert p["loihi"]["reduction_vs_baseline"] == loihi["reduction"]
    assert p["cmos45nm"]["comparison"]["same_profile"] and p["cpu"]["comparison"] is None
    spinnaker = p["spinnaker2"]["comparison"]  # its profile gives no spike cost, the run spiked
    assert spinnaker["label"] == "SNN on spinnaker2 vs ANN on cmos45nm" and not spinnaker["complete"]
    assert spinnaker["reduction"] is None and p["spinnaker2"]["reduction_vs_baseline"] is None
    assert spinnaker["unpriced"] == {"snn": ["spike"]} and "SNN on spinnaker2: energy.spike" in spinnaker["reason"]
    assert spinnaker["reduction_priced_terms_only"] == pytest.approx(1 - p["spinnaker2"]["snn"]["total"] / ann)
    md = render_markdown(result)
    assert "SNN saves vs ANN on cmos45nm" not in md
    row = next(line for line in md.splitlines() if line.startswith("| spinnaker2 |"))
    assert "SNN on spinnaker2 vs ANN on cmos45nm" in row and "incomplete: SNN spike unpriced" in row and "%" not in row
    assert "only the cmos45nm row compares both on the same hardware model" in md
    assert "SNN on spinnaker2 vs ANN on cmos45nm is incomplete" in md
    table = terminal_table(result)
    assert "SNN on loihi vs ANN on cmos45nm" in table and "incomplete: SNN spike unpriced" in table
    texts = {t.get_text() for t in snn_vs_ann_figure(result).axes[0].texts}
    assert any(t.startswith("incomplete: SNN spike unpriced") for t in texts)
    assert any(t.endswith("than ANN on cmos45nm") or t.endswith("vs ANN on cmos45nm") for t in texts)
    write_report(result, tmp_path)
    assert json.loads((tmp_path / "energy.json").read_text())["profiles"]["spinnaker2"]["comparison"] == spinnaker


def test_an_older_energy_json_without_comparisons_gets_them_derived():
    from mksgn.hw_profiles.report import comparison, summary_rows

    result = _hand_report()
    for p in result["profiles"].values():
        del p["comparison"]
    assert comparison(result, "spinnaker2")["complete"] is False
    assert comparison(result, "loihi")["label"] == "SNN on loihi vs ANN on cmos45nm"
    assert [r[5] for r in summary_rows(result) if r[0] == "spinnaker2"] == ["incomplete: SNN spike unpriced"]


def test_ops_plot_writes_zero_counts_as_zero_with_readable_layer_names(tmp_path):
    from mksgn.figures import MIN_FONT
    from mksgn.hw_profiles.report import OP_KEYS, ops_figure, plot_ops

    result = _hand_report()
    layers = result["counts"]["layers"]
    zeros = sum(layer[key] == 0 for layer in layers for key in OP_KEYS)
    assert zeros > 0  # the hand-made graph has layers without synaptic or without graded ops
    fig = ops_figure(result)
    assert sum(t.get_text() == "0" for ax in fig.axes for t in ax.texts) == zeros
    for ax, key in zip(fig.axes, OP_KEYS, strict=True):  # no bar stands for a zero count
        assert len(ax.patches) == sum(layer[key] > 0 for layer in layers)
    fig.canvas.draw()
    labels = fig.axes[0].get_yticklabels()
    assert [t.get_text() for t in labels] == [layer["name"] for layer in layers]
    assert all(t.get_fontsize() >= MIN_FONT and t.get_window_extent().x0 >= 0 for t in labels)
    plot_ops(result, tmp_path / "ops.png")
    assert (tmp_path / "ops.png").read_bytes()[:4] == b"\x89PNG"
