"""The sampling plan (labels, splits, performers, persons, scene and camera of every
sample) and the rendering of a chunk: animate, film and corrupt like a Kinect sensor."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from mksgn.data.dataset import MAX_PERSONS, NUM_COORDS
from mksgn.data.skeletons import NTU25
from mksgn.data.synth.actions import _animate, _bump
from mksgn.data.synth.constants import (
    ACTOR_OFFSET_M, BYSTANDER_DISTANCE_M, BYSTANDER_PROBABILITY, CAMERA_DISTANCE_M, CAMERA_HEIGHT_M,
    CLASS_NAMES, DROP_NOISE_M, DROP_RATE, DROP_SPAN_FRAMES, FACING_SD_DEG, INTERACTION_CLASSES,
    INTERACTION_DISTANCE_M, LEFT_HANDED, MIN_FRAMES, MIN_LENGTH_FRACTION, NOISE_SD_M, PITCH_DEG,
    POSTURE_SD_DEG, VIEW_YAW_DEG, _lerp, confusion,
)
from mksgn.data.synth.kinematics import (
    _LIMB_CHANNELS, _SIDES, ANGLE_CHANNELS, ANKLE_L, ANKLE_R, FOOT_L, FOOT_R, HAND_L, HAND_R,
    HANDTIP_L, HANDTIP_R, MIRROR_NEGATED_CHANNELS, NUM_JOINTS, REST_POSE_DEG, THUMB_L, THUMB_R,
    WRIST_L, WRIST_R, _kinematics, _rot,
)

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

# Inferred (dropped) joints, by kind of joint.
EXTREMITY_JOINTS = (WRIST_L, HAND_L, WRIST_R, HAND_R, ANKLE_L, FOOT_L, ANKLE_R, FOOT_R, HANDTIP_L,
                    THUMB_L, HANDTIP_R, THUMB_R)
EXTREMITY_DROP_WEIGHT = 2.0  # extremities are inferred this much more often than DROP_RATE ...
TRUNK_DROP_WEIGHT = 0.5  # ... and the other joints (never the centre) this much less


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
