"""Per-sample normalisation of the coordinates' scale, so that the units do not matter.

Centring (:func:`~mksgn.data.transforms.centre`) removes where a skeleton is; ``"sample"``
normalisation then divides each sample by one length of its own, so that the same motion in
pixels, metres or normalised image coordinates gives the same model inputs (up to float
rounding). The length is the **median bone length of person 0 over its present frames**:

- it exists for every layout (a bone is a joint and its parent in the layout's tree), where a
  torso length needs named joints that differ between NTU-25, COCO-17, OpenPose-18 and BODY-25;
- the median over all bones and frames is robust: to missing joints (a bone counts only where
  both its ends are present, so no fake bone to the origin enters), to a few wrong detections,
  and, for 2-D keypoints, to the foreshortening of some bones in some frames;
- one scale per sample, shared by its persons and frames, keeps their relative sizes, the
  distances between persons and the motion's speed in body lengths.

Where person 0 has no present bone (absent, or a single joint), the next person's is used; a
sample with none at all (empty) keeps scale 1: nothing is ever divided by 0. Bones of length 0
(two joints written at one place) do not count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mksgn.data.skeletons import SkeletonLayout

NORMALISATIONS = ("none", "sample")
"""``"none"``: coordinates as centred; ``"sample"``: divided by the sample's median bone length."""

_CHUNK = 64  # samples per step of sample_scales (float64 temporaries of 64 samples)


def check_normalisation(name: str) -> str:
    """``name`` if it is one of :data:`NORMALISATIONS`, else ``ValueError`` naming them."""
    if name not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {name!r}")
    return name


def normalisation_of(record: Mapping[str, Any] | None) -> str:
    """The normalisation a model's data record (a checkpoint's ``data``, a graph's
    ``metadata["input"]``) states: its ``"normalise"``, ``"none"`` for records from before it existed.

    Raises
    ------
    ValueError
        For a value that is not one of :data:`NORMALISATIONS`.
    """
    return check_normalisation(str((record or {}).get("normalise", "none")))


def sample_scales(data: np.ndarray, lengths: np.ndarray, layout: SkeletonLayout,
                  missing: np.ndarray | None = None) -> np.ndarray:
    """The length each sample is divided by: float64 ``(N,)``, all > 0 (module docstring).

    Parameters
    ----------
    data
        ``(N, C, F, V, M)`` as read (centred or not: bone lengths do not depend on it, but
        presence is read from it, so give the raw data, where a present joint is never 0).
    lengths
        ``(N,)`` valid frames per sample.
    layout
        The skeleton (its parents give the bones).
    missing
        bool ``(N, F, V, M)``, see :func:`~mksgn.data.transforms.missing_joints` (with the
        dataset's confidence); ``None``: joints with every coordinate 0 are the missing ones.
    """
    n, _, f, v, m = data.shape
    lengths = np.asarray(lengths)
    parents = np.asarray(layout.parents)
    is_bone = np.arange(v) != parents  # the centre joint is its own parent: no bone
    out = np.ones(n, dtype=np.float64)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        x = np.asarray(data[part], dtype=np.float64)  # (n, C, F, V, M)
        present = np.any(x != 0, axis=1) & (np.arange(f)[None, :] < lengths[part, None])[:, :, None, None]
        if missing is not None:
            present &= ~missing[part]
        bones = np.linalg.norm(x - x[:, :, :, parents], axis=1)  # (n, F, V, M)
        ok = present & present[:, :, parents] & is_bone[None, None, :, None] & (bones > 0)
        out[part] = _first_person_median(bones, ok)
    return out


def _first_person_median(bones: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per sample, the median of ``bones`` where ``ok`` for the first person with any; else 1."""
    n, _, _, m = bones.shape
    out = np.ones(n, dtype=np.float64)
    todo = np.ones(n, dtype=bool)
    for p in range(m):
        has = todo & ok[..., p].any(axis=(1, 2))
        for i in np.flatnonzero(has):
            out[i] = float(np.median(bones[i, :, :, p][ok[i, :, :, p]]))
        todo &= ~has
    return out


def normalise_samples(data: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``data`` ``(N, C, F, V, M)`` divided by each sample's scale, in place; zeros stay exactly 0."""
    data /= np.asarray(scales, dtype=data.dtype)[:, None, None, None, None]
    return data
