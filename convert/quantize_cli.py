"""``mksgn-quantize``: a float NIR graph -> the same graph with Loihi fixed-point parameters.

    mksgn-quantize MODEL.nir -o MODEL.q.nir [--data X.npz] [--samples N] [--steps T] [--seed S]

Calibration data: for graphs written by ``mksgn-export``, ``N`` samples of the training
split of ``--data`` (default: the built-in dataset); for any other NIR graph, ``N`` random
inputs (standard normal, ``T`` steps), said so in the report. Writes ``MODEL.q.nir``
(atomically) and beside it ``MODEL.q.quantization.json`` and ``.md``: per population the
scale, threshold, decays, and per synapse the weight exponent, the range used, the clipped
and zeroed weights, and the saturated states on the calibration data. The work is
:func:`mksgn.convert.quantize_service.quantize_file`'s.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mksgn.cli import ArgumentParser, add_data_option, add_out_option, add_quiet_option, command_parser, run_cli
from mksgn.convert.quantize import INPUT_BITS
from mksgn.convert.quantize_service import DEFAULT_SAMPLES, quantize_file

PROG = "mksgn-quantize"


def build_parser() -> ArgumentParser:
    p = command_parser(PROG, __doc__)
    p.add_argument("model", type=Path, help="float NIR graph (MODEL.nir)")
    add_out_option(p, "quantised graph to write (MODEL.q.nir)", short=True, required=True)
    add_data_option(p, "CTR-GCN .npz to calibrate on (default: the built-in dataset)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="calibration samples (default %(default)s)")
    p.add_argument("--steps", type=int, default=4, help="time steps of random calibration inputs (foreign graphs)")
    p.add_argument("--seed", type=int, default=0, help="seed of random calibration inputs")
    p.add_argument("--input-bits", type=int, default=INPUT_BITS,
                   help="bits of the graded input payloads, 2..24 (default %(default)s)")
    add_quiet_option(p, "no table on the terminal")
    return p


def _main(argv: Sequence[str] | None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.samples < 1 or args.steps < 1:
        p.error("--samples and --steps must be >= 1")
    if args.out.resolve() == args.model.resolve():
        p.error("-o must differ from the input graph")
    if not 2 <= args.input_bits <= 24:
        p.error(f"--input-bits must be 2..24, got {args.input_bits}")
    rec = quantize_file(args.model, args.out, args.data, args.samples, args.steps, args.seed, args.input_bits)
    if not args.quiet:
        print(f"{rec.populations} populations, {rec.synapses} synapses quantised (8-bit weights, "
              f"{rec.input_bits}-bit graded inputs); calibrated on {rec.calibrated_on}")
        print(f"clipped weights: {rec.clipped_weights}; saturated states on the calibration data: "
              f"{rec.saturated_states}")
    report = Path(rec.report)
    print(f"wrote {args.out}, {report.name}, {report.with_suffix('.md').name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-quantize``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
