"""From a :class:`~mksgn.data.dataset.SkeletonDataset` to model input batches.

Centring happens once per dataset; each batch is resampled to ``frames`` (a random crop
for training, uniform for evaluation) and split into the modalities, giving
``(N, Mod, C, F, V, M)`` float32 tensors. Random crops draw from a generator seeded by
``(seed, epoch, batch)``, so a run is reproducible whatever the number of processes.

Missing joints (see :func:`~mksgn.data.transforms.missing_joints`) are found once, on the
raw data (with the dataset's confidence, which is no input channel), and stay 0 in every
modality; data without them give exactly the unmasked arrays.

Optionally (both off by default, which gives exactly the arrays above): each sample is
divided once by its own length after centring (``normalise="sample"``,
:mod:`mksgn.data.normalise`: units do not matter), and training batches are augmented after
the crop and before the modalities (:mod:`mksgn.data.augment`: rotation, scaling, shear,
joint dropout), from a generator of their own seeded by ``(seed, epoch, batch, 1)``, so that
switching augmentation on changes no crop.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from mksgn.data.augment import Augmentation, augment
from mksgn.data.dataset import SkeletonDataset
from mksgn.data.normalise import check_normalisation, normalise_samples, sample_scales
from mksgn.data.transforms import centre, missing_joints, modalities, resample, resample_masked
from mksgn.errors import MksgnWarning


class FrameCountWarning(MksgnWarning):
    """The data's clips are shorter than the frames the model takes: frames are interpolated."""


def frame_mismatch(dataset: SkeletonDataset, frames: int) -> str | None:
    """A sentence saying that ``dataset``'s clips are upsampled to ``frames``, or None when most are not.

    Clips longer than ``frames`` are resampled down (every model input frame is a recorded frame
    or between two); clips shorter are *interpolated* up, so that a model then sees, and its energy
    is counted on, frames that were never recorded. Stated when the median clip is shorter.
    """
    lengths = np.asarray(dataset.lengths)
    median = float(np.median(lengths))
    if median >= frames:
        return None
    return (f"{dataset.source}: clips have {int(lengths.min())}-{int(lengths.max())} frames (median {median:g}); "
            f"the model takes {frames}, so they are interpolated {frames / median:.2g}x (figures are measured "
            f"on the interpolated frames; train with --set data.frames={int(median)} to follow the data)")


def warn_frame_mismatch(dataset: SkeletonDataset, frames: int) -> str | None:
    """:func:`frame_mismatch` issued as a :class:`FrameCountWarning` (returned too)."""
    message = frame_mismatch(dataset, frames)
    if message is not None:
        warnings.warn(message, FrameCountWarning, stacklevel=2)
    return message


class SkeletonInputs:
    """A dataset prepared for a model: centred once, resampled and split per batch.

    Parameters
    ----------
    dataset
        The samples.
    frames
        Frames after resampling.
    modality_names
        Streams to produce, in order.
    p_interval
        Training crop (``None``: uniform resampling, for evaluation).
    description
        What the samples are, for reports (default ``"N samples of SOURCE"``).
    augment
        Random transforms of training batches (those drawn with a generator); ``None`` or all
        magnitudes 0: none. Give it to the training inputs only.
    normalise
        ``"none"`` or ``"sample"`` (:mod:`mksgn.data.normalise`); the same for every split and
        for every later use of a model trained on it (its checkpoint and graph record it).
    """

    def __init__(self, dataset: SkeletonDataset, frames: int, modality_names: Sequence[str],
                 p_interval: tuple[float, float] | None = None, description: str | None = None,
                 augment: Augmentation | None = None, normalise: str = "none") -> None:
        self.dataset = dataset
        self.description = description or f"{len(dataset)} samples of {dataset.source}"
        self.layout = dataset.skeleton
        self.frames = frames
        self.modality_names = tuple(modality_names)
        self.p_interval = p_interval
        missing = missing_joints(dataset.data, dataset.lengths, dataset.confidence)
        self.missing: np.ndarray | None = missing if missing.any() else None
        """bool ``(N, F, V, M)``: the missing joints, ``None`` when there are none."""
        self.augment = augment if augment is not None and augment.active else None
        self.normalise = check_normalisation(normalise)
        self.data = centre(dataset.data, dataset.lengths, self.layout, missing)
        self.scales: np.ndarray | None = None
        """float64 ``(N,)``: what each sample was divided by (``normalise="sample"``), else ``None``."""
        if self.normalise == "sample":
            self.scales = sample_scales(dataset.data, dataset.lengths, self.layout, missing)
            self.data = normalise_samples(self.data, self.scales)
        self.labels = torch.as_tensor(dataset.labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.dataset)

    def describe(self) -> str:
        """What the samples are (see ``description``)."""
        return self.description

    def batch(self, index: np.ndarray, rng: np.random.Generator | None = None,
              augment_rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(n, Mod, C, F, V, M)`` and labels ``(n,)`` of the samples at ``index``.

        ``rng``: a training batch (the random crop, and the augmentation if any); without it the
        whole clip, never augmented. ``augment_rng``: the augmentation's generator (default: one
        seeded from ``rng`` after the crop's draws).
        """
        index = np.asarray(index)
        p_interval = self.p_interval if rng is not None else None
        lengths = self.dataset.lengths[index]
        gone = None
        if self.missing is None:
            x = resample(self.data[index], lengths, self.frames, p_interval=p_interval, rng=rng)
        else:
            x, gone = resample_masked(self.data[index], self.missing[index], lengths, self.frames,
                                      p_interval=p_interval, rng=rng)
        if rng is not None and self.augment is not None:
            if augment_rng is None:
                augment_rng = np.random.default_rng(rng.integers(2**63))
            x, gone = augment(x, gone, self.augment, augment_rng)
        if gone is None:
            mods = modalities(x, self.layout, self.modality_names)
        else:
            mods = modalities(x, self.layout, self.modality_names, missing=gone[:, None])
        stacked = np.stack([mods[m] for m in self.modality_names], axis=1)
        return torch.from_numpy(np.ascontiguousarray(stacked)), self.labels[index]

    def batches(self, indices: Sequence[int], batch_size: int, seed: int | None = None,
                epoch: int = 0, first: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches over ``indices`` in order; random crops (and augmentation) when ``seed`` is given.

        ``first``: start at this batch (the same batches as a run from 0 would give there).
        """
        indices = np.asarray(list(indices), dtype=np.int64)
        for b in range(first, -(-len(indices) // batch_size)):
            start = b * batch_size
            rng = np.random.default_rng([seed, epoch, b]) if seed is not None else None
            augment_rng = np.random.default_rng([seed, epoch, b, 1]) if seed is not None else None
            yield self.batch(indices[start:start + batch_size], rng, augment_rng)

    def channel_std(self, max_samples: int = 512) -> np.ndarray:
        """Standard deviation per modality and coordinate, ``(Mod, C)``, over present joints."""
        x, _ = self.batch(np.arange(min(len(self), max_samples)))
        x = x.numpy()  # (N, Mod, C, F, V, M)
        present = np.abs(x).max(axis=(1, 2), keepdims=True) > 0
        out = np.ones(x.shape[1:3], dtype=np.float32)
        for m in range(x.shape[1]):
            for c in range(x.shape[2]):
                vals = x[:, m, c][present[:, 0, 0]]
                if vals.size and vals.std() > 0:
                    out[m, c] = vals.std()
        return out
