"""``mksgn-export``: a trained student checkpoint -> a validated NIR graph (and ONNX files).

    mksgn-export CKPT -o MODEL.nir [--data X.npz] [--samples N] [--no-validate]
    mksgn-export CKPT [-o MODEL.nir] [--teacher TEACHER_CKPT --onnx TEACHER.onnx] [--onnx-student STUDENT.onnx]

The graph is written to a temporary file, read back, run by the reference executor on
``N`` test samples in float64 and float32 and compared spike for spike with the snnTorch
model at every LIF node; only then is it renamed to ``MODEL.nir``. A float64 mismatch, or
a float32 mismatch that is not a rounding tie, fails the export naming the node. The
comparison is written beside the graph as ``MODEL.parity.json``.

``--onnx`` writes the teacher (``--teacher``; the ANN baseline) and ``--onnx-student`` the
student unrolled over its ``T`` steps as ONNX graphs on person rows ``(B, Mod, 3, F, V)``
(see :mod:`mksgn.convert.onnx_export`); each is run in onnxruntime and compared with
PyTorch on the persons of the validation samples (unless ``--no-validate``) and on random
rows before it is written, and one line reports the largest logit difference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import nir
import numpy as np
import torch

from mksgn.atomic import atomic_write_text
from mksgn.cli import ArgumentParser, run_cli
from mksgn.convert.nir_export import ExportError, export_student
from mksgn.core.nir_file import write_graph
from mksgn.convert.onnx_export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET

PROG = "mksgn-export"
DEFAULT_SAMPLES = 8


def export_checkpoint(ckpt: str, out: Path, data: str | None = None, samples: int = DEFAULT_SAMPLES,
                      validate: bool = True, log=print) -> dict:
    """Export, write, read back and validate; returns the export record."""
    from mksgn.convert.validate import compare
    from mksgn.data.builtin import load_dataset
    from mksgn.data.pipeline import SkeletonInputs
    from mksgn.data.skeletons import get_layout
    from mksgn.train.run import load_student

    start = time.perf_counter()
    model, cfg, info = load_student(ckpt)
    layout = get_layout(info["layout"])
    graph = export_student(model, info["frames"], layout.num_joints, info["class_names"], info["layout"])
    record: dict = {"checkpoint": str(ckpt), "graph": str(out), "nodes": len(graph.nodes), "edges": len(graph.edges)}
    tmp = out.with_name(f".{out.name}.validating")
    try:
        write_graph(graph, tmp)
        back = nir.read(str(tmp), type_check=False)
        if validate:
            splits = load_dataset(data)
            test = SkeletonInputs(splits.test, info["frames"], info["modalities"])
            x, _ = test.batch(np.arange(min(samples, len(test))))
            record["validated_on"] = f"{min(samples, len(test))} test samples of {splits.test.source}"
            for dtype in (torch.float64, torch.float32):
                report = compare(model, back, x, dtype)
                record[f"parity_{report.dtype}"] = report.to_dict()
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
                    f"{report.logit_max_abs_diff:.2e} [{record['validated_on']}]")
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    record["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_text(out.with_suffix(".parity.json"), json.dumps(record, indent=1) + "\n")
    log(f"wrote {out}: {record['nodes']} nodes, {record['edges']} edges in {record['seconds']} s")
    return record


def _person_rows(data: str | None, samples: int, info: dict) -> tuple[torch.Tensor, str]:
    """The present persons' rows ``(R, Mod, 3, F, V)`` of the first test samples, and what they are."""
    from mksgn.data.builtin import load_dataset
    from mksgn.data.pipeline import SkeletonInputs
    from mksgn.train.blocks import present_persons

    splits = load_dataset(data)
    test = SkeletonInputs(splits.test, info["frames"], info["modalities"])
    n = min(samples, len(test))
    x, _ = test.batch(np.arange(n))
    rows, _ = present_persons(x)
    return rows, f"person rows of {n} test samples of {splits.test.source}"


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
    from mksgn.data.skeletons import get_layout
    from mksgn.train.run import load_student, load_teacher

    student, _, info = load_student(ckpt)
    joints = get_layout(info["layout"]).num_joints
    teacher = load_teacher(teacher_ckpt, info).eval() if teacher_out is not None else None
    rows, desc = _person_rows(data, samples, info) if validate else (None, "given rows")
    records = []
    if teacher is not None:
        rec = export_teacher_onnx(teacher, info["frames"], joints, teacher_out, opset, rows=rows, rows_desc=desc)
        log(f"wrote {teacher_out}: teacher ONNX, opset {opset}, {rec['nodes']} nodes; max |logit difference| vs "
            f"PyTorch {rec['max_abs_diff']:.2e} on {rec['measured_on']}")
        records.append(rec)
    if student_out is not None:
        rec = export_student_onnx(student, info["frames"], joints, student_out, opset, rows=rows, rows_desc=desc)
        log(f"wrote {student_out}: student ONNX unrolled over {rec['time_steps']} steps, opset {opset}, "
            f"{rec['nodes']} nodes; max |logit difference| vs PyTorch {rec['max_abs_diff']:.2e}"
            f"{'' if rec['logits_within_tolerance'] else ' (above 1e-4: thresholded spikes can flip under float32 rounding)'}, "
            f"argmax equal, spike rate {rec['spike_rate']:.3f}, on {rec['measured_on']}")
        records.append(rec)
    return records


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Export a trained MK-SGN student to NIR, validated spike for spike.")
    p.add_argument("checkpoint", help="student checkpoint (student_best.pt)")
    p.add_argument("-o", "--out", type=Path, help="output .nir file")
    p.add_argument("--data", help="CTR-GCN .npz for validation samples (default: the built-in dataset)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="test samples to validate on (default %(default)s)")
    p.add_argument("--no-validate", action="store_true",
                   help="skip the spike comparison (not recommended); ONNX files are then compared on random rows only")
    p.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint (teacher_best.pt) for --onnx")
    p.add_argument("--onnx", type=Path, metavar="OUT.onnx", help="write the teacher (per person) as ONNX; needs --teacher")
    p.add_argument("--onnx-student", type=Path, metavar="OUT.onnx",
                   help="write the student (per person, unrolled over its T steps) as ONNX")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check the combination of options (usage errors: one line, exit status 2)."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.onnx is not None and args.teacher is None:
        p.error("--onnx writes the teacher: give its checkpoint with --teacher CKPT")
    if args.teacher is not None and args.onnx is None:
        p.error("--teacher is only used by --onnx OUT.onnx")
    if args.out is None and args.onnx is None and args.onnx_student is None:
        p.error("nothing to write: give -o MODEL.nir, --onnx OUT.onnx (with --teacher) or --onnx-student OUT.onnx")
    outs = [o.resolve() for o in (args.out, args.onnx, args.onnx_student) if o is not None]
    if len(set(outs)) != len(outs):
        p.error("-o, --onnx and --onnx-student must name different files")
    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        p.error(f"--opset must be {MIN_OPSET} to {MAX_OPSET}, got {args.opset}")
    if args.samples < 1:
        p.error(f"--samples must be >= 1, got {args.samples}")
    return args


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    if args.out is not None:
        export_checkpoint(args.checkpoint, args.out, args.data, args.samples, validate=not args.no_validate)
    if args.onnx is not None or args.onnx_student is not None:
        export_onnx_files(args.checkpoint, args.teacher, args.onnx, args.onnx_student, args.data, args.samples,
                          validate=not args.no_validate, opset=args.opset)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-export``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
