"""Small datasets built in memory for tests."""

from __future__ import annotations

import numpy as np

from mksgn.train.dataset import DatasetSplits, SkeletonDataset


def random_dataset(n: int = 6, frames: int = 10, classes: int = 3, seed: int = 0, layout: str = "ntu25",
                   joints: int = 25, source: str = "<test>") -> SkeletonDataset:
    """A dataset with random coordinates, random valid lengths and zero padding."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, 3, frames, joints, 2)).astype(np.float32)
    lengths = rng.integers(frames // 2, frames + 1, size=n)
    for i, k in enumerate(lengths):
        data[i, :, k:] = 0.0
    data[::2, ..., 1] = 0.0  # every other sample has one person only
    labels = np.arange(n) % classes
    return SkeletonDataset(
        data=data, labels=labels.astype(np.int64), lengths=lengths.astype(np.int64),
        class_names=[f"action {k}" for k in range(classes)],
        sample_ids=[f"s{i:03d}" for i in range(n)], layout=layout, source=source,
    )


def random_splits(seed: int = 0, **kwargs) -> DatasetSplits:
    """Train and test random datasets with the same classes."""
    return DatasetSplits(random_dataset(seed=seed, **kwargs), random_dataset(seed=seed + 1, **kwargs), "test-bench")
