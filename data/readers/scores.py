"""Pose estimators' per-joint scores as a confidence in ``[0, 1]``.

OpenPose's and HRNet's scores are heat-map peaks: they may exceed 1 slightly. Such a score
is taken as 1, with a :class:`ScoreClippedWarning` naming the file and how many were
clipped; a negative score, or one above :data:`SCORE_MAX`, is an error naming the field.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from mksgn.errors import DatasetError, MksgnWarning

SCORE_MAX = 1.5
"""Scores up to this are clipped to 1; above it a file's scores are not confidences."""


class ScoreClippedWarning(MksgnWarning):
    """Scores above 1 were taken as 1."""


def confidence_from_scores(score: np.ndarray, path: str | Path, where: str, what: str = "score") -> np.ndarray:
    """``score`` clipped to ``[0, 1]`` (see the module docstring); ``where`` is the position in the
    file, ``what`` the field's name, for the messages."""
    if not ((score >= 0) & (score <= SCORE_MAX)).all():
        raise DatasetError(f"{what} outside [0, {SCORE_MAX:g}] (not a confidence)", path, where)
    above = int((score > 1).sum())
    if above:
        warnings.warn(f"{path}: {above} scores of {where} above 1 (at most {float(score.max()):.3g}) taken as 1",
                      ScoreClippedWarning, stacklevel=2)
        score = np.minimum(score, 1).astype(score.dtype, copy=False)
    return score
