"""A linear baseline beside every accuracy: logistic regression on simple pose statistics.

Features of a sample: the mean and the standard deviation over its valid frames of every
coordinate of every joint of every person slot (missing joints left out), after the same
centring the networks see (:func:`mksgn.data.transforms.centre`), standardised with the
training split's statistics. A confidence is not a feature.
A multinomial logistic regression (full-batch L-BFGS) is fitted on the training samples
for each L2 strength of :data:`L2_GRID`; the validation split chooses one, and the test
split is evaluated once. If the networks do not beat it, they do not earn their cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mksgn.data.dataset import SkeletonDataset
from mksgn.data.pipeline import SkeletonInputs
from mksgn.data.transforms import FRAME_AXIS, missing_joints

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
"""L2 penalties tried (on the mean log-loss); the validation split picks one."""
LBFGS_STEPS = 200
"""L-BFGS iterations per fit (the problem is convex; this converges on every dataset tried)."""


def pose_statistics(dataset: SkeletonDataset, normalise: str = "none") -> np.ndarray:
    """``(N, 2 * C * V * M)`` float64: per-coordinate mean and std over the frames where each joint is
    recorded (valid, not missing: :func:`~mksgn.data.transforms.missing_joints`); 0 where it never is.
    The joints are centred, and with ``normalise="sample"`` scaled, as the networks see them."""
    x = SkeletonInputs(dataset, 1, ("joint",), normalise=normalise).data.astype(np.float64)
    missing = missing_joints(dataset.data, dataset.lengths, dataset.confidence)
    valid = np.arange(x.shape[FRAME_AXIS])[None, :, None, None] < dataset.lengths[:, None, None, None]
    seen = (valid & ~missing)[:, None]  # (N, 1, F, V, M)
    count = np.maximum(seen.sum(axis=FRAME_AXIS), 1).astype(np.float64)
    mean = np.where(seen, x, 0.0).sum(axis=FRAME_AXIS) / count
    var = np.where(seen, (x - mean[:, :, None]) ** 2, 0.0).sum(axis=FRAME_AXIS) / count
    return np.concatenate([mean.reshape(len(x), -1), np.sqrt(var).reshape(len(x), -1)], axis=1)


@dataclass
class LinearBaseline:
    """A fitted baseline: standardisation, weights and the penalty validation chose."""

    mean: np.ndarray
    scale: np.ndarray
    normalise: str
    weight: torch.Tensor
    bias: torch.Tensor
    l2: float
    val_top1: float

    def logits(self, dataset: SkeletonDataset) -> torch.Tensor:
        """Class scores ``(N, K)`` of ``dataset``."""
        z = torch.from_numpy((pose_statistics(dataset, self.normalise) - self.mean) / self.scale)
        return z @ self.weight + self.bias

    def top1(self, dataset: SkeletonDataset) -> float:
        """Top-1 accuracy on ``dataset``."""
        pred = self.logits(dataset).argmax(1).numpy()
        return float((pred == dataset.labels).mean())


def _fit(z: torch.Tensor, y: torch.Tensor, classes: int, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.zeros(z.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=LBFGS_STEPS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ weight + bias, y) + l2 * (weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach(), bias.detach()


def fit_baseline(train: SkeletonDataset, val: SkeletonDataset, normalise: str = "none") -> LinearBaseline:
    """Fit on ``train`` for each penalty of :data:`L2_GRID`, keep the best on ``val`` (ties: the larger penalty)."""
    feats = pose_statistics(train, normalise)
    mean, scale = feats.mean(axis=0), feats.std(axis=0)
    scale[scale == 0] = 1.0
    z = torch.from_numpy((feats - mean) / scale)
    y = torch.as_tensor(train.labels, dtype=torch.long)
    models = []
    for l2 in sorted(L2_GRID, reverse=True):
        weight, bias = _fit(z, y, train.num_classes, l2)
        model = LinearBaseline(mean, scale, normalise, weight, bias, l2, 0.0)
        model.val_top1 = model.top1(val)
        models.append(model)
    return max(models, key=lambda m: m.val_top1)  # the first maximum: the larger penalty


def baseline_report(train: SkeletonDataset, val: SkeletonDataset, test: SkeletonDataset,
                    val_described: str, normalise: str = "none") -> dict[str, object]:
    """Fit :func:`fit_baseline` and evaluate the test split once: what ``metrics.json`` records."""
    torch.manual_seed(0)
    model = fit_baseline(train, val, normalise)
    scaled = ", scaled per sample" if normalise == "sample" else ""
    return {
        "model": f"logistic regression on per-joint mean and std over frames (centred{scaled}, standardised)",
        "top1": model.top1(test), "val_top1": model.val_top1, "l2": model.l2,
        "train_top1": model.top1(train), "features": int(model.weight.shape[0]),
        "measured_on": f"test split of {test.source} ({len(test)} samples)",
        "trained_on": f"{len(train)} training samples of {train.source}; penalty chosen on {val_described}",
    }
