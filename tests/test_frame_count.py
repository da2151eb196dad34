"""A mismatch between the data's frame count and the model's is stated, never silent."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mksgn.data.dataset import SkeletonDataset
from mksgn.data.pipeline import FrameCountWarning, frame_mismatch, warn_frame_mismatch


def _clips(lengths: list[int], frames: int = 40) -> SkeletonDataset:
    n = len(lengths)
    return SkeletonDataset(np.ones((n, 3, frames, 25, 2), np.float32), np.zeros(n, np.int64),
                           np.asarray(lengths, np.int64), ["a"], [str(i) for i in range(n)], "ntu25", "clips.npz")


def test_shorter_clips_are_said_to_be_interpolated():
    text = frame_mismatch(_clips([16, 16, 15]), 32)
    assert text.startswith("clips.npz: clips have 15-16 frames (median 16)") and "interpolated 2x" in text
    assert "--set data.frames=16" in text
    with pytest.warns(FrameCountWarning, match="interpolated"):
        warn_frame_mismatch(_clips([16] * 3), 32)


def test_longer_clips_are_resampled_down_silently():
    assert frame_mismatch(_clips([40, 33, 20]), 32) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_frame_mismatch(_clips([32, 32]), 32) is None
