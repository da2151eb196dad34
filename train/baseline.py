"""A linear baseline beside every accuracy: logistic regression on simple pose statistics.

Features of a sample: the mean and the standard deviation over its valid frames of every
coordinate of every joint of every person slot (missing joints left out), after the same
centring the networks see (:func:`mksgn.data.transforms.centre`), standardised with the
training split's statistics. A confidence is not a feature.
A multinomial logistic regression (full-batch L-BFGS) is fitted on the training samples
for each L2 strength of :data:`L2_GRID`; the validation split chooses one by its log-loss (the
top-1 of a few hundred validation clips ties between penalties, and then float rounding on
another machine could flip the choice and the figure), and the test split is evaluated once.
If the networks do not beat it, they do not earn their cost.
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
"""L2 penalties tried (on the mean log-loss); the validation split's log-loss picks one."""
LBFGS_STEPS = 200
"""L-BFGS iterations per fit (the problem is convex; this converges on every dataset tried)."""


STATISTICS_CHUNK = 256
"""Samples whose statistics are computed at a time (memory stays bounded on large datasets)."""


def pose_statistics(dataset: SkeletonDataset, normalise: str = "none") -> np.ndarray:
    """``(N, 2 * C * V * M)`` float64: per-coordinate mean and std over the frames where each joint is
    recorded (valid, not missing: :func:`~mksgn.data.transforms.missing_joints`); 0 where it never is.
    The joints are centred, and with ``normalise="sample"`` scaled, as the networks see them."""
    parts = []
    for start in range(0, len(dataset), STATISTICS_CHUNK):
        chunk = dataset.subset(np.arange(start, min(start + STATISTICS_CHUNK, len(dataset))))
        x = SkeletonInputs(chunk, 1, ("joint",), normalise=normalise).data.astype(np.float64)
        missing = missing_joints(chunk.data, chunk.lengths, chunk.confidence)
        valid = np.arange(x.shape[FRAME_AXIS])[None, :, None, None] < chunk.lengths[:, None, None, None]
        seen = (valid & ~missing)[:, None]  # (n, 1, F, V, M)
        count = np.maximum(seen.sum(axis=FRAME_AXIS), 1).astype(np.float64)
        mean = np.where(seen, x, 0.0).sum(axis=FRAME_AXIS) / count
        var = np.where(seen, (x - mean[:, :, None]) ** 2, 0.0).sum(axis=FRAME_AXIS) / count
        parts.append(np.concatenate([mean.reshape(len(x), -1), np.sqrt(var).reshape(len(x), -1)], axis=1))
    return np.concatenate(parts)


@dataclass
class LinearBaseline:
    """A fitted baseline: standardisation, weights and the penalty validation chose."""

    mean: np.ndarray
    scale: np.ndarray
    weight: torch.Tensor
    bias: torch.Tensor
    l2: float
    val_top1: float = 0.0
    val_loss: float = float("inf")

    def logits(self, features: np.ndarray) -> torch.Tensor:
        """Class scores of :func:`pose_statistics` ``features``."""
        return torch.from_numpy((features - self.mean) / self.scale) @ self.weight + self.bias

    def top1(self, features: np.ndarray, labels: np.ndarray) -> float:
        """Top-1 accuracy on :func:`pose_statistics` ``features`` with ``labels``."""
        return float((self.logits(features).argmax(1).numpy() == labels).mean())

    def log_loss(self, features: np.ndarray, labels: np.ndarray) -> float:
        """Mean cross-entropy (nats) on ``features`` with ``labels``."""
        return float(F.cross_entropy(self.logits(features), torch.as_tensor(labels, dtype=torch.long)))


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


def fit_baseline(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                 classes: int) -> LinearBaseline:
    """Fit on ``train`` (features, labels) for each penalty of :data:`L2_GRID`, keep the one of the
    lowest log-loss on ``val`` (ties: the larger penalty)."""
    feats, labels = train
    mean, scale = feats.mean(axis=0), feats.std(axis=0)
    scale[scale == 0] = 1.0
    z = torch.from_numpy((feats - mean) / scale)
    y = torch.as_tensor(labels, dtype=torch.long)
    models = []
    for l2 in sorted(L2_GRID, reverse=True):
        model = LinearBaseline(mean, scale, *_fit(z, y, classes, l2), l2)
        model.val_top1, model.val_loss = model.top1(*val), model.log_loss(*val)
        models.append(model)
    return min(models, key=lambda m: m.val_loss)  # the first minimum: the larger penalty


def baseline_report(train: SkeletonDataset, val: SkeletonDataset, test: SkeletonDataset,
                    val_described: str, normalise: str = "none") -> dict[str, object]:
    """Fit :func:`fit_baseline` and evaluate the test split once: what ``metrics.json`` records."""
    torch.manual_seed(0)
    split = {name: (pose_statistics(ds, normalise), ds.labels) for name, ds in
             (("train", train), ("val", val), ("test", test))}
    model = fit_baseline(split["train"], split["val"], train.num_classes)
    scaled = ", scaled per sample" if normalise == "sample" else ""
    return {
        "model": f"logistic regression on per-joint mean and std over frames (centred{scaled}, standardised)",
        "top1": model.top1(*split["test"]), "val_top1": model.val_top1, "val_loss": model.val_loss, "l2": model.l2,
        "train_top1": model.top1(*split["train"]), "features": int(model.weight.shape[0]), "normalise": normalise,
        "measured_on": f"test split of {test.source} ({len(test)} samples)",
        "trained_on": f"{len(train)} training samples of {train.source}; penalty chosen by the log-loss on {val_described}",
    }
