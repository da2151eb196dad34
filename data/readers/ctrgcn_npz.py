"""CTR-GCN's npz layout, read and written.

The file holds ``x_train`` and ``x_test``, float32 ``(N, T, M * V * 3)`` (persons, joints,
coordinates, zero padded after the last valid frame), and ``y_train`` / ``y_test``, one-hot
``(N, K)`` (integer labels ``(N,)`` are accepted too). mksgn adds optional string arrays
``class_names``, ``train_ids``, ``test_ids`` and ``layout``, and an integer ``persons``,
which CTR-GCN ignores. ``x.reshape(N, T, M, V, 3).transpose(0, 4, 1, 3, 2)`` gives mksgn's
``(N, 3, T, V, M)``.

2-D keypoints extend this with two optional keys (written only for such data, so 3-D files
are what they always were, and a file without them reads as before):

- ``coords``, an integer ``C`` in :data:`~mksgn.data.dataset.COORD_COUNTS`: the coordinates
  per joint (default 3); ``x_train`` is then ``(N, T, M * V * C)``;
- ``x_train_score`` and ``x_test_score``, float32 ``(N, T, M * V)`` in ``[0, 1]``, persons
  then joints as in ``x_*``: the pose estimator's confidence per joint (both or neither);
  ``score.reshape(N, T, M, V).transpose(0, 1, 3, 2)`` gives the dataset's ``confidence``.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from mksgn.atomic import atomic_open
from mksgn.data.dataset import COORD_COUNTS, MAX_PERSONS, NUM_COORDS, DatasetSplits, SkeletonDataset
from mksgn.data.skeletons import get_layout, layout_for_joints
from mksgn.errors import DatasetError
from mksgn.paths import PathError, check_input_file

SPLITS = ("train", "test")
"""The two splits a CTR-GCN npz holds."""

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")
"""Keys every CTR-GCN npz must have."""


def read_ctrgcn_npz(path: str | os.PathLike[str], layout: str | None = None) -> DatasetSplits:
    """Read a CTR-GCN npz into a training and a test dataset.

    Parameters
    ----------
    path
        The ``.npz`` file.
    layout
        Skeleton layout name; default the file's ``layout`` key, else inferred from the
        joint count (see :func:`~mksgn.data.skeletons.layout_for_joints`; 3-D: 25 ntu25,
        20 ucla20, 18 kinetics18, 17 coco17; 2-D with 25 joints is ambiguous, an error).

    Raises
    ------
    DatasetError
        Unreadable file, missing key, wrong shape, non-finite value, bad label or empty
        sequence; the message names the file and the key or sample.
    """
    path = Path(path)
    arrays = _load_arrays(path)
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DatasetError(f"missing key(s) {missing}; a CTR-GCN npz needs {list(REQUIRED_KEYS)}", path)
    persons = int(arrays["persons"]) if "persons" in arrays else MAX_PERSONS
    if persons < 1:
        raise DatasetError(f"persons must be >= 1, got {persons}", path, "key 'persons'")
    coords = _coords(arrays, path)
    scored = [f"x_{s}_score" in arrays for s in SPLITS]
    if any(scored) and not all(scored):
        raise DatasetError("x_train_score and x_test_score come together; the file has one", path)
    splits = {}
    num_classes = None
    for split in SPLITS:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        data = _to_ncfvm(x, persons, path, f"x_{split}", coords)
        labels, width = _to_labels(y, data.shape[0], path, f"y_{split}")
        conf = _to_confidence(arrays[f"x_{split}_score"], data.shape, path, f"x_{split}_score") if all(scored) else None
        num_classes = max(num_classes or 0, width)
        splits[split] = (data, labels, conf)
    layout_name = layout or _string(arrays, "layout", path)
    try:
        if layout_name is None:
            layout_name = layout_for_joints(splits["train"][0].shape[3], coords).name
        get_layout(layout_name)
    except ValueError as exc:
        raise DatasetError(str(exc), path, "key 'layout'") from exc
    class_names = _class_names(arrays, num_classes, layout_name, path)
    result = {}
    for split, (data, labels, conf) in splits.items():
        bad = np.flatnonzero(labels >= len(class_names))
        if bad.size:
            raise DatasetError(
                f"label {int(labels[bad[0]])} outside 0..{len(class_names) - 1}",
                path, f"key 'y_{split}', sample {int(bad[0])}",
            )
        ids_key = f"{split}_ids"
        ids = [str(s) for s in arrays[ids_key]] if ids_key in arrays else [f"{split}-{i:06d}" for i in range(len(labels))]
        if len(ids) != len(labels):
            raise DatasetError(f"{len(ids)} ids for {len(labels)} samples", path, f"key '{ids_key}'")
        lengths = _valid_lengths(data, path, f"x_{split}")
        result[split] = SkeletonDataset(
            data=data, labels=labels, lengths=lengths, class_names=class_names,
            sample_ids=ids, layout=layout_name, source=str(path), confidence=conf,
        )
    benchmark = _string(arrays, "benchmark", path) or "default"
    return DatasetSplits(train=result["train"], test=result["test"], benchmark=benchmark)


def write_ctrgcn_npz(path: str | os.PathLike[str], splits: DatasetSplits) -> None:
    """Write ``splits`` in CTR-GCN's npz layout, atomically (temporary file, then rename).

    Both splits are padded to the longer one's frame count. Labels are written one-hot;
    class names, sample ids, the layout and the person count ride along as extra keys; 2-D
    data add ``coords`` and a confidence ``x_*_score`` (see the module docstring).
    """
    if (splits.train.confidence is None) != (splits.test.confidence is None):
        raise DatasetError("one split has a confidence and the other none", splits.train.source)
    frames = max(splits.train.data.shape[2], splits.test.data.shape[2])
    out: dict[str, np.ndarray] = {}
    for split in SPLITS:
        ds: SkeletonDataset = getattr(splits, split)
        n, c, f, v, m = ds.data.shape
        x = np.zeros((n, frames, m * v * c), dtype=np.float32)
        x[:, :f] = ds.data.transpose(0, 2, 4, 3, 1).reshape(n, f, m * v * c)
        y = np.zeros((n, ds.num_classes), dtype=np.float32)
        y[np.arange(n), ds.labels] = 1.0
        out[f"x_{split}"], out[f"y_{split}"] = x, y
        if ds.confidence is not None:
            score = np.zeros((n, frames, m * v), dtype=np.float32)
            score[:, :f] = ds.confidence.transpose(0, 1, 3, 2).reshape(n, f, m * v)
            out[f"x_{split}_score"] = score
        if c != NUM_COORDS:
            out["coords"] = np.array(c, dtype=np.int64)
        out[f"{split}_ids"] = np.array(ds.sample_ids, dtype=np.str_)
        out["persons"] = np.array(m, dtype=np.int64)
    out["class_names"] = np.array(splits.train.class_names, dtype=np.str_)
    out["layout"] = np.array(splits.train.layout, dtype=np.str_)
    out["benchmark"] = np.array(splits.benchmark, dtype=np.str_)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **out)


def _check_members(path: Path) -> None:
    """Each ``.npy`` member's header (dtype, shape) against the bytes the member holds, before reading.

    A header declaring more data than its member stores (a corrupt or crafted file) is
    refused without allocating the declared array.
    """
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                header = member.tell() if hasattr(member, "tell") else 0
            if dtype.hasobject:
                raise DatasetError(f"not a plain npz file: member {info.filename!r} holds Python objects "
                                   f"(pickled); mksgn reads plain arrays only", path)
            declared = math.prod(int(d) for d in shape) * dtype.itemsize
            if declared > info.file_size - header:
                raise DatasetError(f"member {info.filename!r} declares shape {shape} of {dtype} ({declared} bytes) "
                                   f"but holds {info.file_size - header} bytes", path)


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        check_input_file(path, "a CTR-GCN .npz dataset")
    except PathError as exc:
        raise DatasetError(str(exc)) from None
    try:
        _check_members(path)
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except DatasetError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
        raise DatasetError(f"not a readable npz file ({type(exc).__name__}: {exc})", path) from exc
    except ValueError as exc:
        # np.load raises ValueError for pickled (object) arrays and for non-npz content.
        raise DatasetError(f"not a plain npz file ({exc})", path) from exc
    except Exception as exc:  # a corrupt .npy header: SyntaxError, tokenize.TokenError, zlib.error, ...
        raise DatasetError(f"a corrupt npz file ({type(exc).__name__}: {exc})", path) from exc


def _coords(arrays: dict[str, np.ndarray], path: Path) -> int:
    """The file's coordinate count (key ``coords``, default 3)."""
    if "coords" not in arrays:
        return NUM_COORDS
    value = arrays["coords"]
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer) or int(value) not in COORD_COUNTS:
        raise DatasetError(f"expected an integer in {list(COORD_COUNTS)}, got {value.dtype} {value.shape} "
                           f"{value if value.ndim == 0 else ''}".rstrip(), path, "key 'coords'")
    return int(value)


def _to_ncfvm(x: np.ndarray, persons: int, path: Path, key: str, coords: int = NUM_COORDS) -> np.ndarray:
    if x.ndim != 3:
        raise DatasetError(f"expected (N, T, M*V*{coords}), got shape {x.shape}", path, f"key '{key}'")
    if not np.issubdtype(x.dtype, np.floating):
        raise DatasetError(f"expected floating-point coordinates, got {x.dtype}", path, f"key '{key}'")
    n, t, width = x.shape
    if t < 1 or width % (persons * coords) != 0:
        raise DatasetError(
            f"shape {x.shape}: last axis must be persons ({persons}) x joints x {coords}",
            path, f"key '{key}'",
        )
    v = width // (persons * coords)
    bad = ~np.isfinite(x).reshape(n, -1).all(axis=1)
    if bad.any():
        raise DatasetError("NaN or infinite coordinates", path, f"key '{key}', sample {int(np.flatnonzero(bad)[0])}")
    data = x.reshape(n, t, persons, v, coords).transpose(0, 4, 1, 3, 2)
    return np.ascontiguousarray(data, dtype=np.float32)


def _to_confidence(score: np.ndarray, shape: tuple[int, ...], path: Path, key: str) -> np.ndarray:
    """``x_*_score`` ``(N, T, M * V)`` as the confidence ``(N, T, V, M)`` float32, checked."""
    n, _, t, v, m = shape
    if score.shape != (n, t, m * v) or not np.issubdtype(score.dtype, np.floating):
        raise DatasetError(f"expected float (N, T, M*V) = {(n, t, m * v)}, got {score.dtype} {score.shape}",
                           path, f"key '{key}'")
    ok = ((score >= 0) & (score <= 1)).reshape(n, -1).all(axis=1)
    if not ok.all():
        raise DatasetError("confidence NaN, infinite or outside [0, 1]", path,
                           f"key '{key}', sample {int(np.flatnonzero(~ok)[0])}")
    return np.ascontiguousarray(score.reshape(n, t, m, v).transpose(0, 1, 3, 2), dtype=np.float32)


def _to_labels(y: np.ndarray, n: int, path: Path, key: str) -> tuple[np.ndarray, int]:
    """Integer labels and the class count they imply (the one-hot width, or max label + 1)."""
    where = f"key '{key}'"
    if y.shape[:1] != (n,):
        raise DatasetError(f"{y.shape[0] if y.ndim else 0} labels for {n} samples", path, where)
    if y.ndim == 2:
        ok = np.isfinite(y).all(axis=1) & (np.sort(y, axis=1)[:, :-1] == 0).all(axis=1) & (y.max(axis=1) == 1)
        if not ok.all():
            raise DatasetError("label row is not one-hot", path, f"{where}, sample {int(np.flatnonzero(~ok)[0])}")
        return y.argmax(axis=1).astype(np.int64), int(y.shape[1])
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        if n and y.min() < 0:
            raise DatasetError(f"negative label {int(y.min())}", path, f"{where}, sample {int(np.argmin(y))}")
        return y.astype(np.int64), int(y.max()) + 1 if n else 0
    raise DatasetError(f"labels must be one-hot (N, K) or integers (N,), got {y.dtype} {y.shape}", path, where)


def _valid_lengths(data: np.ndarray, path: Path, key: str) -> np.ndarray:
    n, _, f = data.shape[:3]
    active = np.abs(data).reshape(n, data.shape[1], f, -1).max(axis=(1, 3)) > 0  # (N, F)
    lengths = np.where(active.any(axis=1), f - np.argmax(active[:, ::-1], axis=1), 0).astype(np.int64)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise DatasetError("empty sequence (all coordinates zero)", path, f"key '{key}', sample {int(empty[0])}")
    return lengths


def _string(arrays: dict[str, np.ndarray], key: str, path: Path) -> str | None:
    if key not in arrays:
        return None
    value = arrays[key]
    if value.ndim != 0 or value.dtype.kind != "U":
        raise DatasetError(f"expected a string, got {value.dtype} {value.shape}", path, f"key '{key}'")
    return str(value)


def _class_names(arrays: dict[str, np.ndarray], num_classes: int, layout: str, path: Path) -> list[str]:
    if "class_names" in arrays:
        names = [str(s) for s in arrays["class_names"]]
        onehot = max((arrays[f"y_{s}"].shape[1] for s in SPLITS if arrays[f"y_{s}"].ndim == 2), default=0)
        if len(names) < onehot or not names:
            raise DatasetError(f"{len(names)} class names for {onehot} one-hot classes", path, "key 'class_names'")
        return names
    from mksgn.data.class_names import NTU60_CLASSES, NTU120_CLASSES

    if layout == "ntu25" and num_classes == len(NTU60_CLASSES):
        return list(NTU60_CLASSES)
    if layout == "ntu25" and num_classes == len(NTU120_CLASSES):
        return list(NTU120_CLASSES)
    return [f"class_{k}" for k in range(num_classes)]
