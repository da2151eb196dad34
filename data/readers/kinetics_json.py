"""Reader of the Kinetics-skeleton JSON format of ST-GCN (OpenPose-18 2-D keypoints).

The dataset folder holds, per split (``train`` and ``val``), a folder of clips and a label
file, as ST-GCN distributes it::

    kinetics_train/CLIP_ID.json   kinetics_train_label.json
    kinetics_val/CLIP_ID.json     kinetics_val_label.json

A clip file::

    {"data": [{"frame_index": 1,
               "skeleton": [{"pose": [x0, y0, x1, y1, ..., x17, y17],   # 36 numbers
                             "score": [s0, ..., s17]},                  # 18 numbers
                            ...]},
              ...],
     "label": "dancing", "label_index": 3}

A label file: ``{CLIP_ID: {"has_skeleton": bool, "label": str, "label_index": int}}``.

The joints are OpenPose's 18 (layout ``kinetics18``), ``x y`` normalised to the frame
(C = 2), the score becomes the dataset's ``confidence``; OpenPose writes an undetected
joint as ``0, 0`` with score 0, which is thus a missing joint. OpenPose does not track
persons, so, as ST-GCN's feeder does, each frame keeps its two skeletons of the highest
total score, the higher first (ST-GCN also subtracts 0.5 from ``x y``; mksgn centres
instead, see :mod:`mksgn.data.transforms`).
"""

from __future__ import annotations

import json
import math
from os import PathLike
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mksgn.data.dataset import MAX_PERSONS, DatasetSplits, SkeletonDataset, stack_sequences
from mksgn.data.readers.scores import confidence_from_scores
from mksgn.errors import DatasetError

NUM_JOINTS = 18
"""Joints of an OpenPose-18 skeleton."""

SPLITS: tuple[tuple[str, str], ...] = (("train", "train"), ("test", "val"))
"""mksgn's split and the name ST-GCN gives its folder and label file."""


def _load_json(path: Path, what: str) -> object:
    try:
        with path.open("r", encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise DatasetError(f"cannot read {what}: {exc.strerror or exc}", path) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"not valid JSON ({exc})", path) from exc


def _numbers(values: object, count: int, field: str, path: Path, where: str) -> np.ndarray:
    """A list of ``count`` finite numbers as float32."""
    if not isinstance(values, list) or len(values) != count:
        got = f"{len(values)} values" if isinstance(values, list) else type(values).__name__
        raise DatasetError(f"{field!r} must hold {count} numbers ({NUM_JOINTS} joints), got {got}", path,
                           f"{where}.{field}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise DatasetError(f"{field!r} must hold numbers only", path, f"{where}.{field}")
    if not all(math.isfinite(v) and abs(v) <= 3.4e38 for v in values):
        raise DatasetError(f"{field!r} holds NaN or infinite values", path, f"{where}.{field}")
    return np.asarray(values, dtype=np.float32)


def _skeleton(info: object, path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One skeleton: ``(V, 2)`` coordinates and ``(V,)`` scores."""
    if not isinstance(info, dict):
        raise DatasetError(f"a skeleton must be an object, got {type(info).__name__}", path, where)
    for key in ("pose", "score"):
        if key not in info:
            raise DatasetError(f"missing key {key!r}", path, where)
    pose = _numbers(info["pose"], 2 * NUM_JOINTS, "pose", path, where)
    score = _numbers(info["score"], NUM_JOINTS, "score", path, where)
    return pose.reshape(NUM_JOINTS, 2), confidence_from_scores(score, path, f"{where}.score", "'score'")


def _frames(data: object, path: Path) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """The skeletons of each frame, by ``frame_index``."""
    if not isinstance(data, list) or not data:
        raise DatasetError("'data' must be a non-empty list of frames", path, "key 'data'")
    frames: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for t, frame in enumerate(data):
        where = f"data[{t}]"
        if not isinstance(frame, dict) or "frame_index" not in frame or "skeleton" not in frame:
            raise DatasetError("a frame must be an object with 'frame_index' and 'skeleton'", path, where)
        index, skeletons = frame["frame_index"], frame["skeleton"]
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise DatasetError(f"'frame_index' must be an integer >= 0, got {index!r}", path, f"{where}.frame_index")
        if index in frames:
            raise DatasetError(f"duplicate frame_index {index}", path, f"{where}.frame_index")
        if not isinstance(skeletons, list):
            raise DatasetError("'skeleton' must be a list", path, f"{where}.skeleton")
        frames[index] = [_skeleton(s, path, f"{where}.skeleton[{m}]") for m, s in enumerate(skeletons)]
    return frames


def read_kinetics_clip(path: str | PathLike[str]) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Read one clip file.

    Returns
    -------
    tuple[np.ndarray, np.ndarray, int | None]
        Coordinates ``(T, 18, 2, 2)`` (frames, joints, persons, x y) and confidence
        ``(T, 18, 2)``, float32, and the clip's ``label_index`` (``None`` if absent). Frame
        ``t`` is ``frame_index - first frame_index``; a frame without entry or skeleton has
        no person; ``T`` ends at the last frame with a skeleton. Per frame the two skeletons
        of the highest total score are kept, the higher in person 0.

    Raises
    ------
    DatasetError
        Naming the file and the field (``data[3].skeleton[0].pose``): unreadable JSON, a
        missing key, a wrong number of values (joints), NaN or infinite values, a score
        outside ``[0, 1]``, a duplicate frame index, or no skeleton in any frame.
    """
    p = Path(path)
    clip = _load_json(p, "the clip")
    if not isinstance(clip, dict) or "data" not in clip:
        raise DatasetError("expected an object with 'data'", p)
    frames = _frames(clip["data"], p)
    seen = [i for i, skeletons in frames.items() if skeletons]
    if not seen:
        raise DatasetError("no skeleton in any frame (has_skeleton should be false)", p, "key 'data'")
    first = min(seen)  # the clip starts at its first frame with a skeleton (leading empty frames dropped)
    shown = [i - first for i in seen]
    coords = np.zeros((max(shown) + 1, NUM_JOINTS, MAX_PERSONS, 2), dtype=np.float32)
    conf = np.zeros((max(shown) + 1, NUM_JOINTS, MAX_PERSONS), dtype=np.float32)
    for index, skeletons in frames.items():
        t = index - first
        if t >= coords.shape[0]:
            continue
        ranked = sorted(skeletons, key=lambda s: -float(s[1].sum()))  # stable: ties keep file order
        for m, (pose, score) in enumerate(ranked[:MAX_PERSONS]):
            coords[t, :, m], conf[t, :, m] = pose, score
    label = clip.get("label_index")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
        raise DatasetError(f"'label_index' must be an integer, got {label!r}", p, "key 'label_index'")
    return coords, conf, label


def _read_labels(path: Path) -> dict[str, tuple[int, str]]:
    """The clips with a skeleton: ``clip id -> (label_index, label)``."""
    table = _load_json(path, "the label file")
    if not isinstance(table, dict):
        raise DatasetError(f"expected an object clip id -> label, got {type(table).__name__}", path)
    out: dict[str, tuple[int, str]] = {}
    for clip, info in table.items():
        where = f"key {clip!r}"
        if not isinstance(info, dict) or not all(k in info for k in ("has_skeleton", "label", "label_index")):
            raise DatasetError("expected an object with 'has_skeleton', 'label' and 'label_index'", path, where)
        index, label = info["label_index"], info["label"]
        if isinstance(index, bool) or not isinstance(index, int) or index < 0 or not isinstance(label, str):
            raise DatasetError(f"'label_index' must be an integer >= 0 and 'label' a string, got {index!r}, {label!r}",
                               path, where)
        if info["has_skeleton"] is True:
            out[str(clip)] = (index, label)
    if not out:
        raise DatasetError("no clip with has_skeleton true", path)
    return out


def _class_names(tables: list[dict[str, tuple[int, str]]], paths: list[Path]) -> list[str]:
    """Class names by label index over both label files (``class_k`` for unseen indices)."""
    names: dict[int, str] = {}
    for table, path in zip(tables, paths, strict=True):
        for clip, (index, label) in table.items():
            if names.setdefault(index, label) != label:
                raise DatasetError(f"label_index {index} is {label!r} here but {names[index]!r} elsewhere",
                                   path, f"key {clip!r}")
    return [names.get(k, f"class_{k}") for k in range(max(names) + 1)]


def read_kinetics_dir(directory: str | PathLike[str], max_frames: int = 300, progress: bool = True) -> DatasetSplits:
    """Read ST-GCN's Kinetics-skeleton folder (see the module docstring) into its two splits.

    Parameters
    ----------
    directory
        Holds ``kinetics_train/``, ``kinetics_val/`` and their ``*_label.json`` files.
    max_frames
        Both splits are zero-padded to the longest clip, cut at ``max_frames`` frames (300
        as in ST-GCN).
    progress
        Show a tqdm progress bar over the clips.

    Returns
    -------
    DatasetSplits
        Train: ``kinetics_train``; test: ``kinetics_val``; the clips whose label entry has
        ``has_skeleton`` true, in sorted id order. Layout ``kinetics18``, C = 2 with the
        scores as ``confidence``; class names from the label files; ``benchmark``
        ``"kinetics"``.

    Raises
    ------
    DatasetError
        A missing folder, label file or clip file, a bad label entry, a clip's
        ``label_index`` other than its label file's, or a bad clip (see
        :func:`read_kinetics_clip`); each naming the file and the field.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError("not a directory", root)
    if max_frames < 1:
        raise DatasetError(f"max_frames must be at least 1, got {max_frames}", root)
    label_paths = [root / f"kinetics_{name}_label.json" for _, name in SPLITS]
    tables = [_read_labels(p) for p in label_paths]
    classes = _class_names(tables, label_paths)
    clips = []
    for (_, name), table, label_path in zip(SPLITS, tables, label_paths, strict=True):
        folder = root / f"kinetics_{name}"
        if not folder.is_dir():
            raise DatasetError(f"no clip folder kinetics_{name}/", root)
        clips.append(_read_split(folder, table, label_path, progress))
    frames = min(max_frames, max(c[1].shape[0] for split in clips for c in split))
    train, test = (_dataset(split, frames, classes, str(root)) for split in clips)
    return DatasetSplits(train=train, test=test, benchmark="kinetics")


def _read_split(folder: Path, table: dict[str, tuple[int, str]], label_path: Path,
                progress: bool) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    out = []
    for clip in tqdm(sorted(table), desc=f"{folder.name} clips", unit="file", disable=not progress):
        path = folder / f"{clip}.json"
        if not path.is_file():
            raise DatasetError(f"clip {clip!r} has a skeleton but no file {path.name} in {folder.name}/",
                               label_path, f"key {clip!r}")
        coords, conf, label = read_kinetics_clip(path)
        index = table[clip][0]
        if label is not None and label != index:
            raise DatasetError(f"label_index {label} but the label file says {index}", path, "key 'label_index'")
        out.append((clip, coords, conf, index))
    return out


def _dataset(clips: list[tuple[str, np.ndarray, np.ndarray, int]], frames: int, classes: list[str],
             source: str) -> SkeletonDataset:
    data, lengths = stack_sequences([c[1] for c in clips], frames)
    confidence = stack_sequences([c[2][..., None] for c in clips], frames)[0][:, 0]
    return SkeletonDataset(
        data=data, labels=np.array([c[3] for c in clips], dtype=np.int64), lengths=lengths,
        class_names=list(classes), sample_ids=[c[0] for c in clips], layout="kinetics18", source=source,
        confidence=confidence,
    )
