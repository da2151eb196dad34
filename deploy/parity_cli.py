"""``mksgn-parity``: spike parity of the snnTorch checkpoint, NIR, Lava float, emulator and Lava fixed.

    mksgn-parity CKPT MODEL.nir [MODEL.q.nir] [--data X.npz] [--limit N] [-o DIR] [--strict] [--no-lava]

Runs the first ``N`` test samples (default 32) through every backend (see
:mod:`mksgn.deploy.parity` and :mod:`mksgn.deploy.parity_run`) and writes ``DIR/parity.json``, ``parity.md`` and
``parity_heatmap.png``. Without ``MODEL.q.nir`` the fixed-point pairs are skipped; with
``--no-lava`` the Lava runs are skipped (they take about 6 s per person row and arithmetic for ``tiny``).
Parity runs on the CPU: the exact comparisons are defined for its arithmetic.
Exit status: 0 when every exact pair is exact (rounding ties allowed up to the stated
bound, none with ``--strict``), 1 otherwise, 2 for bad input.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mksgn.cli import (
    ArgumentParser, add_data_option, add_limit_option, add_out_option, add_quiet_option, command_parser, run_cli,
)

PROG = "mksgn-parity"
DEFAULT_LIMIT = 32


def build_parser() -> ArgumentParser:
    """The argument parser of ``mksgn-parity`` (imports nothing heavy)."""
    p = command_parser(PROG, __doc__)
    p.add_argument("checkpoint", type=Path, help="student checkpoint (student_best.pt)")
    p.add_argument("model", type=Path, help="its exported NIR graph")
    p.add_argument("quantized", type=Path, nargs="?", help="its quantised graph (mksgn-quantize)")
    add_data_option(p, "CTR-GCN .npz (default: the data the checkpoint records, else the built-in dataset); "
                       "its test split is used")
    add_limit_option(p, DEFAULT_LIMIT, "test samples (default %(default)s)")
    add_out_option(p, "report folder (default %(default)s)", "folder", default=Path("parity"))
    p.add_argument("--strict", action="store_true", help="fail on rounding ties too")
    p.add_argument("--no-lava", action="store_true", help="skip the Lava runs")
    add_quiet_option(p)
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # the heavy imports after parsing: --help and usage errors never load torch
    from mksgn.data.builtin import load_dataset
    from mksgn.data.recorded import choose_data
    from mksgn.deploy.parity import write_report
    from mksgn.deploy.parity_run import Student, run_parity
    from mksgn.deploy.run import load_model

    student = Student.load(args.checkpoint)
    model = load_model(args.model, "reference", "floating_pt")
    quantized = load_model(args.quantized, "emulator", "fixed_pt") if args.quantized is not None else None
    data = choose_data(args.data, student.info, args.checkpoint)
    data.announce()
    result = run_parity(student, model, quantized, load_dataset(data.path).test, args.limit, lava=not args.no_lava,
                        strict=args.strict, progress=not args.quiet)
    write_report(result, args.out)
    for name, pair in result.pairs.items():
        verdict = "ok" if result.exact_ok(name) else "FAIL"
        print(f"{name}: {pair['mismatches']} mismatching spikes ({pair['ties']} rounding ties, "
              f"{pair['propagated']} propagated, {pair['real']} real) of {pair['compared_spikes']} - {verdict}")
        if pair["first_failure"] is not None:
            f = pair["first_failure"]
            print(f"  first real mismatch: layer {f['node']} (module {f['module']}), step {f['step']}, row {f['row']}")
    if result.float_vs_fixed:
        print(f"float vs fixed: prediction agreement {result.float_vs_fixed['prediction_agreement']:.4f}, "
              f"spike agreement {result.float_vs_fixed['spike_agreement']:.4f}")
    print(f"{'PASS' if result.passed else 'FAIL'} on {result.measured_on}; report in {args.out}")
    return 0 if result.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-parity``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
