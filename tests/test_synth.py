"""The built-in procedural dataset: layout, padding, splits, determinism, kinematics, learnability."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from mksgn.data.dataset import DatasetSplits, SkeletonDataset
from mksgn.data.skeletons import NTU25
from mksgn.data.synth import CLASS_NAMES, CONFUSABLE_PAIRS, INTERACTION_CLASSES, generate

ID_PATTERN = re.compile(r"^synth-s(\d{6})-P(\d{3})-A(\d{3})$")
CENTRE = NTU25.centre  # spine shoulder (NTU joint 21)
FRAMES = 32


@pytest.fixture(scope="module")
def splits() -> DatasetSplits:
    return generate(samples=280, seed=3, frames=FRAMES)


@pytest.fixture(scope="module")
def clean() -> DatasetSplits:
    """No noise, no dropped joints."""
    return generate(samples=112, seed=5, frames=FRAMES, difficulty=0.0)


def both(s: DatasetSplits) -> list[SkeletonDataset]:
    return [s.train, s.test]


def parse_ids(ds: SkeletonDataset) -> np.ndarray:
    """``(N, 3)``: sample index, performer, label from the sample ids."""
    rows = []
    for sid in ds.sample_ids:
        m = ID_PATTERN.match(sid)
        assert m, sid
        rows.append([int(g) for g in m.groups()])
    return np.array(rows)


def valid(ds: SkeletonDataset) -> np.ndarray:
    """``(N, F)`` True on the valid frames."""
    return np.arange(ds.data.shape[2])[None, :] < ds.lengths[:, None]


def present(ds: SkeletonDataset) -> np.ndarray:
    """``(N, M)`` True where the person has any non-zero coordinate."""
    return np.abs(ds.data).sum(axis=(1, 2, 3)) > 0


def bone_lengths(ds: SkeletonDataset) -> np.ndarray:
    """``(N, F, E, M)`` length of every edge."""
    child = np.array([c for c, _ in NTU25.edges])
    parent = np.array([p for _, p in NTU25.edges])
    x = ds.data.astype(np.float64)
    return np.linalg.norm(x[:, :, :, child] - x[:, :, :, parent], axis=1)


# --- classes, shapes, padding ---------------------------------------------------------------
def test_class_names():
    assert len(CLASS_NAMES) >= 12 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert INTERACTION_CLASSES <= set(CLASS_NAMES) and {"handshake", "push"} <= INTERACTION_CLASSES
    assert all(a in CLASS_NAMES and b in CLASS_NAMES for a, b in CONFUSABLE_PAIRS)


def test_shapes_dtypes_and_metadata(splits):
    assert splits.benchmark == "xsub"
    for ds in both(splits):
        n = len(ds)
        assert ds.data.shape == (n, 3, FRAMES, 25, 2) and ds.data.dtype == np.float32
        assert ds.labels.dtype == np.int64 and ds.lengths.dtype == np.int64
        assert ds.layout == "ntu25" and ds.class_names == list(CLASS_NAMES)
        assert ds.source == "builtin:synth(seed=3)"
        assert np.isfinite(ds.data).all()
    assert len(splits.train) + len(splits.test) == 280


def test_lengths_and_padding_are_zero(splits):
    lo = math.ceil(0.7 * FRAMES)
    lengths = np.concatenate([splits.train.lengths, splits.test.lengths])
    assert lengths.min() >= lo and lengths.max() <= FRAMES and len(np.unique(lengths)) > 3
    for ds in both(splits):
        pad = ~valid(ds)
        assert (ds.data.transpose(0, 2, 1, 3, 4)[pad] == 0).all()
        # person 0 is there on every valid frame, every joint
        joint_zero = (ds.data[..., 0] == 0).all(axis=1)  # (N, F, V)
        assert not joint_zero[valid(ds)].any()


def test_second_person(splits):
    interaction = [CLASS_NAMES.index(c) for c in INTERACTION_CLASSES]
    seen_absent = seen_bystander = 0
    for ds in both(splits):
        has = present(ds)
        assert has[:, 0].all()
        inter = np.isin(ds.labels, interaction)
        assert has[inter, 1].all()
        absent = ~has[:, 1]
        assert (ds.data[absent, ..., 1] == 0).all()
        seen_absent += int(absent.sum())
        seen_bystander += int((has[:, 1] & ~inter).sum())
        # a present second person is there on all valid frames
        two = has[:, 1]
        joint_zero = (ds.data[two, ..., 1] == 0).all(axis=1)
        assert not joint_zero[valid(ds)[two]].any()
    assert seen_absent > 0 and seen_bystander > 0


def test_classes_balanced_in_total_and_present_in_both_splits(splits):
    counts = splits.train.class_counts() + splits.test.class_counts()
    assert counts.max() - counts.min() <= 1
    assert (splits.train.class_counts() > 0).all() and (splits.test.class_counts() > 0).all()


def test_sample_ids_unique_and_consistent(splits):
    ids = splits.train.sample_ids + splits.test.sample_ids
    assert len(set(ids)) == len(ids)
    for ds in both(splits):
        parsed = parse_ids(ds)
        assert (parsed[:, 2] == ds.labels).all()
    index = np.concatenate([parse_ids(ds)[:, 0] for ds in both(splits)])
    assert sorted(index.tolist()) == list(range(280))


# --- splits and determinism ------------------------------------------------------------------
def test_train_and_test_performers_are_disjoint(splits):
    train_p = set(parse_ids(splits.train)[:, 1].tolist())
    test_p = set(parse_ids(splits.test)[:, 1].tolist())
    assert not train_p & test_p
    assert train_p | test_p <= set(range(40))
    assert len(test_p) == 8 and len(train_p) == 32  # 20 % of 40 performers, each acting
    assert 0.15 < len(splits.test) / 280 < 0.25


def test_performer_count_and_fraction_are_parameters():
    s = generate(samples=140, seed=1, frames=16, test_fraction=0.5, performers=6)
    train_p = set(parse_ids(s.train)[:, 1].tolist())
    test_p = set(parse_ids(s.test)[:, 1].tolist())
    assert len(train_p) == len(test_p) == 3 and not train_p & test_p
    assert len(s.train) == len(s.test) == 70


def test_deterministic_per_seed():
    a = generate(samples=56, seed=11, frames=16)
    b = generate(samples=56, seed=11, frames=16)
    c = generate(samples=56, seed=12, frames=16)
    for x, y in ((a.train, b.train), (a.test, b.test)):
        np.testing.assert_array_equal(x.data, y.data)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_array_equal(x.lengths, y.lengths)
        assert x.sample_ids == y.sample_ids
    assert a.train.data.shape != c.train.data.shape or not np.array_equal(a.train.data, c.train.data)


# --- kinematics and plausibility -------------------------------------------------------------
def test_bone_lengths_constant_within_a_sample_without_noise(clean):
    for ds in both(clean):
        bones = bone_lengths(ds)  # (N, F, E, M)
        has = present(ds)
        for i in range(len(ds)):
            for m in np.flatnonzero(has[i]):
                b = bones[i, : ds.lengths[i], :, m]
                assert b.std(axis=0).max() < 1e-4, (i, m)
                assert b.min() > 0.01


def test_each_performer_keeps_one_body(clean):
    per_performer: dict[int, list[np.ndarray]] = {}
    for ds in both(clean):
        bones = bone_lengths(ds)[..., 0]  # person 0 is the performer named in the id
        for i, p in enumerate(parse_ids(ds)[:, 1]):
            per_performer.setdefault(int(p), []).append(bones[i, : ds.lengths[i]].mean(axis=0))
    spreads = [np.ptp(np.stack(v), axis=0).max() for v in per_performer.values() if len(v) > 1]
    assert spreads and max(spreads) < 1e-4
    bodies = np.stack([v[0] for v in per_performer.values()])
    assert np.ptp(bodies, axis=0).max() > 0.02  # performers differ


def test_noise_and_dropped_joints_grow_with_difficulty():
    spread = []
    for d in (0.0, 0.5, 1.0):
        ds = generate(samples=42, seed=2, frames=24, difficulty=d).train
        bones = bone_lengths(ds)[..., 0]
        spread.append(float(np.median([bones[i, : ds.lengths[i]].std(axis=0).mean() for i in range(len(ds))])))
        # inferred joints collapse near the parent but never to exact zeros
        joint_zero = (ds.data[..., 0] == 0).all(axis=1)
        assert not joint_zero[valid(ds)].any()
    assert spread[0] < 1e-5 < spread[1] < spread[2]


@pytest.mark.parametrize("difficulty", [0.0, 0.5, 1.0])
def test_values_are_plausible(difficulty):
    s = generate(samples=70, seed=4, frames=24, difficulty=difficulty)
    for ds in both(s):
        assert np.isfinite(ds.data).all()
        bones = bone_lengths(ds)[..., 0]
        med = np.stack([np.median(bones[i, : ds.lengths[i]], axis=0) for i in range(len(ds))])
        edge = {c: k for k, (c, _) in enumerate(NTU25.edges)}
        # head to ankle along the bones: about 0.92 of the body height
        chain = [3, 2, 1, 0, 16, 17, 18]  # head, neck, spine mid, spine base, hip R, knee R, ankle R
        stature = sum(med[:, edge[j]] for j in chain)
        assert ((stature > 1.2) & (stature < 2.1)).all(), stature
        v = valid(ds)
        x, y, z = (ds.data[:, k, :, :, 0][v] for k in range(3))  # (valid frames, joints)
        assert (z > 1.0).all() and (z < 6.0).all()
        assert (np.abs(x) < 3.0).all() and (np.abs(y) < 2.5).all()
        head, ankles = y[:, 3], np.maximum(y[:, 14], y[:, 18])
        assert np.median(head - ankles) > 1.0


# --- learnability ----------------------------------------------------------------------------
def _centred(ds: SkeletonDataset) -> np.ndarray:
    """Coordinates minus person 0's spine shoulder; absent persons stay zero."""
    x = ds.data - ds.data[:, :, :, CENTRE : CENTRE + 1, :1]
    return x * present(ds)[:, None, None, None, :]


def _time_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    w = mask[:, None, :, None, None].astype(np.float32)
    return (x * w).sum(axis=2) / w.sum(axis=2)


def weak_features(ds: SkeletonDataset) -> np.ndarray:
    """The time-averaged pose."""
    return _time_mean(_centred(ds), valid(ds)).reshape(len(ds), -1)


def strong_features(ds: SkeletonDataset) -> np.ndarray:
    """Per-joint mean and std of the centred positions and of the velocities."""
    x = _centred(ds)
    m = valid(ds)
    vel = np.diff(x, axis=2)
    mv = m[:, 1:]
    feats = []
    for arr, mask in ((x, m), (vel, mv)):
        mean = _time_mean(arr, mask)
        std = np.sqrt(np.maximum(_time_mean(arr**2, mask) - mean**2, 0.0))
        feats += [mean, std]
    return np.concatenate(feats, axis=1).reshape(len(ds), -1)


def test_learnable_with_a_margin_at_default_difficulty():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s = generate(samples=1200, seed=0)
    tr, te = s.train, s.test
    k = tr.num_classes
    f_tr, f_te = weak_features(tr), weak_features(te)
    centroids = np.stack([f_tr[tr.labels == c].mean(axis=0) for c in range(k)])
    pred = ((f_te[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(axis=1)
    weak = float((pred == te.labels).mean())

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(strong_features(tr), tr.labels)
    strong = float(model.score(strong_features(te), te.labels))
    print(f"synth learnability: weak {weak:.3f}, strong {strong:.3f}, chance {1 / k:.3f}")
    assert weak > 1.0 / k
    assert strong >= 0.6
    assert strong - weak >= 0.15


# --- bad parameters --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"difficulty": -0.1}, {"difficulty": 1.5}, {"difficulty": float("nan")},
        {"samples": len(CLASS_NAMES) - 1}, {"samples": 0}, {"frames": 7},
        {"test_fraction": 0.0}, {"test_fraction": 1.0}, {"test_fraction": -0.2},
        {"performers": 1},
    ],
)
def test_bad_parameters_raise_value_error(kwargs):
    args = {"samples": 28, "frames": 16} | kwargs
    with pytest.raises(ValueError):
        generate(**args)


def test_smallest_valid_call():
    s = generate(samples=len(CLASS_NAMES), frames=8, performers=2)
    assert len(s.train) + len(s.test) == len(CLASS_NAMES)
    assert s.train.data.shape[2] == 8
