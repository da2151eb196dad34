"""Reader of pyskl / mmaction2 skeleton annotation pickles.

The format (for example pyskl's ``ntu60_3danno.pkl`` or ``ntu120_hrnet.pkl``)::

    {'split': {'xsub_train': [frame_dir, ...], 'xsub_val': [...], ...},
     'annotations': [{'frame_dir': str, 'label': int, 'total_frames': int,
                      'keypoint': (M, T, V, C) float16/32,
                      'keypoint_score': (M, T, V)  # with 2-D keypoints
                      }, ...]}

3-D keypoints give ``x y z`` coordinates (C = 3); 2-D keypoints give ``x y`` (C = 2) and
``keypoint_score`` becomes the dataset's ``confidence`` (never a coordinate). The pickle is
loaded with :func:`~mksgn.data.readers.safe_pickle.safe_load`, which runs no code from the
file.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from mksgn.data.class_names import NTU60_CLASSES, NTU120_CLASSES
from mksgn.data.dataset import MAX_PERSONS, DatasetSplits, SkeletonDataset, stack_sequences
from mksgn.data.readers.ntu_skeleton import body_activity
from mksgn.data.readers.safe_pickle import safe_load
from mksgn.data.skeletons import get_layout, layout_for_joints
from mksgn.data.readers.scores import confidence_from_scores
from mksgn.errors import DatasetError

_FLOAT32_MAX = float(np.finfo(np.float32).max)

TEST_SPLIT_SUFFIXES: tuple[str, ...] = ("_val", "_test")
"""Suffixes of the test split's name after the benchmark, tried in this order."""


@dataclass(frozen=True)
class _Sample:
    """One checked annotation: ``(T, V, 2, C)`` float32 joints, its label and, for 2-D
    keypoints, the score ``(T, V, 2)``."""

    frame_dir: str
    label: int
    joints: np.ndarray
    scores: np.ndarray | None = None


def _require(ann: dict, key: str, path: Path, where: str) -> object:
    if key not in ann:
        raise DatasetError(f"missing key {key!r}", path, where)
    return ann[key]


def _as_int(value: object, what: str, path: Path, where: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DatasetError(f"{what} must be an integer, got {type(value).__name__}", path, where)
    return int(value)


def _keypoint_array(ann: dict, path: Path, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``keypoint`` array as float32 ``(M, T, V, C)`` and, for C = 2, its score ``(M, T, V)``."""
    kp = _require(ann, "keypoint", path, where)
    if not isinstance(kp, np.ndarray) or not np.issubdtype(kp.dtype, np.floating):
        kind = kp.dtype if isinstance(kp, np.ndarray) else type(kp).__name__
        raise DatasetError(f"'keypoint' must be a float numpy array, got {kind}", path, where)
    if kp.ndim != 4:
        raise DatasetError(f"'keypoint' must be (M, T, V, C), got shape {kp.shape}", path, where)
    m, t, v, c = kp.shape
    if m < 1 or t < 1:
        raise DatasetError(f"'keypoint' has no person or no frame, shape {kp.shape}", path, where)
    if c == 3:
        return _finite_float32(kp, path, where), None
    if c != 2:
        raise DatasetError(f"'keypoint' must have C = 2 or 3 channels, got shape {kp.shape}", path, where)
    score = ann.get("keypoint_score")
    if not isinstance(score, np.ndarray) or score.shape != (m, t, v):
        got = score.shape if isinstance(score, np.ndarray) else type(score).__name__
        raise DatasetError(f"2-D 'keypoint' needs 'keypoint_score' of shape {(m, t, v)}, got {got}", path, where)
    if not np.issubdtype(score.dtype, np.floating):
        raise DatasetError(f"'keypoint_score' must be float, got {score.dtype}", path, where)
    scores = confidence_from_scores(_finite_float32(score, path, where), path, where, "'keypoint_score'")
    return _finite_float32(kp, path, where), scores


def _finite_float32(values: np.ndarray, path: Path, where: str) -> np.ndarray:
    """``values`` as float32; an error for NaN, infinity or float32 overflow."""
    if not (np.abs(values) <= _FLOAT32_MAX).all():
        raise DatasetError("NaN or infinite keypoint (or too large for float32)", path, where)
    return values.astype(np.float32)


def _person_order(kp: np.ndarray, scores: np.ndarray | None) -> list[int]:
    """The persons to keep, in order: the first two, or the two most active if ``M > 2``.

    A person's activity is :func:`~mksgn.data.readers.ntu_skeleton.body_activity` over the
    frames where it is present (any non-zero coordinate or score), of its coordinates.
    """
    m, t = kp.shape[:2]
    if m <= MAX_PERSONS:
        return list(range(m))
    activity = []
    for person in range(m):
        present = np.abs(kp[person]).reshape(t, -1).max(axis=1) > 0
        if scores is not None:
            present |= scores[person].max(axis=1) > 0
        activity.append(body_activity(kp[person][present]))
    return sorted(range(m), key=lambda i: (-activity[i], i))[:MAX_PERSONS]


def _keep_persons(kp: np.ndarray, order: list[int]) -> np.ndarray:
    """``(M, T, V, ...)`` to ``(T, V, 2, ...)`` with the persons ``order``; others are zeros."""
    out = np.zeros(kp.shape[1:3] + (MAX_PERSONS,) + kp.shape[3:], dtype=np.float32)
    for slot, person in enumerate(order[:MAX_PERSONS]):
        out[:, :, slot] = kp[person]
    return out


def _parse_annotation(ann: object, path: Path, where: str) -> tuple[_Sample, int]:
    """A checked sample and its joint count ``V``."""
    if not isinstance(ann, dict):
        raise DatasetError(f"annotation must be a dict, got {type(ann).__name__}", path, where)
    frame_dir = _require(ann, "frame_dir", path, where)
    if not isinstance(frame_dir, str) or not frame_dir:
        raise DatasetError(f"'frame_dir' must be a non-empty str, got {frame_dir!r}", path, where)
    label = _as_int(_require(ann, "label", path, where), "'label'", path, where)
    if label < 0:
        raise DatasetError(f"label {label} out of range (negative)", path, where)
    kp, scores = _keypoint_array(ann, path, where)
    _, t, v, _ = kp.shape
    if "total_frames" in ann:
        total = _as_int(ann["total_frames"], "'total_frames'", path, where)
        if total != t:
            raise DatasetError(f"'total_frames' {total} but 'keypoint' has {t} frames", path, where)
    order = _person_order(kp, scores)
    kept = None if scores is None else _keep_persons(scores, order)
    return _Sample(frame_dir, label, _keep_persons(kp, order), kept), v


def _layout_for(v: int, coords: int, layout: str | None, path: Path, where: str) -> str:
    """The layout: ``layout`` when given (its joint count checked), else by ``V`` and ``C``."""
    try:
        found = get_layout(layout) if layout is not None else layout_for_joints(v, coords)
    except ValueError as exc:
        raise DatasetError(f"joint count V = {v}: {exc}", path, where) from None
    if found.num_joints != v:
        raise DatasetError(f"layout {layout} has {found.num_joints} joints, the keypoints V = {v}", path, where)
    return layout if layout is not None else found.name


def _class_names(layout: str, max_label: int) -> list[str]:
    if layout == "ntu25" and max_label < len(NTU60_CLASSES):
        return list(NTU60_CLASSES)
    if layout == "ntu25" and max_label < len(NTU120_CLASSES):
        return list(NTU120_CLASSES)
    return [f"class_{k}" for k in range(max_label + 1)]


def _split_lists(root: dict, benchmark: str, path: Path) -> tuple[tuple[str, list[str]], tuple[str, list[str]]]:
    """``(name, frame_dirs)`` of the train and the test split."""
    splits = _require(root, "split", path, "top level")
    if not isinstance(splits, dict):
        raise DatasetError(f"'split' must be a dict, got {type(splits).__name__}", path, "key 'split'")
    names = [f"{benchmark}_train"] + [f"{benchmark}{s}" for s in TEST_SPLIT_SUFFIXES]
    train_name = names[0]
    test_name = next((n for n in names[1:] if n in splits), None)
    if train_name not in splits or test_name is None:
        raise DatasetError(
            f"benchmark {benchmark!r} needs splits {train_name!r} and one of {names[1:]}; "
            f"the file has {sorted(map(str, splits))}",
            path,
            "key 'split'",
        )
    out = []
    for name in (train_name, test_name):
        members = splits[name]
        if not isinstance(members, (list, tuple)) or not all(isinstance(m, str) for m in members):
            raise DatasetError("split must be a list of frame_dir strings", path, f"split[{name!r}]")
        if not members:
            raise DatasetError("split is empty", path, f"split[{name!r}]")
        out.append((name, list(members)))
    return out[0], out[1]


def _build(
    members: tuple[str, list[str]],
    samples: dict[str, _Sample],
    frames: int,
    classes: list[str],
    layout: str,
    path: Path,
) -> SkeletonDataset:
    name, frame_dirs = members
    for i, frame_dir in enumerate(frame_dirs):
        if frame_dir not in samples:
            raise DatasetError(f"frame_dir {frame_dir!r} has no annotation", path, f"split[{name!r}][{i}]")
    chosen = [samples[d] for d in frame_dirs]
    data, lengths = stack_sequences([s.joints for s in chosen], frames)
    confidence = None
    if chosen[0].scores is not None:
        confidence = stack_sequences([s.scores[..., None] for s in chosen], frames)[0][:, 0]
    return SkeletonDataset(
        data=data,
        labels=np.array([s.label for s in chosen], dtype=np.int64),
        lengths=lengths,
        class_names=list(classes),
        sample_ids=list(frame_dirs),
        layout=layout,
        source=str(path),
        confidence=confidence,
    )


def _load_root(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            root = safe_load(fh, path)
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror or exc}", path) from exc
    if not isinstance(root, dict):
        raise DatasetError(f"expected a dict with 'split' and 'annotations', got {type(root).__name__}", path)
    return root


def _parse_all(annotations: object, layout: str | None, path: Path) -> tuple[dict[str, _Sample], str]:
    """Samples by ``frame_dir`` and their layout's name."""
    if not isinstance(annotations, (list, tuple)) or not annotations:
        raise DatasetError("'annotations' must be a non-empty list", path, "key 'annotations'")
    samples: dict[str, _Sample] = {}
    joints, first_scores = None, None
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        sample, v = _parse_annotation(ann, path, where)
        if joints is None:
            name = _layout_for(v, 2 if sample.scores is not None else 3, layout, path, where)
            joints, first_scores = v, sample.scores
        elif v != joints:
            raise DatasetError(f"{v} joints, but annotations[0] has {joints}", path, where)
        elif (sample.scores is None) != (first_scores is None):
            raise DatasetError("2-D and 3-D keypoints mixed; annotations[0] differs", path, where)
        if sample.frame_dir in samples:
            raise DatasetError(f"duplicate frame_dir {sample.frame_dir!r}", path, where)
        samples[sample.frame_dir] = sample
    return samples, name


def read_pyskl(
    path: str | PathLike[str], benchmark: str = "xsub", max_frames: int = 300, layout: str | None = None
) -> DatasetSplits:
    """Read a pyskl annotation pickle into a benchmark's splits.

    Parameters
    ----------
    path
        The ``.pkl`` file; loaded with a restricted unpickler (no code runs).
    benchmark
        Prefix of the split names: the train split is ``f"{benchmark}_train"``, the test
        split ``f"{benchmark}_val"`` or else ``f"{benchmark}_test"``.
    max_frames
        Both splits are zero-padded to the longest clip, cut at ``max_frames`` frames.
    layout
        The skeleton layout (name or alias); default by the joint count ``V``, see
        :func:`~mksgn.data.skeletons.layout_for_joints` (needed for 2-D keypoints of 25
        joints: ``ntu25`` or ``body25``).

    Returns
    -------
    DatasetSplits
        Layout ``layout``, else ``ntu25`` (V = 25, 3-D), ``ucla20`` (V = 20),
        ``kinetics18`` (V = 18, OpenPose) or ``coco17`` (V = 17, COCO / HRNet); channels
        ``x y z`` (C = 3), or ``x y`` (C = 2) with ``keypoint_score`` as the ``confidence``
        (in ``[0, 1]``; a score of 0 marks a joint missing); at most two
        persons (the first two, or the two most active when M > 2); class names the NTU
        ones for ``ntu25`` when every label is below 120 (60 names when below 60), else
        ``class_0 .. class_{max label}``; ``benchmark`` is ``f"{file stem}-{benchmark}"``.

    Raises
    ------
    DatasetError
        Naming the file and the position (``annotations[3]``, ``split['xsub_val'][7]``):
        a refused pickle global, missing keys, a keypoint of the wrong type, ndim, V or C,
        a negative label, NaN or infinite values, a duplicate frame_dir, a split naming an
        unknown frame_dir, a missing or empty split, a frame_dir in both splits.
    """
    p = Path(path)
    if max_frames < 1:
        raise DatasetError(f"max_frames must be at least 1, got {max_frames}", p)
    root = _load_root(p)
    train, test = _split_lists(root, benchmark, p)
    samples, layout = _parse_all(_require(root, "annotations", p, "top level"), layout, p)
    both = sorted(set(train[1]) & set(test[1]))
    if both:
        raise DatasetError(f"{len(both)} frame_dirs in both splits, first {both[0]!r}", p, "key 'split'")
    classes = _class_names(layout, max(s.label for s in samples.values()))
    used = [samples[d].joints.shape[0] for d in train[1] + test[1] if d in samples]
    frames = min(max_frames, max(used, default=1))
    return DatasetSplits(
        train=_build(train, samples, frames, classes, layout, p),
        test=_build(test, samples, frames, classes, layout, p),
        benchmark=f"{p.stem}-{benchmark}",
    )
