"""The action library: one function per class writes its joint-angle motion, and
:func:`_animate` animates every class, blended with a confusable partner."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from mksgn.data.synth.constants import (
    ACTION_MARGIN, AMPLITUDE_SPREAD, CLASS_NAMES, CONFUSABLE_PAIRS, DISTRACTOR, DISTRACTOR_DEG,
    INTERACTION_CLASSES, SPEED_SPREAD, TIME_WARP, _lerp,
)
from mksgn.data.synth.kinematics import _SIDES, ANGLE_CHANNELS


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
