"""Frame resampling, centring and modalities."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import random_dataset

from mksgn.data.skeletons import NTU25
from mksgn.data.transforms import MODALITIES, bone, centre, modalities, motion, resample


def test_uniform_resample_identity_when_lengths_match():
    ds = random_dataset(n=4, frames=12)
    full = np.full(4, 12)
    np.testing.assert_allclose(resample(ds.data, full, 12), ds.data, atol=1e-6)


def test_uniform_resample_linear_interpolation():
    # one coordinate ramps 0, 1, ..., L-1 over the valid frames: resampled it ramps evenly
    data = np.zeros((2, 3, 10, 25, 2), np.float32)
    lengths = np.array([5, 10])
    for i, k in enumerate(lengths):
        data[i, 0, :k, 0, 0] = np.arange(k)
    out = resample(data, lengths, 9)
    assert out.shape == (2, 3, 9, 25, 2)
    np.testing.assert_allclose(out[0, 0, :, 0, 0], np.linspace(0, 4, 9), atol=1e-6)
    np.testing.assert_allclose(out[1, 0, :, 0, 0], np.linspace(0, 9, 9), atol=1e-6)
    assert np.all(out[:, 1:] == 0)  # padding frames never leak in


def test_random_crop_stays_inside_the_valid_frames():
    data = np.zeros((50, 3, 20, 25, 2), np.float32)
    lengths = np.random.default_rng(0).integers(6, 21, size=50)
    for i, k in enumerate(lengths):
        data[i, 0, :k, 0, 0] = np.arange(1, k + 1)  # valid frames are 1..k, padding 0
    rng = np.random.default_rng(1)
    out = resample(data, lengths, 16, p_interval=(0.5, 1.0), rng=rng)
    ramp = out[:, 0, :, 0, 0]
    assert (ramp >= 1).all()
    assert (ramp <= lengths[:, None]).all()
    assert (np.diff(ramp, axis=1) >= -1e-6).all()  # still monotone: a contiguous crop
    span = ramp[:, -1] - ramp[:, 0] + 1
    assert (span >= np.minimum(4, lengths) - 1e-4).all()
    assert (span <= lengths + 1e-4).all()
    # deterministic for a seed, different across seeds
    again = resample(data, lengths, 16, p_interval=(0.5, 1.0), rng=np.random.default_rng(1))
    other = resample(data, lengths, 16, p_interval=(0.5, 1.0), rng=np.random.default_rng(2))
    np.testing.assert_array_equal(out, again)
    assert not np.array_equal(out, other)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"p_interval": (0.0, 1.0)}, "p_interval"), ({"p_interval": (0.5, 1.0)}, "random generator")],
)
def test_resample_bad_arguments(kwargs, match):
    ds = random_dataset(n=2, frames=8)
    with pytest.raises(ValueError, match=match):
        resample(ds.data, ds.lengths, 8, **kwargs)


def test_centre_on_first_frame_centre_joint():
    ds = random_dataset(n=4, frames=8)
    out = centre(ds.data, ds.lengths, NTU25)
    assert np.all(out[:, :, 0, NTU25.centre, 0] == 0)
    shift = ds.data[:, :, 0, NTU25.centre, 0]
    for i in range(4):
        k = ds.lengths[i]
        np.testing.assert_allclose(out[i, :, :k, :, 0], ds.data[i, :, :k, :, 0] - shift[i][:, None, None], atol=1e-6)
        assert np.all(out[i, :, k:] == 0)  # padding stays zero
    assert np.all(out[::2, ..., 1] == 0)  # absent persons stay zero


def test_modalities_are_the_documented_linear_maps():
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 25, 2)).astype(np.float32)
    mods = modalities(x, NTU25)
    assert list(mods) == list(MODALITIES)
    np.testing.assert_allclose(mods["bone"], x - x[:, :, :, NTU25.parents], atol=1e-6)
    expected_motion = np.concatenate([x[:, :, 1:] - x[:, :, :-1], np.zeros_like(x[:, :, :1])], axis=2)
    np.testing.assert_allclose(mods["joint_motion"], expected_motion, atol=1e-6)
    np.testing.assert_allclose(mods["bone_motion"], motion(bone(x, NTU25)), atol=1e-6)
    # other axis orders: (N, C, F, V)
    per_person = np.moveaxis(x, -1, 1).reshape(4, 3, 6, 25)
    b = bone(per_person, NTU25, joint_axis=-1)
    np.testing.assert_allclose(b, per_person - per_person[..., NTU25.parents], atol=1e-6)
    with pytest.raises(ValueError, match="unknown modalities"):
        modalities(x, NTU25, names=("depth",))
