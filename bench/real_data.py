"""A real recorded skeleton dataset obtainable here: the body poses of ``pose-classification-kit``.

``pose-classification-kit`` (PyPI, MIT licence, https://github.com/ArthurFDLR/pose-classification-kit)
ships ``datasets/Body/<Label>_body.json``: 20 classes (yoga poses, traffic signals, squats,
push-ups, ...), about 500-600 frames each, recorded with a webcam through OpenPose in
BODY_25: per frame ``x``, ``y`` (25 joints, normalised image coordinates), ``a`` (the
per-joint confidence) and an undetected joint written as ``(0, 0)`` with confidence 0.
Consecutive frames of a file are consecutive video frames of one recording (their mean
joint displacement is about 13x smaller than between random frames).

:func:`pose_kit_splits` cuts it into clips for action recognition:

- each class's frame sequence is cut into :data:`SEGMENTS` contiguous segments (stretches of
  the recording); whole segments go to the test split (:data:`TEST_SEGMENTS` of them, chosen
  per class with a fixed seed);
- within a segment, clips of :data:`CLIP_FRAMES` frames start every :data:`CLIP_STRIDE`
  frames, leaving :data:`GAP` frames unused at both ends of the segment, so that clips of
  two segments are at least ``2 * GAP`` frames apart (clips overlap only within their own
  segment, on one side of the split);
- sample ids read ``<Label>-seg<k>#<start>``, so that :func:`mksgn.data.splits.validation_split`
  holds out whole segments ("recordings") too.

The package states no performers or sessions, so the split is by recording segment, not by
performer. :func:`fetch` downloads the wheel with ``pip download`` (the package registry is
reachable where nothing else is) and extracts the JSON files; ``python -m bench.real_data
-o pose_kit.npz`` writes the CTR-GCN npz every mksgn command reads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from mksgn.data.dataset import DatasetSplits, SkeletonDataset
from mksgn.data.readers.ctrgcn_npz import write_ctrgcn_npz

PACKAGE = "pose-classification-kit==1.1.5"
"""The pinned release whose ``datasets/Body`` is read."""
SEGMENTS = 8
TEST_SEGMENTS = 2
CLIP_FRAMES = 16
CLIP_STRIDE = 8
GAP = 8
"""Frames left unused at each end of a segment: a test clip is never next to a training clip."""
SPLIT_SEED = 0


def cache_name() -> str:
    """A file name for the npz that changes with every parameter of the cut."""
    return (f"pose-kit-seg{SEGMENTS}-test{TEST_SEGMENTS}-f{CLIP_FRAMES}-stride{CLIP_STRIDE}-gap{GAP}"
            f"-seed{SPLIT_SEED}.npz")


def fetch(cache: str | os.PathLike[str]) -> Path:
    """The folder of ``<Label>_body.json`` files, downloaded (``pip download``) into ``cache`` once."""
    body = Path(cache) / "pose_classification_kit" / "datasets" / "Body"
    if body.is_dir() and any(body.glob("*_body.json")):
        return body
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "-d", tmp, "-q"], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith("pose_classification_kit/datasets/Body/") and name.endswith("_body.json"):
                    zf.extract(name, cache)
    return body


def _read_class(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """Label, ``(T, 2, 25)`` coordinates and ``(T, 25)`` confidence of one file."""
    record = json.loads(path.read_text())
    frames = record["data"]
    coords = np.array([[f["x"], f["y"]] for f in frames], dtype=np.float32)
    confidence = np.clip(np.array([f["a"] for f in frames], dtype=np.float32), 0.0, 1.0)
    missing = (coords == 0).all(axis=1) | (confidence == 0)
    coords[np.repeat(missing[:, None], 2, axis=1)] = 0.0
    confidence[missing] = 0.0
    return record["info"]["label"], coords, confidence


def _clips(coords: np.ndarray, confidence: np.ndarray, label: str, rng: np.random.Generator
           ) -> tuple[list[tuple[np.ndarray, np.ndarray, str]], list[tuple[np.ndarray, np.ndarray, str]]]:
    """(train, test) clips ``(coords (2, F, 25), confidence (F, 25), id)`` of one class."""
    bounds = np.linspace(0, len(coords), SEGMENTS + 1).astype(int)
    test = set(rng.choice(SEGMENTS, TEST_SEGMENTS, replace=False).tolist())
    out: tuple[list, list] = ([], [])
    for k in range(SEGMENTS):
        lo, hi = bounds[k] + GAP, bounds[k + 1] - GAP
        for start in range(lo, hi - CLIP_FRAMES + 1, CLIP_STRIDE):
            sl = slice(start, start + CLIP_FRAMES)
            out[k in test].append((coords[sl].transpose(1, 0, 2), confidence[sl], f"{label}-seg{k}#{start - bounds[k]}"))
    return out


def pose_kit_splits(body: str | os.PathLike[str]) -> DatasetSplits:
    """The clips of every class file in ``body`` as a :class:`DatasetSplits` (module docstring)."""
    rng = np.random.default_rng(SPLIT_SEED)
    files = sorted(Path(body).glob("*_body.json"))
    labels = [path.name[: -len("_body.json")] for path in files]
    parts: tuple[list, list] = ([], [])
    for c, path in enumerate(files):
        _, coords, confidence = _read_class(path)
        for side, clips in enumerate(_clips(coords, confidence, labels[c], rng)):
            parts[side].extend((x, a, name, c) for x, a, name in clips)
    splits = []
    for clips in parts:
        data = np.stack([x for x, _, _, _ in clips])[..., None]  # (N, 2, F, 25, 1)
        data = np.concatenate([data, np.zeros_like(data)], axis=-1)  # a second, absent person
        score = np.stack([a for _, a, _, _ in clips])[..., None]
        score = np.concatenate([score, np.zeros_like(score)], axis=-1)
        splits.append(SkeletonDataset(
            data=data.astype(np.float32), labels=np.array([c for *_, c in clips], dtype=np.int64),
            lengths=np.full(len(clips), CLIP_FRAMES, dtype=np.int64), class_names=labels,
            sample_ids=[name for _, _, name, _ in clips], layout="body25", source=str(body),
            confidence=score.astype(np.float32)))
    return DatasetSplits(train=splits[0], test=splits[1], benchmark="by-recording-segment")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--out", required=True, help="the CTR-GCN npz to write")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "mksgn" / "pose-classification-kit"))
    args = parser.parse_args(argv)
    splits = pose_kit_splits(fetch(args.cache))
    write_ctrgcn_npz(args.out, splits)
    print(f"wrote {args.out}: {len(splits.train)} train + {len(splits.test)} test clips of {CLIP_FRAMES} frames, "
          f"{splits.train.num_classes} classes, split by recording segment")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
