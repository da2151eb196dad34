"""Snapping a student checkpoint onto Loihi's fixed-point grid: the service behind ``mksgn-snap``.

:func:`snap_checkpoint` loads a trained student, calibrates :func:`~mksgn.convert.snap.snap`
on training samples and (optionally) compares the test-split predictions before and after;
:func:`write_snapped` writes the snapped checkpoint and its record ``SNAPPED.snap.json``.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mksgn.atomic import atomic_write_text
from mksgn.convert.defaults import SNAP_SAMPLES as DEFAULT_SAMPLES
from mksgn.convert.snap import SnapError, snap


@dataclass
class SnapResult:
    """A snapped student: the model, the checkpoint record to save, and the report."""

    checkpoint: Path
    """The checkpoint it was snapped from."""
    model: torch.nn.Module
    """The student in deployment form on the fixed-point grid."""
    record: dict[str, Any]
    """The checkpoint payload to save (config, data description, weights, grid)."""
    report: dict[str, Any]
    """Calibration, rounding and (unless skipped) accuracy before and after: JSON-ready."""
    started: float
    """``time.perf_counter()`` when snapping began (the record's ``seconds`` count from it)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready report (without the file written and the time: :func:`write_snapped` adds them)."""
        return dict(self.report)


def predictions(model, dataset, frames: int, modalities, batch_size: int = 64, progress: bool = True,
                desc: str = "eval", normalise: str = "none") -> np.ndarray:
    """Top-1 predictions of a student on every sample of ``dataset`` (inputs normalised by ``normalise``)."""
    from mksgn.data.pipeline import SkeletonInputs

    inputs = SkeletonInputs(dataset, frames, modalities, normalise=normalise)
    batches = inputs.batches(range(len(inputs)), batch_size)
    with torch.no_grad():
        out = [model(x).argmax(1).numpy() for x, _ in tqdm(batches, desc=desc, unit="batch", disable=not progress,
                                                           total=-(-len(inputs) // batch_size))]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _evaluate(model, snapped, test, info: dict, progress: bool) -> dict[str, Any]:
    """Test-split top-1 before and after snapping, and how many predictions changed."""
    from mksgn.data.normalise import normalisation_of

    labels = np.asarray(test.labels)
    norm = normalisation_of(info)
    before = predictions(model, test, info["frames"], info["modalities"], progress=progress, desc="eval float",
                         normalise=norm)
    after = predictions(snapped.float(), test, info["frames"], info["modalities"], progress=progress,
                        desc="eval snapped", normalise=norm)
    return {"measured_on": f"test split of {test.source} ({len(labels)} samples)",
            "top1_float": float((before == labels).mean()), "top1_snapped": float((after == labels).mean()),
            "predictions_changed": int((before != after).sum())}


def snap_checkpoint(ckpt: str | os.PathLike[str], data: str | None = None, samples: int = DEFAULT_SAMPLES,
                    input_bits: int = 8, evaluate: bool = True, progress: bool = True) -> SnapResult:
    """Snap the student of ``ckpt`` onto the fixed-point grid (nothing is written: :func:`write_snapped`).

    Parameters
    ----------
    ckpt
        A trained (not yet snapped) student checkpoint.
    data
        The CTR-GCN npz it was trained on (``None``: the built-in dataset).
    samples
        Training samples to calibrate on.
    input_bits
        Bits of the graded input payloads.
    evaluate, progress
        Compare the test-split predictions before and after; show progress bars.

    Raises
    ------
    SnapError
        If the checkpoint is snapped already, or the data is not what it was trained on.
    """
    from mksgn.train.blocks import present_persons
    from mksgn.data.builtin import load_dataset
    from mksgn.data.splits import stratified_subset
    from mksgn.train.checkpoint import load_checkpoint
    from mksgn.data.normalise import normalisation_of
    from mksgn.data.pipeline import SkeletonInputs
    from mksgn.train.run import load_student
    from mksgn.data.skeletons import get_layout

    start = time.perf_counter()
    record = load_checkpoint(ckpt, kind="student")
    if record.get("fixed_point") is not None:
        raise SnapError(f"{ckpt}: already snapped onto the fixed-point grid")
    model, cfg, info = load_student(ckpt)
    layout = get_layout(info["layout"])
    splits = load_dataset(data)
    if splits.train.skeleton.num_joints != layout.num_joints or list(splits.train.class_names) != list(info["class_names"]):
        raise SnapError(f"{splits.train.source}: not the data {ckpt} was trained on (joints or class names differ)")
    index, calibrated_on = stratified_subset(splits.train, samples, "training")
    x, _ = SkeletonInputs(splits.train, info["frames"], info["modalities"],
                          normalise=normalisation_of(info)).batch(index)
    rows, _ = present_persons(x)
    snapped, report = snap(model, rows, info["frames"], list(info["class_names"]), info["layout"], input_bits,
                           calibrated_on)
    result = {"calibrated_on": calibrated_on, "input_bits": input_bits, **report.to_dict()}
    if evaluate:
        result.update(_evaluate(model, snapped, splits.test, info, progress))
    payload = {k: v for k, v in record.items() if k not in ("format", "format_version", "mksgn_version")}
    payload["model"] = copy.deepcopy(snapped).float().state_dict()
    payload["fixed_point"] = snapped.fixed_point
    payload["snapped_from"] = str(ckpt)
    return SnapResult(Path(ckpt), snapped, payload, result, start)


def write_snapped(result: SnapResult, out: Path) -> dict[str, Any]:
    """Write the snapped checkpoint to ``out`` (atomically) and its record to ``OUT.snap.json``; returns the record."""
    from mksgn.train.checkpoint import save_checkpoint

    save_checkpoint(out, result.record)
    record = {"checkpoint": str(result.checkpoint), "snapped": str(out), **result.report,
              "seconds": round(time.perf_counter() - result.started, 2)}
    atomic_write_text(out.with_suffix(".snap.json"), json.dumps(record, indent=1) + "\n")
    return record
