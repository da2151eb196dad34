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
rows before it is written, and one line reports the largest logit difference. The work is
:mod:`mksgn.convert.export_service`'s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mksgn.cli import ArgumentParser, add_data_option, add_out_option, check_at_least_one, command_parser, run_cli
from mksgn.convert.defaults import DEFAULT_OPSET, EXPORT_SAMPLES, MAX_OPSET, MIN_OPSET
from mksgn.paths import check_output_file

PROG = "mksgn-export"


def build_parser() -> ArgumentParser:
    """The argument parser of ``mksgn-export`` (imports nothing heavy)."""
    p = command_parser(PROG, __doc__)
    p.add_argument("checkpoint", help="student checkpoint (student_best.pt)")
    add_out_option(p, "output .nir file", "file")
    add_data_option(p, "CTR-GCN .npz for validation samples (default: the data the checkpoint records, else the "
                       "built-in dataset)")
    p.add_argument("--samples", type=int, default=EXPORT_SAMPLES,
                   help="test samples to validate on (default %(default)s)")
    p.add_argument("--no-validate", action="store_true",
                   help="skip the spike comparison (not recommended); ONNX files are then compared on random rows only")
    p.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint (teacher_best.pt) for --onnx")
    p.add_argument("--onnx", type=Path, metavar="OUT.onnx", help="write the teacher (per person) as ONNX; needs --teacher")
    p.add_argument("--onnx-student", type=Path, metavar="OUT.onnx",
                   help="write the student (per person, unrolled over its T steps) as ONNX")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    p.add_check(lambda args: _check(p, args))
    return p


def _check(p: ArgumentParser, args: argparse.Namespace) -> None:
    """The combination of options (usage errors: the usage line and one line, exit status 2)."""
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
    check_at_least_one(p, "--samples", args.samples)
    for option in ("onnx", "onnx_student"):
        if getattr(args, option) is not None:
            check_output_file(getattr(args, option), "--" + option.replace("_", "-"))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check the options."""
    return build_parser().parse_args(argv)


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    # the heavy imports after parsing: --help and usage errors never load torch
    from mksgn.convert.export_service import check_checkpoints, export_checkpoint, export_onnx_files
    from mksgn.train.checkpoint import checkpoint_data

    check_checkpoints(args.checkpoint, args.teacher)  # every input is checked before anything is written
    data = checkpoint_data(args.data, args.checkpoint)
    data.announce()
    if args.out is not None:
        export_checkpoint(args.checkpoint, args.out, data.path, args.samples, validate=not args.no_validate)
    if args.onnx is not None or args.onnx_student is not None:
        export_onnx_files(args.checkpoint, args.teacher, args.onnx, args.onnx_student, data.path, args.samples,
                          validate=not args.no_validate, opset=args.opset)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-export``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
