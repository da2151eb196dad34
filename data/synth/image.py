"""The built-in dataset seen as a 2-D pose estimator sees it: projected onto the image plane.

:func:`project_to_image` films each 3-D clip (x right, y up, z away from the camera, metres)
with a pinhole camera and writes what a 2-D pose estimator writes for the image:

- pixel coordinates ``u = cx + f x / z``, ``v = cy - f y / z`` (image ``v`` points down),
  with the camera of :data:`CAMERA` (a 1920 x 1080 image, Kinect v2's colour focal length);
- a confidence per joint in ``[0, 1]``: high on the trunk, lower on the extremities, lower
  again with distance, with noise;
- *missing* joints as pose estimators write them: coordinates ``(0, 0)`` and confidence 0.
  Extremities (hands, feet, finger tips) go missing for spans of frames, at a rate that
  grows with ``difficulty``; a joint behind the camera or outside the image is missing too.

The layout stays NTU-25 (the joints are the same bodies'); ids, labels, lengths and the
split are the 3-D dataset's. Deterministic per ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mksgn.data.dataset import DatasetSplits, SkeletonDataset

EXTREMITIES = (7, 11, 15, 19, 21, 22, 23, 24)
"""0-based NTU-25 joints a 2-D estimator loses most: hands, feet, hand tips, thumbs."""
MISSING_RATE_MAX = 0.25
"""Share of extremity joint-frames missing at ``difficulty = 1`` (scaled linearly; 0 at 0)."""
MISSING_SPAN = (2, 8)
"""A missing extremity stays missing for this many frames (uniform, inclusive)."""


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: focal length and principal point in pixels, image size."""

    focal: float = 1060.0
    cx: float = 960.0
    cy: float = 540.0
    width: int = 1920
    height: int = 1080


CAMERA = Camera()
"""Kinect v2's colour camera, roughly (1920 x 1080, focal length about 1060 px)."""


def project_to_image(splits: DatasetSplits, seed: int = 0, difficulty: float = 0.5,
                     camera: Camera = CAMERA) -> DatasetSplits:
    """The 2-D view of ``splits`` (see the module docstring): C = 2 pixel coordinates and confidence."""
    rng = np.random.default_rng([seed, 2])
    out = [_project(ds, rng, difficulty, camera) for ds in (splits.train, splits.test)]
    return DatasetSplits(train=out[0], test=out[1], benchmark=splits.benchmark)


def _project(ds: SkeletonDataset, rng: np.random.Generator, difficulty: float, camera: Camera) -> SkeletonDataset:
    x, y, z = (ds.data[:, c].astype(np.float64) for c in range(3))  # (N, F, V, M)
    present = (np.abs(ds.data).max(axis=(1, 3), keepdims=True) > 0)[:, 0]  # (N, F, 1, M): a person there
    depth = np.where(z > 0.1, z, np.inf)
    u = camera.cx + camera.focal * x / depth
    v = camera.cy - camera.focal * y / depth
    seen = present & np.isfinite(depth) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    seen &= ~_lost_extremities(rng, seen.shape, difficulty)
    confidence = _confidence(rng, z, seen)
    coords = np.stack([np.where(seen, u, 0.0), np.where(seen, v, 0.0)], axis=1).astype(np.float32)
    return SkeletonDataset(data=coords, labels=ds.labels.copy(), lengths=ds.lengths.copy(),
                           class_names=list(ds.class_names), sample_ids=list(ds.sample_ids), layout=ds.layout,
                           source=ds.source, confidence=confidence.astype(np.float32))


def _lost_extremities(rng: np.random.Generator, shape: tuple[int, ...], difficulty: float) -> np.ndarray:
    """bool ``(N, F, V, M)``: extremity joints lost for spans of frames."""
    n, f, v, m = shape
    lost = np.zeros(shape, dtype=bool)
    rate = MISSING_RATE_MAX * difficulty
    if rate <= 0:
        return lost
    mean_span = (MISSING_SPAN[0] + MISSING_SPAN[1]) / 2
    starts = rng.random((n, f, len(EXTREMITIES), m)) < rate / mean_span
    spans = rng.integers(MISSING_SPAN[0], MISSING_SPAN[1] + 1, size=starts.shape)
    for shift in range(MISSING_SPAN[1]):
        active = starts & (spans > shift)
        lost[:, shift:, list(EXTREMITIES)] |= active[:, :f - shift]
    return lost


def _confidence(rng: np.random.Generator, z: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Per joint in ``[0.05, 1]`` where seen, 0 where not: trunk high, extremities and far joints lower."""
    base = np.full(z.shape[2], 0.9)
    base[list(EXTREMITIES)] = 0.6
    far = np.clip((np.where(np.isfinite(z), z, 0.0) - 2.0) * 0.05, 0.0, 0.3)
    noisy = base[None, None, :, None] - far + rng.normal(0.0, 0.08, z.shape)
    return np.where(seen, np.clip(noisy, 0.05, 1.0), 0.0)
