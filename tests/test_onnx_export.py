"""ONNX export of the teacher and of the unrolled student: onnxruntime vs PyTorch, files, CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from mksgn.convert.nir_export import ExportError
from mksgn.convert.onnx_export import export_student_onnx, export_teacher_onnx
from mksgn.data.skeletons import NTU25
from mksgn.train.blocks import present_persons
from mksgn.train.config import StudentConfig, TeacherConfig, preset
from mksgn.train.student import MKSGN
from mksgn.train.teacher import GCNTeacher

from helpers import assert_usage_error

MODS = ("joint", "bone", "joint_motion", "bone_motion")
FRAMES, JOINTS, CLASSES = 16, 25, 5
TEACHER_CFG = TeacherConfig(channels=(8,) * 10)
STUDENT_CFG = StudentConfig(branch_channels=8, channels=(8, 8), strides=(1, 2))


def _randomise(model: nn.Module, seed: int = 0, gain: float = 1.0) -> nn.Module:
    """Non-trivial BN statistics; ``gain`` > 1 scales the BN weights (a tiny student then spikes)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_((torch.rand(m.num_features, generator=g) + 0.5) * gain)
    return model.eval()


def _teacher(seed: int = 0) -> GCNTeacher:
    torch.manual_seed(seed)
    return _randomise(GCNTeacher(TEACHER_CFG, NTU25, CLASSES, MODS), seed)


def _student(seed: int = 0) -> MKSGN:
    torch.manual_seed(seed)
    model = _randomise(MKSGN(STUDENT_CFG, NTU25, CLASSES, MODS), seed, gain=3.0)
    for block in [*model.branches.values(), *model.blocks]:
        block.attention.bn.bias.data.fill_(0.8)  # gates that open and close: the AND neuron matters
    return model


def _samples(n: int = 3, seed: int = 1) -> torch.Tensor:
    """``(n, Mod, 3, F, V, 2)`` with the second person absent in sample 0."""
    x = torch.randn((n, len(MODS), 3, FRAMES, JOINTS, 2), generator=torch.Generator().manual_seed(seed)) * 2
    x[0, ..., 1] = 0.0
    return x


def _ort_rows(path, rows: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"x": rows.numpy()})[0]


def _check_file(path, record: dict) -> onnx.ModelProto:
    """A valid ONNX file with input x (batch, Mod, 3, F, V) and output logits (batch, K)."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "x" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", len(MODS), 3, FRAMES, JOINTS]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", CLASSES]
    assert record["inputs"] == [{"name": "x", "shape": dims}]
    assert record["outputs"] == [{"name": "logits", "shape": ["batch", CLASSES]}]
    assert record["nodes"] == len(model.graph.node) and record["opset"] == 17
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left
    return model


def _sum_rows(rows_out: np.ndarray, sample: torch.Tensor, n: int) -> np.ndarray:
    """The runner's convention: the logits of the rows of one sample are summed."""
    out = np.zeros((n, rows_out.shape[1]), dtype=np.float64)
    np.add.at(out, sample.numpy(), rows_out)
    return out


def test_teacher_onnx_matches_pytorch_per_person(tmp_path):
    teacher = _teacher()
    path = tmp_path / "teacher.onnx"
    record = export_teacher_onnx(teacher, FRAMES, JOINTS, path)
    _check_file(path, record)
    assert record["max_abs_diff"] <= 1e-4 and record["dense_macs_per_row"] > 0
    assert "random" in record["measured_on"]
    # rows of the present persons (a batch size other than the traced one), summed per sample
    x = _samples()
    rows, sample = present_persons(x)
    assert len(rows) == 5
    got = _sum_rows(_ort_rows(path, rows), sample, len(x))
    with torch.no_grad():
        expected = teacher(x).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert _ort_rows(path, rows[:1]).shape == (1, CLASSES)


def test_student_onnx_unrolled_matches_pytorch_and_spikes(tmp_path):
    student = _student()
    path = tmp_path / "student.onnx"
    record = export_student_onnx(student, FRAMES, JOINTS, path)
    model = _check_file(path, record)
    assert record["time_steps"] == 4 and record["argmax_equal"]
    assert record["max_abs_diff"] <= 1e-4
    assert record["spiking_rows"] > 0 and 0.05 < record["spike_rate"] < 0.9
    ops = {n.op_type for n in model.graph.node}
    assert "Greater" in ops and not ops & {"Loop", "Scan", "GreaterOrEqual", "NonZero"}  # unrolled, strict threshold
    x = _samples()
    rows, sample = present_persons(x)
    rows_out = _ort_rows(path, rows)
    got = _sum_rows(rows_out, sample, len(x))
    with torch.no_grad():
        expected = student(x).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    assert len(np.unique(rows_out.round(4), axis=0)) == len(rows)  # the spikes differ between rows
    assert student.training is False


def test_a_failed_comparison_writes_nothing(tmp_path, monkeypatch):
    import mksgn.convert.onnx_export as oe

    real = oe._run_ort
    monkeypatch.setattr(oe, "_run_ort", lambda data, x: real(data, x) + 1e-2)
    path = tmp_path / "teacher.onnx"
    with pytest.raises(ExportError, match="differ"):
        export_teacher_onnx(_teacher(), FRAMES, JOINTS, path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExportError, match="opset"):
        export_student_onnx(_student(), FRAMES, JOINTS, path, opset=9)


def _checkpoints(tmp_path):
    """A student and a teacher checkpoint (untrained tiny models) and a matching npz."""
    from helpers import random_splits

    from mksgn.data.readers.ctrgcn_npz import write_ctrgcn_npz
    from mksgn.train.checkpoint import save_checkpoint

    data = tmp_path / "d.npz"
    write_ctrgcn_npz(data, random_splits(n=4, frames=20, classes=CLASSES))
    base = preset("tiny")
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, frames=FRAMES), student=STUDENT_CFG,
                              teacher=TEACHER_CFG)
    info = {"class_names": [f"action {k}" for k in range(CLASSES)], "layout": "ntu25", "modalities": list(MODS),
            "frames": FRAMES, "source": str(data), "benchmark": "test-bench"}
    paths = {}
    for kind, model in (("student", _student()), ("teacher", _teacher())):
        paths[kind] = tmp_path / f"{kind}.pt"
        save_checkpoint(paths[kind], {"kind": kind, "config": cfg.to_dict(), "data": info,
                                      "model": model.state_dict(), "epoch": 1})
    return paths, data


def test_export_cli_writes_both_onnx_files(tmp_path, capsys):
    from mksgn.convert.export_cli import main as export_main

    ckpt, data = _checkpoints(tmp_path)
    t_out, s_out = tmp_path / "out" / "teacher.onnx", tmp_path / "out" / "student.onnx"
    assert export_main([str(ckpt["student"]), "--teacher", str(ckpt["teacher"]), "--onnx", str(t_out),
                        "--onnx-student", str(s_out), "--data", str(data), "--samples", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"wrote {t_out}: teacher") and lines[1].startswith(f"wrote {s_out}: student")
    for line in lines:
        assert "max |logit difference| vs PyTorch" in line and f"test samples of {data}" in line
    for path in (t_out, s_out):
        onnx.checker.check_model(onnx.load(str(path)))
    assert sorted(p.name for p in t_out.parent.iterdir()) == ["student.onnx", "teacher.onnx"]


@pytest.mark.parametrize("args, words", [
    (["--onnx", "t.onnx"], "--teacher"),
    (["--teacher", "t.pt"], "--onnx"),
    ([], "nothing to write"),
    (["--onnx-student", "s.onnx", "--opset", "9"], "--opset"),
    (["-o", "m.nir", "--onnx-student", "m.nir"], "different files"),
])
def test_export_cli_bad_usage_is_one_line_exit_2(tmp_path, capsys, monkeypatch, args, words):
    from mksgn.convert.export_cli import main as export_main

    monkeypatch.chdir(tmp_path)
    assert export_main(["student.pt", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert_usage_error(err, "mksgn-export", words)
    assert list(tmp_path.iterdir()) == []


def test_export_cli_teacher_of_other_data_is_one_line_exit_2(tmp_path, capsys):
    from mksgn.convert.export_cli import main as export_main
    from mksgn.train.checkpoint import load_checkpoint, save_checkpoint

    ckpt, _ = _checkpoints(tmp_path)
    record = load_checkpoint(ckpt["teacher"])
    record["data"]["frames"] = 32
    save_checkpoint(ckpt["teacher"], {k: v for k, v in record.items() if k not in ("format", "format_version")})
    out = tmp_path / "t.onnx"
    assert export_main([str(ckpt["student"]), "--teacher", str(ckpt["teacher"]), "--onnx", str(out),
                        "--no-validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "frames" in err and not out.exists()
