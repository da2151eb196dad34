"""Training-only parts: distillation losses, feature translation, mutual-information guidance.

Loss of the student (mksgn-spec.md)::

    L = CE(s, y) + a * KL(softmax(t / tau) || softmax(s / tau)) * tau^2
        + b * sum_l mean((norm(P_l(F_s^l)) - norm(F_t^{d(l)}))^2)
        + w_mi * KL(q || softmax(fusion logits))

- Soft labels: ``a = distill.alpha``, ``tau = distill.tau``; ``--kd soft|both``.
- Features (``--kd feature|both``): the last ``distill.feature_layers`` trunk blocks of the
  student are matched to teacher blocks at the same relative depth,
  ``d(l) = round((l + 1) * 10 / 6) - 1`` for the 6-block student and 10-block teacher.
  Student spike maps (averaged over the T steps) go through a feature translation module
  ``P_l`` (1x1 convolution to the teacher's channels, BN), both maps are average-pooled to
  the teacher's frame count and normalised per sample (zero mean, unit variance), and the
  mean squared difference is taken. ``b = distill.beta``.
- Mutual-information guidance of the fusion (always on when ``mi_weight > 0``): for each
  modality ``m`` a linear probe on the branch's pooled spike rates ``z_m`` (detached)
  estimates the variational lower bound ``I(z_m; y) >= H(y) - CE(probe_m(z_m), y)``, with
  ``H(y)`` the entropy of the batch's label frequencies. The estimates (in nats, averaged
  over a moving window) define the target ``q = softmax(I_hat / mi_temperature)``, and the
  loss term ``KL(q || softmax(fusion logits))`` pulls the fusion weights towards the
  modalities that carry more information about the action. The probes train on their own
  cross-entropy; no gradient of the probes reaches the branches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mksgn.train.config import DistillConfig

MI_MOMENTUM = 0.9
"""Weight of the past in the moving average of the mutual-information estimates."""


def soft_label_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """``KL(softmax(t / tau) || softmax(s / tau)) * tau^2``, mean over the batch."""
    log_p = F.log_softmax(student / tau, dim=1)
    q = F.softmax(teacher / tau, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean") * tau * tau


def matched_teacher_depths(student_blocks: int, teacher_blocks: int, layers: int) -> list[tuple[int, int]]:
    """``(student trunk index, teacher block index)`` for the last ``layers`` trunk blocks.

    Depth counts the branch block, so trunk block ``j`` sits at depth ``j + 2`` of
    ``student_blocks``; the teacher block at the same relative depth is taken.
    """
    pairs = []
    trunk = student_blocks - 1
    for j in range(trunk - layers, trunk):
        depth = j + 2
        pairs.append((j, max(0, round(depth * teacher_blocks / student_blocks) - 1)))
    return pairs


def _normalise(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    return (flat - flat.mean(dim=1, keepdim=True)) / (flat.std(dim=1, keepdim=True) + 1e-5)


class FeatureTranslator(nn.Module):
    """Student spike map -> teacher feature space: 1x1 conv and BN."""

    def __init__(self, c_student: int, c_teacher: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(c_student, c_teacher, 1, bias=False), nn.BatchNorm2d(c_teacher))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Mean squared difference of the normalised, frame-pooled maps."""
        s = self.proj(student)
        if s.shape[2] != teacher.shape[2]:
            s = F.adaptive_avg_pool2d(s, teacher.shape[2:])
        return F.mse_loss(_normalise(s), _normalise(teacher))


class MutualInformationGuide(nn.Module):
    """Per-modality MI estimates ``I(z_m; y)`` and the fusion-guidance loss (module docstring)."""

    def __init__(self, num_modalities: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.probes = nn.ModuleList(nn.Linear(channels, num_classes) for _ in range(num_modalities))
        self.register_buffer("mi", torch.zeros(num_modalities))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def forward(self, branch_features: list[torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(probe loss, current MI estimates)``; updates the moving average.

        ``branch_features[m]`` is ``(R, C)``, one row per person; ``y`` the rows' labels.
        """
        freq = torch.bincount(y, minlength=self.probes[0].out_features).float() / y.numel()
        entropy = -(freq[freq > 0] * freq[freq > 0].log()).sum()
        losses = torch.stack([F.cross_entropy(p(z.detach()), y) for p, z in zip(self.probes, branch_features, strict=True)])
        estimate = (entropy - losses.detach()).clamp(min=0.0)
        if self.training:
            with torch.no_grad():
                w = MI_MOMENTUM if self.seen > 0 else 0.0
                self.mi.mul_(w).add_((1 - w) * estimate)
                self.seen += 1
        return losses.sum(), estimate

    def guidance_loss(self, fusion_logits: torch.Tensor, temperature: float) -> torch.Tensor:
        """``KL(softmax(I_hat / temperature) || softmax(fusion logits))``."""
        target = F.softmax(self.mi / temperature, dim=0)
        return F.kl_div(F.log_softmax(fusion_logits, dim=0), target, reduction="sum")


class DistillationLoss(nn.Module):
    """Everything the student's loss needs beyond the student itself (training only).

    Parameters
    ----------
    cfg
        Weights, temperature, mode and feature layers.
    student_channels
        ``(branch_channels, trunk channels...)`` of the student.
    teacher_channels
        Channels of the teacher's blocks.
    num_modalities, num_classes
        For the MI probes.
    """

    def __init__(self, cfg: DistillConfig, student_channels: tuple[int, ...], teacher_channels: tuple[int, ...],
                 num_modalities: int, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        trunk = student_channels[1:]
        # Only the parts in use exist (DistributedDataParallel needs every parameter used).
        self.pairs = matched_teacher_depths(len(student_channels), len(teacher_channels), cfg.feature_layers)
        self.translators = nn.ModuleList(
            FeatureTranslator(trunk[j], teacher_channels[d]) for j, d in self.pairs
        ) if self.uses_features else None
        self.mi = MutualInformationGuide(num_modalities, student_channels[0], num_classes) if cfg.mi_weight > 0 else None

    @property
    def uses_soft(self) -> bool:
        return self.cfg.mode in ("soft", "both") and self.cfg.alpha > 0

    @property
    def uses_features(self) -> bool:
        return self.cfg.mode in ("feature", "both") and self.cfg.beta > 0

    @property
    def needs_teacher(self) -> bool:
        return self.uses_soft or self.uses_features

    def forward(self, student_out, labels: torch.Tensor, fusion_logits: torch.Tensor,
                teacher_out=None) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts (floats, for the metrics)."""
        steps = student_out.step_logits if self.cfg.tet else student_out.logits[None]
        ce = torch.stack([F.cross_entropy(s, labels) for s in steps]).mean()
        total = ce
        parts = {"ce": float(ce.detach())}
        if self.uses_soft:
            target = teacher_out.logits.detach()
            kd = torch.stack([soft_label_loss(s, target, self.cfg.tau) for s in steps]).mean()
            total = total + self.cfg.alpha * kd
            parts["kd_soft"] = float(kd.detach())
        if self.uses_features:
            feat = sum(
                tr(student_out.features[j], teacher_out.feature(d).detach())
                for tr, (j, d) in zip(self.translators, self.pairs, strict=True)
            )
            total = total + self.cfg.beta * feat
            parts["kd_feature"] = float(feat.detach())
        if self.mi is not None:
            probe, estimate = self.mi(student_out.branch_features, labels[student_out.sample_index])
            guide = self.mi.guidance_loss(fusion_logits, self.cfg.mi_temperature)
            total = total + probe + self.cfg.mi_weight * guide
            parts["mi_probe"] = float(probe.detach())
            parts["mi_guidance"] = float(guide.detach())
        return total, parts
