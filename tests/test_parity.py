"""mksgn-parity on a tiny student: every backend, the report files, exit status, and a broken model."""

from __future__ import annotations

import json

import nir
import pytest
from helpers import save_tiny_student

from mksgn.convert.nir_export import export_student
from mksgn.convert.quantize_service import quantize_file
from mksgn.data.builtin import load_dataset
from mksgn.deploy.parity_cli import main as parity_main
from mksgn.train.config import preset


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    cfg = preset("tiny")
    model = save_tiny_student(tmp / "student.pt", seed=3)
    graph = export_student(model, cfg.data.frames, 25, list(load_dataset(None).train.class_names), "ntu25")
    nir.write(str(tmp / "student.nir"), graph)
    quantize_file(tmp / "student.nir", tmp / "student.q.nir", samples=8)
    return tmp


@pytest.mark.lava
def test_every_backend_agrees_on_the_tiny_student(files, capsys):
    out = files / "report"
    code = parity_main([str(files / "student.pt"), str(files / "student.nir"), str(files / "student.q.nir"),
                        "--limit", "2", "--out", str(out), "--quiet"])
    report = json.loads((out / "parity.json").read_text())
    assert code == 0, capsys.readouterr().out
    assert set(report["pairs"]) == {"snntorch = executor", "executor = lava_floating_pt",
                                    "emulator_fixed_pt = lava_fixed_pt"}
    for pair in report["pairs"].values():
        assert pair["real"] == 0 and pair["compared_spikes"] > 0
    assert report["pairs"]["emulator_fixed_pt = lava_fixed_pt"]["mismatches"] == 0
    assert report["lava_latency_steps"] == 27 and report["measured_on"].startswith("2 of ")
    assert 0.5 < report["float_vs_fixed"]["spike_agreement"] <= 1.0
    assert (out / "parity_heatmap.png").stat().st_size > 10_000
    assert "Status: **PASS**" in (out / "parity.md").read_text()
    budget = report["float_vs_fixed"]["error_budget"]
    assert set(budget) == {"graded inputs", "conv weights", "jointmix weights", "sumpool weights", "mix weights",
                           "elementwise weights", "dense weights", "neuron parameters", "all"}
    assert all(0.0 <= v["spike_agreement"] <= 1.0 for v in budget.values())
    assert "Error budget" in (out / "parity.md").read_text()


def test_error_budget_all_elements_match_the_fixed_point_emulator_but_for_integer_state(files):
    """Quantising every element in float arithmetic reproduces the fixed-point emulator almost spike for spike;
    each effective weight is the synapse's integers times its scales."""
    import numpy as np
    import torch
    from helpers import graph_inputs

    from mksgn.convert.quantize import read_quantized
    from mksgn.core.emulator import Emulator
    from mksgn.core.fixed_point import realised_weight
    from mksgn.deploy.error_budget import _variant, effective_inputs

    graph, qsg = read_quantized(files / "student.q.nir")
    rows = torch.randn(2, 4, 3, 32, 25, generator=torch.Generator().manual_seed(5)).cumsum(dim=3) / 32**0.5
    x = graph_inputs(graph, rows)
    fixed = Emulator(qsg, "fixed_pt").run(x, record_spikes=True)
    kinds = tuple(qsg.kinds.synapses)
    floating = Emulator(_variant(qsg, kinds, True), "floating_pt").run(effective_inputs(qsg, x), record_spikes=True)
    agreement = np.mean([float((fixed.spikes[k] == floating.spikes[k]).double().mean()) for k in fixed.spikes])
    assert agreement > 0.99
    syn = next(s for s in qsg.synapses if s.kind == "conv" and not qsg.is_graded(s.source))  # spikes: unit 1
    q = qsg.fixed
    np.testing.assert_array_equal(realised_weight(qsg, syn.name),
                                  np.asarray(q.synapses[syn.name].weight) * q.populations[syn.target].scale)


def test_a_perturbed_weight_is_caught_and_its_layer_named_first(files, tmp_path, capsys):
    graph = nir.read(str(files / "student.nir"), type_check=False)
    graph.nodes["blocks_1_tcn_conv"].weight[:, :, 4, 0] += 2.0
    broken = tmp_path / "broken.nir"
    nir.write(str(broken), graph)
    code = parity_main([str(files / "student.pt"), str(broken), "--no-lava", "--limit", "2", "--out",
                        str(tmp_path / "r"), "--quiet"])
    assert code == 1
    report = json.loads((tmp_path / "r" / "parity.json").read_text())
    first = report["pairs"]["snntorch = executor"]["first_failure"]
    assert first["node"] == "blocks_1_lif_t" and first["module"] == "blocks.1.lif_t"
    upstream = [n for n in report["pairs"]["snntorch = executor"]["nodes"]
                if n["node"].startswith(("branches", "fusion", "blocks_0"))]
    assert upstream and all(n["mismatches"] == 0 for n in upstream)
    assert "layer blocks_1_lif_t" in capsys.readouterr().out
    assert "First real mismatch of `snntorch = executor`: layer `blocks_1_lif_t`" in (
        tmp_path / "r" / "parity.md").read_text()


def test_bad_input_exits_2_with_one_line(files, tmp_path, capsys):
    code = parity_main([str(files / "student.pt"), str(tmp_path / "missing.nir"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "missing.nir" in err
    code = parity_main([str(files / "student.nir"), str(files / "student.nir"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "student.nir" in err


def _hand_parity():
    """Real comparisons of hand-made recordings: the fixed-point pair agrees, the float-vs-fixed pair does not."""
    import numpy as np
    import torch

    from mksgn.deploy.parity import ParityResult, Recording, compare_recordings

    nodes = ["branches_joint_motion_attention_coincidence", "blocks_2_lif_t"]
    gen = torch.Generator().manual_seed(0)
    spikes = {n: (torch.rand(4, 3, 10, generator=gen) > 0.5).double() for n in nodes}
    logits = torch.randn(2, 5, generator=gen)
    flipped = {n: s.clone() for n, s in spikes.items()}
    flipped[nodes[1]][2:, 0, :3] = 1 - flipped[nodes[1]][2:, 0, :3]
    recs = {"emulator_fixed_pt": Recording(dict(spikes), logits=logits),
            "lava_fixed_pt": Recording({n: s.clone() for n, s in spikes.items()}, logits=logits),
            "executor": Recording(flipped, logits=logits)}
    pairs, fvf, accuracy = compare_recordings(recs, {n: n for n in nodes}, dict.fromkeys(nodes, 1.0),
                                              np.array([0, 1]), 4)
    return ParityResult("2 hand-made samples", 2, 3, 4, nodes, pairs, fvf, accuracy, 0, {})


def test_heatmap_says_zero_mismatches_plainly_and_labels_the_scale_of_the_others(tmp_path):
    from mksgn.deploy.parity import heatmap_figure, plot_heatmap
    from mksgn.figures import MIN_FONT

    result = _hand_parity()
    assert result.pairs["emulator_fixed_pt = lava_fixed_pt"]["mismatches"] == 0
    fig = heatmap_figure(result)
    zero, fvf = fig.axes[0], fig.axes[1]
    compared = result.pairs["emulator_fixed_pt = lava_fixed_pt"]["compared_spikes"]
    assert [t.get_text().splitlines()[:2] for t in zero.texts] == [["0 mismatches", f"{compared:,} compared spikes"]]
    assert not fvf.texts and len(fig.axes) == 3  # the other panel: a heatmap with its own colour bar
    bar = fig.axes[2]
    assert bar.get_ylabel() == "mismatch rate (share of the layer's neurons)"
    fig.canvas.draw()
    assert bar.yaxis.get_offset_text().get_text() == ""  # no "1e-6" offset floating over the next panel
    box = fig.bbox
    for text in (bar.yaxis.label, *bar.get_yticklabels(), *fvf.get_xticklabels()):
        e = text.get_window_extent()
        assert box.x0 <= e.x0 and e.x1 <= box.x1 and box.y0 <= e.y0 and e.y1 <= box.y1, text.get_text()
    ext = [ax.get_window_extent() for ax in fig.axes]
    assert ext[0].x1 <= ext[1].x0 and ext[1].x1 <= ext[2].x0
    labels = zero.get_yticklabels()
    assert [t.get_text() for t in labels] == result.nodes  # full names, inside the figure
    assert all(t.get_fontsize() >= MIN_FONT and t.get_window_extent().x0 >= 0 for t in labels)
    plot_heatmap(result, tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
