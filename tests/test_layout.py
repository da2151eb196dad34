"""Channels-last activations (mksgn.train.layout): the same arithmetic up to rounding, used by training steps
on the CPU only, evaluation in the default layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import SMALL_TRAINING, synth_small_npz

from mksgn.data.builtin import load_dataset
from mksgn.data.pipeline import SkeletonInputs
from mksgn.data.skeletons import get_layout
from mksgn.data.splits import validation_split
from mksgn.train.blocks import JointMix
from mksgn.train.config import load_config
from mksgn.train.distill import DistillationLoss
from mksgn.train.layout import activation_format, training_format
from mksgn.train.run import StudentObjective, TeacherObjective, build_student, build_teacher, data_description
from mksgn.train.student import record_spikes
from mksgn.train.trainer import RunContext, Trainer

CL = torch.channels_last
DEFAULT = torch.contiguous_format


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synth_small_npz(tmp_path_factory)


def _small_config(*overrides: str):
    return load_config("tiny", [*[SMALL_TRAINING[i + 1] for i, a in enumerate(SMALL_TRAINING) if a == "--set"],
                                *overrides])


def _float64_batch(data_path, cfg, n: int = 6) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``n`` training clips in float64, their labels and the data description; seeds torch."""
    splits = load_dataset(data_path)
    inputs = SkeletonInputs(splits.train, cfg.data.frames, cfg.data.modalities, cfg.data.p_interval)
    rng = np.random.default_rng(0)
    x, y = inputs.batch(rng.choice(len(inputs), n, replace=False), rng)
    torch.manual_seed(0)
    return x.double(), y, data_description(splits, cfg)


def test_joint_mix_keeps_channels_last_without_changing_the_result():
    torch.manual_seed(0)
    mix = JointMix(get_layout("ntu25").partitions()[1], bias=True).double()
    with torch.no_grad():
        mix.offset.normal_()
        mix.bias.normal_()
    x = torch.randn(3, 5, 7, 25, dtype=torch.float64)
    default, last = mix(x), mix(x.contiguous(memory_format=CL))
    assert default.is_contiguous()
    assert last.is_contiguous(memory_format=CL) and not last.is_contiguous()
    torch.testing.assert_close(last, default, rtol=1e-13, atol=1e-13)


def test_the_teacher_computes_the_same_in_both_layouts(data):
    """float64: the layouts differ only in summation order, so to about 1e-15."""
    cfg = _small_config()
    x, y, info = _float64_batch(data, cfg)
    teacher = build_teacher(cfg, info).double()
    results = []
    for fmt in (DEFAULT, CL):
        teacher.zero_grad()
        with activation_format([teacher], fmt):
            loss, _, logits = TeacherObjective(teacher).train()(x, y)
        loss.backward()
        results.append((logits.detach(), [p.grad.clone() for p in teacher.parameters()]))
    (logits0, grads0), (logits1, grads1) = results
    torch.testing.assert_close(logits1, logits0, rtol=1e-12, atol=1e-12)
    for g0, g1 in zip(grads0, grads1, strict=True):
        torch.testing.assert_close(g1, g0, rtol=1e-10, atol=1e-12)


def test_the_student_spikes_the_same_in_both_layouts(data):
    """float64, evaluation: every population's spikes equal, logits to rounding."""
    cfg = _small_config()
    x, _, info = _float64_batch(data, cfg)
    student = build_student(cfg, info).double().eval()
    runs = []
    for fmt in (DEFAULT, CL):
        with torch.no_grad(), activation_format([student], fmt), record_spikes(student) as spikes:
            logits = student(x)
        runs.append((logits, spikes))
    (logits0, spikes0), (logits1, spikes1) = runs
    assert sum(int(s.sum()) for steps in spikes0.values() for s in steps) > 0
    for name, steps in spikes0.items():
        assert all(torch.equal(a, b) for a, b in zip(steps, spikes1[name], strict=True)), name
    torch.testing.assert_close(logits1, logits0, rtol=1e-12, atol=1e-12)


def test_training_steps_run_channels_last_on_the_cpu_and_evaluation_does_not(data, tmp_path):
    assert training_format(torch.device("cpu")) == CL
    assert training_format(torch.device("cuda", 0)) == DEFAULT
    cfg = _small_config("train_student.epochs=1")
    splits = load_dataset(data)
    held = validation_split(splits.train, cfg.data.val_fraction, 0)
    train = SkeletonInputs(splits.train.subset(held.train), cfg.data.frames, cfg.data.modalities, cfg.data.p_interval)
    val = SkeletonInputs(splits.train.subset(held.val), cfg.data.frames, cfg.data.modalities, None)
    info = data_description(splits, cfg)
    torch.manual_seed(0)
    teacher, student = build_teacher(cfg, info).eval(), build_student(cfg, info)
    seen: dict[str, list[tuple[bool, bool]]] = {"student": [], "teacher": []}

    def record(kind: str):
        return lambda mod, args: seen[kind].append((mod.training, args[0].is_contiguous(memory_format=CL)))

    # the temporal convolutions' inputs: 16 channels or more, so the two layouts differ
    student.blocks[0].tcn.conv.register_forward_pre_hook(record("student"))
    teacher.streams["joint"].blocks[1].tcn.conv.register_forward_pre_hook(record("teacher"))
    distill = DistillationLoss(cfg.distill, (cfg.student.branch_channels, *cfg.student.channels),
                               cfg.teacher.channels, len(cfg.data.modalities), len(info["class_names"]))
    trainer = Trainer("student", StudentObjective(student, distill, teacher), cfg.train_student, RunContext(),
                      tmp_path, {"config": cfg.to_dict(), "data": info}, 0, cfg.data.batch_size, progress=False)
    trainer.fit(train, val, len(info["class_names"]), log=lambda *_: None)
    steps = [cl for training, cl in seen["student"] if training]
    evaluated = [cl for training, cl in seen["student"] if not training]
    assert steps and all(steps) and evaluated and not any(evaluated)
    assert seen["teacher"] and all(cl for _, cl in seen["teacher"])  # the teacher runs only in training steps
    assert student.activation_format == DEFAULT and teacher.streams["joint"].activation_format == DEFAULT
    assert all(p.is_contiguous() for p in student.parameters())  # checkpoints and optimiser unchanged
