"""The action classes of the built-in dataset and the constants of its generation
(how ``difficulty`` scales them: see :mod:`mksgn.data.synth`)."""

from __future__ import annotations

import math

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


def _lerp(lo: float, hi: float, x: float) -> float:
    return lo + (hi - lo) * x


def confusion(difficulty: float) -> float:
    """``kappa = CONFUSION_MAX * sqrt(difficulty)``: the largest partner weight of a blend."""
    return CONFUSION_MAX * math.sqrt(difficulty)
