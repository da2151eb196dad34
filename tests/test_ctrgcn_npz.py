"""CTR-GCN npz: round trip, the published layout, and bad files."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from helpers import random_splits

from mksgn.data.class_names import NTU60_CLASSES
from mksgn.data.readers.ctrgcn_npz import read_ctrgcn_npz, write_ctrgcn_npz
from mksgn.errors import DatasetError


def _assert_same(a, b):
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    assert a.class_names == b.class_names and a.sample_ids == b.sample_ids and a.layout == b.layout


def test_round_trip(tmp_path):
    splits = random_splits()
    path = tmp_path / "data.npz"
    write_ctrgcn_npz(path, splits)
    back = read_ctrgcn_npz(path)
    _assert_same(back.train, splits.train)
    _assert_same(back.test, splits.test)
    assert back.benchmark == "test-bench"
    assert [p.name for p in tmp_path.iterdir()] == ["data.npz"]  # no temporary left behind


def test_written_file_is_the_ctrgcn_layout(tmp_path):
    splits = random_splits()
    path = tmp_path / "data.npz"
    write_ctrgcn_npz(path, splits)
    with np.load(path) as npz:
        x, y = npz["x_train"], npz["y_train"]
    n, t = len(splits.train), splits.train.data.shape[2]
    assert x.shape == (n, t, 150) and x.dtype == np.float32
    assert y.shape == (n, 3) and (y.sum(axis=1) == 1).all()
    # the documented conversion gives back (N, 3, T, 25, 2)
    np.testing.assert_array_equal(x.reshape(n, t, 2, 25, 3).transpose(0, 4, 1, 3, 2), splits.train.data)


def test_reads_a_plain_ctrgcn_file(tmp_path):
    """A file as CTR-GCN's NTU60 script writes it: four keys, 300 frames, 60 classes."""
    rng = np.random.default_rng(1)
    x = np.zeros((4, 300, 150), np.float32)
    x[:, :37] = rng.normal(size=(4, 37, 150))
    x[2, 20:] = 0.0
    y = np.eye(60, dtype=np.float32)[[0, 5, 59, 7]]
    path = tmp_path / "NTU60_CS.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])
    splits = read_ctrgcn_npz(path)
    assert splits.train.data.shape == (4, 3, 300, 25, 2)
    assert splits.train.lengths.tolist() == [37, 37, 20, 37]
    assert splits.train.labels.tolist() == [0, 5, 59, 7]
    assert splits.train.class_names == list(NTU60_CLASSES)
    assert splits.train.layout == "ntu25"
    assert splits.train.sample_ids[0] == "train-000000"


def _save(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


def _valid_arrays():
    x = np.ones((2, 5, 150), np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 2]]
    return {"x_train": x, "y_train": y, "x_test": x.copy(), "y_test": y.copy()}


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a: a.pop("y_test"), r"missing key\(s\) \['y_test'\]"),
        (lambda a: a.update(x_train=np.ones((2, 150), np.float32)), r"key 'x_train'.*expected \(N, T"),
        (lambda a: a.update(x_train=np.ones((2, 5, 149), np.float32)), r"key 'x_train'.*persons"),
        (lambda a: a["x_test"].__setitem__((1, 2, 3), np.nan), r"key 'x_test', sample 1: NaN"),
        (lambda a: a["x_train"].__setitem__((0, 1, 3), np.inf), r"key 'x_train', sample 0: NaN or infinite"),
        (lambda a: a["x_train"].__setitem__(1, 0.0), r"key 'x_train', sample 1: empty sequence"),
        (lambda a: a.update(y_train=np.array([[1, 1, 0], [0, 0, 1]], np.float32)), r"key 'y_train', sample 0: label row is not one-hot"),
        (lambda a: a.update(y_train=np.eye(3, dtype=np.float32)[[0]]), r"key 'y_train'.*1 labels for 2 samples"),
        (lambda a: a.update(y_train=np.array([0, -1])), r"negative label -1"),
        (lambda a: a.update(class_names=np.array(["a", "b"])), r"2 class names for 3 one-hot classes"),
        (lambda a: a.update(layout=np.array("coco")), r"key 'layout'.*unknown skeleton layout"),
        (lambda a: a.update(x_train=np.ones((2, 5, 150), np.int32)), r"floating-point"),
    ],
)
def test_bad_arrays_name_file_and_key(tmp_path, mutate, match):
    arrays = _valid_arrays()
    mutate(arrays)
    path = _save(tmp_path, **arrays)
    with pytest.raises(DatasetError, match=match) as info:
        read_ctrgcn_npz(path)
    assert str(path) in str(info.value)


def test_labels_beyond_the_class_names(tmp_path):
    arrays = _valid_arrays()
    arrays["y_train"] = np.array([0, 5])
    arrays["class_names"] = np.array(["a", "b", "c"])
    path = _save(tmp_path, **arrays)
    with pytest.raises(DatasetError, match=r"key 'y_train', sample 1: label 5 outside 0..2"):
        read_ctrgcn_npz(path)


def test_corrupt_truncated_and_missing_files(tmp_path):
    path = _save(tmp_path, **_valid_arrays())
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(os.urandom(256))
    for p in (truncated, garbage):
        with pytest.raises(DatasetError, match="not a (readable|plain) npz") as info:
            read_ctrgcn_npz(p)
        assert p.name in str(info.value)
    with pytest.raises(DatasetError, match="no such file"):
        read_ctrgcn_npz(tmp_path / "absent.npz")


def test_pickled_object_arrays_are_refused(tmp_path):
    arrays = _valid_arrays()
    arrays["class_names"] = np.array([object(), "b", "c"], dtype=object)
    path = tmp_path / "objects.npz"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in arrays.items():
            with z.open(f"{k}.npy", "w") as f:
                np.lib.format.write_array(f, v, allow_pickle=True)
    with pytest.raises(DatasetError, match="objects.npz: not a plain npz"):
        read_ctrgcn_npz(path)


def test_failed_write_leaves_the_target_untouched(tmp_path, monkeypatch):
    path = tmp_path / "data.npz"
    path.write_bytes(b"old content")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        write_ctrgcn_npz(path, random_splits())
    assert path.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["data.npz"]
