"""The scale of a graded relay: where the weights into it and out of it round best.

A relay (:mod:`mksgn.core.kinds.relay`) sends its input sum, in units of its scale ``s``, as
the payload of a graded spike. Its scale sits between two 8-bit weight sets: the weights into
it become ``w_in / s`` (the finer ``s``, the more bits they keep, down to the floor where the
largest reaches the 8-bit limit) and the weights out of it ``w_out * s / s_target`` (the
coarser ``s``, the more bits they keep, up to the ceiling where the largest reaches the
limit). Every power of two between floor and ceiling is tried (and the floor itself unless
``dyadic``); the one with the smallest sum of the two sets' rounding errors is taken, each
the RMS error of the non-zero weights relative to their RMS (zeros round exactly: counting
them would favour a sparse adjacency's coarse rounding), the coarser of equal ones (a
whole-number input, such as a spike count, rounds exactly at any scale). On the trained
``tiny`` student this keeps the snapped top-1 within 0.2 points of the float one; the error
relative to the largest weight instead cost 2.7 points, nearly all of it in the joint mixes. Where the floor is above the ceiling the
floor is taken and the target's scale rises to fit the weights, as for any synapse.
"""

from __future__ import annotations

import math

import numpy as np

from mksgn.core.kinds.base import WEIGHT_LIMIT_MIXED


def _relative_rms(w: np.ndarray, step: float) -> float:
    nz = w[w != 0]
    if nz.size == 0:
        return 0.0
    return float(np.sqrt(np.mean((np.round(nz / step) * step - nz) ** 2) / np.mean(nz ** 2)))


def relay_scale(floor: float, w_in: list[np.ndarray], w_out: list[tuple[np.ndarray, float]], dyadic: bool) -> float:
    """The relay's scale (see the module docstring).

    Parameters
    ----------
    floor
        The smallest scale its incoming weights and calibrated state allow (> 0).
    w_in
        Its incoming weights in float units of their sources' output.
    w_out
        Its outgoing weights, each with its target's scale.
    dyadic
        Only powers of two.
    """
    ceilings = [WEIGHT_LIMIT_MIXED * s_t / float(np.abs(w).max()) for w, s_t in w_out if np.abs(w).max() > 0]
    if not ceilings or min(ceilings) <= floor:
        return floor
    ceiling = min(ceilings)
    candidates = [2.0 ** k for k in range(math.ceil(math.log2(floor)), math.floor(math.log2(ceiling)) + 1)]
    if not dyadic:
        candidates.append(floor)
    if not candidates:
        return floor

    def error(s: float) -> float:
        return (sum(_relative_rms(w, s) for w in w_in)
                + sum(_relative_rms(w, s_t / s) for w, s_t in w_out))

    return min(sorted(candidates, reverse=True), key=error)
