"""``mksgn-parity``: spike parity of the snnTorch checkpoint, NIR, Lava float, emulator and Lava fixed.

    mksgn-parity CKPT MODEL.nir [MODEL.q.nir] [--data X.npz] [--limit N] [-o DIR] [--strict] [--no-lava]
    mksgn-parity MODEL.nir [MODEL.q.nir] --input X.npz [--expected Y.npz] [--semantics PRESET] [--dt DT] ...

Any NIR graph (one written by snnTorch, sinabs, norse...) is compared on ``--input`` rows (one
``(T, B, *shape)`` array per Input node) without a checkpoint: the reference executor, the float
and fixed-point emulators and Lava (both tags) against each other, and, with ``--expected``
(the framework's own outputs, one array per Output node), the float32 executor against the
framework and every backend's outputs against it (:mod:`mksgn.deploy.graph_parity`).

Runs ``N`` test samples (stratified by class, seed 0) (default 32) through every backend (see
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
from mksgn.convert.graph_options import add_graph_options, semantics_overrides

PROG = "mksgn-parity"
DEFAULT_LIMIT = 32


def build_parser() -> ArgumentParser:
    """The argument parser of ``mksgn-parity`` (imports nothing heavy)."""
    p = command_parser(PROG, __doc__)
    p.add_argument("files", type=Path, nargs="+", metavar="FILE",
                   help="CKPT MODEL.nir [MODEL.q.nir]: a student checkpoint, its exported graph and its quantised "
                        "graph; with --input: MODEL.nir [MODEL.q.nir], any NIR graph")
    add_data_option(p, "CTR-GCN .npz (default: the data the checkpoint records, else the built-in dataset); "
                       "its test split is used")
    add_limit_option(p, DEFAULT_LIMIT, "test samples (default %(default)s)")
    add_out_option(p, "report folder (default %(default)s)", "folder", default=Path("parity"))
    p.add_argument("--strict", action="store_true", help="fail on rounding ties too")
    p.add_argument("--no-lava", action="store_true", help="skip the Lava runs")
    add_graph_options(p)
    p.add_argument("--expected", type=Path, metavar="Y.npz",
                   help="with --input: the framework's own outputs, one (T, B, *shape) array per Output node")
    add_quiet_option(p)
    p.add_check(lambda args: _check(p, args))
    return p


def _check(p: ArgumentParser, args) -> None:
    """Sort the positional files into checkpoint, model and quantised graph."""
    files = list(args.files)
    if args.input is None:
        if args.expected is not None:
            p.error("--expected needs --input (a student's parity compares with the student itself)")
        given = [flag for flag, value in (("--dt", args.dt), ("--semantics", args.semantics)) if value is not None]
        if given or semantics_overrides(args):
            p.error(f"{', '.join(given) or 'the semantics fields'}: with --input only (a student's graph states "
                    f"its own semantics)")
        if not 2 <= len(files) <= 3:
            p.error("expected CKPT MODEL.nir [MODEL.q.nir] (or MODEL.nir [MODEL.q.nir] --input X.npz)")
        args.checkpoint, args.model, args.quantized = files[0], files[1], files[2] if len(files) == 3 else None
    else:
        if args.data is not None:
            p.error("--input and --data: give the arrays or the skeleton data, not both")
        if not 1 <= len(files) <= 2:
            p.error("with --input: expected MODEL.nir [MODEL.q.nir] (no checkpoint)")
        args.checkpoint, args.model, args.quantized = None, files[0], files[1] if len(files) == 2 else None


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # the heavy imports after parsing: --help and usage errors never load torch
    from mksgn.deploy.parity import write_report

    result = _graph_parity(args) if args.input is not None else _student_parity(args)
    write_report(result, args.out)
    for name, pair in result.pairs.items():
        verdict = "ok" if result.exact_ok(name) else "FAIL"
        print(f"{name}: {pair['mismatches']} mismatching spikes ({pair['ties']} rounding ties, "
              f"{pair['propagated']} propagated, {pair['real']} real) of {pair['compared_spikes']} - {verdict}")
        if pair["first_failure"] is not None:
            f = pair["first_failure"]
            print(f"  first real mismatch: layer {f['node']} (module {f['module']}), step {f['step']}, row {f['row']}")
    if result.float_vs_fixed:
        fv = result.float_vs_fixed
        what = "output agreement" if "output_agreement" in fv else "prediction agreement"
        print(f"float vs fixed: {what} {fv['prediction_agreement']:.4f}, spike agreement {fv['spike_agreement']:.4f}")
    for backend, per_output in result.framework_outputs.items():
        for out, v in per_output.items():
            print(f"{backend} vs the framework's {out}: {v['equal']} of {v['values']} values equal "
                  f"(largest difference {v['max_abs_diff']:.4g})")
    print(f"{'PASS' if result.passed else 'FAIL'} on {result.measured_on}; report in {args.out}")
    return 0 if result.passed else 1


def _student_parity(args):
    from mksgn.data.builtin import load_dataset
    from mksgn.data.recorded import choose_data
    from mksgn.deploy.parity_run import Student, run_parity
    from mksgn.deploy.run import load_model

    student = Student.load(args.checkpoint)
    model = load_model(args.model, "reference", "floating_pt")
    quantized = load_model(args.quantized, "emulator", "fixed_pt") if args.quantized is not None else None
    data = choose_data(args.data, student.info, args.checkpoint)
    data.announce()
    return run_parity(student, model, quantized, load_dataset(data.path).test, args.limit, lava=not args.no_lava,
                      strict=args.strict, progress=not args.quiet)


def _graph_parity(args):
    from mksgn.convert.graph_inputs import ArrayInputs
    from mksgn.convert.graph_options import graph_semantics
    from mksgn.core.nir_file import read_graph
    from mksgn.deploy.graph_parity import run_graph_parity
    from mksgn.deploy.run import load_model

    graph = read_graph(args.model)
    semantics = graph_semantics(args, graph.metadata, str(args.model))
    model = load_model(args.model, "reference", "floating_pt", semantics, graph)
    quantized = load_model(args.quantized, "emulator", "fixed_pt", semantics) if args.quantized is not None else None
    arrays = ArrayInputs.read(args.input, {n: model.sg.populations[n].shape for n in model.sg.inputs})
    return run_graph_parity(model, quantized, arrays, args.expected, args.limit, lava=not args.no_lava,
                            strict=args.strict, progress=not args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-parity``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
