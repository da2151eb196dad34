"""The MK-SGN student and the teacher: deployable blocks only, persons, T steps, ntu scale."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mksgn.data.skeletons import NTU25
from mksgn.train.complexity import count_macs
from mksgn.train.config import preset
from mksgn.train.distill import DistillationLoss
from mksgn.train.student import MKSGN, count_parameters, non_deployable_modules, record_spikes
from mksgn.train.teacher import GCNTeacher


def _student(name="tiny", classes=14):
    cfg = preset(name)
    return MKSGN(cfg.student, NTU25, classes, cfg.data.modalities), cfg


@pytest.mark.parametrize("name", ["tiny", "ntu"])
def test_every_module_is_a_deployable_block(name):
    model, _ = _student(name)
    assert non_deployable_modules(model) == []


def test_a_foreign_module_is_named():
    model, _ = _student()
    model.blocks[1].extra = nn.ReLU()
    model.blocks[0].attention.squeeze = nn.Sequential(nn.Conv2d(16, 1, 1))
    found = non_deployable_modules(model)
    assert ("blocks.1.extra", "ReLU") in found
    assert ("blocks.0.attention.squeeze", "Sequential") in found


def _input(n=3, frames=32, persons_present=(True, False, True)):
    torch.manual_seed(0)
    x = torch.randn(n, 4, 3, frames, 25, 2)
    for i, present in enumerate(persons_present):
        if not present:
            x[i, ..., 1] = 0.0
    return x


def test_logits_sum_over_present_persons():
    model, _ = _student()
    model.eval()
    x = _input()
    with torch.no_grad():
        both = model(x)
        only0 = model(torch.stack([x[..., 0], torch.zeros_like(x[..., 0])], dim=-1))
        only1 = model(torch.stack([x[..., 1], torch.zeros_like(x[..., 1])], dim=-1))
    assert both.shape == (3, 14)
    # sample 1 has one person: person 0 only; samples 0 and 2: the two persons' sum
    torch.testing.assert_close(both[1], only0[1])
    torch.testing.assert_close(both[[0, 2]], only0[[0, 2]] + only1[[0, 2]], rtol=1e-5, atol=1e-5)


def test_time_steps_and_recorded_spikes_are_binary():
    model, cfg = _student()
    model.eval()
    with torch.no_grad(), record_spikes(model) as rec:
        model(_input())
    # every LIF population is called once per step
    assert rec and all(len(v) == cfg.student.time_steps for v in rec.values())
    assert "blocks.0.attention.coincidence" in rec and "fusion_lif" in rec
    for name, steps in rec.items():
        s = torch.stack(steps)
        assert set(s.unique().tolist()) <= {0.0, 1.0}, name
    rates = {k: float(torch.stack(v).mean()) for k, v in rec.items()}
    assert any(r > 0 for r in rates.values())
    # the AND never fires where its spatial neuron did not
    for j in range(len(model.blocks)):
        s, g = torch.stack(rec[f"blocks.{j}.lif_s"]), torch.stack(rec[f"blocks.{j}.attention.coincidence"])
        assert torch.all(g <= s)


def test_ntu_scale_parameters_macs_and_a_training_step():
    cfg = preset("ntu")
    student = MKSGN(cfg.student, NTU25, 60, cfg.data.modalities)
    teacher = GCNTeacher(cfg.teacher, NTU25, 60, cfg.data.modalities)
    x = torch.randn(2, 4, 3, 64, 25, 2)
    params, macs = count_parameters(student), count_macs(student, x)
    t_params, t_macs = count_parameters(teacher), count_macs(teacher, x)
    print(f"\nntu student: {params} parameters, {macs / 1e9:.2f} G dense MACs per sample (T=4, 2 persons); "
          f"teacher: {t_params} parameters, {t_macs / 1e9:.2f} G MACs per sample")
    assert 1e6 < params < 5e6
    assert t_macs > macs / cfg.student.time_steps  # the 4-stream teacher costs more than one student step
    distill = DistillationLoss(cfg.distill, (cfg.student.branch_channels, *cfg.student.channels),
                               cfg.teacher.channels, 4, 60)
    y = torch.tensor([3, 59])
    opt = torch.optim.SGD(list(student.parameters()) + list(distill.parameters()), lr=0.01)
    before = student.fc.weight.detach().clone()
    with torch.no_grad():
        t_out = teacher(x, return_features=True)
    out = student(x, return_features=True)
    loss, parts = distill(out, y, student.fusion.logits, t_out)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and {"ce", "kd_soft", "kd_feature", "mi_probe"} <= set(parts)
    assert not torch.equal(before, student.fc.weight)


def test_step_logits_are_each_steps_readout_and_average_to_the_logits():
    model, cfg = _student()
    model.eval()
    x = _input()
    with torch.no_grad():
        out = model(x, return_features=True)
        plain = model(x)
    assert out.step_logits.shape == (cfg.student.time_steps, 3, 14)
    assert torch.equal(out.logits, plain)  # the same arithmetic as without features
    torch.testing.assert_close(out.step_logits.mean(0), out.logits, rtol=1e-5, atol=1e-6)


def test_tet_takes_the_loss_on_every_step_and_trains():
    import torch.nn.functional as F

    from mksgn.train.config import DistillConfig

    model, cfg = _student()
    x, y = _input(), torch.tensor([0, 5, 9])
    out = model(x, return_features=True)
    plain = DistillationLoss(DistillConfig(mode="none"), (16, 16, 32, 32), (16,) * 10, 4, 14)
    tet = DistillationLoss(DistillConfig(mode="none", tet=True), (16, 16, 32, 32), (16,) * 10, 4, 14)
    loss_plain, parts_plain = plain(out, y, model.fusion.logits)
    loss_tet, parts_tet = tet(out, y, model.fusion.logits)
    assert parts_plain["ce"] == pytest.approx(float(F.cross_entropy(out.logits, y)))
    want = sum(float(F.cross_entropy(s, y)) for s in out.step_logits) / len(out.step_logits)
    assert parts_tet["ce"] == pytest.approx(want, rel=1e-6)
    loss_tet.backward()
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0


def test_surrogate_width_is_configurable_on_every_population():
    from dataclasses import replace

    from mksgn.train.neuron import LIF

    cfg = preset("tiny")
    wide = MKSGN(replace(cfg.student, surrogate_alpha=1.0), NTU25, 14, cfg.data.modalities)
    lifs = [m for m in wide.modules() if isinstance(m, LIF)]
    assert lifs
    for lif in lifs:
        current = torch.zeros(3, requires_grad=True)
        threshold = lif.params.threshold
        spikes, _ = lif(current + threshold)  # exactly at threshold: the surrogate's peak, alpha / 2
        spikes.sum().backward()
        assert torch.allclose(current.grad, torch.full((3,), 0.5))
