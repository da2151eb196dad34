"""2-D keypoints: coordinates (C = 2) and the pose estimator's confidence kept apart."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from mksgn.data.dataset import COORD_COUNTS, NUM_COORDS, DatasetSplits, SkeletonDataset
from mksgn.data.pipeline import SkeletonInputs
from mksgn.data.readers.ctrgcn_npz import read_ctrgcn_npz, write_ctrgcn_npz
from mksgn.data.transforms import MODALITIES
from mksgn.errors import DatasetError


def dataset_2d(n: int = 4, frames: int = 8, seed: int = 0, joints: int = 18, layout: str = "kinetics18",
               score_zero: float = 0.2) -> SkeletonDataset:
    """Pixel-like 2-D keypoints with a confidence; some joints undetected (0, 0) with score 0."""
    rng = np.random.default_rng(seed)
    data = (rng.uniform(100, 400, size=(n, 2, frames, joints, 2))).astype(np.float32)
    conf = rng.uniform(0.1, 1.0, size=(n, frames, joints, 2)).astype(np.float32)
    lost = rng.random((n, frames, joints, 2)) < score_zero
    data[:, :, :, :, :][np.broadcast_to(lost[:, None], data.shape)] = 0.0
    conf[lost] = 0.0
    lengths = rng.integers(frames // 2, frames + 1, size=n)
    for i, k in enumerate(lengths):
        data[i, :, k:] = 0.0
        conf[i, k:] = 0.0
    data[::2, ..., 1] = 0.0
    conf[::2, ..., 1] = 0.0
    return SkeletonDataset(
        data=data, labels=np.arange(n) % 2, lengths=lengths.astype(np.int64), class_names=["a", "b"],
        sample_ids=[f"c{seed}-{i}" for i in range(n)], layout=layout, source="<2d>", confidence=conf,
    )


def test_coordinate_counts():
    assert COORD_COUNTS == (2, 3) and NUM_COORDS == 3
    ds = dataset_2d()
    assert ds.data.shape[1] == 2 and ds.confidence.shape == (4, 8, 18, 2)
    sub = ds.subset([3, 1])
    np.testing.assert_array_equal(sub.confidence, ds.confidence[[3, 1]])
    assert ds.subset(np.array([True, False, False, True])).confidence.shape[0] == 2
    with pytest.raises(DatasetError, match="expected 2 or 3 coordinates per joint, got 4"):
        SkeletonDataset(np.zeros((1, 4, 2, 18, 2), np.float32), np.zeros(1, np.int64), np.ones(1, np.int64),
                        ["a"], ["s"], "kinetics18")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda c: c[:, :-1], "confidence must be float32 of shape"),
        (lambda c: c.astype(np.float64), "confidence must be float32 of shape"),
        (lambda c: np.where(np.arange(c.size).reshape(c.shape) == 40, np.nan, c).astype(np.float32), "NaN"),
        (lambda c: c + 1.5, "outside \\[0, 1\\]"),
        (lambda c: c - 2.0, "outside \\[0, 1\\]"),
    ],
    ids=["shape", "dtype", "nan", "above", "below"],
)
def test_confidence_is_validated(mutate, match):
    ds = dataset_2d()
    with pytest.raises(DatasetError, match=match) as err:
        SkeletonDataset(ds.data, ds.labels, ds.lengths, ds.class_names, ds.sample_ids, ds.layout,
                        source="conf.npz", confidence=mutate(ds.confidence))
    assert err.value.path == "conf.npz"


def test_confidence_is_no_input_channel_and_zero_marks_missing():
    ds = dataset_2d(score_zero=0.0)
    # a joint the estimator placed at a real position but with confidence 0: missing, never centred
    ds.confidence[1, 2, 5, 0] = 0.0
    inputs = SkeletonInputs(ds, 8, MODALITIES)
    assert inputs.missing is not None and inputs.missing[1, 2, 5, 0]
    assert inputs.data.shape == ds.data.shape  # C = 2: x, y only
    assert np.all(inputs.data[1, :, 2, 5, 0] == 0)
    x, _ = inputs.batch(np.arange(len(ds)))
    assert x.shape[2] == 2
    # far from the pixel origin: any un-masked missing joint would give values of hundreds
    assert np.abs(x.numpy()).max() < 400


def test_ctrgcn_round_trip_2d_with_confidence(tmp_path):
    splits = DatasetSplits(dataset_2d(seed=0), dataset_2d(n=3, frames=6, seed=1), "k2d")
    path = tmp_path / "k.npz"
    write_ctrgcn_npz(path, splits)
    with np.load(path) as npz:
        assert int(npz["coords"]) == 2
        assert npz["x_train"].shape == (4, 8, 2 * 18 * 2) and npz["x_train_score"].shape == (4, 8, 2 * 18)
        assert npz["x_test_score"].shape == (3, 8, 2 * 18)  # padded to the longer split
    back = read_ctrgcn_npz(path)
    for got, want in ((back.train, splits.train), (back.test, splits.test)):
        f = want.data.shape[2]
        np.testing.assert_array_equal(got.data[:, :, :f], want.data)
        np.testing.assert_array_equal(got.confidence[:, :f], want.confidence)
        assert not got.confidence[:, f:].any()
        assert got.layout == "kinetics18" and got.sample_ids == want.sample_ids


def test_3d_files_keep_their_keys(tmp_path):
    from helpers import random_splits

    path = tmp_path / "d.npz"
    write_ctrgcn_npz(path, random_splits())
    with zipfile.ZipFile(path) as archive:
        names = sorted(n[:-4] for n in archive.namelist())
    assert names == sorted(["x_train", "y_train", "x_test", "y_test", "train_ids", "test_ids", "persons",
                            "class_names", "layout", "benchmark"])
    assert read_ctrgcn_npz(path).train.confidence is None


@pytest.mark.parametrize(
    ("change", "match", "where"),
    [
        ({"coords": np.array(4)}, "integer in \\[2, 3\\]", "key 'coords'"),
        ({"coords": np.array(2.0)}, "integer in", "key 'coords'"),
        ({"x_test_score": None}, "come together", None),
        ({"x_train_score": np.zeros((4, 8, 5), np.float32)}, "expected float", "key 'x_train_score'"),
        ({"x_train_score": np.full((4, 8, 36), 1.5, np.float32)}, "outside \\[0, 1\\]", "key 'x_train_score', sample 0"),
        ({"x_train_score": np.full((4, 8, 36), np.nan, np.float32)}, "NaN", "key 'x_train_score', sample 0"),
    ],
    ids=["coords 4", "coords float", "one score", "score shape", "score range", "score nan"],
)
def test_bad_2d_npz(tmp_path, change, match, where):
    path = tmp_path / "k.npz"
    write_ctrgcn_npz(path, DatasetSplits(dataset_2d(), dataset_2d(seed=1), "k2d"))
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, value in change.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=match) as err:
        read_ctrgcn_npz(path)
    assert err.value.path == str(path)
    if where:
        assert err.value.position == where


def test_2d_npz_without_layout_key(tmp_path):
    path = tmp_path / "b.npz"
    ds = dataset_2d(joints=25, layout="body25")
    write_ctrgcn_npz(path, DatasetSplits(ds, dataset_2d(joints=25, layout="body25", seed=1), "b"))
    assert read_ctrgcn_npz(path).train.layout == "body25"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "layout"}
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=r"25 joints fit the layouts \['body25', 'ntu25'\]") as err:
        read_ctrgcn_npz(path)
    assert err.value.position == "key 'layout'"
    assert read_ctrgcn_npz(path, layout="ntu25").train.layout == "ntu25"
    # a 3-D file without the key stays NTU's, as before
    three = tmp_path / "n.npz"
    from helpers import random_splits

    write_ctrgcn_npz(three, random_splits())
    with np.load(three) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "layout"}
    np.savez(three, **arrays)
    assert read_ctrgcn_npz(three).train.layout == "ntu25"
