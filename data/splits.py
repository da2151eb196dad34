"""Subsets of a split chosen honestly: evaluation subsets that cover every class, and the
validation split carved out of the training split.

Both are deterministic per seed and independent of the order of the samples in the file
(test splits are usually ordered by class, so "the first N" would see one class).

- :func:`stratified_indices`: ``N`` samples drawn class by class, round-robin, so that
  every class is present once ``N`` reaches the number of classes and class counts differ
  by at most one where the classes have enough samples.
- :func:`validation_split`: a fraction of the training samples held out for choosing the
  checkpoint and stopping, whole *groups* at a time where the sample ids name one (a
  performer, a recording), so that no performer or recording is on both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from mksgn.data.dataset import SkeletonDataset

GROUP_PATTERNS: tuple[tuple[str, str], ...] = (
    ("performer", r"P(\d{3})(?![0-9])"),  # NTU S001C001P001R001A001, synth -P003-
    ("performer", r"^a\d+_s(\d+)_e\d+"),  # NW-UCLA a01_s01_e01_v01
    ("recording", r"^(.+)#[^#]*$"),  # RECORDING#WINDOW: windows cut from one recording
)
"""How a sample id names its group: ``(kind, regex)``, the first pattern that matches every
id wins; the first capture group is the group."""


def stratified_indices(labels: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """``limit`` sample indices drawn class by class (round-robin), in ascending order.

    The classes are visited in a seeded random order and each class's samples in a
    seeded random order; a class with no samples left is skipped. With ``limit`` below the
    number of classes, ``limit`` distinct classes are covered.

    Parameters
    ----------
    labels
        ``(N,)`` integer labels.
    limit
        Samples wanted (all of them when ``limit >= N``).
    seed
        Seed of the draw.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if limit >= n:
        return np.arange(n)
    rng = np.random.default_rng([seed, n])
    classes = rng.permutation(np.unique(labels))
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
    chosen: list[int] = []
    while len(chosen) < limit:
        for q in queues:
            if q and len(chosen) < limit:
                chosen.append(int(q.pop()))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def subset_description(dataset: SkeletonDataset, index: np.ndarray, split: str = "test", seed: int = 0) -> str:
    """What :func:`stratified_indices` chose, in words: ``"32 of 602 test samples of X (stratified by
    class: 14 of 14 classes, seed 0)"``, or ``"all 240 test samples of X"``."""
    n = len(index)
    if n >= len(dataset):
        return f"all {n} {split} samples of {dataset.source}"
    covered = len(np.unique(dataset.labels[index]))
    return (f"{n} of {len(dataset)} {split} samples of {dataset.source} (stratified by class: {covered} of "
            f"{dataset.num_classes} classes, seed {seed})")


def stratified_subset(dataset: SkeletonDataset, limit: int, split: str = "test",
                      seed: int = 0) -> tuple[np.ndarray, str]:
    """:func:`stratified_indices` of ``dataset`` and :func:`subset_description` of them."""
    index = stratified_indices(dataset.labels, min(limit, len(dataset)), seed)
    return index, subset_description(dataset, index, split, seed)


def sample_groups(sample_ids: list[str]) -> tuple[str, list[str]]:
    """The group of each sample id, and what a group is (``performer``, ``recording``, ``sample``).

    The first of :data:`GROUP_PATTERNS` that matches every id names the groups; without one,
    each sample is its own group.
    """
    for kind, pattern in GROUP_PATTERNS:
        found = [re.search(pattern, s) for s in sample_ids]
        if sample_ids and all(found):
            return kind, [m.group(1) for m in found]
    return "sample", list(sample_ids)


@dataclass(frozen=True)
class ValidationSplit:
    """A training split cut in two: ``train`` and ``val`` indices into the original split.

    ``by`` names the unit held out whole (``performer``, ``recording`` or ``sample``);
    ``groups`` is ``(held out, total)``.
    """

    train: np.ndarray
    val: np.ndarray
    by: str
    groups: tuple[int, int]
    fraction: float
    seed: int

    def describe(self) -> str:
        """One line: ``"val: 12 % of the training split (4 of 32 performers, seed 0)"``."""
        held, total = self.groups
        share = len(self.val) / max(len(self.train) + len(self.val), 1)
        return (f"{len(self.val)} validation samples ({100 * share:.0f} % of the training split: {held} of "
                f"{total} {self.by}s, seed {self.seed})")

    def to_dict(self) -> dict[str, object]:
        return {"train_samples": len(self.train), "val_samples": len(self.val), "by": self.by,
                "groups_held_out": self.groups[0], "groups": self.groups[1], "fraction": self.fraction,
                "seed": self.seed}


def validation_split(dataset: SkeletonDataset, fraction: float, seed: int = 0) -> ValidationSplit:
    """Hold out about ``fraction`` of ``dataset`` for validation, by group (see the module docstring).

    With groups (performers, recordings), whole groups are drawn in a seeded order until the
    held-out share reaches ``fraction`` (at least one group, never all). Where every group holds
    one class only (recordings of one action each), this is done class by class, so that the
    validation split covers every class that has two groups or more. Without groups, each
    class gives ``round(fraction * count)`` samples (at least one where it has two or more).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    n = len(dataset)
    by, groups = sample_groups(dataset.sample_ids)
    rng = np.random.default_rng([seed, n])
    names = sorted(set(groups))
    if by != "sample" and len(names) >= 2:
        code = {g: i for i, g in enumerate(names)}
        member = np.asarray([code[g] for g in groups])
        classes_of = [set(dataset.labels[member == g].tolist()) for g in range(len(names))]
        if all(len(c) == 1 for c in classes_of):  # one action per group: draw per class
            held = []
            for c in np.unique(dataset.labels):
                mine = np.asarray([g for g in range(len(names)) if c in classes_of[g]])
                held += _draw_groups(rng.permutation(mine), member, fraction)
        else:
            held = _draw_groups(rng.permutation(len(names)), member, fraction)
        val = np.isin(member, held)
        return ValidationSplit(np.flatnonzero(~val), np.flatnonzero(val), by, (len(held), len(names)),
                               fraction, seed)
    val = np.zeros(n, dtype=bool)
    for c in np.unique(dataset.labels):
        idx = rng.permutation(np.flatnonzero(dataset.labels == c))
        k = min(max(int(round(fraction * len(idx))), 1 if len(idx) >= 2 else 0), len(idx) - 1)
        val[idx[:k]] = True
    return ValidationSplit(np.flatnonzero(~val), np.flatnonzero(val), "sample", (int(val.sum()), n), fraction, seed)



def _draw_groups(order: np.ndarray, member: np.ndarray, fraction: float) -> list[int]:
    """Groups from ``order`` until they hold ``fraction`` of the samples of all of ``order``'s
    groups (at least one, never all of them)."""
    sizes = np.bincount(member, minlength=int(order.max()) + 1 if len(order) else 0)
    total = sizes[order].sum()
    held: list[int] = []
    for g in order:
        if len(held) == len(order) - 1 or (held and sizes[held].sum() >= fraction * total):
            break
        held.append(int(g))
    return held
