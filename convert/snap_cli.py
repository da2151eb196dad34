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
from mksgn.convert.snap_service import DEFAULT_SAMPLES, snap_checkpoint, write_snapped

PROG = "mksgn-snap"


def build_parser() -> ArgumentParser:
    p = command_parser(PROG, __doc__)
    p.add_argument("checkpoint", type=Path, help="trained student checkpoint (student_best.pt)")
    add_out_option(p, "snapped checkpoint to write", short=True, required=True)
    add_data_option(p, "CTR-GCN .npz it was trained on (default: the built-in dataset)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="calibration samples (default %(default)s)")
    p.add_argument("--input-bits", type=int, default=8, help="bits of the graded input payloads, 2..24 (default 8)")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split accuracy before and after")
    add_quiet_option(p, "no progress bars")
    return p


def _main(argv: Sequence[str] | None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.samples < 1:
        p.error("--samples must be >= 1")
    if not 2 <= args.input_bits <= 24:
        p.error(f"--input-bits must be 2..24, got {args.input_bits}")
    if args.out.resolve() == args.checkpoint.resolve():
        p.error("-o must differ from the checkpoint")
    result = snap_checkpoint(args.checkpoint, args.data, args.samples, args.input_bits, not args.no_eval,
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
