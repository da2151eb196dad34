"""Tests of the restricted unpickler and of the pyskl annotation reader."""

from __future__ import annotations

import functools
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mksgn.data.class_names import NTU60_CLASSES, NTU120_CLASSES
from mksgn.data.readers.pyskl import read_pyskl
from mksgn.data.readers.safe_pickle import safe_load
from mksgn.errors import DatasetError

# --------------------------------------------------------------------------- safe_load


def sample_payload() -> dict:
    rng = np.random.default_rng(0)
    return {
        "f16": rng.standard_normal((2, 3, 4)).astype(np.float16),
        "f32": rng.standard_normal((5, 2)).astype(np.float32),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "u8_fortran": np.asfortranarray(np.arange(12, dtype=np.uint8).reshape(3, 4)),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "scalars": [np.int64(7), np.float32(1.5), np.float16(0.25), 3, 2.5, True, None],
        "nested": {"list": [1, "two", (3.0, b"four")], "set": {1, 2}, "frozen": frozenset({"a"})},
        "bytes": (b"", b"\x00\xff binary", bytearray(b"ba")),
    }


def assert_same(a: object, b: object) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_safe_load_round_trips_arrays(protocol: int, tmp_path: Path) -> None:
    payload = sample_payload()
    blob = pickle.dumps(payload, protocol=protocol)
    assert_same(payload, safe_load(blob, "mem.pkl"))
    path = tmp_path / "p.pkl"
    path.write_bytes(blob)
    with path.open("rb") as fh:
        assert_same(payload, safe_load(fh, path))


class SystemCall:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = pickle.dumps({"x": SystemCall(f"touch {marker}")}, protocol=2)
    with pytest.raises(DatasetError) as err:
        safe_load(blob, "evil.pkl")
    assert f"refused global '{os.system.__module__}.system'" in str(err.value)
    assert err.value.path == "evil.pkl"
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 4])
def test_refuses_raw_builtins_eval(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').close()".encode()
    if protocol == 0:  # GLOBAL opcode
        blob = b"cbuiltins\neval\n(V" + code + b"\ntR."
    else:  # STACK_GLOBAL opcode
        blob = (
            b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c" + bytes([len(code)]) + code + b"\x85R."
        )
    with pytest.raises(DatasetError, match=r"refused global 'builtins\.eval'"):
        safe_load(blob, "evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj",
    [
        functools.partial(print, "x"),
        subprocess.Popen,
        np.load,
        Path("/etc/passwd"),
        {"a": [1, 2, type(None)]},
    ],
    ids=["partial", "popen", "np.load", "path", "type"],
)
def test_refuses_other_globals(obj: object) -> None:
    with pytest.raises(DatasetError, match="refused global"):
        safe_load(pickle.dumps(obj, protocol=4), "x.pkl")


def test_refuses_object_arrays() -> None:
    blob = pickle.dumps({"a": [np.array([1, "x"], dtype=object)]}, protocol=4)
    with pytest.raises(DatasetError) as err:
        safe_load(blob, "obj.pkl")
    assert "object dtype" in str(err.value) and err.value.position == "['a'][0]"
    structured = np.zeros(2, dtype=[("x", "f4"), ("o", "O")])
    with pytest.raises(DatasetError, match="object dtype"):
        safe_load(pickle.dumps(structured, protocol=2), "obj.pkl")


def test_codecs_encode_only_latin1() -> None:
    blob = b"c_codecs\nencode\n(Vabc\nVutf-16\ntR."
    with pytest.raises(DatasetError, match="not a readable pickle"):
        safe_load(blob, "enc.pkl")
    assert safe_load(b"c_codecs\nencode\n(Vabc\nVlatin1\ntR.", "enc.pkl") == b"abc"


def test_refuses_integer_bytearray() -> None:
    blob = b"c__builtin__\nbytearray\n(I1000000000000\ntR."
    with pytest.raises(DatasetError, match="not a readable pickle"):
        safe_load(blob, "big.pkl")


@pytest.mark.parametrize("blob", [b"", b"garbage", pickle.dumps({"a": np.zeros(4)}, protocol=4)[:-7], b"\x80\x05N"])
def test_corrupt_pickles(blob: bytes) -> None:
    with pytest.raises(DatasetError) as err:
        safe_load(blob, "bad.pkl")
    assert err.value.path == "bad.pkl"


# --------------------------------------------------------------------------- read_pyskl


def annotation(name: str, label: int, m: int = 1, t: int = 4, v: int = 25, c: int = 3, seed: int = 0,
               dtype: type = np.float16) -> dict:
    rng = np.random.default_rng(seed)
    ann = {
        "frame_dir": name,
        "label": label,
        "keypoint": rng.standard_normal((m, t, v, c)).astype(dtype),
        "total_frames": t,
    }
    if c == 2:
        ann["keypoint_score"] = rng.uniform(0, 1, (m, t, v)).astype(dtype)
    return ann


def dump(path: Path, annotations: list[dict], split: dict | None = None, protocol: int = 4) -> Path:
    names = [a["frame_dir"] for a in annotations if isinstance(a, dict) and "frame_dir" in a]
    if split is None:
        split = {"xsub_train": names[::2], "xsub_val": names[1::2]}
    path.write_bytes(pickle.dumps({"split": split, "annotations": annotations}, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_ntu_3d_round_trip(tmp_path: Path, protocol: int) -> None:
    anns = [annotation(f"S001C001P001R001A{k + 1:03d}", k, t=3 + k, seed=k) for k in range(4)]
    path = dump(tmp_path / "ntu60_3danno.pkl", anns, protocol=protocol)
    splits = read_pyskl(path)
    assert splits.benchmark == "ntu60_3danno-xsub"
    assert splits.train.layout == "ntu25" and splits.train.class_names == list(NTU60_CLASSES)
    assert splits.train.sample_ids == [anns[0]["frame_dir"], anns[2]["frame_dir"]]
    assert splits.test.labels.tolist() == [1, 3]
    assert splits.train.data.shape == (2, 3, 6, 25, 2) and splits.test.lengths.tolist() == [4, 6]
    got = splits.test.data[1].transpose(1, 2, 3, 0)  # (F, V, M, C)
    np.testing.assert_array_equal(got[:, :, 0], anns[3]["keypoint"][0].astype(np.float32))
    assert not got[:, :, 1].any()
    assert splits.train.source == str(path)


def test_max_frames_and_test_suffix(tmp_path: Path) -> None:
    anns = [annotation("a", 0, t=10), annotation("b", 1, t=3, seed=1)]
    path = dump(tmp_path / "x.pkl", anns, {"xview_train": ["a"], "xview_test": ["b"]})
    splits = read_pyskl(path, "xview", max_frames=5)
    assert splits.train.data.shape[2] == 5 and splits.train.lengths.tolist() == [5]
    np.testing.assert_array_equal(
        splits.train.data[0, :, :, :, 0].transpose(1, 2, 0), anns[0]["keypoint"][0, :5].astype(np.float32)
    )


def test_2d_with_score(tmp_path: Path) -> None:
    anns = [annotation("a", 0, m=2, c=2, v=18), annotation("b", 1, c=2, v=18, seed=1)]
    splits = read_pyskl(dump(tmp_path / "k.pkl", anns))
    assert splits.train.layout == "kinetics18"
    assert splits.train.class_names == ["class_0", "class_1"]
    assert splits.train.data.shape[1] == 2  # x, y: the score is no coordinate
    x = splits.train.data[0].transpose(1, 2, 3, 0)  # (F, V, M, C)
    conf = splits.train.confidence[0]  # (F, V, M)
    for person in range(2):
        np.testing.assert_array_equal(x[..., person, :], anns[0]["keypoint"][person].astype(np.float32))
        np.testing.assert_array_equal(conf[..., person], anns[0]["keypoint_score"][person].astype(np.float32))
    assert splits.test.confidence.shape == (1, 4, 18, 2) and not splits.test.confidence[..., 1].any()


def test_coco17_2d(tmp_path: Path) -> None:
    anns = [annotation("a", 0, m=3, t=5, c=2, v=17), annotation("b", 1, c=2, v=17, seed=1)]
    splits = read_pyskl(dump(tmp_path / "ntu60_hrnet.pkl", anns))
    assert splits.train.layout == "coco17" and splits.train.data.shape == (1, 2, 5, 17, 2)
    assert splits.train.confidence.shape == (1, 5, 17, 2)


def test_2d_with_25_joints_needs_a_layout(tmp_path: Path) -> None:
    path = dump(tmp_path / "b.pkl", [annotation("a", 0, c=2, v=25), annotation("b", 1, c=2, v=25, seed=1)])
    with pytest.raises(DatasetError) as err:
        read_pyskl(path)
    assert "['body25', 'ntu25']" in str(err.value) and "\n" not in str(err.value)
    assert read_pyskl(path, layout="body25").train.layout == "body25"
    assert read_pyskl(path, layout="ntu25").train.layout == "ntu25"
    with pytest.raises(DatasetError, match="layout coco17 has 17 joints"):
        read_pyskl(path, layout="coco17")
    with pytest.raises(DatasetError, match="unknown skeleton layout 'nope'"):
        read_pyskl(path, layout="nope")


def test_3d_has_no_confidence(tmp_path: Path) -> None:
    splits = read_pyskl(dump(tmp_path / "n.pkl", [annotation("a", 0), annotation("b", 1)]))
    assert splits.train.confidence is None and splits.train.data.shape[1] == 3


def test_ucla_layout(tmp_path: Path) -> None:
    splits = read_pyskl(dump(tmp_path / "u.pkl", [annotation("a", 0, v=20), annotation("b", 9, v=20)]))
    assert splits.train.layout == "ucla20" and splits.train.num_classes == 10


@pytest.mark.parametrize(
    ("labels", "expected"), [((0, 59), NTU60_CLASSES), ((0, 60), NTU120_CLASSES), ((0, 119), NTU120_CLASSES)]
)
def test_ntu_class_names(tmp_path: Path, labels: tuple[int, int], expected: tuple[str, ...]) -> None:
    anns = [annotation("a", labels[0]), annotation("b", labels[1])]
    assert read_pyskl(dump(tmp_path / "n.pkl", anns)).test.class_names == list(expected)


def test_generic_class_names_beyond_ntu(tmp_path: Path) -> None:
    splits = read_pyskl(dump(tmp_path / "n.pkl", [annotation("a", 0), annotation("b", 120)]))
    assert splits.train.class_names == [f"class_{k}" for k in range(121)]


def test_keeps_two_most_active_persons(tmp_path: Path) -> None:
    ann = annotation("a", 0, m=4, t=6, dtype=np.float32)
    kp = ann["keypoint"]
    kp[0] *= 0.01  # still
    kp[1] *= 3.0  # most active
    kp[2, :3] = 0.0  # present in frames 3-5 only, moves a little
    kp[2, 3:] *= 0.5
    kp[3] *= 1.0  # second most active
    splits = read_pyskl(dump(tmp_path / "m.pkl", [ann, annotation("b", 1)]))
    x = splits.train.data[0].transpose(1, 2, 3, 0)
    np.testing.assert_array_equal(x[:, :, 0], kp[1])
    np.testing.assert_array_equal(x[:, :, 1], kp[3])


def test_two_persons_keep_order(tmp_path: Path) -> None:
    ann = annotation("a", 0, m=2, dtype=np.float32)
    ann["keypoint"][0] *= 0.001
    splits = read_pyskl(dump(tmp_path / "m.pkl", [ann, annotation("b", 1)]))
    np.testing.assert_array_equal(splits.train.data[0, :, :, :, 0].transpose(1, 2, 0), ann["keypoint"][0])


def good_annotations() -> list[dict]:
    return [annotation(f"clip{k}", k % 3, seed=k) for k in range(6)]


def with_change(k: int, **changes: object) -> list[dict]:
    anns = good_annotations()
    for key, value in changes.items():
        if value is DELETE:
            del anns[k][key]
        else:
            anns[k][key] = value
    return anns


DELETE = object()
F16 = np.float16


def keypoint_with_nan() -> np.ndarray:
    kp = np.zeros((1, 4, 25, 3), dtype=F16)
    kp[0, 2, 7, 1] = np.nan
    return kp


BAD_ANNOTATIONS = {
    "missing keypoint": (with_change(3, keypoint=DELETE), "missing key 'keypoint'", "annotations[3]"),
    "missing label": (with_change(1, label=DELETE), "missing key 'label'", "annotations[1]"),
    "missing frame_dir": (with_change(2, frame_dir=DELETE), "missing key 'frame_dir'", "annotations[2]"),
    "keypoint ndim 3": (with_change(4, keypoint=np.zeros((4, 25, 3), F16)), "(M, T, V, C)", "annotations[4]"),
    "keypoint ndim 5": (with_change(0, keypoint=np.zeros((1, 1, 4, 25, 3), F16)), "(M, T, V, C)", "annotations[0]"),
    "keypoint C 4": (with_change(5, keypoint=np.zeros((1, 4, 25, 4), F16)), "C = 2 or 3", "annotations[5]"),
    "keypoint V 19": (with_change(0, keypoint=np.zeros((1, 4, 19, 3), F16)), "V = 19", "annotations[0]"),
    "keypoint V 24": (with_change(0, keypoint=np.zeros((1, 4, 24, 3), F16)), "V = 24", "annotations[0]"),
    "inconsistent V": (with_change(2, keypoint=np.zeros((1, 4, 20, 3), F16)), "20 joints", "annotations[2]"),
    "keypoint list": (with_change(1, keypoint=[[0.0]]), "float numpy array", "annotations[1]"),
    "keypoint int": (with_change(1, keypoint=np.zeros((1, 4, 25, 3), np.int32)), "float numpy array", "annotations[1]"),
    "no frames": (with_change(1, keypoint=np.zeros((1, 0, 25, 3), F16)), "no person or no frame", "annotations[1]"),
    "NaN keypoint": (with_change(3, keypoint=keypoint_with_nan()), "NaN", "annotations[3]"),
    "float32 overflow": (with_change(3, keypoint=np.full((1, 4, 25, 3), 1e39)), "too large", "annotations[3]"),
    "NaN score": (
        with_change(2, keypoint=np.zeros((1, 4, 25, 2), F16), keypoint_score=np.full((1, 4, 25), np.nan, F16)),
        "NaN",
        "annotations[2]",
    ),
    "2-D without score": (with_change(2, keypoint=np.zeros((1, 4, 25, 2), F16)), "keypoint_score", "annotations[2]"),
    "score far above 1": (
        with_change(2, keypoint=np.zeros((1, 4, 25, 2), F16), keypoint_score=np.full((1, 4, 25), 2.0, F16)),
        "outside [0, 1.5] (not a confidence)",
        "annotations[2]",
    ),
    "2-D among 3-D": (
        with_change(2, keypoint=np.zeros((1, 4, 25, 2), F16), keypoint_score=np.ones((1, 4, 25), F16)),
        "2-D and 3-D keypoints mixed",
        "annotations[2]",
    ),
    "negative label": (with_change(4, label=-1), "label -1 out of range", "annotations[4]"),
    "float label": (with_change(4, label=1.0), "'label' must be an integer", "annotations[4]"),
    "total_frames mismatch": (with_change(1, total_frames=9), "'total_frames' 9", "annotations[1]"),
    "duplicate frame_dir": (with_change(5, frame_dir="clip0"), "duplicate frame_dir 'clip0'", "annotations[5]"),
    "annotation not a dict": ([*good_annotations()[:2], ["frame_dir"]], "must be a dict", "annotations[2]"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_bad_annotation_names_file_and_position(tmp_path: Path, case: str) -> None:
    anns, message, position = BAD_ANNOTATIONS[case]
    path = dump(tmp_path / "bad.pkl", anns, {"xsub_train": ["clip0"], "xsub_val": ["clip1"]})
    with pytest.raises(DatasetError) as err:
        read_pyskl(path)
    assert message in str(err.value)
    assert err.value.path == str(path) and err.value.position == position
    assert str(err.value).startswith(f"{path}, {position}: ")


def write_root(path: Path, root: object) -> Path:
    path.write_bytes(pickle.dumps(root, protocol=4))
    return path


ANNS = good_annotations()
BAD_ROOTS = {
    "not a dict": ([1, 2], "expected a dict", None),
    "missing split": ({"annotations": ANNS}, "missing key 'split'", "top level"),
    "missing annotations": (
        {"split": {"xsub_train": ["clip0"], "xsub_val": ["clip1"]}}, "missing key 'annotations'", "top level"
    ),
    "no such benchmark": ({"split": {"xview_train": ["clip0"], "xview_val": ["clip1"]}, "annotations": ANNS},
                          "needs splits 'xsub_train'", "key 'split'"),
    "unknown frame_dir": ({"split": {"xsub_train": ["clip0"], "xsub_val": ["clip1", "nope"]}, "annotations": ANNS},
                          "frame_dir 'nope' has no annotation", "split['xsub_val'][1]"),
    "empty split": ({"split": {"xsub_train": [], "xsub_val": ["clip1"]}, "annotations": ANNS},
                    "split is empty", "split['xsub_train']"),
    "overlapping splits": ({"split": {"xsub_train": ["clip0", "clip1"], "xsub_val": ["clip1"]}, "annotations": ANNS},
                           "in both splits", "key 'split'"),
    "empty annotations": ({"split": {"xsub_train": ["clip0"], "xsub_val": ["clip1"]}, "annotations": []},
                          "non-empty list", "key 'annotations'"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROOTS))
def test_bad_structure(tmp_path: Path, case: str) -> None:
    root, message, position = BAD_ROOTS[case]
    path = write_root(tmp_path / "bad.pkl", root)
    with pytest.raises(DatasetError) as err:
        read_pyskl(path)
    assert message in str(err.value) and err.value.path == str(path) and err.value.position == position


def test_malicious_pyskl_file(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write_root(tmp_path / "evil.pkl", {"split": {}, "annotations": [SystemCall(f"touch {marker}")]})
    with pytest.raises(DatasetError, match="refused global") as err:
        read_pyskl(path)
    assert err.value.path == str(path) and not marker.exists()


def test_missing_and_truncated_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        read_pyskl(tmp_path / "none.pkl")
    assert err.value.path == str(tmp_path / "none.pkl")
    path = dump(tmp_path / "t.pkl", good_annotations())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match="not a readable pickle"):
        read_pyskl(path)
