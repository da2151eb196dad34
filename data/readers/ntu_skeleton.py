"""Reader of the NTU RGB+D (60 and 120) ``.skeleton`` text files.

A ``.skeleton`` file, as written by the dataset's Kinect v2 tools::

    <frame count>
    per frame:
        <body count>
        per body:
            bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence
                handRightState isRestricted leanX leanY trackingState
            <joint count: 25>
            per joint:
                x y z depthX depthY colorX colorY orientW orientX orientY orientZ trackingState

Only the camera-space ``x y z`` of each joint are kept. Bodies are tracked across frames by
their ``bodyID``; the two most *active* bodies are kept, the most active as person 0 (see
:func:`body_activity`). Frames without any body are dropped.

File names follow ``SsssCcccPpppRrrrAaaa`` (setup, camera, performer, replication, action,
all 1-based); see :func:`parse_ntu_name` and :func:`read_ntu_skeleton_dir` for the
benchmark splits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mksgn.data.class_names import NTU60_CLASSES, NTU120_CLASSES
from mksgn.data.dataset import MAX_PERSONS, NUM_COORDS, DatasetSplits, SkeletonDataset, stack_sequences
from mksgn.errors import DatasetError

NUM_JOINTS = 25
"""Joints per NTU (Kinect v2) body."""

BODY_FIELDS = 10
"""Fields of a body line (bodyID .. trackingState)."""

JOINT_FIELDS = 12
"""Fields of a joint line (x y z depthX depthY colorX colorY orientW..Z trackingState)."""

MAX_BODIES_PER_FRAME = 6
"""Kinect v2 tracks at most six bodies; a larger body count marks a corrupt file."""

MAX_FRAMES_PER_FILE = 100_000
"""A frame count above this marks a corrupt file (NTU clips have at most a few hundred)."""

NTU_XSUB_TRAIN_PERFORMERS_60: frozenset[int] = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
)
"""Training performers of the NTU RGB+D 60 cross-subject benchmark."""

NTU_XSUB_TRAIN_PERFORMERS_120: frozenset[int] = NTU_XSUB_TRAIN_PERFORMERS_60 | frozenset(
    (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85,
     86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103)
)
"""Training performers of the NTU RGB+D 120 cross-subject benchmark."""

NTU_XVIEW_TRAIN_CAMERAS: frozenset[int] = frozenset((2, 3))
"""Training cameras of the NTU RGB+D 60 cross-view benchmark (camera 1 is the test view)."""

BENCHMARKS_60: tuple[str, ...] = ("xsub", "xview")
"""Benchmarks of NTU RGB+D 60."""

BENCHMARKS_120: tuple[str, ...] = ("xsub", "xset")
"""Benchmarks of NTU RGB+D 120."""

NTU120_MIN_ACTION = 61
"""Actions from this number on exist only in NTU RGB+D 120."""

NTU120_MIN_SETUP = 18
"""Setups from this number on exist only in NTU RGB+D 120."""

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
_SUFFIX = ".skeleton"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParsedName:
    """The fields of an NTU file name ``SsssCcccPpppRrrrAaaa``, all 1-based."""

    setup: int
    camera: int
    performer: int
    replication: int
    action: int

    @property
    def label(self) -> int:
        """0-based class label, ``action - 1``."""
        return self.action - 1

    @property
    def is_ntu120(self) -> bool:
        """Whether the setup or action exists only in NTU RGB+D 120."""
        return self.action >= NTU120_MIN_ACTION or self.setup >= NTU120_MIN_SETUP


@dataclass(frozen=True)
class SkeletonFile:
    """A parsed ``.skeleton`` file.

    Parameters
    ----------
    joints
        float32 ``(F, 25, 2, 3)``: frames with a body, joints, persons, ``x y z``;
        an absent person is zeros.
    dropped_frames
        Frames of the file without any body (not in ``joints``).
    num_bodies
        Distinct bodies seen in the file (only two are kept).
    """

    joints: np.ndarray
    dropped_frames: int
    num_bodies: int


def parse_ntu_name(name: str, path: str | PathLike[str] | None = None) -> ParsedName:
    """Parse ``SsssCcccPpppRrrrAaaa`` (with or without ``.skeleton``).

    Parameters
    ----------
    name
        File name or stem.
    path
        The file, for the error message (default ``name``).

    Raises
    ------
    DatasetError
        The name does not follow the pattern, a field is 0, the camera is not 1-3 or the
        action is not 1-120.
    """
    where = name if path is None else path
    stem = name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else name
    match = _NAME_RE.fullmatch(stem)
    if match is None:
        raise DatasetError(f"file name {name!r} does not follow the NTU pattern SsssCcccPpppRrrrAaaa", where)
    parsed = ParsedName(*(int(g) for g in match.groups()))
    if min(parsed.setup, parsed.camera, parsed.performer, parsed.replication, parsed.action) < 1:
        raise DatasetError(f"file name {name!r} has a zero field (all fields are 1-based)", where)
    if parsed.camera > 3:
        raise DatasetError(f"file name {name!r}: camera {parsed.camera} outside 1..3", where)
    if parsed.action > len(NTU120_CLASSES):
        raise DatasetError(f"file name {name!r}: action {parsed.action} outside 1..{len(NTU120_CLASSES)}", where)
    return parsed


def body_activity(joints: np.ndarray) -> float:
    """How much a body moves: the sum over joints and coordinates of the variance over frames.

    Parameters
    ----------
    joints
        ``(T, V, C)``: the body's joints in the ``T`` frames where it is present.

    Returns
    -------
    float
        ``sum_{v, c} Var_t joints[t, v, c]`` (population variance, 0 for a single frame).
        Readers keep the most active bodies: a performer moves, a background person or a
        mis-detected piece of furniture hardly does.
    """
    if joints.shape[0] == 0:
        return 0.0
    return float(np.var(joints.astype(np.float64), axis=0).sum())


class _Lines:
    """A cursor over the lines of a text file that reports positions as ``line N``."""

    def __init__(self, lines: list[str], path: str | PathLike[str]) -> None:
        self.lines = lines
        self.path = path
        self.index = 0

    def error(self, message: str, lineno: int | None = None) -> DatasetError:
        return DatasetError(message, self.path, f"line {self.index if lineno is None else lineno}")

    def take(self, what: str) -> list[str]:
        """The tokens of the next line; an error at end of file."""
        if self.index >= len(self.lines):
            raise DatasetError(f"unexpected end of file, expected {what}", self.path, f"line {self.index + 1}")
        self.index += 1
        return self.lines[self.index - 1].split()

    def take_int(self, what: str) -> int:
        """The next line as one integer."""
        tokens = self.take(what)
        if len(tokens) != 1:
            raise self.error(f"expected {what} (one integer), got {len(tokens)} fields")
        try:
            return int(tokens[0])
        except ValueError:
            raise self.error(f"expected {what} (an integer), got {tokens[0]!r}") from None

    def take_count(self, what: str, low: int, high: int) -> int:
        """The next line as one integer in ``low .. high``."""
        value = self.take_int(what)
        if not low <= value <= high:
            raise self.error(f"{what} {value} outside {low}..{high}")
        return value

    def take_block(self, rows: int, what: str) -> list[list[str]]:
        """The tokens of the next ``rows`` lines; an error at end of file."""
        if self.index + rows > len(self.lines):
            missing = len(self.lines) - self.index + 1
            raise DatasetError(
                f"unexpected end of file, expected {what} {missing} of {rows}",
                self.path,
                f"line {len(self.lines) + 1}",
            )
        block = [line.split() for line in self.lines[self.index : self.index + rows]]
        self.index += rows
        return block


def _parse_body_line(cursor: _Lines) -> str:
    """Check a body line and return its ``bodyID``."""
    tokens = cursor.take("a body line")
    if len(tokens) != BODY_FIELDS:
        raise cursor.error(f"body line must have {BODY_FIELDS} fields, got {len(tokens)}")
    try:
        body_id = str(int(tokens[0]))
    except ValueError:
        raise cursor.error(f"body line: bodyID {tokens[0]!r} is not an integer") from None
    for tok in tokens[1:]:
        if not _is_number(tok):
            raise cursor.error(f"body line: {tok!r} is not a number")
    return body_id


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _parse_joints(cursor: _Lines) -> np.ndarray:
    """The ``x y z`` ``(25, 3)`` float32 of the next joint count line and joint lines."""
    count = cursor.take_int("the joint count")
    if count != NUM_JOINTS:
        raise cursor.error(f"joint count {count}, expected {NUM_JOINTS}")
    first = cursor.index + 1
    block = cursor.take_block(NUM_JOINTS, "joint line")
    for k, tokens in enumerate(block):
        if len(tokens) != JOINT_FIELDS:
            raise cursor.error(f"joint line must have {JOINT_FIELDS} fields, got {len(tokens)}", first + k)
    try:
        values = np.array(block, dtype=np.float64)
    except ValueError:
        for k, tokens in enumerate(block):
            for tok in tokens:
                if not _is_number(tok):
                    raise cursor.error(f"joint line: {tok!r} is not a number", first + k) from None
        raise cursor.error("joint lines: unreadable numbers", first) from None  # pragma: no cover
    xyz = values[:, :3]
    finite = (np.abs(xyz) <= _FLOAT32_MAX).all(axis=1)  # False for NaN, inf, float32 overflow
    if not finite.all():
        k = int(np.flatnonzero(~finite)[0])
        raise cursor.error("NaN or infinite joint coordinate (or too large for float32)", first + k)
    return xyz.astype(np.float32)


@dataclass
class _Track:
    """The frames (indices into the kept frames) and joints of one body."""

    first_seen: int
    frames: list[int]
    joints: list[np.ndarray]


def _read_frames(cursor: _Lines) -> tuple[dict[tuple[str, int], _Track], int, int]:
    """Tracks by ``(bodyID, repeat)``, the number of kept frames and of dropped frames."""
    num_frames = cursor.take_count("the frame count", 0, MAX_FRAMES_PER_FILE)
    if num_frames == 0:
        raise cursor.error("zero frames")
    tracks: dict[tuple[str, int], _Track] = {}
    kept = 0
    for _ in range(num_frames):
        num_bodies = cursor.take_count("the body count", 0, MAX_BODIES_PER_FRAME)
        seen: dict[str, int] = {}
        for _ in range(num_bodies):
            body_id = _parse_body_line(cursor)
            # the same ID twice in one frame should not happen; if it does,
            # the second occurrence is a different body.
            key = (body_id, seen.get(body_id, 0))
            seen[body_id] = key[1] + 1
            joints = _parse_joints(cursor)
            track = tracks.setdefault(key, _Track(len(tracks), [], []))
            track.frames.append(kept)
            track.joints.append(joints)
        kept += num_bodies > 0
    for lineno in range(cursor.index, len(cursor.lines)):
        if cursor.lines[lineno].strip():
            raise cursor.error(f"extra content after the last of {num_frames} frames", lineno + 1)
    return tracks, kept, num_frames - kept


def parse_skeleton_text(text: str, path: str | PathLike[str]) -> SkeletonFile:
    """Parse the text of a ``.skeleton`` file.

    Parameters
    ----------
    text
        The file's content.
    path
        The file, for error messages.

    Raises
    ------
    DatasetError
        Naming ``path`` and the line: empty file, zero frames, end of file too early,
        a garbled number, a joint count other than 25, a negative or absurd count, a NaN or
        infinite coordinate, content after the last frame, or no body in any frame.
    """
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DatasetError("empty file", path, "line 1")
    cursor = _Lines(lines, path)
    tracks, kept, dropped = _read_frames(cursor)
    if kept == 0:
        raise DatasetError("no skeleton in any frame", path, "line 1")
    stacked = [(key, np.stack(t.joints)) for key, t in tracks.items()]
    activity = {key: body_activity(j) for key, j in stacked}
    order = sorted(tracks, key=lambda key: (-activity[key], tracks[key].first_seen))
    out = np.zeros((kept, NUM_JOINTS, MAX_PERSONS, NUM_COORDS), dtype=np.float32)
    joints_of = dict(stacked)
    for person, key in enumerate(order[:MAX_PERSONS]):
        out[tracks[key].frames, :, person] = joints_of[key]
    return SkeletonFile(joints=out, dropped_frames=dropped, num_bodies=len(tracks))


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror or exc}", path) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError("not a text file (undecodable bytes)", path, f"line {line}") from exc


def load_ntu_skeleton(path: str | PathLike[str]) -> tuple[SkeletonFile, ParsedName]:
    """Read a ``.skeleton`` file with its dropped-frame count; see :func:`read_ntu_skeleton_file`."""
    p = Path(path)
    name = parse_ntu_name(p.name, p)
    return parse_skeleton_text(_read_text(p), p), name


def read_ntu_skeleton_file(path: str | PathLike[str]) -> tuple[np.ndarray, ParsedName]:
    """Read one NTU ``.skeleton`` file.

    Parameters
    ----------
    path
        A file named ``SsssCcccPpppRrrrAaaa.skeleton``.

    Returns
    -------
    joints
        float32 ``(F, 25, 2, 3)``: the frames with at least one body (frames without any
        body are dropped), 25 joints, two persons (the most active body first, see
        :func:`body_activity`; an absent person is zeros), ``x y z`` in metres.
    name
        The parsed file name; ``name.label`` is the 0-based class.

    Raises
    ------
    DatasetError
        A bad name or content, naming the file and, for content, the line.
    """
    parsed, name = load_ntu_skeleton(path)
    return parsed.joints, name


def _resolve_benchmark(benchmark: str, ntu120: bool, directory: Path) -> str:
    version, choices = ("ntu120", BENCHMARKS_120) if ntu120 else ("ntu60", BENCHMARKS_60)
    key = benchmark.strip().lower()
    if key not in BENCHMARKS_60 + BENCHMARKS_120:
        all_choices = sorted(set(BENCHMARKS_60 + BENCHMARKS_120))
        raise DatasetError(f"unknown NTU benchmark {benchmark!r}; choose from {all_choices}", directory)
    if key not in choices:
        raise DatasetError(
            f"benchmark {key!r} does not exist for {version} (detected from the file names); "
            f"choose from {list(choices)}",
            directory,
        )
    return f"{version}-{key}"


def is_train_sample(name: ParsedName, benchmark: str) -> bool:
    """Whether ``name`` belongs to the training split of ``benchmark``.

    Parameters
    ----------
    name
        A parsed file name.
    benchmark
        ``"ntu60-xsub"``, ``"ntu60-xview"``, ``"ntu120-xsub"`` or ``"ntu120-xset"``.
    """
    if benchmark == "ntu60-xsub":
        return name.performer in NTU_XSUB_TRAIN_PERFORMERS_60
    if benchmark == "ntu120-xsub":
        return name.performer in NTU_XSUB_TRAIN_PERFORMERS_120
    if benchmark == "ntu60-xview":
        return name.camera in NTU_XVIEW_TRAIN_CAMERAS
    if benchmark == "ntu120-xset":
        return name.setup % 2 == 0
    raise DatasetError(f"unknown NTU benchmark {benchmark!r}")


def _list_files(directory: Path, exclude: Iterable[str]) -> list[Path]:
    if not directory.is_dir():
        raise DatasetError("not a directory", directory)
    skip = {e[: -len(_SUFFIX)] if e.endswith(_SUFFIX) else e for e in (s.strip() for s in exclude)}
    files = sorted(p for p in directory.glob(f"*{_SUFFIX}") if p.stem not in skip)
    if not files:
        raise DatasetError(f"no {_SUFFIX} files", directory)
    return files


def _build_split(
    files: list[Path],
    names: dict[Path, ParsedName],
    joints: dict[Path, np.ndarray],
    frames: int,
    class_names: list[str],
    source: str,
) -> SkeletonDataset:
    data, lengths = stack_sequences([joints[p] for p in files], frames)
    return SkeletonDataset(
        data=data,
        labels=np.array([names[p].label for p in files], dtype=np.int64),
        lengths=lengths,
        class_names=list(class_names),
        sample_ids=[p.stem for p in files],
        layout="ntu25",
        source=source,
    )


def read_ntu_skeleton_dir(
    directory: str | PathLike[str],
    benchmark: str,
    max_frames: int = 300,
    progress: bool = True,
    *,
    exclude: Iterable[str] = (),
) -> DatasetSplits:
    """Read a directory of NTU RGB+D ``.skeleton`` files into a benchmark's splits.

    NTU RGB+D 120 is detected when any file has an action above 60 or a setup above 17
    (120 classes); otherwise the files are NTU RGB+D 60 (60 classes).

    Parameters
    ----------
    directory
        Holds ``SsssCcccPpppRrrrAaaa.skeleton`` files (other files are ignored).
    benchmark
        ``"xsub"`` (cross-subject, both versions), ``"xview"`` (NTU-60: cameras 2 and 3
        train, camera 1 test) or ``"xset"`` (NTU-120: even setups train, odd test).
    max_frames
        Both splits are zero-padded to the longest clip, cut at ``max_frames`` frames.
    progress
        Show a tqdm progress bar over the files.
    exclude
        File stems (or names) to skip, for example the official list of samples with
        missing skeletons; such files would otherwise fail with "no skeleton in any frame".

    Returns
    -------
    DatasetSplits
        Layout ``"ntu25"``, sample ids the file stems, ``benchmark`` like ``"ntu60-xsub"``.

    Raises
    ------
    DatasetError
        An unknown benchmark or one that does not exist for the detected version, no files,
        an empty split, or any bad file (naming the file and line).
    """
    root = Path(directory)
    if max_frames < 1:
        raise DatasetError(f"max_frames must be at least 1, got {max_frames}", root)
    files = _list_files(root, exclude)
    names = {p: parse_ntu_name(p.name, p) for p in files}
    ntu120 = any(n.is_ntu120 for n in names.values())
    bench = _resolve_benchmark(benchmark, ntu120, root)
    train = [p for p in files if is_train_sample(names[p], bench)]
    test = [p for p in files if not is_train_sample(names[p], bench)]
    for split, members in (("train", train), ("test", test)):
        if not members:
            raise DatasetError(f"the {split} split of {bench} is empty ({len(files)} files in all)", root)
    joints: dict[Path, np.ndarray] = {}
    dropped = 0
    for p in tqdm(files, desc=f"{bench} skeletons", unit="file", disable=not progress):
        parsed = parse_skeleton_text(_read_text(p), p)
        joints[p] = parsed.joints
        dropped += parsed.dropped_frames
    if dropped:
        _log.info("%s: dropped %d frames without any body", root, dropped)
    frames = min(max_frames, max(j.shape[0] for j in joints.values()))
    classes = list(NTU120_CLASSES if ntu120 else NTU60_CLASSES)
    return DatasetSplits(
        train=_build_split(train, names, joints, frames, classes, str(root)),
        test=_build_split(test, names, joints, frames, classes, str(root)),
        benchmark=bench,
    )
