"""Tests of the NTU RGB+D ``.skeleton`` reader on fixtures written in the exact format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mksgn.data.class_names import NTU60_CLASSES, NTU120_CLASSES
from mksgn.data.readers.ntu_skeleton import (
    ParsedName,
    body_activity,
    load_ntu_skeleton,
    parse_ntu_name,
    read_ntu_skeleton_dir,
    read_ntu_skeleton_file,
)
from mksgn.errors import DatasetError

V = 25


def quantize(xyz: np.ndarray) -> np.ndarray:
    """The float32 values a reader gets back from ``%.7g`` text."""
    return np.array([float(f"{v:.7g}") for v in xyz.ravel()]).astype(np.float32).reshape(xyz.shape)


def body_lines(body_id: int, xyz: np.ndarray) -> list[str]:
    """A body line, the joint count line and 25 joint lines for ``xyz`` ``(25, 3)``."""
    lines = [f"{body_id} 0 1 1 1 1 0 0.1234 -0.0567 2", str(V)]
    for j, (x, y, z) in enumerate(xyz):
        lines.append(
            f"{x:.7g} {y:.7g} {z:.7g} {250 + j}.5 {180 + j}.25 {960 + j}.125 {540 + j}.75 "
            f"-0.2 0.1 0.9 0.3 2"
        )
    return lines


def render(frames: list[list[tuple[int, np.ndarray]]]) -> list[str]:
    """The lines of a ``.skeleton`` file: per frame a list of ``(bodyID, xyz (25, 3))``."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, xyz in bodies:
            lines += body_lines(body_id, xyz)
    return lines


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\r\n".join(lines) + "\r\n")  # the dataset's files use CRLF
    return path


def motion(rng: np.random.Generator, frames: int, scale: float, offset: float = 0.0) -> np.ndarray:
    """``(frames, 25, 3)`` joints moving with amplitude ``scale``, quantized to the text."""
    base = rng.uniform(-1, 1, size=(1, V, 3)) + np.array([offset, 0.0, 3.0])
    return quantize(base + scale * rng.standard_normal((frames, V, 3)))


NAME = "S001C002P003R002A013.skeleton"
ID_A, ID_B, ID_C = 72057594037931101, 72057594037931102, 72057594037931103


# --------------------------------------------------------------------------- round trips


def test_single_body_round_trips_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = motion(rng, 4, 0.1)
    path = write(tmp_path / NAME, render([[(ID_A, f)] for f in a]))
    joints, name = read_ntu_skeleton_file(path)
    assert joints.dtype == np.float32 and joints.shape == (4, V, 2, 3)
    np.testing.assert_array_equal(joints[:, :, 0], a)
    assert not joints[:, :, 1].any()
    assert name == ParsedName(setup=1, camera=2, performer=3, replication=2, action=13)
    assert name.label == 12


def test_two_most_active_bodies_kept_and_ordered(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    still = motion(rng, 5, 0.001, offset=-2)  # listed first, hardly moves
    mover = motion(rng, 5, 0.3)  # most active
    middle = motion(rng, 5, 0.05, offset=2)
    frames = [[(ID_C, still[t]), (ID_A, middle[t]), (ID_B, mover[t])] for t in range(5)]
    parsed, _ = load_ntu_skeleton(write(tmp_path / NAME, render(frames)))
    assert body_activity(mover) > body_activity(middle) > body_activity(still)
    np.testing.assert_array_equal(parsed.joints[:, :, 0], mover)
    np.testing.assert_array_equal(parsed.joints[:, :, 1], middle)
    assert parsed.num_bodies == 3 and parsed.dropped_frames == 0


def test_bodies_tracked_by_id_across_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    a, b = motion(rng, 4, 0.3), motion(rng, 4, 0.01, offset=1)
    # the listing order changes, and body B is missing from frame 2
    frames = [[(ID_A, a[0]), (ID_B, b[0])], [(ID_B, b[1]), (ID_A, a[1])], [(ID_A, a[2])], [(ID_B, b[3]), (ID_A, a[3])]]
    joints, _ = read_ntu_skeleton_file(write(tmp_path / NAME, render(frames)))
    np.testing.assert_array_equal(joints[:, :, 0], a)
    np.testing.assert_array_equal(joints[[0, 1, 3], :, 1], b[[0, 1, 3]])
    assert not joints[2, :, 1].any()


def test_body_seen_late_is_person_zero_if_most_active(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a, b = motion(rng, 4, 0.001), motion(rng, 2, 0.5, offset=1)
    frames = [[(ID_A, a[0])], [(ID_A, a[1])], [(ID_A, a[2]), (ID_B, b[0])], [(ID_B, b[1]), (ID_A, a[3])]]
    joints, _ = read_ntu_skeleton_file(write(tmp_path / NAME, render(frames)))
    np.testing.assert_array_equal(joints[2:, :, 0], b)
    assert not joints[:2, :, 0].any()
    np.testing.assert_array_equal(joints[:, :, 1], a)


def test_frames_without_body_dropped_and_counted(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    a = motion(rng, 3, 0.1)
    frames = [[], [(ID_A, a[0])], [], [], [(ID_A, a[1])], [(ID_A, a[2])], []]
    parsed, _ = load_ntu_skeleton(write(tmp_path / NAME, render(frames)))
    assert parsed.dropped_frames == 4
    np.testing.assert_array_equal(parsed.joints[:, :, 0], a)


def test_activity_is_sum_of_variances() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, V, 3)).astype(np.float32)
    assert body_activity(x) == pytest.approx(float(x.astype(np.float64).var(axis=0).sum()))
    assert body_activity(x[:1]) == 0.0


# --------------------------------------------------------------------------- names


def test_parse_name_fields() -> None:
    n = parse_ntu_name("S018C003P042R001A120")
    assert (n.setup, n.camera, n.performer, n.replication, n.action, n.label) == (18, 3, 42, 1, 120, 119)
    assert n.is_ntu120
    assert not parse_ntu_name("S017C001P001R001A060.skeleton").is_ntu120
    assert parse_ntu_name("S001C001P001R001A061.skeleton").is_ntu120


@pytest.mark.parametrize(
    "name",
    ["S001C001P001R001.skeleton", "s001c001p001r001a001.skeleton", "S001C001P001R001A1.skeleton",
     "S001C001P001R001A000.skeleton", "S001C004P001R001A001.skeleton", "S001C001P001R001A121.skeleton",
     "S001C001P001R001A001x.skeleton"],
)
def test_bad_file_name(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(6)
    path = write(tmp_path / name, render([[(ID_A, motion(rng, 1, 0.1)[0])]]))
    with pytest.raises(DatasetError) as err:
        read_ntu_skeleton_file(path)
    assert name in str(err.value)


# --------------------------------------------------------------------------- directories


def make_dir(root: Path, names: list[str], frames: dict[str, int] | None = None) -> Path:
    root.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    for name in names:
        n = (frames or {}).get(name, 2)
        write(root / f"{name}.skeleton", render([[(ID_A, f)] for f in motion(rng, n, 0.1)]))
    return root


NTU60 = [
    "S001C001P001R001A001",  # performer 1 trains (xsub); camera 1 tests (xview)
    "S001C002P003R001A002",  # performer 3 tests; camera 2 trains
    "S002C003P038R002A060",  # performer 38 trains; camera 3 trains
    "S017C001P040R001A010",  # performer 40 tests; camera 1 tests
]


def test_ntu60_xsub(tmp_path: Path) -> None:
    splits = read_ntu_skeleton_dir(make_dir(tmp_path / "d", NTU60), "xsub", progress=False)
    assert splits.benchmark == "ntu60-xsub"
    assert splits.train.sample_ids == [NTU60[0], NTU60[2]]
    assert splits.test.sample_ids == [NTU60[1], NTU60[3]]
    assert splits.train.labels.tolist() == [0, 59] and splits.test.labels.tolist() == [1, 9]
    assert splits.train.class_names == list(NTU60_CLASSES)
    assert splits.train.layout == "ntu25" and splits.train.data.shape[1:] == (3, 2, V, 2)
    assert splits.train.source == str(tmp_path / "d")


def test_ntu60_xview(tmp_path: Path) -> None:
    splits = read_ntu_skeleton_dir(make_dir(tmp_path / "d", NTU60), "xview", progress=False)
    assert splits.benchmark == "ntu60-xview"
    assert splits.train.sample_ids == [NTU60[1], NTU60[2]]
    assert splits.test.sample_ids == [NTU60[0], NTU60[3]]


NTU120 = [
    "S001C001P045R001A001",  # performer 45 trains (xsub120); setup 1 odd tests (xset)
    "S018C001P044R001A061",  # performer 44 tests; setup 18 trains
    "S032C002P103R002A120",  # performer 103 trains; setup 32 trains
    "S019C003P106R001A050",  # performer 106 tests; setup 19 tests
]


def test_ntu120_xsub_and_xset(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "d", NTU120)
    xsub = read_ntu_skeleton_dir(root, "xsub", progress=False)
    assert xsub.benchmark == "ntu120-xsub"
    assert xsub.train.sample_ids == [NTU120[0], NTU120[2]]
    assert xsub.test.sample_ids == [NTU120[1], NTU120[3]]
    assert xsub.train.class_names == list(NTU120_CLASSES)
    assert xsub.train.labels.tolist() == [0, 119]
    xset = read_ntu_skeleton_dir(root, "xset", progress=False)
    assert xset.benchmark == "ntu120-xset"
    assert xset.train.sample_ids == [NTU120[1], NTU120[2]]
    assert xset.test.sample_ids == [NTU120[0], NTU120[3]]


@pytest.mark.parametrize("extra", ["S018C001P001R001A001", "S001C001P002R001A061"])
def test_ntu120_detected_by_setup_or_action(tmp_path: Path, extra: str) -> None:
    splits = read_ntu_skeleton_dir(make_dir(tmp_path / "d", [*NTU60, extra]), "xsub", progress=False)
    assert splits.benchmark == "ntu120-xsub" and splits.train.num_classes == 120


def test_padding_lengths_and_max_frames(tmp_path: Path) -> None:
    lengths = dict(zip(NTU60, (3, 7, 5, 2), strict=True))
    root = make_dir(tmp_path / "d", NTU60, lengths)
    splits = read_ntu_skeleton_dir(root, "xsub", progress=False)
    assert splits.train.data.shape[2] == splits.test.data.shape[2] == 7
    assert splits.train.lengths.tolist() == [3, 5] and splits.test.lengths.tolist() == [7, 2]
    joints, _ = read_ntu_skeleton_file(root / f"{NTU60[0]}.skeleton")
    np.testing.assert_array_equal(splits.train.data[0, :, :3], joints.transpose(3, 0, 1, 2))
    assert not splits.train.data[0, :, 3:].any()
    cut = read_ntu_skeleton_dir(root, "xsub", max_frames=4, progress=False)
    assert cut.test.data.shape[2] == 4 and cut.test.lengths.tolist() == [4, 2]


def test_exclude_skips_files(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "d", NTU60)
    (root / "S001C001P002R001A003.skeleton").write_text("1\r\n0\r\n")  # no skeleton at all
    with pytest.raises(DatasetError, match="no skeleton in any frame"):
        read_ntu_skeleton_dir(root, "xsub", progress=False)
    splits = read_ntu_skeleton_dir(root, "xsub", progress=False, exclude=["S001C001P002R001A003"])
    assert len(splits.train) + len(splits.test) == 4


@pytest.mark.parametrize(
    ("names", "benchmark", "message"),
    [
        (NTU120, "xview", "'xview' does not exist for ntu120"),
        (NTU60, "xset", "'xset' does not exist for ntu60"),
        (NTU60, "cross-subject", "unknown NTU benchmark 'cross-subject'; choose from ['xset', 'xsub', 'xview']"),
        (NTU60[:1] + NTU60[2:3], "xsub", "the test split of ntu60-xsub is empty"),
        (NTU60[1:2], "xsub", "the train split of ntu60-xsub is empty"),
    ],
)
def test_bad_benchmark(tmp_path: Path, names: list[str], benchmark: str, message: str) -> None:
    root = make_dir(tmp_path / "d", names)
    with pytest.raises(DatasetError) as err:
        read_ntu_skeleton_dir(root, benchmark, progress=False)
    assert message in str(err.value) and str(root) in str(err.value)


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no \.skeleton files"):
        read_ntu_skeleton_dir(tmp_path, "xsub", progress=False)


def test_bad_file_in_directory_named(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "d", NTU60)
    bad = root / f"{NTU60[2]}.skeleton"
    lines = bad.read_text().splitlines()
    lines[10] = lines[10].replace(" ", " x", 1)
    write(bad, lines)
    with pytest.raises(DatasetError) as err:
        read_ntu_skeleton_dir(root, "xsub", progress=False)
    assert err.value.path == str(bad) and err.value.position == "line 11"


# --------------------------------------------------------------------------- bad input


def good_lines() -> list[str]:
    """Two frames, the first with two bodies. Line numbers (1-based):

    1 frame count; 2 body count; 3 body A; 4 joint count; 5-29 joints;
    30 body B; 31 joint count; 32-56 joints; 57 body count; 58 body A; 59 joint count;
    60-84 joints.
    """
    rng = np.random.default_rng(8)
    a, b = motion(rng, 2, 0.1), motion(rng, 1, 0.1, offset=1)
    return render([[(ID_A, a[0]), (ID_B, b[0])], [(ID_A, a[1])]])


def replace(lines: list[str], lineno: int, text: str) -> list[str]:
    out = list(lines)
    out[lineno - 1] = text
    return out


def set_field(lines: list[str], lineno: int, field: int, text: str) -> list[str]:
    tokens = lines[lineno - 1].split()
    tokens[field] = text
    return replace(lines, lineno, " ".join(tokens))


GOOD = good_lines()
BAD_CASES = {
    "empty file": ([], "empty file", 1),
    "blank file": (["", "  "], "empty file", 1),
    "zero frames": (["0"], "zero frames", 1),
    "negative frame count": (replace(GOOD, 1, "-2"), "frame count -2 outside", 1),
    "absurd frame count": (replace(GOOD, 1, "1000000000"), "frame count 1000000000 outside", 1),
    "garbled frame count": (replace(GOOD, 1, "2x"), "'2x'", 1),
    "negative body count": (replace(GOOD, 2, "-1"), "body count -1 outside", 2),
    "absurd body count": (replace(GOOD, 57, "7"), "body count 7 outside", 57),
    "garbled body count": (replace(GOOD, 57, "1.5"), "'1.5'", 57),
    "wrong joint count": (replace(GOOD, 31, "20"), "joint count 20, expected 25", 31),
    "garbled joint count": (replace(GOOD, 4, "twenty-five"), "'twenty-five'", 4),
    "garbled x": (set_field(GOOD, 17, 0, "0.12.3"), "'0.12.3'", 17),
    "garbled z": (set_field(GOOD, 40, 2, "3,5"), "'3,5'", 40),
    "garbled other field": (set_field(GOOD, 62, 7, "abc"), "'abc'", 62),
    "short joint line": (replace(GOOD, 70, "0.1 0.2 0.3"), "12 fields, got 3", 70),
    "blank joint line": (replace(GOOD, 29, ""), "12 fields, got 0", 29),
    "NaN coordinate": (set_field(GOOD, 45, 1, "nan"), "NaN or infinite", 45),
    "inf coordinate": (set_field(GOOD, 84, 2, "-inf"), "NaN or infinite", 84),
    "float32 overflow": (set_field(GOOD, 20, 0, "1e39"), "too large for float32", 20),
    "garbled body id": (set_field(GOOD, 30, 0, "0x1f"), "bodyID '0x1f'", 30),
    "garbled body field": (set_field(GOOD, 58, 7, "?"), "'?'", 58),
    "short body line": (replace(GOOD, 3, "72057594037931101 0 1"), "10 fields, got 3", 3),
    "truncated in joints": (GOOD[:50], "unexpected end of file, expected joint line 20 of 25", 51),
    "truncated before body": (GOOD[:57], "unexpected end of file, expected a body line", 58),
    "truncated before frame": (GOOD[:56], "unexpected end of file, expected the body count", 57),
    "truncated before joint count": (GOOD[:58], "expected the joint count", 59),
    "extra content": ([*GOOD, "", "1"], "extra content after the last of 2 frames", 86),
    "no skeleton in any frame": (["3", "0", "0", "0"], "no skeleton in any frame", 1),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_file_and_line(tmp_path: Path, case: str) -> None:
    lines, message, lineno = BAD_CASES[case]
    path = tmp_path / NAME
    path.write_text("\n".join(lines))
    with pytest.raises(DatasetError) as err:
        read_ntu_skeleton_file(path)
    assert message in str(err.value)
    assert err.value.path == str(path) and err.value.position == f"line {lineno}"
    assert str(err.value).startswith(f"{path}, line {lineno}: ")


def test_good_fixture_reads(tmp_path: Path) -> None:
    path = write(tmp_path / NAME, GOOD)
    assert read_ntu_skeleton_file(path)[0].shape == (2, V, 2, 3)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(b"1\n1\n\xff\xfe\x00garbage")
    with pytest.raises(DatasetError) as err:
        read_ntu_skeleton_file(path)
    assert err.value.path == str(path) and err.value.position == "line 3"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        read_ntu_skeleton_file(tmp_path / NAME)
    assert err.value.path == str(tmp_path / NAME)
