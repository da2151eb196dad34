"""The one in-memory skeleton dataset every reader produces.

``data`` is float32 ``(N, C, F, V, M)``: samples, coordinates (x, y, z; or x, y for 2-D
keypoints), frames, joints and persons. Frames past a sample's ``length`` are zero padding;
an absent person is all zeros. A pose estimator's per-joint confidence, where the data have
one, is kept apart in ``confidence`` ``(N, F, V, M)``: it is never centred or differenced and
is no model input channel (a confidence of 0 marks a joint missing, see
:func:`~mksgn.data.transforms.missing_joints`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mksgn.data.skeletons import SkeletonLayout, get_layout
from mksgn.errors import DatasetError

NUM_COORDS = 3
"""Coordinates per joint of 3-D data: x, y, z (what a file without a coordinate count holds)."""

COORD_COUNTS: tuple[int, ...] = (2, 3)
"""The coordinate counts ``C`` a dataset may have: x, y (2-D keypoints) or x, y, z."""

MAX_PERSONS = 2
"""Persons kept per sample, as in NTU RGB+D and CTR-GCN."""


@dataclass
class SkeletonDataset:
    """Skeleton sequences with labels.

    Parameters
    ----------
    data
        float32 ``(N, C, F, V, M)``.
    labels
        int64 ``(N,)``, in ``0 .. len(class_names) - 1``.
    lengths
        int64 ``(N,)``, valid frames per sample (``1 .. F``); later frames are padding.
    class_names
        Name of each class.
    sample_ids
        One identifier per sample (a file name, a clip name, ``synth-000042``).
    layout
        Name of the skeleton layout (see :mod:`mksgn.data.skeletons`).
    source
        Where the samples came from (a path), for error messages and reports.
    confidence
        float32 ``(N, F, V, M)`` in ``[0, 1]``, the pose estimator's confidence per joint, or
        ``None`` (no confidence, as for Kinect data).
    """

    data: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray
    class_names: list[str]
    sample_ids: list[str]
    layout: str
    source: str = "<memory>"
    confidence: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.validate()

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def skeleton(self) -> SkeletonLayout:
        """The :class:`SkeletonLayout` named by ``layout``."""
        return get_layout(self.layout)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def validate(self) -> None:
        """Check shapes, dtypes, finiteness and label range; raise :class:`DatasetError`."""
        src = self.source
        if self.data.ndim != 5:
            raise DatasetError(f"data must be (N, C, F, V, M), got shape {self.data.shape}", src)
        n, c, f, v, m = self.data.shape
        if self.data.dtype != np.float32:
            raise DatasetError(f"data must be float32, got {self.data.dtype}", src)
        try:
            layout = get_layout(self.layout)
        except ValueError as exc:
            raise DatasetError(str(exc), src) from exc
        if v != layout.num_joints:
            raise DatasetError(f"layout {self.layout} has {layout.num_joints} joints, data has {v}", src)
        if c not in COORD_COUNTS:
            raise DatasetError(f"expected {' or '.join(map(str, COORD_COUNTS))} coordinates per joint, got {c}", src)
        if f < 1:
            raise DatasetError("sequences have no frames", src)
        for name, arr in (("labels", self.labels), ("lengths", self.lengths)):
            if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
                raise DatasetError(f"{name} must be integers of shape ({n},), got {arr.dtype} {arr.shape}", src)
        if len(self.sample_ids) != n:
            raise DatasetError(f"{len(self.sample_ids)} sample ids for {n} samples", src)
        if not self.class_names:
            raise DatasetError("no class names", src)
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= len(self.class_names)))
        if bad.size:
            i = int(bad[0])
            raise DatasetError(
                f"label {int(self.labels[i])} outside 0..{len(self.class_names) - 1}", src, f"sample {i}"
            )
        bad = np.flatnonzero((self.lengths < 1) | (self.lengths > f))
        if bad.size:
            i = int(bad[0])
            raise DatasetError(f"length {int(self.lengths[i])} outside 1..{f} (empty sequence?)", src, f"sample {i}")
        finite = np.isfinite(self.data).reshape(n, -1).all(axis=1)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise DatasetError("NaN or infinite coordinates", src, f"sample {i}")
        if self.confidence is not None:
            self._validate_confidence()

    def _validate_confidence(self) -> None:
        """``confidence``: float32 ``(N, F, V, M)``, finite, in ``[0, 1]``."""
        n, _, f, v, m = self.data.shape
        conf = self.confidence
        if not isinstance(conf, np.ndarray) or conf.shape != (n, f, v, m) or conf.dtype != np.float32:
            got = f"{conf.dtype} {conf.shape}" if isinstance(conf, np.ndarray) else type(conf).__name__
            raise DatasetError(f"confidence must be float32 of shape {(n, f, v, m)}, got {got}", self.source)
        ok = ((conf >= 0) & (conf <= 1)).reshape(n, -1).all(axis=1)  # False for NaN too
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise DatasetError("confidence NaN, infinite or outside [0, 1]", self.source, f"sample {i}")

    def subset(self, index: np.ndarray | list[int]) -> "SkeletonDataset":
        """The samples at ``index`` (an integer or boolean array), as a new dataset."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return SkeletonDataset(
            data=self.data[idx],
            labels=self.labels[idx],
            lengths=self.lengths[idx],
            class_names=list(self.class_names),
            sample_ids=[self.sample_ids[i] for i in idx],
            layout=self.layout,
            source=self.source,
            confidence=None if self.confidence is None else self.confidence[idx],
        )

    def class_counts(self) -> np.ndarray:
        """Number of samples per class, ``(num_classes,)``."""
        return np.bincount(self.labels, minlength=self.num_classes)


@dataclass
class DatasetSplits:
    """A benchmark: a training and a test :class:`SkeletonDataset` with the same classes."""

    train: SkeletonDataset
    test: SkeletonDataset
    benchmark: str = "default"

    def __post_init__(self) -> None:
        if self.train.class_names != self.test.class_names:
            raise DatasetError("train and test splits have different class names", self.train.source)
        if self.train.layout != self.test.layout:
            raise DatasetError("train and test splits have different layouts", self.train.source)


def stack_sequences(
    sequences: list[np.ndarray], frames: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad sequences ``(F_i, V, M, C)`` into ``(N, C, F, V, M)`` float32 plus lengths.

    Parameters
    ----------
    sequences
        One array ``(F_i, V, M, C)`` per sample.
    frames
        Padded length; default the longest sequence. Longer sequences are cut.
    """
    if not sequences:
        raise DatasetError("no sequences to stack")
    f = frames or max(s.shape[0] for s in sequences)
    _, v, m, c = sequences[0].shape
    out = np.zeros((len(sequences), c, f, v, m), dtype=np.float32)
    lengths = np.zeros(len(sequences), dtype=np.int64)
    for i, seq in enumerate(sequences):
        k = min(f, seq.shape[0])
        out[i, :, :k] = seq[:k].transpose(3, 0, 1, 2)
        lengths[i] = k
    return out, lengths
