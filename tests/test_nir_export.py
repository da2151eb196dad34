"""NIR export of the student: structure, metadata, round trip, errors, and spike parity."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
from torch import nn

from mksgn.convert.nir_export import ExportError, export_student, node_name
from mksgn.core.nir_file import decode_metadata
from mksgn.data.skeletons import NTU25
from mksgn.train.blocks import JointMix
from mksgn.train.calibrate import randomise_batchnorm
from mksgn.train.config import preset
from mksgn.train.student import MKSGN

CLASSES = [f"action {k}" for k in range(14)]


def _tiny_student(seed: int = 0) -> MKSGN:
    torch.manual_seed(seed)
    cfg = preset("tiny")
    model = MKSGN(cfg.student, NTU25, len(CLASSES), cfg.data.modalities).eval()
    randomise_batchnorm(model, seed)
    # trained-like derived parameters: adjacency offsets and fusion weights that are not
    # exact in float32 (an export deriving them in float32 flips spikes near a threshold)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, JointMix) and m.offset is not None:
                m.offset.add_(torch.randn(m.offset.shape, generator=g) * 0.03)
        model.fusion.logits.add_(torch.randn(model.fusion.logits.shape, generator=g) * 0.3)
    return model


def test_graph_structure_and_metadata_survive_a_file_round_trip(tmp_path):
    model = _tiny_student()
    graph = export_student(model, 32, 25, CLASSES, "ntu25")
    path = tmp_path / "student.nir"
    nir.write(str(path), graph)
    back = nir.read(str(path), type_check=False)
    assert set(back.nodes) == set(graph.nodes)
    assert sorted(back.edges) == sorted(graph.edges)
    meta = decode_metadata(back.metadata)
    assert meta["dt"] == 1e-4 and meta["discretisation"] == "forward-euler" and meta["reset"] == "zero"
    assert meta["time_steps"] == 4 and meta["class_names"] == CLASSES
    assert meta["input"]["modalities"] == ["joint", "bone", "joint_motion", "bone_motion"]
    assert meta["input"]["shape"] == [3, 32, 25] and meta["input"]["skeleton"] == "ntu25"
    # every LIF population of the model is a node, named after its module
    lifs = [n for n, mod in model.named_modules() if type(mod).__name__ == "LIF"]
    for path_ in lifs:
        assert meta["module_map"][node_name(path_)] == path_
        assert isinstance(back.nodes[node_name(path_)], nir.LIF)
    # node types used
    kinds = {type(n).__name__ for n in back.nodes.values()}
    assert kinds == {"Input", "Scale", "Linear", "Affine", "Conv2d", "LIF", "LI", "SumPool2d", "Flatten", "I", "Output"}
    relays = [n for n, node in back.nodes.items() if isinstance(node, nir.LI)]  # graded relays: tau = dt
    assert len(relays) == 7 * 3 + 7 + 1 and all(np.all(back.nodes[n].tau == 1e-4) for n in relays)
    # graph convolution: three Linear (joint mix) -> relay -> Conv2d chains into the spatial LIF
    into = [s for s, d in back.edges if d == "blocks_0_lif_s"]
    assert sorted(into) == [f"blocks_0_gcn_conv_{k}" for k in range(3)]
    # identity residual and attention AND are summed edges
    assert ("fusion_lif", "blocks_0_lif_t") in back.edges
    into_and = {s for s, d in back.edges if d == "blocks_0_attention_coincidence"}
    assert into_and == {"blocks_0_lif_s", "blocks_0_attention_broadcast"}
    lif = back.nodes["blocks_0_lif_s"]
    beta = 1 - 1e-4 / lif.tau.flat[0]
    assert beta == pytest.approx(0.5) and lif.r.flat[0] * 1e-4 / lif.tau.flat[0] == pytest.approx(1.0)
    assert back.nodes["blocks_0_attention_coincidence"].v_threshold.flat[0] == 1.5


def test_batchnorm_is_folded():
    model = _tiny_student()
    graph = export_student(model, 32, 25, CLASSES, "ntu25")
    conv = model.blocks[1].tcn
    node = graph.nodes["blocks_1_tcn_conv"]
    x = torch.randn(2, conv.conv.in_channels, 16, 25)
    with torch.no_grad():
        expected = conv(x)
    got = torch.nn.functional.conv2d(x.double(), torch.from_numpy(node.weight), torch.from_numpy(node.bias),
                                     stride=node.stride, padding=node.padding)
    torch.testing.assert_close(got.float(), expected, rtol=1e-5, atol=1e-5)


def test_derived_parameters_are_computed_in_float64():
    """Adjacency + offset and the fusion weights are derived in float64 from the stored float32
    parameters, exactly as a float64 run of the model derives them."""
    model = _tiny_student()
    graph = export_student(model, 32, 25, CLASSES, "ntu25")
    mix = model.blocks[0].gcn.mix[1]
    expected = (mix.fixed.double() + mix.offset.detach().double()).T.numpy()
    assert np.array_equal(graph.nodes["blocks_0_gcn_mix_1"].weight, expected)
    assert not np.array_equal(expected, (mix.fixed + mix.offset.detach()).double().T.numpy())  # float32 would differ
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is left alone


def test_unsupported_modules_are_named():
    model = _tiny_student()
    model.blocks[0].tcn = nn.Sequential(nn.Conv2d(16, 16, 1))
    with pytest.raises(ExportError, match=r"blocks\.0\.tcn: module type Sequential"):
        export_student(model, 32, 25, CLASSES, "ntu25")


def _lively(model: MKSGN) -> MKSGN:
    """Drive the random network harder so that every layer fires (the comparison means something)."""
    for scale in model.input_scale.values():
        scale.scale.fill_(3.0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.num_features > 1:
            m.bias.data.add_(0.6)
    return model


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_executor_matches_the_student_spike_for_spike(tmp_path, dtype):
    from mksgn.convert.validate import compare

    model = _lively(_tiny_student(seed=1))
    path = tmp_path / "student.nir"
    nir.write(str(path), export_student(model, 32, 25, CLASSES, "ntu25"))
    graph = nir.read(str(path), type_check=False)
    x = torch.randn(6, 4, 3, 32, 25, 2)
    x[::2, ..., 1] = 0.0
    report = compare(model, graph, x, dtype)
    assert report.rows == 9 and report.steps == 4
    rates = {n.node: n.spikes / n.elements for n in report.nodes}
    assert len(rates) == 29 and sum(0.0 < r < 1.0 for r in rates.values()) >= 20, rates
    if dtype == torch.float64:
        assert report.mismatches == 0
        assert report.logit_max_abs_diff < 1e-9
    else:
        assert report.real == 0, report.to_dict()  # any float32 mismatch must be a rounding tie
        assert report.logit_max_abs_diff < 1e-3


def test_a_perturbed_weight_is_caught_at_its_node(tmp_path):
    from mksgn.convert.validate import compare

    model = _lively(_tiny_student(seed=1))
    graph = export_student(model, 32, 25, CLASSES, "ntu25")
    graph.nodes["blocks_1_tcn_conv"].weight[0, 0, 4, 0] += 5.0
    report = compare(model, graph, torch.randn(4, 4, 3, 32, 25, 2), torch.float64)
    first = report.first_failure()
    assert first is not None and first.node == "blocks_1_lif_t" and first.module == "blocks.1.lif_t"
    upstream = [n for n in report.nodes if n.node.startswith(("branches", "fusion", "blocks_0"))]
    assert all(n.mismatches == 0 for n in upstream)


def test_export_cli_writes_a_validated_graph(tmp_path, capsys):
    from mksgn.convert.export_cli import main as export_main
    from mksgn.data.data_cli import main as data_main
    from mksgn.train.train_cli import main as train_main

    data = tmp_path / "d.npz"
    assert data_main(["synth", "--out", str(data), "--samples", "56", "--frames", "20"]) == 0
    run = tmp_path / "run"
    assert train_main(["--data", str(data), "--out", str(run), "--device", "cpu", "--kd", "none", "--epochs", "1",
                       "--set", "student.branch_channels=8", "--set", "student.channels=[8, 8]",
                       "--set", "student.strides=[1, 2]", "--set", "data.frames=16", "--set", "distill.feature_layers=1",
                       "--quiet"]) == 0
    out = tmp_path / "model.nir"
    assert export_main([str(run / "student_best.pt"), "-o", str(out), "--data", str(data), "--samples", "4"]) == 0
    printed = capsys.readouterr().out
    assert "float64" in printed and "0 mismatching spikes" in printed and str(data) in printed
    graph = nir.read(str(out), type_check=False)
    meta = decode_metadata(graph.metadata)
    assert meta["input"]["frames"] == 16 and len(meta["class_names"]) == 14
    parity = json.loads(out.with_suffix(".parity.json").read_text())
    assert parity["parity_float64"]["mismatches"] == 0 and parity["parity_float32"]["real"] == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left
    # bad input: one line, status 2, nothing written
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert export_main([str(bad), "-o", str(tmp_path / "x.nir")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.pt" in err and not (tmp_path / "x.nir").exists()
