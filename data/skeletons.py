"""Skeleton layouts: joints, edges, parents, centre joint and the ST-GCN spatial partitions.

A layout is a tree rooted at its centre joint. Edges are stored 0-based as
``(child, parent)`` pairs, the parent being the neighbour closer to the centre.

The spatial partitions follow ST-GCN's *spatial* strategy (neighbourhood of one hop,
split by the distance to the centre joint). With ``X`` of shape ``(..., V)`` a graph
convolution reads ``sum_k W_k X A_k``, so ``A_k[v, w]`` is the weight with which joint
``v`` sends to joint ``w``::

    A_0[v, w] = 1 / d(w)   if v == w                    (root: the joint itself)
    A_1[v, w] = 1 / d(w)   if v ~ w and h(v) > h(w)     (centripetal: from the farther joint)
    A_2[v, w] = 1 / d(w)   if v ~ w and h(v) < h(w)     (centrifugal: from the nearer joint)

where ``v ~ w`` means an edge, ``h`` is the hop distance to the centre and
``d(w) = 1 + deg(w)`` the size of ``w``'s neighbourhood; every column of ``sum_k A_k``
sums to one (each joint averages its neighbourhood, ST-GCN's ``normalize_digraph``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

NUM_PARTITIONS = 3
"""Number of ST-GCN spatial partitions: root, centripetal, centrifugal."""


@dataclass(frozen=True)
class SkeletonLayout:
    """A skeleton as a tree of joints.

    Parameters
    ----------
    name
        Short identifier (``"ntu25"``, ``"ucla20"``, ``"kinetics18"``, ``"coco17"``, ``"body25"``).
    joint_names
        One name per joint, in data order.
    edges
        0-based ``(child, parent)`` pairs; together a spanning tree rooted at ``centre``.
    centre
        0-based index of the centre (root) joint.
    native_coords
        Coordinates per joint its source records: 3 for depth cameras (Kinect), 2 for pose
        estimators on images. :func:`layout_for_joints` uses it to tell 3-D data's layout
        from 2-D layouts with the same joint count.
    """

    name: str
    joint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    centre: int
    native_coords: int = 3
    parents: np.ndarray = field(init=False, repr=False, compare=False)
    hops: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        v = len(self.joint_names)
        if not 0 <= self.centre < v:
            raise ValueError(f"layout {self.name}: centre {self.centre} outside 0..{v - 1}")
        parents = np.full(v, -1, dtype=np.int64)
        for child, parent in self.edges:
            for j in (child, parent):
                if not 0 <= j < v:
                    raise ValueError(f"layout {self.name}: edge joint {j} outside 0..{v - 1}")
            if parents[child] != -1:
                raise ValueError(f"layout {self.name}: joint {child} has two parents")
            parents[child] = parent
        orphans = [j for j in range(v) if parents[j] == -1 and j != self.centre]
        if orphans or parents[self.centre] != -1:
            raise ValueError(f"layout {self.name}: not a tree rooted at {self.centre} (orphans {orphans})")
        parents[self.centre] = self.centre
        hops = _hop_distance(v, self.edges, self.centre)
        if (hops < 0).any():
            raise ValueError(f"layout {self.name}: joints {np.flatnonzero(hops < 0).tolist()} unreachable")
        parents.setflags(write=False)
        hops.setflags(write=False)
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "hops", hops)

    @property
    def num_joints(self) -> int:
        """Number of joints ``V``."""
        return len(self.joint_names)

    def adjacency(self) -> np.ndarray:
        """Symmetric 0/1 adjacency ``(V, V)`` without self loops."""
        a = np.zeros((self.num_joints, self.num_joints), dtype=np.float32)
        for child, parent in self.edges:
            a[child, parent] = a[parent, child] = 1.0
        return a

    def partitions(self) -> np.ndarray:
        """The ST-GCN spatial partitions ``(3, V, V)`` float32, see the module docstring."""
        v = self.num_joints
        a = self.adjacency()
        scale = 1.0 / (1.0 + a.sum(axis=0))  # 1 / d(w), per receiving joint w (column)
        farther = self.hops[:, None] > self.hops[None, :]
        parts = np.zeros((NUM_PARTITIONS, v, v), dtype=np.float32)
        parts[0] = np.diag(scale)
        parts[1] = a * farther * scale[None, :]
        parts[2] = a * (~farther) * scale[None, :]
        return parts

    def bone_matrix(self) -> np.ndarray:
        """``B`` ``(V, V)`` with ``bone = X @ B``: each joint minus its parent (centre: 0)."""
        v = self.num_joints
        b = np.eye(v, dtype=np.float32)
        for child, parent in self.edges:
            b[parent, child] -= 1.0
        b[self.centre, self.centre] = 0.0
        return b


def _hop_distance(v: int, edges: tuple[tuple[int, int], ...], centre: int) -> np.ndarray:
    neighbours: list[list[int]] = [[] for _ in range(v)]
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    hops = np.full(v, -1, dtype=np.int64)
    hops[centre] = 0
    queue = deque([centre])
    while queue:
        j = queue.popleft()
        for n in neighbours[j]:
            if hops[n] < 0:
                hops[n] = hops[j] + 1
                queue.append(n)
    return hops


def _from_one_based(pairs: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((a - 1, b - 1) for a, b in pairs)


NTU25 = SkeletonLayout(
    name="ntu25",
    joint_names=(
        "spine_base", "spine_mid", "neck", "head",
        "shoulder_left", "elbow_left", "wrist_left", "hand_left",
        "shoulder_right", "elbow_right", "wrist_right", "hand_right",
        "hip_left", "knee_left", "ankle_left", "foot_left",
        "hip_right", "knee_right", "ankle_right", "foot_right",
        "spine_shoulder", "handtip_left", "thumb_left", "handtip_right", "thumb_right",
    ),
    edges=_from_one_based([
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21),
        (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1),
        (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
    ]),
    centre=21 - 1,
)
"""NTU RGB+D (Kinect v2), 25 joints, CTR-GCN's edge list; centre: spine shoulder (21)."""

UCLA20 = SkeletonLayout(
    name="ucla20",
    joint_names=(
        "hip_center", "spine", "shoulder_center", "head",
        "shoulder_left", "elbow_left", "wrist_left", "hand_left",
        "shoulder_right", "elbow_right", "wrist_right", "hand_right",
        "hip_left", "knee_left", "ankle_left", "foot_left",
        "hip_right", "knee_right", "ankle_right", "foot_right",
    ),
    edges=_from_one_based([
        (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17),
        (19, 18), (20, 19),
    ]),
    centre=3 - 1,
)
"""NW-UCLA (Kinect v1), 20 joints; centre: shoulder centre (3), the root of the edge tree."""

KINETICS18 = SkeletonLayout(
    name="kinetics18",
    joint_names=(
        "nose", "neck", "shoulder_right", "elbow_right", "wrist_right",
        "shoulder_left", "elbow_left", "wrist_left", "hip_right", "knee_right",
        "ankle_right", "hip_left", "knee_left", "ankle_left", "eye_right", "eye_left",
        "ear_right", "ear_left",
    ),
    edges=(
        (4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5),
        (8, 2), (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14),
    ),
    centre=1,
    native_coords=2,
)
"""Kinetics (OpenPose COCO-18, alias ``openpose18``), 18 joints, 0-based edges; centre: neck (1)."""

COCO17 = SkeletonLayout(
    name="coco17",
    joint_names=(
        "nose", "eye_left", "eye_right", "ear_left", "ear_right",
        "shoulder_left", "shoulder_right", "elbow_left", "elbow_right", "wrist_left", "wrist_right",
        "hip_left", "hip_right", "knee_left", "knee_right", "ankle_left", "ankle_right",
    ),
    edges=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8),
        (8, 6), (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2),
    ),
    centre=0,
    native_coords=2,
)
"""COCO keypoints (the order of COCO, mmpose and pyskl's 2-D pickles), 17 joints, 0-based.

Edges and centre are pyskl's ``Graph(layout='coco')`` (``pyskl/utils/graph.py``: its
``inward`` list, ``center = 0``): the tree is rooted at the nose (0), COCO having no neck or
pelvis joint; each hip hangs from its shoulder.
"""

BODY25 = SkeletonLayout(
    name="body25",
    joint_names=(
        "nose", "neck", "shoulder_right", "elbow_right", "wrist_right",
        "shoulder_left", "elbow_left", "wrist_left", "mid_hip", "hip_right", "knee_right",
        "ankle_right", "hip_left", "knee_left", "ankle_left", "eye_right", "eye_left",
        "ear_right", "ear_left", "big_toe_left", "small_toe_left", "heel_left",
        "big_toe_right", "small_toe_right", "heel_right",
    ),
    edges=(
        (8, 1), (2, 1), (5, 1), (3, 2), (4, 3), (6, 5), (7, 6), (9, 8), (10, 9), (11, 10),
        (12, 8), (13, 12), (14, 13), (0, 1), (15, 0), (17, 15), (16, 0), (18, 16),
        (19, 14), (20, 19), (21, 14), (22, 11), (23, 22), (24, 11),
    ),
    centre=1,
    native_coords=2,
)
"""OpenPose BODY_25, 25 joints, 0-based; centre: neck (1), as for OpenPose-18.

The edges are OpenPose's 24 rendered limb pairs of BODY_25 (its part-affinity pairs less the
two ear-shoulder ones, which would close cycles), each as ``(child, parent)`` towards the neck.
"""

LAYOUTS: dict[str, SkeletonLayout] = {lay.name: lay for lay in (NTU25, UCLA20, KINETICS18, COCO17, BODY25)}
"""The built-in layouts by name."""

LAYOUT_ALIASES: dict[str, str] = {"openpose18": "kinetics18"}
"""Other names of built-in layouts: alias to name."""


def get_layout(name: str) -> SkeletonLayout:
    """Return a built-in layout by name or alias; ``ValueError`` naming the choices otherwise."""
    try:
        return LAYOUTS[LAYOUT_ALIASES.get(name, name)]
    except KeyError:
        choices = sorted([*LAYOUTS, *LAYOUT_ALIASES])
        raise ValueError(f"unknown skeleton layout {name!r}; choose from {choices}") from None


def layout_for_joints(num_joints: int, coords: int | None = None) -> SkeletonLayout:
    """The built-in layout with ``num_joints`` joints.

    Where several layouts have that many joints (25: ``ntu25`` and ``body25``), 3-D data
    (``coords=3``) keep the layouts whose source records 3 coordinates (25: Kinect's
    ``ntu25``, as 3-D readers always had it); 2-D keypoints may come from any layout (NTU
    has 2-D joints too), so a choice still open is a ``ValueError`` naming the layouts: an
    ambiguous joint count is never resolved silently.
    """
    found = [lay for lay in LAYOUTS.values() if lay.num_joints == num_joints]
    if len(found) > 1 and coords == 3:
        found = [lay for lay in found if lay.native_coords == 3] or found
    if len(found) == 1:
        return found[0]
    if found:
        names = sorted(lay.name for lay in found)
        raise ValueError(f"{num_joints} joints fit the layouts {names}; name the layout")
    counts = ", ".join(str(c) for c in sorted({lay.num_joints for lay in LAYOUTS.values()}, reverse=True))
    raise ValueError(f"no built-in skeleton layout has {num_joints} joints ({counts} do)")
