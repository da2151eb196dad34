"""The linear baseline's penalty is chosen by the validation log-loss (top-1 ties between penalties)."""

from __future__ import annotations

import numpy as np
import torch

from mksgn.train import baseline


def _blobs(rng: np.random.Generator, n: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    centres = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])
    labels = rng.integers(0, 3, n)
    return centres[labels] + spread * rng.standard_normal((n, 3)), labels


def test_the_penalty_of_the_lowest_validation_log_loss_is_kept():
    rng = np.random.default_rng(0)
    train, val, test = _blobs(rng, 300, 0.6), _blobs(rng, 120, 0.6), _blobs(rng, 120, 0.6)
    model = baseline.fit_baseline(train, val, 3)
    losses = {}
    for l2 in baseline.L2_GRID:
        z = (train[0] - model.mean) / model.scale
        w, b = baseline._fit(torch.from_numpy(z), torch.as_tensor(train[1]), 3, l2)
        losses[l2] = baseline.LinearBaseline(model.mean, model.scale, w, b, l2).log_loss(*val)
    assert model.l2 == min(losses, key=lambda k: (losses[k], -k))
    assert abs(model.val_loss - losses[model.l2]) < 1e-9 and 0 <= model.val_top1 <= 1
    assert baseline.fit_baseline(train, val, 3).l2 == model.l2  # deterministic
    assert 0.5 < model.top1(*test) <= 1
