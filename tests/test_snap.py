"""Snapping the student onto the fixed-point grid: factorised deployment form, export, exact float = fixed."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from helpers import lively_tiny_student

from mksgn.convert.nir_export import export_student
from mksgn.convert.quantize import read_quantized
from mksgn.convert.snap import ALWAYS, exact_steps, snap_bias
from mksgn.convert.snap_cli import main as snap_main
from mksgn.core.fuse import fuse
from mksgn.core import loihi
from mksgn.core.emulator import Emulator
from mksgn.core.fixed_point import realised_weight
from mksgn.convert.graph_inputs import InputSpec, batches
from mksgn.data.builtin import load_dataset
from mksgn.deploy.parity_cli import main as parity_main
from mksgn.train.blocks import ConvBN, FactorisedGate, FactorisedGraphConv, SpatialGraphConv
from mksgn.train.deployment import deployment_form
from mksgn.train.run import load_student


def test_deployment_form_computes_what_the_student_computes():
    model, rows = lively_tiny_student(seed=1)
    dep = deployment_form(model)
    assert not any(isinstance(m, SpatialGraphConv) for m in dep.modules())
    assert all(m.bn is None for m in dep.modules() if isinstance(m, ConvBN))
    assert sum(isinstance(m, FactorisedGraphConv) for m in dep.modules()) == 4 + 3  # branches + blocks
    assert sum(isinstance(m, FactorisedGate) for m in dep.modules()) == 4 + 3
    params = sum(p.numel() for p in model.parameters())  # no bigger than what was trained
    assert sum(p.numel() for p in dep.parameters()) <= 1.25 * params
    x = rows.double().unsqueeze(-1)
    with torch.no_grad():
        ref = copy.deepcopy(model).double()(x)
        out = dep(x)
    assert torch.allclose(ref, out, rtol=0, atol=1e-9)
    assert float(dep.fusion.alpha().min()) == float(dep.fusion.alpha().max()) == 1.0


def test_the_deployment_form_exports_the_synapses_of_the_student():
    model, _ = lively_tiny_student(seed=2)
    names = [f"c{k}" for k in range(14)]
    a = fuse(export_student(model, 32, 25, names, "ntu25"))
    graph = export_student(deployment_form(model), 32, 25, names, "ntu25")
    b = fuse(graph)
    assert [(s.name, s.kind) for s in a.synapses] == [(s.name, s.kind) for s in b.synapses]
    kinds = {s.kind for s in b.synapses}
    assert "mix" not in kinds and {"jointmix", "sumpool"} <= kinds  # factorised: no joints x channels map
    assert sum(p.kind == "relay" for p in b.populations.values()) == 3 * 7 + 7 + 1  # partitions, gates, pool
    for sa, sb in zip(a.synapses, b.synapses, strict=True):
        np.testing.assert_allclose(sb.weight, sa.weight, rtol=0, atol=1e-12)
    for name, pop in a.populations.items():
        np.testing.assert_allclose(b.populations[name].bias, pop.bias, rtol=0, atol=1e-12)


def test_exact_steps_and_bias_grid():
    assert exact_steps(2048) == 7  # beta 0.5: halving a multiple of 2**6
    assert exact_steps(3072) == 4  # beta 0.75 = 3/4
    assert exact_steps(0) == exact_steps(loihi.DECAY_UNITY) == ALWAYS
    scale = 2.0**-8
    b = np.array([3.3 * scale, -100.49 * scale, 5000.6 * scale, 9000.0 * scale])
    snapped = snap_bias(b, scale) / scale
    assert snapped.tolist()[:2] == [3.0, -100.0]
    assert snapped[2] == 5000.0 or snapped[2] == 5002.0  # above 4095 units / 64: even multiples
    assert snapped[2] % 2 == 0 and snapped[3] % 2 == 0


def test_snap_cli_reports_and_writes_a_loadable_checkpoint(snapped, capsys):
    rec = json.loads((snapped / "snapped.snap.json").read_text())
    assert rec["calibrated_on"].startswith("8 of ") and "stratified by class" in rec["calibrated_on"]
    assert 0 <= rec["top1_snapped"] <= 1 and rec["measured_on"].startswith("test split of")
    assert rec["exact_steps"] == 7 and rec["time_steps"] == 4
    model, _, _ = load_student(snapped / "snapped.pt")
    assert model.fixed_point["format"] == "mksgn-fixed-point-grid/2"
    units = [float(m.unit) for m in model.input_scale.values()]
    assert all(u > 0 and np.log2(u).is_integer() for u in units)
    assert all(np.log2(s).is_integer() for s in model.fixed_point["populations"].values())


def test_snapped_graph_converts_to_integers_exactly(snapped):
    graph, sg = read_quantized(snapped / "snapped.q.nir")
    q = sg.fixed
    for name, pop in q.populations.items():
        assert q.populations[name].scale == model_scale(snapped, name)
    for syn in sg.synapses:
        if sg.populations[syn.target].spiking:  # every weight is its integer times its scales, exactly
            assert np.array_equal(realised_weight(sg, syn.name), syn.weight), syn.name
            assert q.synapses[syn.name].weight_exp >= 0
    for name, pop in sg.populations.items():
        if pop.spiking:
            assert float(np.unique(pop.threshold)[0]) == q.populations[name].vth * q.populations[name].scale


def model_scale(folder, population):
    model, _, _ = load_student(folder / "snapped.pt")
    return model.fixed_point["populations"][population]


def test_snapped_float_and_fixed_point_compute_the_same_spikes(snapped):
    graph, sg = read_quantized(snapped / "snapped.q.nir")
    spec = InputSpec.of(graph)
    assert spec.input_grid is not None
    batch = next(batches(spec, load_dataset(None).test, np.arange(6), 6))
    plain = copy.copy(sg)
    plain.metadata = {}
    flt = Emulator(plain, "floating_pt").run(batch.inputs, record_spikes=True)
    fix = Emulator(sg, "fixed_pt").run(batch.inputs, record_spikes=True)
    assert set(flt.spikes) == set(fix.spikes)
    for name in flt.spikes:
        assert torch.equal(flt.spikes[name].bool(), fix.spikes[name].bool()), name
    assert sum(float(s.sum()) for s in fix.spikes.values()) > 0


def test_parity_of_a_snapped_student_agrees_in_float_and_fixed_point(snapped, capsys):
    out = snapped / "parity"
    code = parity_main([str(snapped / "snapped.pt"), str(snapped / "snapped.nir"), str(snapped / "snapped.q.nir"),
                        "--limit", "6", "--out", str(out), "--no-lava", "--quiet"])
    report = json.loads((out / "parity.json").read_text())
    assert code == 0, capsys.readouterr()
    assert report["pairs"]["snntorch = executor"]["mismatches"] == 0
    assert report["float_vs_fixed"]["spike_agreement"] == 1.0
    assert report["float_vs_fixed"]["prediction_agreement"] == 1.0
    assert report["float_vs_fixed"]["snapped"] is True
    assert "snapped onto the fixed-point grid" in (out / "parity.md").read_text()


def test_snap_refuses_bad_input_with_one_line(snapped, tmp_path, capsys):
    assert snap_main([str(snapped / "snapped.pt"), "-o", str(tmp_path / "x.pt"), "--no-eval", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already snapped" in err
    assert snap_main([str(tmp_path / "missing.pt"), "-o", str(tmp_path / "y.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert snap_main([str(snapped / "student.pt"), "-o", str(tmp_path / "z.pt"), "--input-bits", "40"]) == 2
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "z.pt").exists()


def test_quantize_refuses_input_bits_a_snapped_graph_cannot_honour(snapped, tmp_path, capsys):
    """A snapped graph's grid fixes its input bits: --input-bits 12 is refused, not silently ignored."""
    from mksgn.convert.quantize_cli import main as quantize_main

    out = tmp_path / "x.q.nir"
    assert quantize_main([str(snapped / "snapped.nir"), "-o", str(out), "--input-bits", "12", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "snapped with 8-bit graded inputs" in err, err
    assert "mksgn-snap --input-bits 12" in err and not out.exists()
    assert quantize_main([str(snapped / "snapped.nir"), "-o", str(out), "--input-bits", "8", "--samples", "2"]) == 0
    assert "8-bit graded inputs" in capsys.readouterr().out


@pytest.mark.lava
@pytest.mark.slow  # ~110 s on 2 cores; make test: the snapped parity without Lava, tests/test_parity.py with it
def test_lava_runs_the_snapped_student_float_and_fixed_point_alike(snapped, capsys):
    out = snapped / "parity_lava"
    code = parity_main([str(snapped / "snapped.pt"), str(snapped / "snapped.nir"), str(snapped / "snapped.q.nir"),
                        "--limit", "1", "--out", str(out), "--quiet"])
    report = json.loads((out / "parity.json").read_text())
    assert code == 0, capsys.readouterr()
    for pair in ("executor = lava_floating_pt", "emulator_fixed_pt = lava_fixed_pt"):
        assert report["pairs"][pair]["mismatches"] == 0, pair
    assert report["float_vs_fixed"]["spike_agreement"] == 1.0


def test_a_snapped_checkpoint_with_a_broken_grid_is_refused(snapped, tmp_path, capsys):
    from mksgn.convert.export_cli import main as export_main

    record = torch.load(snapped / "snapped.pt", weights_only=True)
    record["fixed_point"] = {"populations": {}, "inputs": {}}
    torch.save(record, tmp_path / "bad.pt")
    assert export_main([str(tmp_path / "bad.pt"), "-o", str(tmp_path / "x.nir"), "--no-validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.pt" in err and "fixed-point grid" in err
    assert not (tmp_path / "x.nir").exists()


def test_a_checkpoint_snapped_in_the_fused_form_is_refused_with_the_remedy(snapped, tmp_path, capsys):
    from mksgn.convert.export_cli import main as export_main

    record = torch.load(snapped / "snapped.pt", weights_only=True)
    record["fixed_point"]["format"] = "mksgn-fixed-point-grid/1"
    torch.save(record, tmp_path / "old.pt")
    assert export_main([str(tmp_path / "old.pt"), "-o", str(tmp_path / "x.nir"), "--no-validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "old.pt" in err and "snap the trained checkpoint again" in err
