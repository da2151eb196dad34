"""``mksgn-snap``: a trained student -> the same student on Loihi's fixed-point grid.

    mksgn-snap CKPT -o SNAPPED.pt [--data X.npz] [--samples N] [--input-bits B] [--no-eval]

Rewrites the student in deployment form and rounds its weights, biases and inputs onto the
dyadic fixed-point grid (:mod:`mksgn.convert.snap`), calibrated on ``N`` training samples.
Export the snapped checkpoint with ``mksgn-export`` and quantise it with ``mksgn-quantize``:
its float model (snnTorch, the NIR executor, Lava ``floating_pt``) and its fixed-point model
(the emulator, Lava ``fixed_pt``) then compute the same spikes. The test-split top-1 of the
student before and after snapping, and how many predictions snapping changed, are printed
and written to ``SNAPPED.snap.json`` (skip with ``--no-eval``). The work is
:mod:`mksgn.convert.snap_service`'s.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mksgn.cli import ArgumentParser, add_data_option, add_out_option, add_quiet_option, command_parser, run_cli
from mksgn.convert.defaults import INPUT_BITS, INPUT_BITS_RANGE, SNAP_SAMPLES

PROG = "mksgn-snap"


def build_parser() -> ArgumentParser:
    """The argument parser of ``mksgn-snap`` (imports nothing heavy)."""
    p = command_parser(PROG, __doc__)
    p.add_argument("checkpoint", type=Path, help="trained student checkpoint (student_best.pt)")
    add_out_option(p, "snapped checkpoint to write", "file", required=True)
    add_data_option(p, "CTR-GCN .npz (default: the data the checkpoint records, else the built-in dataset)")
    p.add_argument("--samples", type=int, default=SNAP_SAMPLES, help="calibration samples (default %(default)s)")
    p.add_argument("--input-bits", type=int, default=INPUT_BITS,
                   help=f"bits of the graded input payloads, {INPUT_BITS_RANGE[0]}..{INPUT_BITS_RANGE[1]} "
                        f"(default %(default)s)")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split accuracy before and after")
    add_quiet_option(p)
    p.add_check(lambda args: _check(p, args))
    return p


def _check(p: ArgumentParser, args) -> None:
    if args.samples < 1:
        p.error("--samples must be >= 1")
    lo, hi = INPUT_BITS_RANGE
    if not lo <= args.input_bits <= hi:
        p.error(f"--input-bits must be {lo}..{hi}, got {args.input_bits}")
    if args.out.resolve() == args.checkpoint.resolve():
        p.error("-o must differ from the checkpoint")


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # the heavy imports after parsing: --help and usage errors never load torch
    from mksgn.convert.snap_service import snap_checkpoint, write_snapped
    from mksgn.train.checkpoint import checkpoint_data

    data = checkpoint_data(args.data, args.checkpoint)
    data.announce()
    result = snap_checkpoint(args.checkpoint, data.path, args.samples, args.input_bits, not args.no_eval,
                             not args.quiet)
    rec = write_snapped(result, args.out)
    print(f"snapped {rec['synapses']} synapses into {rec['populations']} populations onto the dyadic grid "
          f"(calibrated on {rec['calibrated_on']}): {rec['weights_changed']} weights rounded, "
          f"{rec['weights_zeroed']} to zero; state arithmetic exact for {min(rec['exact_steps'], 10**6)} steps "
          f"(T = {rec['time_steps']})")
    if rec["exact_steps"] < rec["time_steps"]:
        print(f"warning: Loihi's decay truncates the membrane from step {rec['exact_steps'] + 1} on: float and "
              f"fixed point can differ after it (beta 0.5 stays exact for 7 steps, 0.75 for 4, 0.875 for 3)")
    if "top1_float" in rec:
        print(f"top-1 {rec['top1_float']:.4f} float -> {rec['top1_snapped']:.4f} snapped, "
              f"{rec['predictions_changed']} predictions changed [{rec['measured_on']}]")
    print(f"wrote {args.out}, {args.out.with_suffix('.snap.json').name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-snap``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
