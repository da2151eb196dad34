"""Pre-processing of skeleton sequences: frame resampling, centring and the modalities.

Arrays are ``(N, C, F, V, M)`` as in :class:`~mksgn.data.dataset.SkeletonDataset` unless
an axis argument says otherwise. The modalities are static linear maps of the joint input:

- ``bone = X B`` over joints, ``B = I - P`` (each joint minus its parent; the centre's bone is 0);
- ``joint_motion[t] = X[t + 1] - X[t]`` and ``0`` at the last frame;
- ``bone_motion`` = the joint motion of the bones.

They assume sequences without padding: compute them after :func:`resample`.
"""

from __future__ import annotations

import numpy as np

from mksgn.data.skeletons import SkeletonLayout

MODALITIES = ("joint", "bone", "joint_motion", "bone_motion")
"""The four input streams of MK-SGN, in the order the model stacks them."""

FRAME_AXIS = 2
JOINT_AXIS = 3


def resample(
    data: np.ndarray,
    lengths: np.ndarray,
    frames: int,
    p_interval: tuple[float, float] | None = None,
    rng: np.random.Generator | None = None,
    min_crop: int = 4,
) -> np.ndarray:
    """Resample each sample's valid frames to ``frames`` by linear interpolation.

    Parameters
    ----------
    data
        ``(N, C, F, V, M)``; frames at and after ``lengths[i]`` are ignored.
    lengths
        ``(N,)`` valid frames per sample.
    frames
        Output frame count.
    p_interval
        ``None``: uniform, the whole valid clip (evaluation). ``(lo, hi)``: training crop,
        a random fraction ``p ~ U(lo, hi)`` of the valid frames (at least ``min_crop``)
        starting at a random frame, then resampled.
    rng
        Random generator for the crop (required when ``p_interval`` is given).

    Returns
    -------
    np.ndarray
        float32 ``(N, C, frames, V, M)``. The first and last output frames sit on the first
        and last frame of the (cropped) clip (``align_corners=True`` interpolation).
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    lengths = np.asarray(lengths, dtype=np.int64)
    n = data.shape[0]
    if lengths.shape != (n,) or (lengths < 1).any() or (lengths > data.shape[FRAME_AXIS]).any():
        raise ValueError(f"lengths must be (N,) in 1..{data.shape[FRAME_AXIS]}")
    if p_interval is None:
        start = np.zeros(n, dtype=np.float64)
        span = lengths.astype(np.float64)
    else:
        lo, hi = p_interval
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"p_interval must satisfy 0 < lo <= hi <= 1, got {p_interval}")
        if rng is None:
            raise ValueError("a random generator is needed for a random crop")
        p = rng.uniform(lo, hi, size=n)
        span = np.minimum(np.maximum(np.round(p * lengths), min_crop), lengths).astype(np.float64)
        start = np.floor(rng.uniform(0, 1, size=n) * (lengths - span + 1))
    step = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    pos = start[:, None] + step[None, :] * (span[:, None] - 1)  # (N, frames)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, (start + span - 1).astype(np.int64)[:, None])
    w = (pos - i0).astype(np.float32)
    take = lambda idx: np.take_along_axis(data, idx[:, None, :, None, None], axis=FRAME_AXIS)  # noqa: E731
    w = w[:, None, :, None, None]
    return (take(i0) * (1 - w) + take(i1) * w).astype(np.float32)


def centre(data: np.ndarray, lengths: np.ndarray, layout: SkeletonLayout) -> np.ndarray:
    """Translate each sample so that person 0's centre joint in its first frame is the origin.

    The same shift applies to every frame and person (relative motion and the distance
    between persons are kept); absent persons and padding frames stay exactly zero.
    """
    origin = data[:, :, 0, layout.centre, 0]  # (N, C)
    present = np.abs(data).max(axis=(1, 3), keepdims=True) > 0  # (N, 1, F, 1, M)
    valid = np.arange(data.shape[FRAME_AXIS])[None, :] < np.asarray(lengths)[:, None]  # (N, F)
    mask = present & valid[:, None, :, None, None]
    return np.where(mask, data - origin[:, :, None, None, None], 0.0).astype(np.float32)


def bone(x: np.ndarray, layout: SkeletonLayout, joint_axis: int = JOINT_AXIS) -> np.ndarray:
    """Bones: each joint minus its parent (``X B`` over the joint axis)."""
    moved = np.moveaxis(x, joint_axis, -1)
    return np.moveaxis(moved @ layout.bone_matrix(), -1, joint_axis).astype(x.dtype, copy=False)


def motion(x: np.ndarray, frame_axis: int = FRAME_AXIS) -> np.ndarray:
    """Frame difference ``x[t + 1] - x[t]``; the last frame's motion is 0."""
    out = np.zeros_like(x)
    n = x.shape[frame_axis]
    head = [slice(None)] * x.ndim
    head[frame_axis] = slice(0, n - 1)
    out[tuple(head)] = np.diff(x, axis=frame_axis)
    return out


def modalities(
    x: np.ndarray,
    layout: SkeletonLayout,
    names: tuple[str, ...] = MODALITIES,
    frame_axis: int = FRAME_AXIS,
    joint_axis: int = JOINT_AXIS,
) -> dict[str, np.ndarray]:
    """The requested modalities of the joint input ``x``, by name (see the module docstring)."""
    unknown = set(names) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {MODALITIES}")
    out: dict[str, np.ndarray] = {}
    bones = bone(x, layout, joint_axis) if {"bone", "bone_motion"} & set(names) else None
    for name in names:
        if name == "joint":
            out[name] = x
        elif name == "bone":
            out[name] = bones
        elif name == "joint_motion":
            out[name] = motion(x, frame_axis)
        else:
            out[name] = motion(bones, frame_axis)
    return out
