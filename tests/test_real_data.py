"""The real-data split of the ablation (bench.real_data): clips within recording segments,
whole segments on one side, missing joints as the pose estimator wrote them."""

from __future__ import annotations

import json

import numpy as np

from bench.real_data import CLIP_FRAMES, SEGMENTS, TEST_SEGMENTS, pose_kit_splits
from mksgn.data.splits import sample_groups, validation_split


def _write(folder, label: str, frames: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 0.01, (frames, 2, 25)), axis=0) + rng.uniform(-0.5, 0.5, (1, 2, 25))
    data = []
    for t in range(frames):
        x, y = walk[t]
        a = rng.uniform(0.3, 1.0, 25)
        if t % 3 == 0:  # an undetected joint, as OpenPose writes it
            x[4], y[4], a[4] = 0.0, 0.0, 0.0
        data.append({"detection_accuracy": 20.0, "x": x.tolist(), "y": y.tolist(), "a": a.tolist()})
    (folder / f"{label}_body.json").write_text(json.dumps({"info": {"label": label, "focus": "body"}, "data": data}))


def test_clips_stay_within_segments_and_segments_on_one_side(tmp_path):
    for i, label in enumerate(("Squat", "Stand", "T")):
        _write(tmp_path, label, 400, i)
    splits = pose_kit_splits(tmp_path)
    train, test = splits.train, splits.test
    assert train.class_names == ["Squat", "Stand", "T"] and train.layout == "body25" and train.data.shape[1:] == (
        2, CLIP_FRAMES, 25, 2)
    segs = {side: {i.split("#")[0] for i in ds.sample_ids} for side, ds in (("train", train), ("test", test))}
    assert not segs["train"] & segs["test"]
    assert len(segs["test"]) == 3 * TEST_SEGMENTS and len(segs["train"]) == 3 * (SEGMENTS - TEST_SEGMENTS)
    assert (train.data[..., 1] == 0).all() and (train.confidence[..., 1] == 0).all()  # one person
    lost = (train.data[:, :, :, 4, 0] == 0).all(axis=1)
    assert lost.any() and np.array_equal(lost, train.confidence[:, :, 4, 0] == 0)
    assert sample_groups(train.sample_ids)[0] == "recording"
    held = validation_split(train, 0.1)
    assert held.by == "recording"
    val_segs = {train.sample_ids[i].split("#")[0] for i in held.val}
    assert not val_segs & {train.sample_ids[i].split("#")[0] for i in held.train}


def test_clips_of_neighbouring_segments_are_apart(tmp_path):
    from bench.real_data import GAP

    _write(tmp_path, "Squat", 480, 0)
    splits = pose_kit_splits(tmp_path)
    starts = {}
    for ds in (splits.train, splits.test):
        for sid in ds.sample_ids:
            seg, offset = sid.split("#")
            starts.setdefault(int(seg.split("seg")[1]), []).append(int(offset))
    assert min(min(v) for v in starts.values()) >= GAP  # offsets count from the segment's first frame
