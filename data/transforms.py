"""Pre-processing of skeleton sequences: frame resampling, centring and the modalities.

Arrays are ``(N, C, F, V, M)`` as in :class:`~mksgn.data.dataset.SkeletonDataset` unless
an axis argument says otherwise. The modalities are static linear maps of the joint input:

- ``bone = X B`` over joints, ``B = I - P`` (each joint minus its parent; the centre's bone is 0);
- ``joint_motion[t] = X[t + 1] - X[t]`` and ``0`` at the last frame;
- ``bone_motion`` = the joint motion of the bones.

They assume sequences without padding: compute them after :func:`resample`.

Missing joints: pose estimators write a joint they did not detect as ``(0, 0, 0)`` (or give
it confidence 0). :func:`missing_joints` finds them; :func:`centre` leaves them at exactly 0,
:func:`resample_masked` carries the mask through the resampling, and the modalities are 0
wherever they would combine a missing joint (a bone with a missing end, motion into or out of
a missing joint), so no fake bones or motion appear. Data without missing joints gives
exactly the arrays of the plain formulas above.
"""

from __future__ import annotations

import numpy as np

from mksgn.data.skeletons import SkeletonLayout

MODALITIES = ("joint", "bone", "joint_motion", "bone_motion")
"""The four input streams of MK-SGN, in the order the model stacks them."""

FRAME_AXIS = 2
JOINT_AXIS = 3
_CHUNK = 512  # samples per step of missing_joints


def missing_joints(data: np.ndarray, lengths: np.ndarray, confidence: np.ndarray | None = None) -> np.ndarray:
    """Where joints are missing: bool ``(N, F, V, M)``.

    A joint is missing in a frame where its person is present (some coordinate of the
    person non-zero in that frame), the frame is valid (before ``lengths[i]``) and all the
    joint's coordinates are exactly 0, or, given ``confidence`` ``(N, F, V, M)``, its
    confidence is 0. Absent persons and padding frames are not missing joints.
    """
    n, _, f, v, m = data.shape
    out = np.empty((n, f, v, m), dtype=bool)
    lengths = np.asarray(lengths)
    for start in range(0, n, _CHUNK):  # in chunks: no temporary as large as the data
        part = slice(start, start + _CHUNK)
        zero = ~np.any(data[part] != 0, axis=1)  # (n, F, V, M)
        present = ~zero.all(axis=2, keepdims=True)  # (n, F, 1, M)
        valid = np.arange(f)[None, :] < lengths[part, None]  # (n, F)
        gone = zero if confidence is None else zero | (np.asarray(confidence[part]) == 0)
        out[part] = gone & present & valid[:, :, None, None]
    return out


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
    i0, i1, w = _frame_positions(data.shape, lengths, frames, p_interval, rng, min_crop)
    return _interpolate(data, i0, i1, w)


def resample_masked(
    data: np.ndarray,
    missing: np.ndarray,
    lengths: np.ndarray,
    frames: int,
    p_interval: tuple[float, float] | None = None,
    rng: np.random.Generator | None = None,
    min_crop: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`resample` that carries the missing-joint mask ``(N, F, V, M)`` along.

    An output joint is missing where a source frame it interpolates with a non-zero weight
    has it missing; it is then exactly 0. The crop is the one :func:`resample` draws from
    ``rng``, and without missing joints the data are exactly :func:`resample`'s.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        float32 ``(N, C, frames, V, M)`` and bool ``(N, frames, V, M)``.
    """
    i0, i1, w = _frame_positions(data.shape, lengths, frames, p_interval, rng, min_crop)
    out = _interpolate(data, i0, i1, w)
    take = lambda idx: np.take_along_axis(missing, idx[:, :, None, None], axis=1)  # noqa: E731
    wm = w[:, :, None, None]
    gone = (take(i0) & (wm < 1)) | (take(i1) & (wm > 0))
    if gone.any():
        out = np.where(gone[:, None], np.float32(0), out)
    return out, gone


def _frame_positions(
    shape: tuple[int, ...],
    lengths: np.ndarray,
    frames: int,
    p_interval: tuple[float, float] | None,
    rng: np.random.Generator | None,
    min_crop: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source frames ``i0``, ``i1`` ``(N, frames)`` and the float32 weight ``w`` of ``i1``."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    lengths = np.asarray(lengths, dtype=np.int64)
    n = shape[0]
    if lengths.shape != (n,) or (lengths < 1).any() or (lengths > shape[FRAME_AXIS]).any():
        raise ValueError(f"lengths must be (N,) in 1..{shape[FRAME_AXIS]}")
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
    return i0, i1, (pos - i0).astype(np.float32)


def _interpolate(data: np.ndarray, i0: np.ndarray, i1: np.ndarray, w: np.ndarray) -> np.ndarray:
    take = lambda idx: np.take_along_axis(data, idx[:, None, :, None, None], axis=FRAME_AXIS)  # noqa: E731
    w = w[:, None, :, None, None]
    return (take(i0) * (1 - w) + take(i1) * w).astype(np.float32)


def centre(
    data: np.ndarray, lengths: np.ndarray, layout: SkeletonLayout, missing: np.ndarray | None = None
) -> np.ndarray:
    """Translate each sample so that person 0's centre joint in its first frame is the origin.

    The same shift applies to every frame and person (relative motion and the distance
    between persons are kept); absent persons, padding frames and missing joints stay
    exactly zero. Where the centre joint is missing in frame 0 (or person 0 enters later), its
    first frame where it is present gives the origin; where it is missing in every frame, the mean of person 0's
    present joints in their first frame with any; with no present joint at all, no shift.

    Parameters
    ----------
    missing
        bool ``(N, F, V, M)``, see :func:`missing_joints`; default computed from ``data``
        (all coordinates 0). Give it when a confidence marks missing joints too.
    """
    if missing is None:
        missing = missing_joints(data, lengths)
    origin = _origins(data, missing, layout.centre)  # (N, C)
    present = np.abs(data).max(axis=(1, 3), keepdims=True) > 0  # (N, 1, F, 1, M)
    valid = np.arange(data.shape[FRAME_AXIS])[None, :] < np.asarray(lengths)[:, None]  # (N, F)
    mask = present & valid[:, None, :, None, None]
    if missing.any():
        mask = mask & ~missing[:, None]
    return np.where(mask, data - origin[:, :, None, None, None], 0.0).astype(np.float32)


def _origins(data: np.ndarray, missing: np.ndarray, centre_joint: int) -> np.ndarray:
    """The origin of each sample, ``(N, C)`` (see :func:`centre`)."""
    origin = data[:, :, 0, centre_joint, 0].copy()
    absent = (data[:, :, 0, :, 0] == 0).all(axis=(1, 2))  # person 0 not in frame 0 (enters later)
    for i in np.flatnonzero(missing[:, 0, centre_joint, 0] | absent):
        seen = ~missing[i, :, :, 0] & (data[i, :, :, :, 0] != 0).any(axis=0)  # (F, V): present joints
        if seen[:, centre_joint].any():
            origin[i] = data[i, :, int(np.argmax(seen[:, centre_joint])), centre_joint, 0]
        elif seen.any():
            t = int(np.argmax(seen.any(axis=1)))
            origin[i] = data[i, :, t, :, 0][:, seen[t]].mean(axis=1)
        else:
            origin[i] = 0.0
    return origin


def bone(
    x: np.ndarray, layout: SkeletonLayout, joint_axis: int = JOINT_AXIS, missing: np.ndarray | None = None
) -> np.ndarray:
    """Bones: each joint minus its parent (``X B`` over the joint axis).

    ``missing``: bool, broadcastable to ``x`` (size 1 on the coordinate axis), True at
    missing joints; a bone with a missing end is then 0.
    """
    moved = np.moveaxis(x, joint_axis, -1)
    out = np.moveaxis(moved @ layout.bone_matrix(), -1, joint_axis).astype(x.dtype, copy=False)
    if missing is not None and missing.any():
        out = np.where(bone_missing(missing, layout, joint_axis), 0, out).astype(x.dtype, copy=False)
    return out


def bone_missing(missing: np.ndarray, layout: SkeletonLayout, joint_axis: int = JOINT_AXIS) -> np.ndarray:
    """The bones with a missing end: ``missing`` of the joint or of its parent."""
    return missing | np.take(missing, layout.parents, axis=joint_axis)


def motion(x: np.ndarray, frame_axis: int = FRAME_AXIS, missing: np.ndarray | None = None) -> np.ndarray:
    """Frame difference ``x[t + 1] - x[t]``; the last frame's motion is 0.

    ``missing``: bool, broadcastable to ``x``, True where the joint (or bone) is missing;
    the motion is then 0 where it is missing in either frame.
    """
    out = np.zeros_like(x)
    n = x.shape[frame_axis]
    head = [slice(None)] * x.ndim
    head[frame_axis] = slice(0, n - 1)
    out[tuple(head)] = np.diff(x, axis=frame_axis)
    if missing is not None and missing.any():
        out = np.where(motion_missing(missing, frame_axis), 0, out).astype(x.dtype, copy=False)
    return out


def motion_missing(missing: np.ndarray, frame_axis: int = FRAME_AXIS) -> np.ndarray:
    """Where the motion touches a missing joint: missing at ``t`` or at ``t + 1``."""
    out = missing.copy()
    n = missing.shape[frame_axis]
    head = [slice(None)] * missing.ndim
    tail = [slice(None)] * missing.ndim
    head[frame_axis], tail[frame_axis] = slice(0, n - 1), slice(1, n)
    out[tuple(head)] |= missing[tuple(tail)]
    return out


def modalities(
    x: np.ndarray,
    layout: SkeletonLayout,
    names: tuple[str, ...] = MODALITIES,
    frame_axis: int = FRAME_AXIS,
    joint_axis: int = JOINT_AXIS,
    missing: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The requested modalities of the joint input ``x``, by name (see the module docstring).

    ``missing``: bool, broadcastable to ``x`` (size 1 on the coordinate axis), True at
    missing joints (``x`` is 0 there): bones with a missing end and motion touching a
    missing joint or bone are 0.
    """
    unknown = set(names) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {MODALITIES}")
    if missing is not None and not missing.any():
        missing = None
    out: dict[str, np.ndarray] = {}
    bones = bone(x, layout, joint_axis, missing) if {"bone", "bone_motion"} & set(names) else None
    bones_gone = None if missing is None else bone_missing(missing, layout, joint_axis)
    for name in names:
        if name == "joint":
            out[name] = x
        elif name == "bone":
            out[name] = bones
        elif name == "joint_motion":
            out[name] = motion(x, frame_axis, missing)
        else:
            out[name] = motion(bones, frame_axis, bones_gone)
    return out
