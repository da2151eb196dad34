"""The joint-angle skeleton: its segments, joints and angle channels, forward kinematics,
and the performers' bodies."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from mksgn.data.skeletons import NTU25
from mksgn.data.synth.constants import (
    HEIGHT_MEAN_M, HEIGHT_RANGE_M, HEIGHT_SD_M, PROPORTION_CLIP_SD, PROPORTION_SD, _lerp,
)

# Segment lengths as fractions of body height (after Drillis & Contini, Kinect joint spots).
_SEGMENTS: tuple[tuple[str, float], ...] = (
    ("spine_lo", 0.130), ("spine_hi", 0.135), ("neck", 0.050), ("head", 0.065),
    ("shoulder_half", 0.100), ("shoulder_drop", 0.020), ("upper_arm", 0.170),
    ("forearm", 0.150), ("hand", 0.045), ("handtip", 0.050), ("thumb", 0.030),
    ("hip_half", 0.048), ("hip_drop", 0.030), ("thigh", 0.245), ("shank", 0.246),
    ("ankle_height", 0.039), ("foot", 0.075),
)
SEGMENT_NAMES: tuple[str, ...] = tuple(name for name, _ in _SEGMENTS)
"""Body segments whose lengths each performer draws (see :func:`performer_segments`)."""
_SEGMENT_RATIOS = np.array([r for _, r in _SEGMENTS])
_SEGMENT_RATIOS.setflags(write=False)
_SEG: Mapping[str, int] = MappingProxyType({name: i for i, name in enumerate(SEGMENT_NAMES)})
FOOT_JOINT_HEIGHT = 0.3  # the Kinect foot joint sits at this fraction of the ankle height
STANCE_SOFTNESS_M = 0.02  # foot-height difference over which the stance passes between feet

# Joint indices (0-based, NTU25 order).
(SPINE_BASE, SPINE_MID, NECK, HEAD, SHOULDER_L, ELBOW_L, WRIST_L, HAND_L, SHOULDER_R, ELBOW_R,
 WRIST_R, HAND_R, HIP_L, KNEE_L, ANKLE_L, FOOT_L, HIP_R, KNEE_R, ANKLE_R, FOOT_R, SPINE_SHOULDER,
 HANDTIP_L, THUMB_L, HANDTIP_R, THUMB_R) = range(25)
NUM_JOINTS = NTU25.num_joints

# Joint-angle channels (degrees). Left-side channels mirror the right side.
_SIDES = ("r", "l")
_LIMB_CHANNELS = ("plane", "elev", "axial", "elbow", "wrist", "hip_flex", "hip_abd", "knee", "ankle")
ANGLE_CHANNELS: tuple[str, ...] = (
    ("yaw", "root_x", "root_y", "root_z", "spine_flex_lo", "spine_flex_hi", "spine_lat", "spine_twist",
     "neck_flex", "neck_yaw")
    + tuple(f"{s}_{c}" for s in _SIDES for c in _LIMB_CHANNELS)
)
"""Angle channels of the skeleton model, in degrees (see :func:`forward_kinematics`)."""
MIRROR_NEGATED_CHANNELS: tuple[str, ...] = ("yaw", "root_x", "spine_lat", "spine_twist", "neck_yaw")
"""Channels that change sign when a motion is mirrored left to right."""
REST_POSE_DEG: Mapping[str, float] = MappingProxyType({
    "r_plane": 20.0, "r_elev": 8.0, "r_elbow": 12.0, "l_plane": 20.0, "l_elev": 8.0,
    "l_elbow": 12.0, "r_hip_abd": 3.0, "l_hip_abd": 3.0, "r_knee": 3.0, "l_knee": 3.0,
    "spine_flex_hi": 3.0, "neck_flex": 5.0,
})
"""The standing rest pose; channels not named are 0."""


# --- rotations and forward kinematics ---------------------------------------------------
# Inside the kinematics, rotations are component-major ``(3, 3, P, T)`` and vectors
# ``(3, P, T)``: numpy then works on long contiguous rows instead of tiny 3x3 matrices.
_AXIS_PLANE = ((1, 2), (2, 0), (0, 1))  # the two coordinates a rotation about x, y, z mixes


def _rot(axis: int, deg: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` about a coordinate axis (0 x, 1 y, 2 z)."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    out = np.zeros(a.shape + (3, 3))
    i, j = _AXIS_PLANE[axis]
    out[..., axis, axis] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    return out


def _turn_by(r: np.ndarray, axis: int, deg: np.ndarray) -> np.ndarray:
    """``r @ R_axis(deg)`` for component-major ``r`` ``(3, 3, ...)``: two columns mix."""
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = _AXIS_PLANE[axis]
    out = np.empty_like(r)
    out[:, axis] = r[:, axis]
    out[:, i] = r[:, i] * c + r[:, j] * s
    out[:, j] = r[:, j] * c - r[:, i] * s
    return out


def _offset(r: np.ndarray, x: np.ndarray | float, y: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
    """``r @ (x, y, z)`` for component-major ``r``; components that are ``0.0`` are skipped."""
    out = np.zeros(r.shape[:1] + r.shape[2:])
    for k, v in enumerate((x, y, z)):
        if not (isinstance(v, float) and v == 0.0):
            out += r[:, k] * v
    return out


def _kinematics(angles: Mapping[str, np.ndarray], segments: np.ndarray) -> np.ndarray:
    """Forward kinematics, component-major: ``(25, 3, P, T)``; see :func:`forward_kinematics`."""
    shape = angles["yaw"].shape
    seg = {name: segments[:, i].reshape((-1,) + (1,) * (len(shape) - 1)) for name, i in _SEG.items()}
    pos = np.zeros((NUM_JOINTS, 3) + shape)
    ident = np.zeros((3, 3) + shape)
    for k in range(3):
        ident[k, k] = 1.0

    # Spine: two segments, each taking half of the twist and lateral bend.
    r_lo = _turn_by(_turn_by(_turn_by(ident, 1, angles["spine_twist"] / 2), 2, -angles["spine_lat"] / 2),
                    0, angles["spine_flex_lo"])
    r_hi = _turn_by(_turn_by(_turn_by(r_lo, 1, angles["spine_twist"] / 2), 2, -angles["spine_lat"] / 2),
                    0, angles["spine_flex_hi"])
    pos[SPINE_MID] = r_lo[:, 1] * seg["spine_lo"]
    pos[SPINE_SHOULDER] = pos[SPINE_MID] + r_hi[:, 1] * seg["spine_hi"]
    pos[NECK] = pos[SPINE_SHOULDER] + r_hi[:, 1] * seg["neck"]
    r_head = _turn_by(_turn_by(r_hi, 1, angles["neck_yaw"]), 0, angles["neck_flex"])
    pos[HEAD] = pos[NECK] + _offset(r_head, 0.0, seg["head"], 0.15 * seg["head"])

    arm_joints = {"r": (SHOULDER_R, ELBOW_R, WRIST_R, HAND_R, THUMB_R, HANDTIP_R),
                  "l": (SHOULDER_L, ELBOW_L, WRIST_L, HAND_L, THUMB_L, HANDTIP_L)}
    leg_joints = {"r": (HIP_R, KNEE_R, ANKLE_R, FOOT_R), "l": (HIP_L, KNEE_L, ANKLE_L, FOOT_L)}
    for side in _SIDES:
        sign = 1.0 if side == "r" else -1.0  # mirror: negate x, and the y/z rotations
        sh, el, wr, ha, th, tip = arm_joints[side]
        a = {c: angles[f"{side}_{c}"] for c in _LIMB_CHANNELS}
        pos[sh] = pos[SPINE_SHOULDER] + _offset(r_hi, sign * seg["shoulder_half"], -seg["shoulder_drop"], 0.0)
        # Y-Z-Y swing: plane of elevation, elevation, then undo the plane so that axial 0
        # keeps the elbow flexing forward whatever the plane (no hidden axial rotation).
        r_upper = _turn_by(_turn_by(_turn_by(r_hi, 1, -sign * a["plane"]), 2, sign * a["elev"]),
                           1, sign * (a["plane"] + a["axial"]))
        pos[el] = pos[sh] - r_upper[:, 1] * seg["upper_arm"]
        r_fore = _turn_by(r_upper, 0, -a["elbow"])
        pos[wr] = pos[el] - r_fore[:, 1] * seg["forearm"]
        r_hand = _turn_by(r_fore, 0, -a["wrist"])
        pos[ha] = pos[wr] - r_hand[:, 1] * seg["hand"]
        pos[th] = pos[ha] + _offset(r_hand, -sign * 0.3 * seg["thumb"], -0.5 * seg["thumb"], 0.8 * seg["thumb"])
        pos[tip] = pos[ha] - r_hand[:, 1] * seg["handtip"]

        hp, kn, an, ft = leg_joints[side]
        pos[hp, 0] = sign * seg["hip_half"]
        pos[hp, 1] = -seg["hip_drop"]
        r_thigh = _turn_by(_turn_by(ident, 2, sign * a["hip_abd"]), 0, -a["hip_flex"])
        pos[kn] = pos[hp] - r_thigh[:, 1] * seg["thigh"]
        r_shank = _turn_by(r_thigh, 0, a["knee"])
        pos[an] = pos[kn] - r_shank[:, 1] * seg["shank"]
        r_foot = _turn_by(r_shank, 0, -a["ankle"])
        pos[ft] = pos[an] + _offset(r_foot, 0.0, -(1.0 - FOOT_JOINT_HEIGHT) * seg["ankle_height"], seg["foot"])

    # Ground contact: the lowest foot point on y = 0; the stance foot keeps its place.
    ankle_h = seg["ankle_height"]
    low_r = np.minimum(pos[ANKLE_R, 1] - ankle_h, pos[FOOT_R, 1] - FOOT_JOINT_HEIGHT * ankle_h)
    low_l = np.minimum(pos[ANKLE_L, 1] - ankle_h, pos[FOOT_L, 1] - FOOT_JOINT_HEIGHT * ankle_h)
    w_r = 1.0 / (1.0 + np.exp(np.clip((low_r - low_l) / STANCE_SOFTNESS_M, -50.0, 50.0)))  # 1: right stands
    pos[:, 0] += (seg["hip_half"] * (2.0 * w_r - 1.0) + angles["root_x"]
                  - w_r * pos[ANKLE_R, 0] - (1.0 - w_r) * pos[ANKLE_L, 0])
    pos[:, 1] += angles["root_y"] - np.minimum(low_r, low_l)
    pos[:, 2] += angles["root_z"] - w_r * pos[ANKLE_R, 2] - (1.0 - w_r) * pos[ANKLE_L, 2]

    # Yaw about the vertical through the spine base.
    yaw = np.deg2rad(angles["yaw"])
    c, s = np.cos(yaw), np.sin(yaw)
    x, z = pos[:, 0].copy(), pos[:, 2].copy()
    pos[:, 0] = c * x + s * z
    pos[:, 2] = c * z - s * x
    return pos


def forward_kinematics(angles: Mapping[str, np.ndarray], segments: np.ndarray) -> np.ndarray:
    """Joint positions of the joint-angle skeleton, in the person's own frame.

    The frame is x = the person's right, y = up (the floor at 0), z = forward. Bone
    lengths depend only on ``segments``, never on the angles.

    Parameters
    ----------
    angles
        Every channel of :data:`ANGLE_CHANNELS`, arrays of one shape ``(P, T)``, degrees.
        ``plane``/``elev``/``axial`` are the shoulder's plane of elevation (0 sideways,
        90 forward), elevation (0 hanging, 180 overhead) and axial rotation; ``elbow``,
        ``wrist``, ``knee`` are flexions; ``hip_flex``/``hip_abd`` swing the thigh;
        ``ankle`` is dorsiflexion; ``yaw`` turns the whole body about the vertical;
        ``root_x``/``root_y``/``root_z`` (metres) move it after ground contact.
    segments
        ``(P, len(SEGMENT_NAMES))`` segment lengths in metres.

    Returns
    -------
    numpy.ndarray
        ``(P, T, 25, 3)`` float64 positions. Before the ``root_*`` shift the lowest foot
        point rests on ``y = 0`` and the stance foot keeps its rest place on the floor.
    """
    return _kinematics(angles, segments).transpose(2, 3, 0, 1)


# --- performers -----------------------------------------------------------------------
def performer_segments(rng: np.random.Generator, performers: int, difficulty: float) -> np.ndarray:
    """Draw one body per performer.

    Parameters
    ----------
    rng
        The generator to draw from.
    performers
        Number of bodies.
    difficulty
        In [0, 1]; scales the spread of height and of each segment's proportion.

    Returns
    -------
    numpy.ndarray
        ``(performers, len(SEGMENT_NAMES))`` segment lengths in metres.
    """
    sd = _lerp(*HEIGHT_SD_M, difficulty)
    height = np.clip(rng.normal(HEIGHT_MEAN_M, sd, performers), *HEIGHT_RANGE_M)
    psd = _lerp(*PROPORTION_SD, difficulty)
    spread = np.clip(rng.normal(0.0, 1.0, (performers, len(SEGMENT_NAMES))), -PROPORTION_CLIP_SD,
                     PROPORTION_CLIP_SD)
    return height[:, None] * _SEGMENT_RATIOS[None, :] * (1.0 + psd * spread)
