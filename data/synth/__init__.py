"""A built-in procedural skeleton action dataset: NTU-style (25 joints, 2 persons) clips.

:func:`generate` draws performers with their own body proportions, animates a joint-angle
skeleton with forward kinematics (so every bone keeps its length within a performer),
places one or two persons in a scene, films it with a randomised Kinect-like camera
(x right, y up, z away from the camera, metres) and adds sensor noise and *inferred*
joints. The result is a cross-subject :class:`~mksgn.data.dataset.DatasetSplits`:
train and test performers are disjoint.

Classes
-------
``wave``            right forearm raised, swinging side to side (elbow oscillation).
``clap``            both hands meet in front of the chest, repeatedly.
``punch``           right fist from a guard to full extension at shoulder height, fast.
``kick``            right leg swings forward with a knee snap.
``squat``           hips and knees bend deeply, trunk leans forward, once or twice.
``jump``            a counter-movement dip then flight, arms swinging up.
``bow``             trunk bends forward at the hips, legs nearly straight.
``raise_both_arms`` both arms go overhead and come down.
``reach``           right arm extends slowly forward and up, the trunk following.
``turn``            the body turns 90-180 degrees on the spot, stepping.
``walk_in_place``   alternating knee lifts with arm swing.
``throw``           overhand throw: the right arm cocks back, then whips forward.
``handshake``       two persons face each other and shake right hands (always 2 persons).
``push``            person 1 pushes person 2 with both hands, person 2 steps back (2 persons).

"Right" is the dominant side: a share of the clips (:data:`LEFT_HANDED`) is mirrored.

Confusable pairs
----------------
Each class of a pair in :data:`CONFUSABLE_PAIRS` is morphed towards its partner: a clip
of class A animates A's joint-angle trajectories *and* a partner's with the same timing,
and keeps ``(1 - s) * A + s * partner`` with ``s`` uniform in ``[0, kappa]``,
``kappa = CONFUSION_MAX * sqrt(difficulty)`` (0 at difficulty 0, 0.49 at 0.5, 0.7 at 1;
past ``s = 0.5`` a clip looks more like its partner, so difficulty 1 has some truly
ambiguous clips). A class in two pairs (``squat``) picks one partner per clip.

* ``punch`` / ``reach``: the same right-arm extension forward; punch is fast (2.5-4
  cycles, sharp) from a guard, reach slow (1-1.6 cycles) from rest and higher.
* ``squat`` / ``jump``: both flex hips and knees; jump dips less, then leaves the floor
  with an arm swing.
* ``wave`` / ``throw``: both raise the cocked right arm (upper arm out, forearm up); wave
  swings the forearm side to side, throw whips the arm forward with a trunk twist.
* ``handshake`` / ``push``: both reach towards the partner; handshake with the right
  hand and a pumping motion, push with both hands, the partner stepping back.
* ``bow`` / ``squat``: trunk flexion with nearly straight legs vs. knee and hip flexion
  with a moderate forward lean.

Difficulty
----------
``difficulty`` in [0, 1] scales linearly (each constant below gives its value at 0 and
at 1): the per-performer spread of height and body proportions; the camera range (view
angle around the vertical, pitch, distance, height) and the actor's facing and place;
the Gaussian joint noise (none at 0); the rate of dropped joints (none at 0; a dropped
joint collapses onto its parent's position plus a little scatter for a span of frames,
like Kinect's *inferred* joints, never exact zeros); the per-clip variation of posture,
speed, amplitude, pace within the clip (a time warp) and the action's start and end;
the share of left-handed (mirrored) clips and of actors making an unrelated gesture with
the free arm; and, through ``kappa`` above, the confusable pairs. At ``difficulty=0``
there is no noise and no dropped joint, so bone lengths are exactly constant (to float32
precision) within a clip, and equal across the clips of one performer.

Data conventions
----------------
``data`` is float32 ``(N, 3, frames, 25, 2)`` in the NTU25 layout. Each sample's valid
length is random in ``[ceil(0.7 * frames), frames]``; later frames are exact zeros. Person
0 is the actor; person 1 is the interaction partner (always present for ``handshake`` and
``push``), an idle bystander (present with probability :data:`BYSTANDER_PROBABILITY`) or
exact zeros. Sample ids read ``synth-s{index:06d}-P{performer:03d}-A{label:03d}``, the
performer (of person 0) and the label 0-based. Generation is deterministic per ``seed``
(one ``numpy.random.default_rng(seed)``) and vectorised over samples and frames.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from mksgn.data.dataset import MAX_PERSONS, NUM_COORDS, DatasetSplits, SkeletonDataset
from mksgn.data.skeletons import NTU25

CLASS_NAMES: tuple[str, ...] = (
    "wave", "clap", "punch", "kick", "squat", "jump", "bow", "raise_both_arms",
    "reach", "turn", "walk_in_place", "throw", "handshake", "push",
)
"""The action classes, in label order."""

INTERACTION_CLASSES: frozenset[str] = frozenset({"handshake", "push"})
"""Classes that always have two persons."""

CONFUSABLE_PAIRS: tuple[tuple[str, str], ...] = (
    ("punch", "reach"), ("squat", "jump"), ("wave", "throw"), ("handshake", "push"), ("bow", "squat"),
)
"""Pairs of classes drawn closer together as ``difficulty`` grows."""

# --- generation constants -------------------------------------------------------------
MIN_FRAMES = 8
"""Shortest clip :func:`generate` accepts."""
MIN_LENGTH_FRACTION = 0.7
"""A sample's valid length is uniform in ``[ceil(MIN_LENGTH_FRACTION * frames), frames]``."""
CHUNK_SAMPLES = 1024
"""Samples animated together (bounds memory; part of the seed -> data mapping)."""
BYSTANDER_PROBABILITY = 0.25
"""Probability that a one-person action has an idle second person in view."""
LEFT_HANDED = (0.1, 0.3)  # probability of a mirrored (left-handed) sample, difficulty 0 and 1
CONFUSION_MAX = 0.7
"""``kappa`` at ``difficulty=1``: the largest weight of the partner motion in a blend."""

HEIGHT_MEAN_M = 1.70
HEIGHT_SD_M = (0.05, 0.10)  # at difficulty 0 and 1
HEIGHT_RANGE_M = (1.45, 1.98)
PROPORTION_SD = (0.02, 0.07)  # relative spread of each segment length, difficulty 0 and 1
PROPORTION_CLIP_SD = 2.5

NOISE_SD_M = 0.025  # Gaussian joint noise at difficulty 1 (0 at difficulty 0)
DROP_RATE = 0.05  # per joint and person: probability of an inferred span at difficulty 1
DROP_SPAN_FRAMES = (0.08, 0.35)  # span of a dropped joint, as fractions of the clip
DROP_NOISE_M = 0.01  # scatter of an inferred joint around its parent

VIEW_YAW_DEG = (15.0, 75.0)  # camera view angle range (+-), difficulty 0 and 1
PITCH_DEG = (2.0, 10.0)  # camera pitch range (+-)
CAMERA_DISTANCE_M = ((2.8, 3.2), (2.2, 4.0))  # (low, high) at difficulty 0 and 1
CAMERA_HEIGHT_M = ((0.9, 1.0), (0.7, 1.3))
ACTOR_OFFSET_M = (0.1, 0.5)  # lateral actor position range (+-)
FACING_SD_DEG = (5.0, 20.0)  # actor facing around "towards the camera"
POSTURE_SD_DEG = (3.0, 9.0)  # constant per-sample posture offsets
SPEED_SPREAD = (0.10, 0.30)  # cycles per clip vary by a factor in [1 - s, 1 + s]
AMPLITUDE_SPREAD = (0.08, 0.25)
TIME_WARP = 0.7  # at difficulty 1: largest relative speed change within a clip
ACTION_MARGIN = 0.3  # at difficulty 1: the action may start this late / end this early (clip fractions)
DISTRACTOR = (0.05, 0.5)  # probability of an unrelated free-arm gesture by the actor
DISTRACTOR_DEG = 70.0
INTERACTION_DISTANCE_M = (0.85, 1.15)
BYSTANDER_DISTANCE_M = (1.0, 1.8)

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
EXTREMITY_JOINTS = (WRIST_L, HAND_L, WRIST_R, HAND_R, ANKLE_L, FOOT_L, ANKLE_R, FOOT_R, HANDTIP_L,
                    THUMB_L, HANDTIP_R, THUMB_R)
EXTREMITY_DROP_WEIGHT = 2.0  # extremities are inferred this much more often than DROP_RATE ...
TRUNK_DROP_WEIGHT = 0.5  # ... and the other joints (never the centre) this much less

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


def _lerp(lo: float, hi: float, x: float) -> float:
    return lo + (hi - lo) * x


def confusion(difficulty: float) -> float:
    """``kappa = CONFUSION_MAX * sqrt(difficulty)``: the largest partner weight of a blend."""
    return CONFUSION_MAX * math.sqrt(difficulty)


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


# --- action library ---------------------------------------------------------------------
def _smooth(x: np.ndarray) -> np.ndarray:
    """Smoothstep of ``x`` clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _hold(t: np.ndarray, start: np.ndarray, end: np.ndarray, ramp: float | np.ndarray) -> np.ndarray:
    """0 -> 1 over ``ramp`` from ``start``, back to 0 over ``ramp`` before ``end``."""
    return _smooth((t - start) / ramp) * _smooth((end - t) / ramp)


def _bump(phase: np.ndarray, sharp: float | np.ndarray = 1.0) -> np.ndarray:
    """Periodic bump in [0, 1]: 0 at phase 0, 1 at half a cycle (``phase`` in cycles)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * phase)) ** sharp


@dataclass
class _Ctx:
    """What an action function gets: the clips' time and random draws for ``n`` samples."""

    t: np.ndarray  # (n, T) normalised time, 0 .. 1 over the valid frames
    rng: np.random.Generator
    speed: np.ndarray  # (n, 1) factor on cycles per clip
    amp: np.ndarray  # (n, 1) factor on amplitudes

    def take(self, rows: np.ndarray) -> "_Ctx":
        """The context of a subset of the samples."""
        return _Ctx(t=self.t[rows], rng=self.rng, speed=self.speed[rows], amp=self.amp[rows])

    def u(self, lo: float, hi: float) -> np.ndarray:
        """Uniform draws ``(n, 1)``."""
        return self.rng.uniform(lo, hi, (self.t.shape[0], 1))

    def phase(self, cycles_lo: float, cycles_hi: float) -> np.ndarray:
        """Phase in cycles ``(n, T)`` with a random rate and a small random offset."""
        cycles = self.u(cycles_lo, cycles_hi) * self.speed
        return cycles * self.t + self.u(-0.08, 0.08)

    def window(self, start: tuple[float, float] = (0.02, 0.12), end: tuple[float, float] = (0.85, 0.98),
               ramp: float = 0.12) -> np.ndarray:
        """A raise-hold-lower envelope ``(n, T)`` with random start and end."""
        return _hold(self.t, self.u(*start), self.u(*end), ramp)


_Pose = dict[str, np.ndarray]  # channel -> (n, T) angle trajectories of the selected persons


def _wave(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    env = c.window()
    swing = np.sin(2 * np.pi * c.phase(2.5, 5.0)) * c.u(18, 30) * c.amp
    a["r_plane"] += env * (c.u(-5, 25) - a["r_plane"])
    a["r_elev"] += env * (c.u(75, 105) * c.amp - a["r_elev"])
    a["r_axial"] += env * 90.0  # forearm up: the elbow swings it in the frontal plane
    a["r_elbow"] += env * (c.u(70, 100) + swing - a["r_elbow"])
    a["neck_yaw"] += env * c.u(-10, 10)


def _throw(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    s = np.mod(c.phase(1.0, 1.8), 1.0)
    cock = _smooth(s / 0.35) * (1.0 - _smooth((s - 0.45) / 0.3))  # wind up, then release
    fwd = _smooth((s - 0.4) / 0.2) * (1.0 - _smooth((s - 0.75) / 0.25))  # whip forward
    a["r_plane"] += cock * (c.u(-20, 5) - a["r_plane"]) + fwd * c.u(90, 120) * c.amp
    a["r_elev"] += cock * (c.u(85, 110) - a["r_elev"]) + fwd * c.u(0, 30)
    a["r_axial"] += cock * 90.0 - fwd * 40.0
    a["r_elbow"] += cock * (c.u(80, 110) - a["r_elbow"]) - fwd * 50.0
    a["spine_twist"] += (fwd - cock) * c.u(15, 30)
    a["spine_flex_hi"] += fwd * c.u(5, 20)
    a["l_elev"] += (cock + fwd) * c.u(10, 40)
    a["l_plane"] += (cock + fwd) * 50.0


def _clap(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    env = c.window()
    together = _bump(c.phase(3.0, 6.0), 0.7)
    for side in _SIDES:  # internal rotation brings the forearms to the midline
        a[f"{side}_elev"] += env * (c.u(45, 55) * c.amp - a[f"{side}_elev"])
        a[f"{side}_plane"] += env * (30.0 + together * c.u(54, 60) - a[f"{side}_plane"])
        a[f"{side}_elbow"] += env * (80.0 - a[f"{side}_elbow"])
        a[f"{side}_axial"] -= env * 30.0


def _punch(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    env = c.window(ramp=0.08)
    hit = _bump(c.phase(2.5, 4.0), 3.0)
    for side in _SIDES:  # guard: fists up in front of the chin
        a[f"{side}_plane"] += env * (85.0 - a[f"{side}_plane"])
        a[f"{side}_elev"] += env * (c.u(20, 35) - a[f"{side}_elev"])
        a[f"{side}_elbow"] += env * (c.u(105, 125) - a[f"{side}_elbow"])
    a["r_elev"] += env * hit * (c.u(75, 95) * c.amp - a["r_elev"])
    a["r_elbow"] += env * hit * (c.u(0, 15) - a["r_elbow"])
    a["spine_twist"] += env * hit * c.u(10, 20)


def _reach(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    out = _bump(c.phase(1.0, 1.6), 0.7)
    a["r_plane"] += out * (c.u(65, 100) - a["r_plane"])
    a["r_elev"] += out * (c.u(110, 140) * c.amp - a["r_elev"])
    a["r_elbow"] += out * (c.u(0, 20) - a["r_elbow"])
    a["r_wrist"] += out * c.u(-20, 10)
    a["spine_flex_lo"] += out * c.u(5, 20)
    a["spine_twist"] += out * c.u(5, 15)


def _kick(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    ph = c.phase(1.0, 2.6)
    lift = _bump(ph, 1.5)
    snap = _bump(ph, 4.0)
    a["r_hip_flex"] += lift * c.u(55, 85) * c.amp
    a["r_knee"] += (lift - snap * c.u(0.6, 0.95)) * c.u(40, 70)
    a["r_ankle"] -= snap * c.u(10, 30)
    a["spine_flex_lo"] -= lift * c.u(5, 15)
    for side in _SIDES:
        a[f"{side}_elev"] += lift * c.u(15, 40)
    a["l_knee"] += lift * c.u(5, 15)


def _squat(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    down = _bump(c.phase(1.0, 2.2), 1.0) * c.amp
    depth = c.u(90, 115)
    for side in _SIDES:
        a[f"{side}_hip_flex"] += down * depth
        a[f"{side}_knee"] += down * depth * c.u(1.05, 1.2)
        a[f"{side}_ankle"] += down * c.u(20, 30)
    a["spine_flex_lo"] += down * c.u(15, 35)
    arms = (c.u(0, 1) < 0.5) * c.u(60, 90)  # half of the performers hold the arms forward
    for side in _SIDES:
        a[f"{side}_plane"] += down * (90.0 - a[f"{side}_plane"]) * (arms > 0)
        a[f"{side}_elev"] += down * arms


def _jump(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    s = np.mod(c.phase(1.2, 3.0), 1.0)
    dip = _bump(np.clip(s / 0.45, 0, 1)) * c.u(35, 55)  # counter-movement
    flight = np.sin(np.pi * np.clip((s - 0.45) / 0.3, 0, 1))  # 0 .. 1 .. 0 while airborne
    for side in _SIDES:
        a[f"{side}_hip_flex"] += dip
        a[f"{side}_knee"] += dip * 1.2 + flight * 10.0
        a[f"{side}_ankle"] += dip * 0.4 - flight * 25.0
        a[f"{side}_elev"] += flight * c.u(90, 150) - dip * 0.6
        a[f"{side}_plane"] += (flight - dip / 50) * 60.0
    a["spine_flex_lo"] += dip * 0.4
    a["root_y"] += flight * c.u(0.12, 0.35) * c.amp


def _bow(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    down = _bump(c.phase(1.0, 1.8), 1.0) * c.amp
    a["spine_flex_lo"] += down * c.u(35, 65)
    a["spine_flex_hi"] += down * c.u(10, 20)
    a["neck_flex"] += down * c.u(5, 20)
    for side in _SIDES:
        a[f"{side}_knee"] += down * c.u(3, 12)
        a[f"{side}_elev"] += down * c.u(15, 45)  # the arms hang while the trunk bends
        a[f"{side}_plane"] += down * (90.0 - a[f"{side}_plane"])


def _raise_both_arms(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    up = _bump(c.phase(1.0, 2.5), 1.0)
    plane = c.u(0, 90)
    top = c.u(150, 175) * c.amp
    for side in _SIDES:
        a[f"{side}_plane"] += up * (plane - a[f"{side}_plane"])
        a[f"{side}_elev"] += up * (top - a[f"{side}_elev"])
        a[f"{side}_elbow"] += up * c.u(-10, 10)
    a["neck_flex"] -= up * c.u(0, 15)


def _turn(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    direction = np.where(c.u(0, 1) < 0.5, -1.0, 1.0)
    start, end = c.u(0.05, 0.3), c.u(0.7, 0.95)
    progress = _smooth((c.t - start) / (end - start))
    a["yaw"] += direction * progress * c.u(90, 180) * c.amp
    moving = _hold(c.t, start, end, 0.1)
    step = c.phase(2.0, 4.0)
    for side, off in zip(_SIDES, (0.0, 0.5)):
        lift = _bump(step + off, 2.0) * moving
        a[f"{side}_hip_flex"] += lift * c.u(15, 30)
        a[f"{side}_knee"] += lift * c.u(25, 45)
    a["neck_yaw"] += direction * moving * c.u(10, 30)


def _walk_in_place(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    env = c.window(ramp=0.08)
    step = c.phase(2.0, 4.5)
    for side, off in zip(_SIDES, (0.0, 0.5)):
        lift = _bump(step + off, 1.5) * env * c.amp
        a[f"{side}_hip_flex"] += lift * c.u(30, 50)
        a[f"{side}_knee"] += lift * c.u(50, 75)
        a[f"{side}_ankle"] -= lift * 10.0
        swing = np.sin(2 * np.pi * (step + off + 0.5)) * env  # arm opposite to the leg
        a[f"{side}_plane"] += env * (90.0 - a[f"{side}_plane"])
        a[f"{side}_elev"] += swing * c.u(15, 35) - a[f"{side}_elev"] * env
        a[f"{side}_elbow"] += env * c.u(10, 40)


def _handshake(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    assert b is not None
    env = c.window(start=(0.05, 0.25), end=(0.75, 0.95), ramp=0.15)
    pump = np.sin(2 * np.pi * c.phase(3.0, 5.0)) * c.u(4, 10)
    for p in (a, b):  # mirror images of each other, each with its own right hand
        p["r_plane"] += env * (c.u(95, 110) - p["r_plane"])
        p["r_elev"] += env * (c.u(40, 55) + pump - p["r_elev"])
        p["r_elbow"] += env * (c.u(25, 45) - pump - p["r_elbow"])
        p["r_axial"] += env * 30.0
        p["spine_flex_lo"] += env * c.u(0, 10)
        p["root_z"] += env * c.u(0.0, 0.1)


def _push(a: _Pose, b: _Pose | None, c: _Ctx) -> None:
    assert b is not None
    t0 = c.u(0.25, 0.55)
    prep = _smooth((c.t - (t0 - 0.2)) / 0.15) * (1 - _smooth((c.t - (t0 + 0.25)) / 0.2))
    shove = _smooth((c.t - t0) / 0.1) * (1 - _smooth((c.t - (t0 + 0.25)) / 0.2))
    for side in _SIDES:
        a[f"{side}_plane"] += prep * (c.u(80, 95) - a[f"{side}_plane"])
        a[f"{side}_elev"] += prep * (c.u(55, 75) - a[f"{side}_elev"])
        a[f"{side}_elbow"] += prep * (100.0 - a[f"{side}_elbow"]) - shove * c.u(70, 95)
    a["spine_flex_lo"] += shove * c.u(10, 20)
    a["root_z"] += shove * c.u(0.05, 0.15)
    hit = _bump(np.clip((c.t - t0) / 0.3, 0, 1))
    b["root_z"] -= _smooth((c.t - t0 - 0.03) / 0.15) * c.u(0.2, 0.45)
    b["spine_flex_lo"] -= hit * c.u(10, 20)
    for side in _SIDES:
        b[f"{side}_elev"] += hit * c.u(20, 50)
        b[f"{side}_plane"] += hit * 40.0
    b["r_hip_flex"] -= hit * 15.0
    b["l_knee"] += hit * 20.0


_ActionFn = Callable[[_Pose, "_Pose | None", _Ctx], None]
_ACTIONS: Mapping[str, _ActionFn] = MappingProxyType({
    "wave": _wave, "clap": _clap, "punch": _punch, "kick": _kick, "squat": _squat, "jump": _jump,
    "bow": _bow, "raise_both_arms": _raise_both_arms, "reach": _reach, "turn": _turn,
    "walk_in_place": _walk_in_place, "throw": _throw, "handshake": _handshake, "push": _push,
})
_PARTNERS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    name: tuple(q for pair in CONFUSABLE_PAIRS if name in pair for q in pair if q != name)
    for name in CLASS_NAMES
})


def _animate(rng: np.random.Generator, angles: dict[str, np.ndarray], labels: np.ndarray,
             person_of: np.ndarray, t: np.ndarray, kappa: float, difficulty: float) -> None:
    """Write every class's motion into ``angles`` (in place), blended with a confusable one.

    A sample of a class with confusable partners (see :data:`CONFUSABLE_PAIRS`) becomes
    ``(1 - s) * own + s * partner`` of two motions drawn with the same timing, ``s``
    uniform in ``[0, kappa]`` and the partner chosen at random among the class's partners.
    """
    n = len(labels)
    speed = 1.0 + rng.uniform(-1, 1, (n, 1)) * _lerp(*SPEED_SPREAD, difficulty)
    amp = 1.0 + rng.uniform(-1, 1, (n, 1)) * _lerp(*AMPLITUDE_SPREAD, difficulty)
    # Uneven pace (a monotonic time warp) and an action window inside the clip.
    warp = rng.uniform(-1, 1, (n, 1)) * TIME_WARP * difficulty
    t = t + warp * np.sin(2 * np.pi * t) / (2 * np.pi)
    start = rng.uniform(0, ACTION_MARGIN * difficulty, (n, 1))
    end = 1.0 - rng.uniform(0, ACTION_MARGIN * difficulty, (n, 1))
    t = np.clip((t - start) / (end - start), 0.0, 1.0)
    for label, name in enumerate(CLASS_NAMES):
        idx = np.flatnonzero(labels == label)
        if idx.size == 0:
            continue
        two = name in INTERACTION_CLASSES
        pb = person_of[idx]
        base_a = {ch: v[idx] for ch, v in angles.items()}
        base_b = {ch: v[pb] for ch, v in angles.items()} if two else None
        a = {ch: v.copy() for ch, v in base_a.items()}
        b = {ch: v.copy() for ch, v in base_b.items()} if base_b is not None else None
        ctx = _Ctx(t=t[idx], rng=rng, speed=speed[idx], amp=amp[idx])
        _ACTIONS[name](a, b, ctx)
        partners = _PARTNERS[name]
        if partners and kappa > 0:
            weight = rng.uniform(0.0, kappa, (idx.size, 1))
            choice = rng.integers(len(partners), size=idx.size)
            for k, other in enumerate(partners):
                rows = np.flatnonzero(choice == k)
                a2 = {ch: v[rows] for ch, v in base_a.items()}
                b2 = {ch: v[rows] for ch, v in base_b.items()} if base_b is not None else None
                _ACTIONS[other](a2, b2, ctx.take(rows))
                w = weight[rows]
                for pose, pose2 in ((a, a2), (b, b2)):
                    if pose is not None and pose2 is not None:
                        for ch in ANGLE_CHANNELS:
                            pose[ch][rows] += w * (pose2[ch] - pose[ch][rows])
        for ch in ANGLE_CHANNELS:
            angles[ch][idx] = a[ch]
            if b is not None:
                angles[ch][pb] = b[ch]

    # Distractors: some actors also move the free (left) arm and the head for no reason.
    rows = np.flatnonzero(rng.random(n) < _lerp(*DISTRACTOR, difficulty))
    c = _Ctx(t=t[rows], rng=rng, speed=speed[rows], amp=amp[rows])
    move = _hold(c.t, c.u(0.0, 0.6), c.u(0.4, 1.0), c.u(0.1, 0.3))
    angles["l_plane"][rows] += move * c.u(-20, 90)
    angles["l_elev"][rows] += move * c.u(0.3, 1.0) * DISTRACTOR_DEG
    angles["l_elbow"][rows] += move * c.u(0.0, 1.5) * DISTRACTOR_DEG
    angles["neck_yaw"][rows] += move * c.u(-0.5, 0.5) * DISTRACTOR_DEG


# --- sampling plan, scene, camera and sensor ------------------------------------------------
POSTURE_WEIGHTS: Mapping[str, float] = MappingProxyType({
    "spine_flex_lo": 0.6, "spine_flex_hi": 0.6, "spine_lat": 0.4, "neck_flex": 1.0, "neck_yaw": 1.0,
    "r_plane": 1.0, "l_plane": 1.0, "r_elev": 1.0, "l_elev": 1.0, "r_elbow": 1.2, "l_elbow": 1.2,
    "r_axial": 1.5, "l_axial": 1.5, "r_hip_abd": 0.4, "l_hip_abd": 0.4,
})
"""Relative size of the constant per-person posture offsets (times the posture sd)."""
IDLE_SWAY_DEG: Mapping[str, float] = MappingProxyType({
    "spine_lat": 2.0, "spine_twist": 3.0, "neck_yaw": 8.0, "neck_flex": 3.0,
    "r_elev": 3.0, "l_elev": 3.0, "r_elbow": 5.0, "l_elbow": 5.0,
})
"""Amplitude of the slow idle sway every person shows."""
BYSTANDER_FIDGET_DEG = 35.0  # bystanders also move each arm slowly by up to this much
IDLE_CYCLES = (0.2, 1.2)  # sway cycles per clip


@dataclass
class _Plan:
    """Per-sample draws made before animation (arrays over all samples)."""

    labels: np.ndarray
    lengths: np.ndarray
    performer: np.ndarray  # actor
    partner: np.ndarray  # performer of person 1, -1 when absent
    view: np.ndarray  # camera yaw, degrees
    pitch: np.ndarray
    distance: np.ndarray
    cam_height: np.ndarray
    facing: np.ndarray  # (N, 2) degrees, person 0 and 1
    place: np.ndarray  # (N, 2, 2) floor position (x, z), person 0 and 1

    def take(self, sl: slice) -> "_Plan":
        return _Plan(**{k: v[sl] for k, v in self.__dict__.items()})


def _check(samples: int, frames: int, difficulty: float, test_fraction: float, performers: int) -> None:
    for name, value in (("samples", samples), ("frames", frames), ("performers", performers)):
        operator.index(value)  # TypeError for a float or a string
    if not 0.0 <= difficulty <= 1.0:  # NaN fails too
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    if samples < len(CLASS_NAMES):
        raise ValueError(f"samples must be at least the number of classes ({len(CLASS_NAMES)}), got {samples}")
    if frames < MIN_FRAMES:
        raise ValueError(f"frames must be at least {MIN_FRAMES}, got {frames}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if performers < 2:
        raise ValueError(f"performers must be at least 2 (train and test), got {performers}")


def _split_performers(rng: np.random.Generator, performers: int, test_fraction: float) -> np.ndarray:
    """Boolean ``(performers,)``: True for a test performer."""
    n_test = min(max(round(performers * test_fraction), 1), performers - 1)
    is_test = np.zeros(performers, dtype=bool)
    is_test[rng.choice(performers, n_test, replace=False)] = True
    return is_test


def _plan(rng: np.random.Generator, samples: int, frames: int, difficulty: float, test_fraction: float,
          test_performer: np.ndarray) -> tuple[_Plan, np.ndarray]:
    """Labels, splits, performers, lengths, persons, scene and camera of every sample."""
    n, d = samples, difficulty
    labels = np.arange(n, dtype=np.int64) % len(CLASS_NAMES)
    pools = [np.flatnonzero(~test_performer), np.flatnonzero(test_performer)]
    # Test clips: a share of every class (at least one each way when a class has two clips);
    # classes with a single clip (samples < 2 * classes) share out test_fraction among them.
    is_test = np.zeros(n, dtype=bool)
    singles = []
    for label in range(len(CLASS_NAMES)):
        members = rng.permutation(np.flatnonzero(labels == label))
        k = len(members)
        if k == 1:
            singles.append(members[0])
        else:
            is_test[members[: min(max(round(k * test_fraction), 1), k - 1)]] = True
    if singles:
        is_test[rng.permutation(singles)[: round(len(singles) * test_fraction)]] = True
    if not is_test.any() or is_test.all():  # both splits non-empty
        is_test[rng.integers(n)] = not is_test.any()
    performer = np.zeros(n, dtype=np.int64)
    for label in range(len(CLASS_NAMES)):
        for split in (0, 1):
            chosen = np.flatnonzero((labels == label) & (is_test == bool(split)))
            pool = rng.permutation(pools[split])  # cycle through the pool: every performer acts
            performer[chosen] = pool[(rng.integers(len(pool)) + np.arange(len(chosen))) % len(pool)]

    # Person 1: the partner or a bystander, another performer of the same split.
    interaction = np.isin(labels, [CLASS_NAMES.index(c) for c in INTERACTION_CLASSES])
    two = interaction | (rng.random(n) < BYSTANDER_PROBABILITY)
    partner = np.full(n, -1, dtype=np.int64)
    for split in (0, 1):
        pool = pools[split]
        rows = np.flatnonzero(two & (is_test == bool(split)))
        where = np.searchsorted(pool, performer[rows])
        step = rng.integers(1, len(pool), len(rows)) if len(pool) > 1 else np.zeros(len(rows), np.int64)
        partner[rows] = pool[(where + step) % len(pool)]

    lengths = rng.integers(math.ceil(MIN_LENGTH_FRACTION * frames), frames + 1, n).astype(np.int64)
    view_max = _lerp(*VIEW_YAW_DEG, d)
    pitch_max = _lerp(*PITCH_DEG, d)
    dist = [_lerp(lo0, lo1, d) for lo0, lo1 in zip(*CAMERA_DISTANCE_M)]
    height = [_lerp(lo0, lo1, d) for lo0, lo1 in zip(*CAMERA_HEIGHT_M)]
    offset = _lerp(*ACTOR_OFFSET_M, d)
    facing_sd = _lerp(*FACING_SD_DEG, d)

    facing = np.zeros((n, 2))
    place = np.zeros((n, 2, 2))
    # One person (plus a bystander): facing the camera, which looks along +z.
    facing[:, 0] = 180.0 + rng.normal(0.0, facing_sd, n)
    place[:, 0, 0] = rng.uniform(-offset, offset, n)
    place[:, 0, 1] = rng.uniform(-0.2, 0.2, n)
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    facing[:, 1] = 180.0 + rng.normal(0.0, 30.0, n)
    place[:, 1, 0] = place[:, 0, 0] + side * rng.uniform(*BYSTANDER_DISTANCE_M, n)
    place[:, 1, 1] = place[:, 0, 1] + rng.uniform(-0.3, 0.8, n)
    # Interactions: face each other across the view, either way round.
    gap = rng.uniform(*INTERACTION_DISTANCE_M, n)
    jitter = rng.normal(0.0, facing_sd / 2, (n, 2))
    rows = np.flatnonzero(interaction)
    s = side[rows]
    facing[rows, 0] = -s * 90.0 + jitter[rows, 0]
    facing[rows, 1] = s * 90.0 + jitter[rows, 1]
    place[rows, 0, 0] = place[rows, 0, 0] + s * gap[rows] / 2
    place[rows, 1, 0] = place[rows, 0, 0] - s * gap[rows]
    place[rows, 1, 1] = place[rows, 0, 1]

    plan = _Plan(
        labels=labels, lengths=lengths, performer=performer, partner=partner,
        view=rng.uniform(-view_max, view_max, n), pitch=rng.uniform(-pitch_max, pitch_max, n),
        distance=rng.uniform(*dist, n), cam_height=rng.uniform(*height, n), facing=facing, place=place,
    )
    return plan, is_test


def _render(rng: np.random.Generator, plan: _Plan, segments: np.ndarray, frames: int,
            difficulty: float) -> np.ndarray:
    """Animate, film and corrupt one chunk: float32 ``(n, 3, frames, 25, 2)``."""
    d = difficulty
    n = len(plan.labels)
    rows2 = np.flatnonzero(plan.partner >= 0)
    person_of = np.full(n, -1)
    person_of[rows2] = n + np.arange(len(rows2))
    n_persons = n + len(rows2)
    sample_of = np.concatenate([np.arange(n), rows2])  # person -> sample
    seg = segments[np.concatenate([plan.performer, plan.partner[rows2]])]

    frame = np.arange(frames)
    t = np.minimum(frame[None, :] / np.maximum(plan.lengths[:, None] - 1, 1), 1.0)  # (n, T)
    tp = t[sample_of]

    # Rest pose and idle sway.
    angles = {ch: np.full((n_persons, frames), REST_POSE_DEG.get(ch, 0.0)) for ch in ANGLE_CHANNELS}
    for ch, amp in IDLE_SWAY_DEG.items():
        cyc = rng.uniform(*IDLE_CYCLES, (n_persons, 1))
        angles[ch] += amp * np.sin(2 * np.pi * (cyc * tp + rng.random((n_persons, 1))))
    bystander = np.zeros(n_persons, dtype=bool)
    interaction = np.isin(plan.labels, [CLASS_NAMES.index(c) for c in INTERACTION_CLASSES])
    bystander[person_of[~interaction & (person_of >= 0)]] = True
    for side in _SIDES:
        cyc = rng.uniform(*IDLE_CYCLES, (n_persons, 1))
        fidget = bystander[:, None] * _bump(cyc * tp + rng.random((n_persons, 1)))
        angles[f"{side}_elbow"] += fidget * rng.uniform(0, 2 * BYSTANDER_FIDGET_DEG, (n_persons, 1))
        angles[f"{side}_elev"] += fidget * rng.uniform(0, BYSTANDER_FIDGET_DEG, (n_persons, 1))

    _animate(rng, angles, plan.labels, person_of, t, confusion(d), d)

    # Left-handed samples: mirror the whole motion of every person of the sample.
    mirrored = (rng.random(n) < _lerp(*LEFT_HANDED, d))[sample_of]
    for c in _LIMB_CHANNELS:
        r, l = angles[f"r_{c}"], angles[f"l_{c}"]
        r[mirrored], l[mirrored] = l[mirrored], r[mirrored].copy()
    for ch in MIRROR_NEGATED_CHANNELS:
        angles[ch][mirrored] *= -1.0

    posture_sd = _lerp(*POSTURE_SD_DEG, d)  # each person's own style, on top of the action
    for ch, w in POSTURE_WEIGHTS.items():
        angles[ch] += rng.normal(0.0, posture_sd * w, (n_persons, 1))
    pos = _kinematics(angles, seg)  # (V, 3, P, T), each person's own frame

    # Scene and camera: p_cam = Rx(pitch) Ry(view) (Ry(facing) p + place) + (0, -height, distance).
    person_slot = np.concatenate([np.zeros(n, np.int64), np.ones(len(rows2), np.int64)])
    cam = _rot(0, plan.pitch[sample_of]) @ _rot(1, plan.view[sample_of])  # (P, 3, 3)
    rot = cam @ _rot(1, plan.facing[sample_of, person_slot])
    place = plan.place[sample_of, person_slot]
    shift = cam[:, :, 0] * place[:, :1] + cam[:, :, 2] * place[:, 1:]  # (P, 3)
    shift[:, 1] -= plan.cam_height[sample_of]
    shift[:, 2] += plan.distance[sample_of]
    filmed = np.empty(pos.shape, dtype=np.float32)
    for i in range(3):
        filmed[:, i] = (rot[:, i, 0, None] * pos[:, 0] + rot[:, i, 1, None] * pos[:, 1]
                        + rot[:, i, 2, None] * pos[:, 2] + shift[:, i, None])

    if d > 0:
        # Inferred joints: collapse onto the parent (plus a little scatter) for a span.
        lengths_p = plan.lengths[sample_of]
        weight = np.full(NUM_JOINTS, TRUNK_DROP_WEIGHT)
        weight[list(EXTREMITY_JOINTS)] = EXTREMITY_DROP_WEIGHT
        weight[NTU25.centre] = 0.0
        p_idx, j_idx = np.nonzero(rng.random((n_persons, NUM_JOINTS)) < DROP_RATE * d * weight)
        span = np.maximum(1, (rng.uniform(*DROP_SPAN_FRAMES, len(p_idx)) * lengths_p[p_idx]).astype(np.int64))
        first = (rng.random(len(p_idx)) * (lengths_p[p_idx] - span + 1)).astype(np.int64)
        k_idx, f_idx = np.nonzero((frame[None, :] >= first[:, None]) & (frame[None, :] < (first + span)[:, None]))
        p_idx, j_idx = p_idx[k_idx], j_idx[k_idx]
        filmed[j_idx, :, p_idx, f_idx] = filmed[NTU25.parents[j_idx], :, p_idx, f_idx] + rng.normal(
            0.0, DROP_NOISE_M, (len(p_idx), 3))
        filmed += rng.standard_normal(filmed.shape, dtype=np.float32) * np.float32(NOISE_SD_M * d)

    out = np.zeros((n, NUM_COORDS, frames, NUM_JOINTS, MAX_PERSONS), dtype=np.float32)
    out[..., 0] = filmed[:, :, :n].transpose(2, 1, 3, 0)
    out[rows2, ..., 1] = filmed[:, :, n:].transpose(2, 1, 3, 0)
    padding = frame[None, :] >= plan.lengths[:, None]  # (n, T)
    out.transpose(0, 2, 1, 3, 4)[padding] = 0.0
    return out


def generate(samples: int = 3000, seed: int = 0, frames: int = 64, difficulty: float = 0.5,
             test_fraction: float = 0.2, performers: int = 40) -> DatasetSplits:
    """Generate the procedural skeleton action dataset, split across performers.

    Parameters
    ----------
    samples
        Number of clips in train and test together (at least ``len(CLASS_NAMES)``);
        labels go round-robin over :data:`CLASS_NAMES`, so classes are balanced.
    seed
        Seed of the one :func:`numpy.random.default_rng` used; same seed, same data.
    frames
        Padded clip length ``F`` (at least :data:`MIN_FRAMES`).
    difficulty
        In [0, 1]: noise, dropped joints, camera range, body and motion variation and the
        closeness of :data:`CONFUSABLE_PAIRS` (see the module docstring).
    test_fraction
        In (0, 1): fraction of the performers, and of each class's clips, in the test split.
    performers
        Number of distinct performers (at least 2), each with their own body.

    Returns
    -------
    DatasetSplits
        ``benchmark="xsub"``; layout ``"ntu25"``, float32 data ``(N, 3, frames, 25, 2)``.

    Raises
    ------
    ValueError
        For a parameter out of range.
    TypeError
        For a non-integer ``samples``, ``frames`` or ``performers``.

    Notes
    -----
    Memory: the data take ``samples * 3 * frames * 25 * 2 * 4`` bytes (384 MB for 10,000
    clips of 64 frames); the work runs in chunks of :data:`CHUNK_SAMPLES` clips. Labels go
    round-robin, so with at least ``2 * len(CLASS_NAMES)`` samples every class is in both
    splits. Test performers are ``round(performers * test_fraction)`` (at least one each
    way); every performer acts when there are enough clips.
    """
    _check(samples, frames, difficulty, test_fraction, performers)
    rng = np.random.default_rng(seed)
    test_performer = _split_performers(rng, performers, test_fraction)
    segments = performer_segments(rng, performers, difficulty)
    plan, is_test = _plan(rng, samples, frames, difficulty, test_fraction, test_performer)

    data = [np.zeros((int((is_test == bool(s)).sum()), NUM_COORDS, frames, NUM_JOINTS, MAX_PERSONS),
                     dtype=np.float32) for s in (0, 1)]
    row = np.zeros(samples, dtype=np.int64)  # position within its split
    for s in (0, 1):
        row[is_test == bool(s)] = np.arange(len(data[s]))
    for start in range(0, samples, CHUNK_SAMPLES):
        sl = slice(start, min(start + CHUNK_SAMPLES, samples))
        chunk = _render(rng, plan.take(sl), segments, frames, difficulty)
        chunk_test = is_test[sl]
        for s in (0, 1):
            sel = chunk_test == bool(s)
            data[s][row[sl][sel]] = chunk[sel]

    ids = [f"synth-s{i:06d}-P{p:03d}-A{a:03d}" for i, (p, a) in enumerate(zip(plan.performer, plan.labels))]
    source = f"builtin:synth(seed={seed})"
    splits = []
    for s in (0, 1):
        idx = np.flatnonzero(is_test == bool(s))
        splits.append(SkeletonDataset(
            data=data[s], labels=plan.labels[idx].copy(), lengths=plan.lengths[idx].copy(),
            class_names=list(CLASS_NAMES), sample_ids=[ids[i] for i in idx], layout=NTU25.name,
            source=source,
        ))
    return DatasetSplits(train=splits[0], test=splits[1], benchmark="xsub")
