"""Tests of the NW-UCLA JSON reader on fixtures written in the CTR-GCN ``all_sqe`` format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mksgn.data.class_names import UCLA_CLASSES
from mksgn.data.readers.ucla import read_ucla_dir, read_ucla_file
from mksgn.errors import DatasetError

ACTIONS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)


def skeletons(t: int, seed: int) -> np.ndarray:
    """``(t, 20, 3)`` float32 values that survive the JSON round trip exactly."""
    return np.random.default_rng(seed).standard_normal((t, 20, 3)).astype(np.float32)


def write_clip(root: Path, stem: str, t: int = 3, seed: int = 0, label: bool = True, **extra: object) -> np.ndarray:
    root.mkdir(exist_ok=True)
    sk = skeletons(t, seed)
    content: dict = {"file_name": stem, "skeletons": sk.astype(np.float64).tolist()}
    if label:
        content["label"] = ACTIONS.index(int(stem[1:3])) + 1
    content.update(extra)
    (root / f"{stem}.json").write_text(json.dumps(content))
    return sk


def test_single_clip_round_trip(tmp_path: Path) -> None:
    sk = write_clip(tmp_path, "a08_s03_e01_v02", t=5)
    joints, label, view = read_ucla_file(tmp_path / "a08_s03_e01_v02.json")
    assert joints.dtype == np.float32 and joints.shape == (5, 20, 2, 3)
    np.testing.assert_array_equal(joints[:, :, 0], sk)
    assert not joints[:, :, 1].any()
    assert (label, view) == (6, 2) and UCLA_CLASSES[label] == "donning"


def test_label_from_name_when_absent(tmp_path: Path) -> None:
    write_clip(tmp_path, "a12_s01_e00_v03", label=False)
    assert read_ucla_file(tmp_path / "a12_s01_e00_v03.json")[1:] == (9, 3)


def test_directory_cross_view(tmp_path: Path) -> None:
    stems = ["a01_s01_e00_v01", "a02_s01_e00_v02", "a11_s02_e03_v03", "a12_s09_e01_v01", "a03_s01_e00_v03"]
    data = {s: write_clip(tmp_path, s, t=2 + i, seed=i, label=i % 2 == 0) for i, s in enumerate(stems)}
    (tmp_path / "README.txt").write_text("ignored")
    splits = read_ucla_dir(tmp_path, progress=False)
    assert splits.benchmark == "ucla-xview"
    assert splits.train.sample_ids == ["a01_s01_e00_v01", "a02_s01_e00_v02", "a12_s09_e01_v01"]
    assert splits.test.sample_ids == ["a03_s01_e00_v03", "a11_s02_e03_v03"]
    assert splits.train.labels.tolist() == [0, 1, 9] and splits.test.labels.tolist() == [2, 8]
    assert splits.train.class_names == list(UCLA_CLASSES) and splits.train.layout == "ucla20"
    assert splits.train.data.shape == (3, 3, 6, 20, 2)
    assert splits.test.data.shape[2] == 6 and splits.train.lengths.tolist() == [2, 3, 5]
    x = splits.test.data[1].transpose(1, 2, 3, 0)  # (F, V, M, C)
    np.testing.assert_array_equal(x[:4, :, 0], data["a11_s02_e03_v03"])
    assert not x[4:].any() and not x[:, :, 1].any()


def test_empty_split(tmp_path: Path) -> None:
    write_clip(tmp_path, "a01_s01_e00_v01")
    write_clip(tmp_path, "a02_s01_e00_v02")
    with pytest.raises(DatasetError, match=r"the test split \(views 3\) is empty"):
        read_ucla_dir(tmp_path, progress=False)


def test_no_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no \.json files"):
        read_ucla_dir(tmp_path, progress=False)


def raw(root: Path, stem: str, text: str) -> Path:
    path = root / f"{stem}.json"
    path.write_text(text)
    return path


GOOD = json.dumps({"label": 1, "skeletons": skeletons(3, 0).astype(np.float64).tolist()})


def frames_with(index: int, frame: object) -> str:
    sk = skeletons(3, 0).astype(np.float64).tolist()
    sk[index] = frame
    return json.dumps({"skeletons": sk})


BAD_CASES = {
    "invalid JSON": ("a01_s01_e00_v01", '{\n  "label": 1,\n  "skeletons": [[\n}', "invalid JSON", "line 4, column 1"),
    "empty file": ("a01_s01_e00_v01", "", "invalid JSON", "line 1, column 1"),
    "top level list": ("a01_s01_e00_v01", "[1, 2]", "expected a JSON object", "top level"),
    "missing skeletons": ("a01_s01_e00_v01", '{"label": 1}', "missing key 'skeletons'", "top level"),
    "empty skeletons": ("a01_s01_e00_v01", '{"skeletons": []}', "non-empty list", "key 'skeletons'"),
    "skeletons not a list": ("a01_s01_e00_v01", '{"skeletons": "x"}', "non-empty list", "key 'skeletons'"),
    "25 joints": ("a01_s01_e00_v01", frames_with(1, [[0.0, 0.0, 0.0]] * 25), "got (25, 3)", "skeletons[1]"),
    "2 coordinates": ("a01_s01_e00_v01", frames_with(2, [[0.0, 0.0]] * 20), "got (20, 2)", "skeletons[2]"),
    "ragged frame": ("a01_s01_e00_v01", frames_with(0, [[0.0, 0.0, 0.0]] * 19 + [[1.0]]), "20 x 3", "skeletons[0]"),
    "string coordinate": ("a01_s01_e00_v01", frames_with(2, [["a", 0.0, 0.0]] * 20), "20 x 3", "skeletons[2]"),
    "NaN coordinate": ("a01_s01_e00_v01", frames_with(1, [[float("nan"), 0.0, 0.0]] * 20), "NaN", "skeletons[1]"),
    "huge coordinate": ("a01_s01_e00_v01", frames_with(1, [[1e300, 0.0, 0.0]] * 20), "too large", "skeletons[1]"),
    "label mismatch": ("a02_s01_e00_v01", GOOD, "label 1 disagrees", "key 'label'"),
    "label out of range": ("a01_s01_e00_v01", GOOD.replace(": 1,", ": 11,", 1), "outside 1..10", "key 'label'"),
    "label not int": ("a01_s01_e00_v01", GOOD.replace(": 1,", ': "1",', 1), "must be an integer", "key 'label'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_file_names_file_and_position(tmp_path: Path, case: str) -> None:
    stem, text, message, position = BAD_CASES[case]
    path = raw(tmp_path, stem, text)
    with pytest.raises(DatasetError) as err:
        read_ucla_dir(tmp_path, progress=False)
    assert message in str(err.value)
    assert err.value.path == str(path) and err.value.position == position
    assert str(err.value).startswith(f"{path}, {position}: ")


@pytest.mark.parametrize(
    ("stem", "message"),
    [("a07_s01_e00_v01", "action a07"), ("a10_s01_e00_v01", "action a10"), ("a01_s01_e00_v04", "view 4"),
     ("a01_s01_e00", "pattern"), ("clip", "pattern")],
)
def test_bad_name(tmp_path: Path, stem: str, message: str) -> None:
    path = raw(tmp_path, stem, GOOD)
    with pytest.raises(DatasetError, match=message) as err:
        read_ucla_file(path)
    assert err.value.path == str(path)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "a01_s01_e00_v01.json"
    path.write_bytes(b'{"skeletons": \xff}')
    with pytest.raises(DatasetError) as err:
        read_ucla_file(path)
    assert err.value.path == str(path) and err.value.position == "byte 14"
