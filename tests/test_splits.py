"""Evaluation subsets that cover every class, and the validation split carved from training."""

from __future__ import annotations

import numpy as np
import pytest

from mksgn.data.dataset import SkeletonDataset
from mksgn.data.splits import sample_groups, stratified_indices, stratified_subset, validation_split


def _dataset(ids: list[str], labels: list[int], classes: int) -> SkeletonDataset:
    n = len(ids)
    return SkeletonDataset(np.ones((n, 3, 4, 25, 2), np.float32), np.asarray(labels, np.int64),
                           np.full(n, 4, np.int64), [f"c{i}" for i in range(classes)], ids, "ntu25", "mem")


def test_stratified_covers_every_class_of_a_class_ordered_split():
    labels = np.repeat(np.arange(10), 24)  # ordered by class, as real test splits often are
    for limit in (10, 32, 100):
        idx = stratified_indices(labels, limit, seed=0)
        counts = np.bincount(labels[idx], minlength=10)
        assert len(idx) == limit and len(set(idx)) == limit and (counts > 0).all()
        assert counts.max() - counts.min() <= 1
        assert np.array_equal(idx, stratified_indices(labels, limit, seed=0))  # seeded
    assert len(set(labels[stratified_indices(labels, 4)])) == 4  # fewer than the classes: distinct ones
    assert not np.array_equal(stratified_indices(labels, 32, 0), stratified_indices(labels, 32, 1))
    assert np.array_equal(stratified_indices(labels, 500), np.arange(240))


def test_stratified_subset_says_what_it_drew():
    ds = _dataset([f"x{i}" for i in range(30)], [i // 10 for i in range(30)], 3)
    idx, text = stratified_subset(ds, 4)
    assert text == "4 of 30 test samples of mem (stratified by class: 3 of 3 classes, seed 0)"
    assert stratified_subset(ds, 99)[1] == "all 30 test samples of mem"


def test_sample_groups_by_performer_recording_or_sample():
    assert sample_groups(["S001C001P003R001A001", "S001C002P017R002A005"]) == ("performer", ["003", "017"])
    assert sample_groups(["synth-s000001-P003-A004"]) == ("performer", ["003"])
    assert sample_groups(["a01_s07_e02_v03"]) == ("performer", ["07"])
    assert sample_groups(["clip12#0", "clip12#16", "clip3#0"]) == ("recording", ["clip12", "clip12", "clip3"])
    assert sample_groups(["a", "b"]) == ("sample", ["a", "b"])


def test_validation_split_holds_out_whole_performers():
    ids = [f"synth-s{i:06d}-P{i % 8:03d}-A{i % 3:03d}" for i in range(240)]
    ds = _dataset(ids, [i % 3 for i in range(240)], 3)
    split = validation_split(ds, 0.2, seed=0)
    assert split.by == "performer" and split.groups == (2, 8)
    val_p = {ids[i].split("-P")[1][:3] for i in split.val}
    train_p = {ids[i].split("-P")[1][:3] for i in split.train}
    assert not val_p & train_p and len(val_p) == 2
    assert sorted([*split.train, *split.val]) == list(range(240))
    assert "2 of 8 performers" in split.describe()


def test_validation_split_by_sample_is_stratified():
    ds = _dataset([f"x{i}" for i in range(100)], [i % 4 for i in range(100)], 4)
    split = validation_split(ds, 0.1, seed=3)
    assert split.by == "sample" and np.bincount(ds.labels[split.val]).tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="fraction"):
        validation_split(ds, 1.0)


def test_validation_covers_every_class_when_each_recording_holds_one_action():
    ids, labels = [], []
    for c in range(10):
        for r in range(6):
            for w in range(4):
                ids.append(f"class{c}-seg{r}#{w * 8}")
                labels.append(c)
    ds = _dataset(ids, labels, 10)
    split = validation_split(ds, 0.1, seed=0)
    assert split.by == "recording" and split.groups == (10, 60)
    assert sorted(set(ds.labels[split.val])) == list(range(10))
    held = {ids[i].split("#")[0] for i in split.val}
    assert not held & {ids[i].split("#")[0] for i in split.train}
