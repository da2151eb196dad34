"""Skeleton layouts: the edge lists of mksgn-spec.md, parents, centres and partitions."""

from __future__ import annotations

import numpy as np
import pytest

from mksgn.data.skeletons import (
    BODY25, COCO17, KINETICS18, LAYOUTS, NTU25, UCLA20, SkeletonLayout, get_layout, layout_for_joints,
)

# Pinned from ../shared/reference/mksgn-spec.md (NTU and UCLA 1-based, Kinetics 0-based).
NTU_EDGES_1 = [
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
]
UCLA_EDGES_1 = [
    (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
    (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
]
# pyskl/utils/graph.py, Graph(layout='coco'): inward, center = 0
COCO_EDGES_0 = [
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8), (8, 6),
    (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2),
]
# OpenPose BODY_25 rendered pairs (1,8 1,2 1,5 2,3 3,4 5,6 6,7 8,9 9,10 10,11 8,12 12,13 13,14
# 1,0 0,15 15,17 0,16 16,18 14,19 19,20 14,21 11,22 22,23 11,24) as (child, parent)
BODY25_PAIRS = [
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12), (12, 13),
    (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (14, 19), (19, 20), (14, 21), (11, 22),
    (22, 23), (11, 24),
]
KINETICS_EDGES_0 = [
    (4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2),
    (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14),
]


@pytest.mark.parametrize(
    ("layout", "edges", "num_joints", "centre"),
    [
        (NTU25, [(a - 1, b - 1) for a, b in NTU_EDGES_1], 25, 20),
        (UCLA20, [(a - 1, b - 1) for a, b in UCLA_EDGES_1], 20, 2),
        (KINETICS18, KINETICS_EDGES_0, 18, 1),
        (COCO17, COCO_EDGES_0, 17, 0),
        (BODY25, [(b, a) for a, b in BODY25_PAIRS], 25, 1),
    ],
)
def test_edges_centre_and_parents_are_pinned(layout, edges, num_joints, centre):
    assert list(layout.edges) == edges
    assert layout.num_joints == num_joints == len(layout.joint_names)
    assert layout.centre == centre
    expected_parents = np.arange(num_joints)
    for child, parent in edges:
        expected_parents[child] = parent
    np.testing.assert_array_equal(layout.parents, expected_parents)
    # the parent is always one hop nearer the centre
    others = np.arange(num_joints) != centre
    np.testing.assert_array_equal(layout.hops[others], layout.hops[layout.parents[others]] + 1)


def test_ntu_named_joints():
    assert NTU25.joint_names[NTU25.centre] == "spine_shoulder"
    assert NTU25.joint_names[NTU25.parents[NTU25.joint_names.index("elbow_right")]] == "shoulder_right"
    assert KINETICS18.joint_names[KINETICS18.centre] == "neck"
    assert COCO17.joint_names[COCO17.centre] == "nose" and BODY25.joint_names[BODY25.centre] == "neck"
    assert COCO17.joint_names[COCO17.parents[COCO17.joint_names.index("ankle_right")]] == "knee_right"
    assert BODY25.joint_names[BODY25.parents[BODY25.joint_names.index("heel_left")]] == "ankle_left"
    # the joints OpenPose-18 and BODY_25 share carry the same names at the same indices
    assert BODY25.joint_names[:8] == KINETICS18.joint_names[:8]


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_partitions(layout: SkeletonLayout):
    parts = layout.partitions()
    v = layout.num_joints
    assert parts.shape == (3, v, v) and parts.dtype == np.float32
    degree = 1 + layout.adjacency().sum(axis=0)
    # root: the joint itself, weighted 1 / neighbourhood size
    np.testing.assert_allclose(parts[0], np.diag(1 / degree), rtol=1e-6)
    # centripetal: child -> parent only; centrifugal: parent -> child only
    centripetal = np.zeros((v, v), bool)
    centrifugal = np.zeros((v, v), bool)
    for child, parent in layout.edges:
        centripetal[child, parent] = True
        centrifugal[parent, child] = True
    np.testing.assert_array_equal(parts[1] > 0, centripetal)
    np.testing.assert_array_equal(parts[2] > 0, centrifugal)
    # every joint averages its neighbourhood: columns of the sum are stochastic
    np.testing.assert_allclose(parts.sum(axis=0).sum(axis=0), np.ones(v), rtol=1e-6)


def test_partition_values_for_one_joint():
    # NTU right elbow (10, 1-based): neighbours shoulder (9) and wrist (11): d = 3
    e, s, w = 9, 8, 10
    parts = NTU25.partitions()
    assert parts[0, e, e] == pytest.approx(1 / 3)
    assert parts[1, w, e] == pytest.approx(1 / 3)  # from the wrist, farther from the centre
    assert parts[2, s, e] == pytest.approx(1 / 3)  # from the shoulder, nearer the centre


def test_bone_matrix():
    x = np.random.default_rng(0).normal(size=(4, 25)).astype(np.float32)
    bones = x @ NTU25.bone_matrix()
    expected = x - x[:, NTU25.parents]
    np.testing.assert_allclose(bones, expected, atol=1e-6)
    assert np.all(bones[:, NTU25.centre] == 0)


def test_lookup():
    assert get_layout("ntu25") is NTU25
    assert layout_for_joints(20) is UCLA20
    with pytest.raises(ValueError, match="unknown skeleton layout 'coco'"):
        get_layout("coco")
    assert layout_for_joints(17) is COCO17 and layout_for_joints(18) is KINETICS18
    assert get_layout("openpose18") is KINETICS18
    with pytest.raises(ValueError, match="19 joints"):
        layout_for_joints(19)
    # 25 joints: NTU (Kinect) or OpenPose BODY_25; 3-D data are NTU's as they always were
    assert layout_for_joints(25, coords=3) is NTU25
    assert layout_for_joints(18, coords=3) is KINETICS18  # older x, y, score files
    for coords in (None, 2):
        with pytest.raises(ValueError, match=r"25 joints fit the layouts \['body25', 'ntu25'\]; name the layout"):
            layout_for_joints(25, coords)


def test_invalid_layouts_are_refused():
    with pytest.raises(ValueError, match="two parents"):
        SkeletonLayout("bad", ("a", "b", "c"), ((1, 0), (1, 2)), centre=0)
    with pytest.raises(ValueError, match="not a tree"):
        SkeletonLayout("bad", ("a", "b", "c"), ((1, 0),), centre=0)
    with pytest.raises(ValueError, match="outside"):
        SkeletonLayout("bad", ("a", "b"), ((1, 5),), centre=0)
