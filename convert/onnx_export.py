"""ONNX export of the teacher (the ANN baseline) and of the student unrolled over ``T`` steps.

Both graphs work **per person**, like the NIR graph: the input ``"x"`` is
``(B, Mod, C, F, V)``, one row per person (modalities, coordinates x y z or, for 2-D
keypoints, x y; frames, joints;
``B`` is a dynamic axis), and the output ``"logits"`` is ``(B, K)``, one row of logits per
person. The PyTorch models take ``(N, Mod, C, F, V, M)`` and pick the persons present with
:func:`~mksgn.train.blocks.present_persons` (a data-dependent ``nonzero``, which has no
fixed-shape ONNX form); a runner of the ONNX graphs does that selection outside the graph
(a person is present if any of its inputs is non-zero; person 0 always is) and **sums the
rows of the same sample**, exactly as the PyTorch models do
(:func:`~mksgn.train.blocks.sum_per_sample`).

Teacher
    ``logits = mean over streams m of GCNStream_m(x[:, m])`` (the stream logits only; the
    per-person rows summed per sample give :class:`~mksgn.train.teacher.GCNTeacher`'s
    output, since the mean over streams and the sum over persons commute). The energy
    estimate counts the ANN baseline from this graph (its dense MACs, reported as
    ``dense_macs_per_row``, and its operators).

Student
    :class:`~mksgn.train.student.MKSGN` with its loop over the ``T`` time steps unrolled at
    trace time (``T`` copies of the per-step subgraph, no ONNX ``Loop``): the LIF states are
    explicit tensors passed from one step's copy to the next, starting from zeros; the
    neuron is the inference LIF (``v = beta v + I``, spike ``(v > threshold)`` as float,
    reset to zero), the branches' first graph convolution is computed once (the input is
    the same at every step), and ``logits = (1/T) sum_t fc(pool(s_t))``. A spike is a
    threshold decision, so float rounding differences between PyTorch and onnxruntime
    could in principle flip one; the export compares argmax and logits and reports the
    largest logit difference.

Each export traces the model with the TorchScript-based exporter (``dynamo=False``),
checks the model with :mod:`onnx.checker`, runs it in onnxruntime (CPU) on person rows and
compares with PyTorch; only then is the file written (a temporary file renamed over
``path``). A mismatch raises :class:`~mksgn.convert.nir_export.ExportError` and writes
nothing.
"""

from __future__ import annotations

import collections
import io
import os
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from mksgn.atomic import atomic_write_bytes
from mksgn.convert.defaults import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from mksgn.convert.nir_export import ExportError
from mksgn.train.student import MKSGN, record_spikes
from mksgn.train.teacher import GCNTeacher

INPUT_NAME = "x"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
TEACHER_RTOL = TEACHER_ATOL = 1e-4
STUDENT_TOL = 1e-4
"""Logit tolerance of the student below which it agrees exactly (no spike flipped)."""
RANDOM_ROWS = 4
"""Random rows at each amplitude (see :func:`validation_rows`)."""
AMPLITUDES = (1.0, 4.0)
"""Amplitudes of the random rows: the larger ones make an untrained student spike more."""
PERSONS_CONVENTION = (
    "one row per person; the runner selects the persons present (any non-zero input; person 0 always) "
    "and sums the logits of the rows of the same sample, as the PyTorch model does"
)


class TeacherPerPerson(nn.Module):
    """The teacher on person rows: ``(B, Mod, C, F, V) -> (B, K)``, the mean of the stream logits.

    Parameters
    ----------
    teacher
        A :class:`~mksgn.train.teacher.GCNTeacher`; its streams are shared, not copied.
    """

    def __init__(self, teacher: GCNTeacher) -> None:
        super().__init__()
        self.teacher = teacher

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.teacher.run_rows(x)[0]).mean(dim=0)


class StudentUnrolled(nn.Module):
    """The student on person rows, its ``T`` steps unrolled: ``(B, Mod, C, F, V) -> (B, K)``.

    The same computation as :meth:`MKSGN.forward <mksgn.train.student.MKSGN.forward>` on the
    rows, without :func:`~mksgn.train.blocks.present_persons`; it reuses the student's
    submodules (input scale, branches, fusion, fusion LIF, trunk blocks, pool, readout)
    and always runs the inference neuron (gradients off: the strict-threshold step, never
    the surrogate).

    Parameters
    ----------
    student
        A :class:`~mksgn.train.student.MKSGN`; its modules are shared, not copied.
    """

    def __init__(self, student: MKSGN) -> None:
        super().__init__()
        self.student = student

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # LIF.forward: heaviside (v - thr > 0, i.e. v > thr) when grad is off
            return self.student.run_rows(x)[0]


def validation_rows(mods: int, frames: int, num_joints: int, rows: torch.Tensor | None = None,
                    seed: int = 0, rows_desc: str = "given rows", coords: int = 3) -> tuple[torch.Tensor, str]:
    """Person rows to compare PyTorch and onnxruntime on, and a description of them.

    Parameters
    ----------
    mods, frames, num_joints
        The row shape ``(Mod, C, F, V)``.
    rows
        Real person rows ``(R, Mod, C, F, V)`` to include first (for example test samples
        split by :func:`~mksgn.train.blocks.present_persons`), or ``None``.
    seed
        Seed of the random rows.
    rows_desc
        What ``rows`` are, for the description.
    coords
        ``C``, the coordinates per joint (3, or 2 for 2-D keypoints).

    Returns
    -------
    x, description
        ``x`` float32 ``(R + len(AMPLITUDES) * RANDOM_ROWS + 1, Mod, C, F, V)``: the given
        rows, standard normal rows scaled by each of :data:`AMPLITUDES`, and one all-zero
        row (an absent person).
    """
    g = torch.Generator().manual_seed(seed)
    shape = (RANDOM_ROWS, mods, coords, frames, num_joints)
    parts = [torch.randn(shape, generator=g) * a for a in AMPLITUDES]
    parts.append(torch.zeros((1, *shape[1:])))
    desc = f"{len(AMPLITUDES) * RANDOM_ROWS} random normal rows (x{', x'.join(f'{a:g}' for a in AMPLITUDES)}) + 1 zero row"
    if rows is not None:
        rows = torch.as_tensor(rows, dtype=torch.float32)
        if tuple(rows.shape[1:]) != shape[1:]:
            raise ExportError(f"validation rows have shape {tuple(rows.shape)}, expected (R, {', '.join(map(str, shape[1:]))})")
        parts.insert(0, rows)
        desc = f"{len(rows)} {rows_desc} + {desc}"
    return torch.cat(parts).contiguous(), desc


def _trace(module: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"ONNX opset {opset} is not supported; choose {MIN_OPSET} to {MAX_OPSET}")
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(  # dynamo=False: the TorchScript-based exporter (no onnxscript needed)
            module, (example,), buf, dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}},
            do_constant_folding=True,
        )
    return buf.getvalue()


def _finish(data: bytes, metadata: dict[str, Any]) -> tuple[bytes, Any]:
    """Add metadata, check the model; returns the serialised model and the proto."""
    import onnx

    model = onnx.load_from_string(data)
    model.producer_name = "mksgn"
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, str(value)
    data = model.SerializeToString()
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"ONNX checker rejected the exported graph: {str(exc).splitlines()[0]}") from exc
    return data, model


def _run_ort(data: bytes, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1  # a few rows: no thread pool (deterministic, no contention)
    session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]


def _io_record(model) -> tuple[list[dict], list[dict]]:
    def dims(value) -> list[int | str]:
        return [d.dim_param if d.dim_param else int(d.dim_value) for d in value.type.tensor_type.shape.dim]

    return ([{"name": v.name, "shape": dims(v)} for v in model.graph.input],
            [{"name": v.name, "shape": dims(v)} for v in model.graph.output])


def _dense_macs(module: nn.Module, row: torch.Tensor) -> int | None:
    from mksgn.train.complexity import count_macs

    try:
        return int(count_macs(module, row))
    except Exception:  # pragma: no cover - an extra, never fatal
        return None


def _export(module: nn.Module, kind: str, mods: int, frames: int, num_joints: int, path: str | os.PathLike[str],
            opset: int, rows: torch.Tensor | None, seed: int, rows_desc: str,
            metadata: dict[str, Any]) -> tuple[dict, torch.Tensor, np.ndarray, np.ndarray]:
    """Trace, check, run both ways; returns the record (without writing) and the outputs."""
    x, desc = validation_rows(mods, frames, num_joints, rows, seed, rows_desc, _coords(module))
    with torch.no_grad():
        expected = module(x).numpy()
    data, model = _finish(_trace(module, x[:2], opset), metadata)
    got = _run_ort(data, x)
    if got.shape != expected.shape:
        raise ExportError(f"{kind} ONNX output has shape {got.shape}, PyTorch {expected.shape}")
    inputs, outputs = _io_record(model)
    record = {
        "path": str(path), "kind": kind, "opset": opset, "inputs": inputs, "outputs": outputs,
        "max_abs_diff": float(np.max(np.abs(got.astype(np.float64) - expected))),
        "measured_on": f"{len(x)} person rows: {desc}",
        "nodes": len(model.graph.node),
        "op_types": dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items())),
        "dense_macs_per_row": _dense_macs(module, x[:1]),
        "persons": PERSONS_CONVENTION,
        "_bytes": data,
    }
    return record, x, expected, got


def _coords(module: nn.Module) -> int:
    """The coordinates per joint ``C`` of the wrapped teacher's or student's input."""
    inner = getattr(module, "teacher", None)
    if inner is None:
        inner = getattr(module, "student", None)
    return int(getattr(inner, "in_channels", 3))


def _write(record: dict) -> dict:
    atomic_write_bytes(record["path"], record.pop("_bytes"))
    return record


def export_teacher_onnx(teacher: GCNTeacher, frames: int, num_joints: int, path: str | os.PathLike[str],
                        opset: int = DEFAULT_OPSET, rows: torch.Tensor | None = None, seed: int = 0,
                        rows_desc: str = "given rows", normalise: str = "none") -> dict:
    """Export the teacher per person to ONNX, validated against PyTorch, then write it.

    Parameters
    ----------
    teacher
        The trained :class:`~mksgn.train.teacher.GCNTeacher` (exported in inference mode;
        its training flag is restored afterwards).
    frames, num_joints
        ``F`` and ``V`` of the input ``"x"`` ``(B, Mod, C, F, V)`` (``C`` the model's ``in_channels``).
    path
        The ``.onnx`` file, written atomically only after validation.
    opset
        ONNX opset.
    rows
        Optional real person rows ``(R, Mod, C, F, V)`` to validate on, besides the random
        rows of :func:`validation_rows`.
    seed
        Seed of the random validation rows.
    rows_desc
        What ``rows`` are (for ``measured_on``), e.g. ``"person rows of 8 test samples of X"``.
    normalise
        The inputs' normalisation (the checkpoint's ``data["normalise"]``, :mod:`mksgn.data.normalise`),
        written into the model's metadata.

    Returns
    -------
    dict
        ``path``, ``kind``, ``opset``, ``inputs`` and ``outputs`` (name and shape, ``"batch"``
        for the dynamic axis), ``max_abs_diff`` (onnxruntime vs PyTorch logits),
        ``measured_on``, ``nodes`` (ONNX node count), ``op_types``, ``dense_macs_per_row``
        (the ANN baseline: Conv2d, Linear and joint-mix MACs of one person row) and
        ``persons`` (the convention).

    Raises
    ------
    ExportError
        The checker rejects the graph, or the logits differ beyond ``rtol = atol = 1e-4``.
    """
    was_training = teacher.training
    teacher.eval()
    try:
        module = TeacherPerPerson(teacher).eval()
        meta = {"mksgn_kind": "teacher", "modalities": ",".join(teacher.modalities), "frames": frames,
                "joints": num_joints, "normalise": normalise, "input": f"x (B, Mod, {teacher.in_channels}, F, V): person rows",
                "output": "logits (B, K) per row",
                "persons": PERSONS_CONVENTION}
        record, _, expected, got = _export(module, "teacher", len(teacher.modalities), frames, num_joints, path,
                                           opset, rows, seed, rows_desc, meta)
    finally:
        teacher.train(was_training)
    if not np.allclose(got, expected, rtol=TEACHER_RTOL, atol=TEACHER_ATOL):
        raise ExportError(f"teacher ONNX logits differ from PyTorch by up to {record['max_abs_diff']:.3g} "
                          f"(rtol = atol = {TEACHER_ATOL:g}) on {record['measured_on']}")
    return _write(record)


def export_student_onnx(student: MKSGN, frames: int, num_joints: int, path: str | os.PathLike[str],
                        opset: int = DEFAULT_OPSET, rows: torch.Tensor | None = None, seed: int = 0,
                        rows_desc: str = "given rows", normalise: str = "none") -> dict:
    """Export the student per person, unrolled over its ``T`` steps, to ONNX; validate; write.

    Parameters
    ----------
    student
        The trained :class:`~mksgn.train.student.MKSGN` (inference mode; its training flag is
        restored afterwards).
    frames, num_joints
        ``F`` and ``V`` of the input ``"x"`` ``(B, Mod, C, F, V)`` (``C`` the model's ``in_channels``).
    path
        The ``.onnx`` file, written atomically only after validation.
    opset
        ONNX opset.
    rows
        Optional real person rows ``(R, Mod, C, F, V)`` to validate on, besides the random
        rows of :func:`validation_rows` (whose larger amplitudes make the student spike).
    seed
        Seed of the random validation rows.
    rows_desc
        What ``rows`` are (for ``measured_on``), e.g. ``"person rows of 8 test samples of X"``.
    normalise
        As :func:`export_teacher_onnx`.

    Returns
    -------
    dict
        As :func:`export_teacher_onnx` (``dense_macs_per_row`` counts every step, the
        branches' first graph convolution once), plus ``time_steps``, ``argmax_equal``,
        ``spike_rate`` (the fraction of LIF neuron-steps that fired on the validation
        rows) and ``spiking_rows`` (rows whose last trunk block fired at least once).

    Raises
    ------
    ExportError
        The checker rejects the graph or a prediction (argmax) differs. Logit differences
        beyond ``rtol = atol = 1e-4`` (spikes flipped by float32 rounding at the threshold)
        are reported in the record (``logits_within_tolerance``), not refused.
    """
    was_training = student.training
    student.eval()
    try:
        module = StudentUnrolled(student).eval()
        meta = {"mksgn_kind": "student", "modalities": ",".join(student.modalities), "frames": frames,
                "joints": num_joints, "normalise": normalise, "time_steps": int(student.cfg.time_steps),
                "input": f"x (B, Mod, {student.in_channels}, F, V): person rows, the same input at every step "
                         "(direct encoding)",
                "output": "logits (B, K) per row: (1/T) sum_t fc(pool(spikes_t))",
                "lif": "v = beta v + I; spike = (v > threshold); v = 0 where it spiked; unrolled over T steps",
                "persons": PERSONS_CONVENTION}
        record, x, expected, got = _export(module, "student", len(student.modalities), frames, num_joints, path,
                                           opset, rows, seed, rows_desc, meta)
        with torch.no_grad(), record_spikes(student) as spikes:
            module(x)
    finally:
        student.train(was_training)
    fired = sum(float(s.sum()) for steps in spikes.values() for s in steps)
    neurons = sum(s.numel() for steps in spikes.values() for s in steps)
    last = [k for k in spikes if k.startswith(f"blocks.{len(student.blocks) - 1}.lif_t")][0]
    last_fired = torch.stack(spikes[last]).flatten(2).amax(dim=(0, 2)) > 0  # (R,)
    argmax_equal = bool(np.array_equal(got.argmax(axis=1), expected.argmax(axis=1)))
    record.update(time_steps=int(student.cfg.time_steps), argmax_equal=argmax_equal,
                  spike_rate=fired / max(neurons, 1), spiking_rows=int(last_fired.sum()))
    # onnxruntime's float32 kernels round differently from PyTorch's; a membrane within
    # rounding of the threshold then spikes in one and not the other, which moves the
    # logits by a few spikes' worth. Predictions must agree; the logit difference and
    # whether it exceeds STUDENT_TOL are reported.
    record["logits_within_tolerance"] = bool(np.allclose(got, expected, rtol=STUDENT_TOL, atol=STUDENT_TOL))
    if not argmax_equal:
        rows_bad = np.flatnonzero(got.argmax(axis=1) != expected.argmax(axis=1)).tolist()
        raise ExportError(f"student ONNX differs from PyTorch: max logit difference {record['max_abs_diff']:.3g}, "
                          f"argmax differs on rows {rows_bad} of {record['measured_on']}")
    return _write(record)
