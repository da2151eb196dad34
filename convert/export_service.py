"""Exporting a student checkpoint: the service behind ``mksgn-export`` (and the demo).

:func:`export_checkpoint` exports the student to NIR, writes the graph to a temporary file,
reads it back and runs it with the reference executor against the snnTorch model, spike for
spike, before renaming it into place (:mod:`mksgn.convert.validate`); the comparison goes to
``MODEL.parity.json``. :func:`export_onnx_files` writes the teacher and the unrolled student
as ONNX, each checked against PyTorch.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import torch

from mksgn.atomic import atomic_path, atomic_write_text
from mksgn.convert.nir_export import ExportError, export_student
from mksgn.convert.defaults import DEFAULT_OPSET
from mksgn.convert.defaults import EXPORT_SAMPLES as DEFAULT_SAMPLES


@dataclass
class ExportResult:
    """An exported, validated graph (:meth:`to_dict`: ``MODEL.parity.json``)."""

    checkpoint: str
    graph: str
    nodes: int
    edges: int
    validated_on: str | None = None
    """The samples compared (``None``: not validated)."""
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)
    """dtype (``float64``, ``float32``) -> the spike comparison."""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record."""
        out: dict[str, Any] = {"checkpoint": self.checkpoint, "graph": self.graph, "nodes": self.nodes,
                               "edges": self.edges}
        if self.validated_on is not None:
            out["validated_on"] = self.validated_on
        out.update({f"parity_{dtype}": report for dtype, report in self.parity.items()})
        out["seconds"] = self.seconds
        return out


def _validate(model, graph: nir.NIRGraph, info: dict, data: str | None, samples: int, result: ExportResult,
              log: Callable[[str], None]) -> None:
    """Compare the read-back graph with the snnTorch model in float64 and float32 into ``result``."""
    from mksgn.convert.validate import compare
    from mksgn.data.builtin import load_dataset
    from mksgn.data.pipeline import SkeletonInputs
    from mksgn.data.splits import stratified_subset

    from mksgn.data.normalise import normalisation_of

    splits = load_dataset(data)
    test = SkeletonInputs(splits.test, info["frames"], info["modalities"], normalise=normalisation_of(info))
    index, result.validated_on = stratified_subset(splits.test, samples)
    x, _ = test.batch(index)
    for dtype in (torch.float64, torch.float32):
        report = compare(model, graph, x, dtype)
        result.parity[report.dtype] = report.to_dict()
        bad = report.first_failure() if dtype == torch.float32 else next((n for n in report.nodes if n.mismatches), None)
        if bad is not None:
            f = bad.first
            raise ExportError(
                f"export validation failed ({report.dtype}): node {bad.node} (module {bad.module}) has "
                f"{bad.mismatches} mismatching spikes; first at step {f['step']}, row {f['row']}, neuron "
                f"{tuple(f['neuron'])}: snnTorch {f['snntorch_spike']:.0f}, NIR {f['nir_spike']:.0f}, "
                f"membrane {f['membrane']:.6g} vs threshold {f['threshold']}"
            )
        log(f"{report.dtype}: {report.rows} person rows x {report.steps} steps, {len(report.nodes)} LIF nodes: "
            f"{report.mismatches} mismatching spikes ({report.ties} rounding ties), max logit difference "
            f"{report.logit_max_abs_diff:.2e} [{result.validated_on}]")


def export_checkpoint(ckpt: str, out: Path, data: str | None = None, samples: int = DEFAULT_SAMPLES,
                      validate: bool = True, log: Callable[[str], None] = print) -> ExportResult:
    """Export, write, read back and validate; the graph is renamed to ``out`` only when it passes.

    Parameters
    ----------
    ckpt
        The student checkpoint (trained or snapped).
    out
        The NIR file to write; the comparison goes beside it (``MODEL.parity.json``).
    data, samples
        Validate on the first ``samples`` test samples of ``data`` (the built-in dataset if ``None``).
    validate
        ``False`` skips the comparison (not recommended).
    log
        Where the progress lines go.

    Raises
    ------
    ExportError
        If a float64 spike differs, or a float32 spike differs other than by a rounding tie.
    """
    from mksgn.train.run import load_student
    from mksgn.data.skeletons import get_layout

    start = time.perf_counter()
    model, cfg, info = load_student(ckpt)
    layout = get_layout(info["layout"])
    graph = export_student(model, info["frames"], layout.num_joints, info["class_names"], info["layout"], data=info)
    result = ExportResult(str(ckpt), str(out), len(graph.nodes), len(graph.edges))
    with atomic_path(out) as tmp:  # a unique name: two exports to one -o never share it
        nir.write(str(tmp), graph)
        back = nir.read(str(tmp), type_check=False)
        if validate:
            _validate(model, back, info, data, samples, result, log)
    result.seconds = round(time.perf_counter() - start, 2)
    atomic_write_text(out.with_suffix(".parity.json"), json.dumps(result.to_dict(), indent=1) + "\n")
    log(f"wrote {out}: {result.nodes} nodes, {result.edges} edges in {result.seconds} s")
    return result


def _person_rows(data: str | None, samples: int, info: dict) -> tuple[torch.Tensor, str]:
    """The present persons' rows ``(R, Mod, C, F, V)`` of ``samples`` test samples (stratified by
    class), and what they are."""
    from mksgn.train.blocks import present_persons
    from mksgn.data.builtin import load_dataset
    from mksgn.data.pipeline import SkeletonInputs
    from mksgn.data.splits import stratified_subset

    from mksgn.data.normalise import normalisation_of

    splits = load_dataset(data)
    test = SkeletonInputs(splits.test, info["frames"], info["modalities"], normalise=normalisation_of(info))
    index, described = stratified_subset(splits.test, samples)
    x, _ = test.batch(index)
    rows, _ = present_persons(x)
    return rows, f"person rows of {described}"


def check_checkpoints(ckpt: str | os.PathLike[str], teacher_ckpt: str | os.PathLike[str] | None = None) -> None:
    """Load the student checkpoint (and the teacher's, if given) and check they fit, before anything is written.

    Raises
    ------
    CheckpointError
        If either is not a readable checkpoint of its kind, or the teacher was trained for
        other data than the student.
    """
    from mksgn.train.run import load_student, load_teacher

    _, _, info = load_student(ckpt)
    if teacher_ckpt is not None:
        load_teacher(teacher_ckpt, info)


def export_onnx_files(ckpt: str, teacher_ckpt: str | None = None, teacher_out: Path | None = None,
                      student_out: Path | None = None, data: str | None = None, samples: int = DEFAULT_SAMPLES,
                      validate: bool = True, opset: int = DEFAULT_OPSET, log=print) -> list[dict]:
    """Write the teacher's and/or the unrolled student's ONNX graph, each checked against PyTorch.

    Parameters
    ----------
    ckpt
        The student checkpoint (its data description also checks the teacher's).
    teacher_ckpt, teacher_out
        The teacher checkpoint and its ``.onnx`` output (both or neither).
    student_out
        The student's ``.onnx`` output, or ``None``.
    data, samples, validate
        Compare on the persons of ``samples`` test samples of ``data`` (the built-in
        dataset if ``None``) besides random rows; ``validate=False``: random rows only.
    opset
        ONNX opset.

    Returns
    -------
    list of dict
        The records of :func:`~mksgn.convert.onnx_export.export_teacher_onnx` and
        :func:`~mksgn.convert.onnx_export.export_student_onnx`, in that order.
    """
    from mksgn.convert.onnx_export import export_student_onnx, export_teacher_onnx
    from mksgn.train.run import load_student, load_teacher
    from mksgn.data.skeletons import get_layout

    from mksgn.data.normalise import normalisation_of

    student, _, info = load_student(ckpt)
    joints = get_layout(info["layout"]).num_joints
    normalise = normalisation_of(info)
    teacher = load_teacher(teacher_ckpt, info).eval() if teacher_out is not None else None
    rows, desc = _person_rows(data, samples, info) if validate else (None, "given rows")
    records = []
    if teacher is not None:
        rec = export_teacher_onnx(teacher, info["frames"], joints, teacher_out, opset, rows=rows, rows_desc=desc,
                                  normalise=normalise)
        log(f"wrote {teacher_out}: teacher ONNX, opset {opset}, {rec['nodes']} nodes; max |logit difference| vs "
            f"PyTorch {rec['max_abs_diff']:.2e} on {rec['measured_on']}")
        records.append(rec)
    if student_out is not None:
        rec = export_student_onnx(student, info["frames"], joints, student_out, opset, rows=rows, rows_desc=desc,
                                  normalise=normalise)
        log(f"wrote {student_out}: student ONNX unrolled over {rec['time_steps']} steps, opset {opset}, "
            f"{rec['nodes']} nodes; max |logit difference| vs PyTorch {rec['max_abs_diff']:.2e}"
            f"{'' if rec['logits_within_tolerance'] else ' (above 1e-4: thresholded spikes can flip under float32 rounding)'}, "
            f"argmax equal, spike rate {rec['spike_rate']:.3f}, on {rec['measured_on']}")
        records.append(rec)
    return records
