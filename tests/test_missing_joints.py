"""Missing joints (undetected by a pose estimator): never centred, no fake bones or motion.

Data without missing joints must give exactly the arrays of the plain formulas (the ones
mksgn used before masking existed), written out again here.
"""

from __future__ import annotations

import numpy as np
import pytest

from mksgn.data.data_report import format_summary, summarise
from mksgn.data.dataset import DatasetSplits, SkeletonDataset
from mksgn.data.pipeline import SkeletonInputs
from mksgn.data.skeletons import NTU25
from mksgn.data.synth import generate
from mksgn.data.transforms import (
    MODALITIES, centre, missing_joints, modalities, motion, resample, resample_masked,
)

# --------------------------------------------------------------------------- the plain formulas


def plain_centre(data: np.ndarray, lengths: np.ndarray, centre_joint: int) -> np.ndarray:
    origin = data[:, :, 0, centre_joint, 0]
    present = np.abs(data).max(axis=(1, 3), keepdims=True) > 0
    valid = np.arange(data.shape[2])[None, :] < lengths[:, None]
    mask = present & valid[:, None, :, None, None]
    return np.where(mask, data - origin[:, :, None, None, None], 0.0).astype(np.float32)


def plain_modalities(x: np.ndarray) -> dict[str, np.ndarray]:
    bones = np.moveaxis(np.moveaxis(x, 3, -1) @ NTU25.bone_matrix(), -1, 3).astype(np.float32)

    def diff(a: np.ndarray) -> np.ndarray:
        out = np.zeros_like(a)
        out[:, :, :-1] = np.diff(a, axis=2)
        return out

    return {"joint": x, "bone": bones, "joint_motion": diff(x), "bone_motion": diff(bones)}


@pytest.fixture(scope="module")
def builtin_small() -> DatasetSplits:
    return generate(samples=60, seed=5, frames=20, difficulty=0.8)


def test_complete_data_is_bit_identical_to_the_plain_formulas(builtin_small):
    ds = builtin_small.train
    assert not missing_joints(ds.data, ds.lengths).any()
    expected_centred = plain_centre(ds.data, ds.lengths, NTU25.centre)
    np.testing.assert_array_equal(centre(ds.data, ds.lengths, NTU25), expected_centred)
    inputs = SkeletonInputs(ds, 16, MODALITIES, p_interval=(0.5, 1.0))
    assert inputs.missing is None
    np.testing.assert_array_equal(inputs.data, expected_centred)
    index = np.arange(len(ds))
    for rng_seed in (None, 7):
        rng = None if rng_seed is None else np.random.default_rng(rng_seed)
        x, _ = inputs.batch(index, rng)
        crop = None if rng_seed is None else (0.5, 1.0)
        rng2 = None if rng_seed is None else np.random.default_rng(rng_seed)
        resampled = resample(expected_centred, ds.lengths, 16, p_interval=crop, rng=rng2)
        plain = plain_modalities(resampled)
        for k, name in enumerate(MODALITIES):
            np.testing.assert_array_equal(x[:, k].numpy(), plain[name])
        # the masked functions themselves, with an all-False mask, give the same arrays
        rng3 = None if rng_seed is None else np.random.default_rng(rng_seed)
        none_missing = np.zeros(ds.data.shape[:1] + ds.data.shape[2:], bool)
        masked, gone = resample_masked(expected_centred, none_missing, ds.lengths, 16, p_interval=crop, rng=rng3)
        assert not gone.any()
        np.testing.assert_array_equal(masked, resampled)
        mods = modalities(masked, NTU25, missing=gone[:, None])
        for name in MODALITIES:
            np.testing.assert_array_equal(mods[name], plain[name])


def two_person_sample() -> tuple[np.ndarray, np.ndarray]:
    """One sample ``(1, 3, 8, 25, 2)`` far from the origin, 6 valid frames, with missing joints."""
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(1, 3, 8, 25, 2)) * 0.1 + 5.0).astype(np.float32)
    lengths = np.array([6])
    data[:, :, 6:] = 0.0
    data[0, :, 2:4, 7, 0] = 0.0  # hand_left of person 0 undetected in frames 2, 3
    data[0, :, 0, NTU25.centre, 0] = 0.0  # the centre joint undetected in frame 0
    data[0, :, 5, 15, 1] = 0.0  # foot_left of person 1 undetected in the last valid frame
    return data, lengths


def test_missing_joints_mask():
    data, lengths = two_person_sample()
    gone = missing_joints(data, lengths)
    assert gone.shape == (1, 8, 25, 2)
    assert sorted(map(tuple, np.argwhere(gone[0]))) == [(0, NTU25.centre, 0), (2, 7, 0), (3, 7, 0), (5, 15, 1)]
    # a confidence of 0 marks a joint missing too
    conf = np.ones((1, 8, 25, 2), np.float32)
    conf[0, 1, 3, 1] = 0.0
    assert missing_joints(data, lengths, conf)[0, 1, 3, 1]
    assert missing_joints(data, lengths, conf).sum() == gone.sum() + 1


def test_centre_leaves_missing_joints_at_zero_and_uses_the_first_present_centre():
    data, lengths = two_person_sample()
    out = centre(data, lengths, NTU25)
    gone = missing_joints(data, lengths)
    assert np.all(out.transpose(0, 2, 3, 4, 1)[gone] == 0)
    # frame 0 has no centre joint: frame 1's is the origin
    origin = data[0, :, 1, NTU25.centre, 0]
    np.testing.assert_array_equal(out[0, :, 1, NTU25.centre, 0], np.zeros(3, np.float32))
    keep = ~gone[0, :6]
    np.testing.assert_allclose(out[0, :, :6][:, keep], (data[0, :, :6] - origin[:, None, None, None])[:, keep], atol=1e-6)
    assert np.all(out[0, :, 6:] == 0)


def test_centre_without_any_present_centre_joint_uses_the_mean_of_the_first_frame():
    data, lengths = two_person_sample()
    data[0, :, :, NTU25.centre, 0] = 0.0
    out = centre(data, lengths, NTU25)
    others = np.arange(25) != NTU25.centre
    mean = data[0, :, 0, others, 0].mean(axis=0)
    np.testing.assert_allclose(out[0, :, 0, others, 0].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[0, :, 2, 0, 0], data[0, :, 2, 0, 0] - mean, atol=1e-5)


def test_no_fake_bones_or_motion_from_missing_joints():
    data, lengths = two_person_sample()
    ds = SkeletonDataset(data=data, labels=np.array([0]), lengths=lengths, class_names=["a"],
                         sample_ids=["s"], layout="ntu25")
    inputs = SkeletonInputs(ds, 6, MODALITIES)  # 6 frames over 6 valid frames: no interpolation
    x = inputs.batch(np.array([0]))[0].numpy()[0]  # (Mod, C, F, V, M)
    mods = dict(zip(MODALITIES, x))
    # every value is a local offset (|x| < 2); a missing joint shifted or differenced would be ~5
    for name, arr in mods.items():
        assert np.abs(arr).max() < 2.0, name
    hand, wrist = 7, 6
    child = int(np.flatnonzero(NTU25.parents == hand)[0])  # the thumb (its parent is the hand)
    assert np.all(mods["joint"][:, 2:4, hand, 0] == 0)
    assert np.all(mods["bone"][:, 2:4, hand, 0] == 0)  # hand - wrist
    assert np.all(mods["bone"][:, 2:4, child, 0] == 0)  # thumb - hand
    assert np.all(mods["bone"][:, 2:4, wrist, 0] != 0)  # wrist - elbow is real
    # motion into and out of the missing frames is 0, the rest is real
    assert np.all(mods["joint_motion"][:, 1:4, hand, 0] == 0)
    assert np.all(mods["joint_motion"][:, 0, hand, 0] != 0) and np.all(mods["joint_motion"][:, 4, hand, 0] != 0)
    assert np.all(mods["bone_motion"][:, 1:4, child, 0] == 0)
    np.testing.assert_allclose(mods["joint_motion"][:, 4, hand, 0], mods["joint"][:, 5, hand, 0] - mods["joint"][:, 4, hand, 0])
    assert np.all(mods["joint_motion"][:, 4, 15, 1] == 0)  # into the missing foot of person 1
    # the centre joint missing in frame 0: its bones and motion out of frame 0 are 0
    assert np.all(mods["joint_motion"][:, 0, NTU25.centre, 0] == 0)
    children = [c for c, p in NTU25.edges if p == NTU25.centre]
    assert np.all(mods["bone"][:, 0, children, 0] == 0)


def test_resampling_carries_the_mask():
    data = np.ones((1, 3, 5, 25, 1), np.float32)
    gone = np.zeros((1, 5, 25, 1), bool)
    data[0, :, 2, 4] = 0.0
    gone[0, 2, 4] = True
    out, out_gone = resample_masked(data, gone, np.array([5]), 9)  # output frames at 0, .5, 1, ..., 4
    assert np.flatnonzero(out_gone[0, :, 4, 0]).tolist() == [3, 4, 5]  # 1.5, 2, 2.5 touch frame 2
    assert np.all(out[0, :, [3, 4, 5], 4] == 0)
    assert np.all(out[0, :, [0, 1, 2, 6, 7, 8], 4] == 1)
    assert out_gone.sum() == 3


def test_motion_mask_on_other_axes():
    x = np.arange(12, dtype=np.float32).reshape(1, 12)
    gone = np.zeros((1, 12), bool)
    gone[0, 5] = True
    m = motion(x, frame_axis=1, missing=gone)
    assert m[0, 4] == 0 and m[0, 5] == 0 and m[0, 3] == 1 and m[0, 6] == 1 and m[0, 11] == 0


def test_inspect_counts_missing_joints(builtin_small):
    train, test = builtin_small.train, builtin_small.test
    data = train.data.copy()
    data[0, :, 0, 7, 0] = 0.0
    data[0, :, 1, 8, 0] = 0.0
    data[3, :, 2, 9, 0] = 0.0
    holes = SkeletonDataset(data=data, labels=train.labels, lengths=train.lengths, class_names=train.class_names,
                            sample_ids=train.sample_ids, layout=train.layout)
    summary = summarise(DatasetSplits(holes, test), "<test>")
    gone = summary["splits"]["train"]["missing_joints"]
    person_frames = sum(int((np.abs(data[i, :, :k]).max(axis=(0, 2)) > 0).sum()) for i, k in enumerate(train.lengths))
    assert gone["joint_frames"] == 3 and gone["samples"] == 2
    assert gone["joint_frames_fraction"] == pytest.approx(3 / (person_frames * 25))
    assert gone["samples_fraction"] == pytest.approx(2 / len(train))
    assert summary["splits"]["test"]["missing_joints"]["joint_frames"] == 0
    text = format_summary(summary)
    assert "missing joints: 3 joint-frames" in text and "in 2 samples" in text
