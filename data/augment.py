"""Random spatial augmentation of training batches: rotation, scaling, shear, joint dropout.

Applied by :meth:`~mksgn.data.pipeline.SkeletonInputs.batch` to training batches only (those
drawn with a random generator), after centring and resampling and before the modalities, so
that bones and motion are those of the transformed joints. Each sample draws one linear map
``A`` (the same for every frame and person, about the origin that centring chose) and
``x' = A x`` for every joint:

- 3-D (``C = 3``, x right, y up, z depth): a rotation about the vertical axis y by
  ``U(-rotate_deg, rotate_deg)`` and small tilts about x and z by ``U(-tilt_deg, tilt_deg)``,
  ``R = R_y R_z R_x``, as CTR-GCN's ``feeders/tools.py random_rot`` and pyskl's
  ``RandomRot`` (``pyskl/datasets/pipelines/pose_related.py``) do with one bound,
  ``theta = 0.3`` rad (17 degrees), for all three axes;
- 2-D (``C = 2``, image coordinates): a rotation in the image plane only, by
  ``U(-rotate_deg, rotate_deg)`` (pyskl's ``RandomRot`` for 2-D keypoints); ``tilt_deg`` does
  not apply, as nothing out of the image plane can be rotated;
- shear ``S = I + H``, each off-diagonal entry of ``H`` ``U(-shear, shear)``;
- isotropic scaling by ``U(1 - scale, 1 + scale)`` (pyskl's ``RandomScale`` scales each axis;
  the shear already distorts the axes apart);

``A = s R S``. Joint dropout removes each joint of each frame and person with probability
``joint_dropout``: it becomes a missing joint (exactly 0, and added to the missing mask, so
that no bone or motion touching it is formed). Joints that are 0 (missing, absent persons)
stay exactly 0. The random numbers come from the generator given, a fixed count per sample
whatever is switched on (the angles of a seed are the same with or without shear).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

COORD_AXIS = 1
_DRAWS = 10  # per sample: rotation, 2 tilts, scale, 6 shear entries


@dataclass(frozen=True)
class Augmentation:
    """Magnitudes of the random transforms; all 0 (the default) is no augmentation.

    Parameters
    ----------
    rotate_deg
        Largest rotation about the vertical axis (3-D) or in the image plane (2-D), degrees.
    tilt_deg
        Largest tilt about the x and z axes, degrees (3-D only).
    scale
        Relative scaling: factor ``U(1 - scale, 1 + scale)``.
    shear
        Largest off-diagonal entry of the shear matrix.
    joint_dropout
        Probability that a joint in a frame is dropped (made missing).
    """

    rotate_deg: float = 0.0
    tilt_deg: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    joint_dropout: float = 0.0

    def __post_init__(self) -> None:
        check_augmentation(**{f.name: getattr(self, f.name) for f in fields(self)})

    @property
    def active(self) -> bool:
        """Whether any transform is switched on."""
        return any(getattr(self, f.name) != 0 for f in fields(self))


_BOUNDS = {"rotate_deg": (180.0, True), "tilt_deg": (90.0, True), "scale": (1.0, False),
           "shear": (1.0, False), "joint_dropout": (1.0, False)}
"""Upper bound of each magnitude and whether it is included (all are >= 0)."""


def check_augmentation(**values: float) -> None:
    """Raise ``ValueError`` naming the first magnitude out of range (see :class:`Augmentation`)."""
    for name, value in values.items():
        top, closed = _BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if value < 0 or value > top or (value == top and not closed):
            raise ValueError(f"{name} must be in [0, {top:g}{']' if closed else ')'}, got {value}")


def rotation(angles: np.ndarray, coords: int) -> np.ndarray:
    """Rotation matrices ``(N, C, C)``.

    Parameters
    ----------
    angles
        Radians, ``(N, 3)``: about the vertical axis y, then the tilts about x and z. For
        ``coords = 2`` only the first column is used (a rotation in the image plane).
    coords
        ``C``: 2 or 3.
    """
    a = np.asarray(angles, dtype=np.float64)
    n = a.shape[0]
    if coords == 2:
        c, s = np.cos(a[:, 0]), np.sin(a[:, 0])
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], 1)
    if coords != 3:
        raise ValueError(f"coordinates per joint must be 2 or 3, got {coords}")
    out = np.empty((n, 3, 3))
    for i, (yaw, tx, tz) in enumerate(a):
        cy, sy, cx, sx, cz, sz = np.cos(yaw), np.sin(yaw), np.cos(tx), np.sin(tx), np.cos(tz), np.sin(tz)
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        out[i] = ry @ rz @ rx
    return out


def affine_maps(aug: Augmentation, coords: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """The ``(n, C, C)`` float64 maps ``A = s R S`` of ``n`` samples (module docstring)."""
    u = rng.uniform(-1.0, 1.0, size=(n, _DRAWS))  # always the same count: draws do not depend on `aug`
    angles = np.deg2rad(u[:, :3] * np.array([aug.rotate_deg, aug.tilt_deg, aug.tilt_deg]))
    rot = rotation(angles, coords)
    shear = np.repeat(np.eye(coords)[None], n, axis=0)
    off = ~np.eye(coords, dtype=bool)
    shear[:, off] += aug.shear * u[:, 4:4 + coords * (coords - 1)]
    s = 1.0 + aug.scale * u[:, 3]
    return s[:, None, None] * rot @ shear


def augment(x: np.ndarray, missing: np.ndarray | None, aug: Augmentation, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Transform a batch of joints ``(n, C, F, V, M)`` (see the module docstring).

    Parameters
    ----------
    x
        float32 joints, centred; missing joints and absent persons are exactly 0.
    missing
        bool ``(n, F, V, M)``, the missing joints, or ``None`` for none.
    aug
        The magnitudes.
    rng
        The augmentation's own generator.

    Returns
    -------
    tuple[np.ndarray, np.ndarray | None]
        float32 joints of the same shape, exactly 0 where ``x`` was 0 or a joint was dropped,
        and the missing mask with the dropped joints added (``None`` if there are none).
    """
    n, coords = x.shape[0], x.shape[COORD_AXIS]
    zero = ~np.any(x != 0, axis=COORD_AXIS)  # (n, F, V, M): missing joints, absent persons
    maps = affine_maps(aug, coords, n, rng)
    out = np.einsum("nij,njfvm->nifvm", maps, x).astype(np.float32)
    if aug.joint_dropout > 0:
        dropped = rng.random(zero.shape) < aug.joint_dropout
        missing = dropped if missing is None else missing | dropped
        zero = zero | dropped
    return np.where(zero[:, None], np.float32(0), out), missing
