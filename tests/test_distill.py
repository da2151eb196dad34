"""Distillation losses, depth matching, and the mutual-information guidance of the fusion."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mksgn.train.config import DistillConfig
from mksgn.train.distill import DistillationLoss, MutualInformationGuide, matched_teacher_depths, soft_label_loss


def test_soft_label_loss_is_the_documented_kl():
    torch.manual_seed(0)
    s, t, tau = torch.randn(5, 7), torch.randn(5, 7), 3.0
    p_t = F.softmax(t / tau, 1)
    expected = (p_t * (p_t.log() - F.log_softmax(s / tau, 1))).sum(1).mean() * tau**2
    torch.testing.assert_close(soft_label_loss(s, t, tau), expected)
    assert float(soft_label_loss(t, t, tau)) < 1e-6


def test_matched_depths_for_the_paper_student_and_teacher():
    # 6-block student (branch + 5 trunk blocks), 10-block teacher: the last 3 trunk blocks
    assert matched_teacher_depths(6, 10, 3) == [(2, 6), (3, 7), (4, 9)]
    assert matched_teacher_depths(6, 10, 1) == [(4, 9)]


def test_only_the_parts_in_use_exist():
    none = DistillationLoss(DistillConfig(mode="none", mi_weight=0.0), (8, 8, 16), (8,) * 10, 4, 5)
    assert not none.needs_teacher and none.translators is None and none.mi is None
    assert sum(p.numel() for p in none.parameters()) == 0
    soft = DistillationLoss(DistillConfig(mode="soft", feature_layers=1), (8, 8, 16), (8,) * 10, 4, 5)
    assert soft.needs_teacher and soft.translators is None and soft.mi is not None
    both = DistillationLoss(DistillConfig(mode="both", feature_layers=2), (8, 8, 16), (8,) * 8 + (32, 32), 4, 5)
    assert [tr.proj[0].out_channels for tr in both.translators] == [8, 32]


def test_mi_estimate_ranks_an_informative_modality_first_and_guides_the_fusion():
    torch.manual_seed(0)
    classes, n = 4, 256
    guide = MutualInformationGuide(num_modalities=2, channels=6, num_classes=classes)
    opt = torch.optim.Adam(guide.parameters(), lr=0.05)
    for _ in range(150):
        y = torch.randint(0, classes, (n,))
        informative = F.one_hot(y, 6).float() + 0.1 * torch.randn(n, 6)
        noise = torch.randn(n, 6)
        loss, estimate = guide([informative, noise], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert guide.mi[0] > 0.8 * math.log(classes)  # close to H(y) = log 4
    assert guide.mi[1] < 0.2
    # the guidance pulls the fusion logits towards the informative modality
    logits = torch.zeros(2, requires_grad=True)
    step = torch.optim.SGD([logits], lr=1.0)
    for _ in range(50):
        step.zero_grad()
        guide.guidance_loss(logits, temperature=0.5).backward()
        step.step()
    assert logits[0] > logits[1]
