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
``difficulty`` in [0, 1] scales linearly (each constant in
:mod:`~mksgn.data.synth.constants` gives its value at 0 and at 1): the per-performer
spread of height and body proportions; the camera range (view angle around the vertical,
pitch, distance, height) and the actor's facing and place; the Gaussian joint noise (none
at 0); the rate of dropped joints (none at 0; a dropped joint collapses onto its parent's
position plus a little scatter for a span of frames, like Kinect's *inferred* joints,
never exact zeros); the per-clip variation of posture, speed, amplitude, pace within the
clip (a time warp) and the action's start and end; the share of left-handed (mirrored)
clips and of actors making an unrelated gesture with the free arm; and, through ``kappa``
above, the confusable pairs. At ``difficulty=0`` there is no noise and no dropped joint,
so bone lengths are exactly constant (to float32 precision) within a clip, and equal
across the clips of one performer.

Data conventions
----------------
``data`` is float32 ``(N, 3, frames, 25, 2)`` in the NTU25 layout. Each sample's valid
length is random in ``[ceil(0.7 * frames), frames]``; later frames are exact zeros. Person
0 is the actor; person 1 is the interaction partner (always present for ``handshake`` and
``push``), an idle bystander (present with probability :data:`BYSTANDER_PROBABILITY`) or
exact zeros. Sample ids read ``synth-s{index:06d}-P{performer:03d}-A{label:03d}``, the
performer (of person 0) and the label 0-based. Generation is deterministic per ``seed``
(one ``numpy.random.default_rng(seed)``) and vectorised over samples and frames.

Modules
-------
:mod:`~mksgn.data.synth.constants`: the classes and the generation constants;
:mod:`~mksgn.data.synth.kinematics`: the joint-angle skeleton, forward kinematics and the
performers' bodies; :mod:`~mksgn.data.synth.actions`: the action library;
:mod:`~mksgn.data.synth.scene`: the sampling plan, scene, camera and sensor. This module
holds :func:`generate` and re-exports the public constants.
"""

from __future__ import annotations

import numpy as np

from mksgn.data.dataset import MAX_PERSONS, NUM_COORDS, DatasetSplits, SkeletonDataset
from mksgn.data.skeletons import NTU25
from mksgn.data.synth.constants import (
    BYSTANDER_PROBABILITY, CHUNK_SAMPLES, CLASS_NAMES, CONFUSABLE_PAIRS, CONFUSION_MAX,
    INTERACTION_CLASSES, LEFT_HANDED, MIN_FRAMES, MIN_LENGTH_FRACTION, confusion,
)
from mksgn.data.synth.kinematics import (
    ANGLE_CHANNELS, NUM_JOINTS, SEGMENT_NAMES, forward_kinematics, performer_segments,
)
from mksgn.data.synth.scene import _check, _plan, _render, _split_performers

__all__ = [
    "ANGLE_CHANNELS", "BYSTANDER_PROBABILITY", "CHUNK_SAMPLES", "CLASS_NAMES", "CONFUSABLE_PAIRS",
    "CONFUSION_MAX", "INTERACTION_CLASSES", "LEFT_HANDED", "MIN_FRAMES", "MIN_LENGTH_FRACTION",
    "SEGMENT_NAMES", "confusion", "forward_kinematics", "generate", "performer_segments",
]


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
