"""Reader of Northwestern-UCLA Multiview Action 3D skeletons in the per-clip JSON format.

The format is the one CTR-GCN and its successors distribute (``all_sqe/*.json``): one file
per clip, named ``aAA_sSS_eEE_vVV.json`` (action, subject, episode, view), holding::

    {"file_name": "a01_s01_e00_v01", "label": 1, "skeletons": [[[x, y, z] * 20] * T]}

``label`` is 1-based over the ten actions ``a01 .. a06, a08, a09, a11, a12``; ``file_name``
and ``label`` are optional (the label then comes from the ``aAA`` part of the name). The
benchmark is cross-view: views 1 and 2 train, view 3 tests.
"""

from __future__ import annotations

import json
import re
from os import PathLike
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mksgn.data.class_names import UCLA_CLASSES
from mksgn.data.dataset import MAX_PERSONS, NUM_COORDS, DatasetSplits, SkeletonDataset, stack_sequences
from mksgn.errors import DatasetError

NUM_JOINTS = 20
"""Joints per NW-UCLA (Kinect v1) body."""

UCLA_ACTION_IDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
"""The ``aAA`` numbers of the ten actions; label ``k`` is action ``UCLA_ACTION_IDS[k]``."""

UCLA_TRAIN_VIEWS: frozenset[int] = frozenset((1, 2))
"""Views of the training split; view 3 is the test split."""

UCLA_TEST_VIEW = 3
"""The view of the test split."""

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NAME_RE = re.compile(r"a(\d+)_s(\d+)_e(\d+)_v(\d+)")


def parse_ucla_name(stem: str, path: str | PathLike[str] | None = None) -> tuple[int, int]:
    """The 0-based label and the view of a clip name ``aAA_sSS_eEE_vVV``.

    Raises
    ------
    DatasetError
        The name does not follow the pattern, the action is not one of
        :data:`UCLA_ACTION_IDS` or the view is not 1-3.
    """
    match = _NAME_RE.fullmatch(stem)
    where = stem if path is None else path
    if match is None:
        raise DatasetError(f"file name {stem!r} does not follow the NW-UCLA pattern aAA_sSS_eEE_vVV", where)
    action, view = int(match.group(1)), int(match.group(4))
    if action not in UCLA_ACTION_IDS:
        raise DatasetError(f"file name {stem!r}: action a{action:02d} is not one of {list(UCLA_ACTION_IDS)}", where)
    if not 1 <= view <= UCLA_TEST_VIEW:
        raise DatasetError(f"file name {stem!r}: view {view} outside 1..{UCLA_TEST_VIEW}", where)
    return UCLA_ACTION_IDS.index(action), view


def _load_json(path: Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror or exc}", path) from exc
    except UnicodeDecodeError as exc:
        raise DatasetError("not a UTF-8 text file", path, f"byte {exc.start}") from exc
    try:
        root = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"invalid JSON: {exc.msg}", path, f"line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError:
        raise DatasetError("invalid JSON: nested too deeply", path) from None
    if not isinstance(root, dict):
        raise DatasetError(f"expected a JSON object, got {type(root).__name__}", path, "top level")
    return root


def _label(root: dict, name_label: int, path: Path) -> int:
    """The 0-based label: from ``label`` if present (checked against the name)."""
    if "label" not in root:
        return name_label
    value = root["label"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise DatasetError(f"'label' must be an integer, got {value!r}", path, "key 'label'")
    if not 1 <= value <= len(UCLA_CLASSES):
        raise DatasetError(f"label {value} outside 1..{len(UCLA_CLASSES)}", path, "key 'label'")
    if value - 1 != name_label:
        raise DatasetError(
            f"label {value} disagrees with the file name (action a{UCLA_ACTION_IDS[name_label]:02d} "
            f"is label {name_label + 1})",
            path,
            "key 'label'",
        )
    return value - 1


def _frame(values: object, path: Path, t: int) -> np.ndarray:
    """One frame ``(20, 3)`` float64, checked."""
    try:
        arr = np.array(values, dtype=np.float64)
    except (ValueError, TypeError):
        raise DatasetError("not a 20 x 3 list of numbers", path, f"skeletons[{t}]") from None
    if arr.shape != (NUM_JOINTS, NUM_COORDS):
        raise DatasetError(f"frame must be ({NUM_JOINTS}, {NUM_COORDS}), got {arr.shape}", path, f"skeletons[{t}]")
    if not np.isfinite(arr).all():
        raise DatasetError("NaN or infinite coordinate", path, f"skeletons[{t}]")
    if np.abs(arr).max() > _FLOAT32_MAX:
        raise DatasetError("coordinate too large for float32", path, f"skeletons[{t}]")
    return arr


def _skeletons(root: dict, path: Path) -> np.ndarray:
    """``skeletons`` as float32 ``(T, 20, 2, 3)``, the second person zeros."""
    if "skeletons" not in root:
        raise DatasetError("missing key 'skeletons'", path, "top level")
    frames = root["skeletons"]
    if not isinstance(frames, list) or not frames:
        raise DatasetError("'skeletons' must be a non-empty list of frames", path, "key 'skeletons'")
    joints = np.stack([_frame(f, path, t) for t, f in enumerate(frames)]).astype(np.float32)
    out = np.zeros((len(frames), NUM_JOINTS, MAX_PERSONS, NUM_COORDS), dtype=np.float32)
    out[:, :, 0] = joints
    return out


def read_ucla_file(path: str | PathLike[str]) -> tuple[np.ndarray, int, int]:
    """Read one NW-UCLA clip.

    Parameters
    ----------
    path
        A ``aAA_sSS_eEE_vVV.json`` file.

    Returns
    -------
    joints
        float32 ``(T, 20, 2, 3)``; person 1 is zeros.
    label
        0-based class (index into :data:`~mksgn.data.class_names.UCLA_CLASSES`).
    view
        1, 2 or 3.

    Raises
    ------
    DatasetError
        Naming the file and the position (``line 3, column 7``, ``key 'label'``,
        ``skeletons[12]``).
    """
    p = Path(path)
    name_label, view = parse_ucla_name(p.stem, p)
    root = _load_json(p)
    return _skeletons(root, p), _label(root, name_label, p), view


def _dataset(clips: list[tuple[str, np.ndarray, int]], frames: int, source: str) -> SkeletonDataset:
    data, lengths = stack_sequences([c[1] for c in clips], frames)
    return SkeletonDataset(
        data=data,
        labels=np.array([c[2] for c in clips], dtype=np.int64),
        lengths=lengths,
        class_names=list(UCLA_CLASSES),
        sample_ids=[c[0] for c in clips],
        layout="ucla20",
        source=source,
    )


def read_ucla_dir(directory: str | PathLike[str], progress: bool = True) -> DatasetSplits:
    """Read a directory of NW-UCLA JSON clips into the cross-view benchmark.

    Parameters
    ----------
    directory
        Holds ``aAA_sSS_eEE_vVV.json`` files (other files are ignored).
    progress
        Show a tqdm progress bar over the files.

    Returns
    -------
    DatasetSplits
        Train: views 1 and 2; test: view 3. Layout ``"ucla20"``, the ten
        :data:`~mksgn.data.class_names.UCLA_CLASSES`, one person (person 1 zeros), both
        splits zero-padded to the longest clip; ``benchmark`` is ``"ucla-xview"``.

    Raises
    ------
    DatasetError
        No files, an empty split, or a bad file (naming the file and position).
    """
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError("not a directory", root)
    files = sorted(root.glob("*.json"))
    if not files:
        raise DatasetError("no .json files", root)
    train: list[tuple[str, np.ndarray, int]] = []
    test: list[tuple[str, np.ndarray, int]] = []
    for p in tqdm(files, desc="NW-UCLA clips", unit="file", disable=not progress):
        joints, label, view = read_ucla_file(p)
        (train if view in UCLA_TRAIN_VIEWS else test).append((p.stem, joints, label))
    for split, members in (("train", train), ("test", test)):
        if not members:
            raise DatasetError(f"the {split} split (views {_views(split)}) is empty", root)
    frames = max(c[1].shape[0] for c in train + test)
    return DatasetSplits(
        train=_dataset(train, frames, str(root)),
        test=_dataset(test, frames, str(root)),
        benchmark="ucla-xview",
    )


def _views(split: str) -> str:
    return " ".join(map(str, sorted(UCLA_TRAIN_VIEWS))) if split == "train" else str(UCLA_TEST_VIEW)
