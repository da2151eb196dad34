"""``mksgn-quantize``: a float NIR graph -> the same graph with Loihi fixed-point parameters.

    mksgn-quantize MODEL.nir -o MODEL.q.nir [--data X.npz | --input X.npz] [--samples N] [--steps T] [--seed S]
                   [--dt DT] [--semantics PRESET] [--reset ...] [--threshold-test ...] ...

Calibration data: for graphs written by ``mksgn-export``, ``N`` samples of the training
split of ``--data`` (default: the built-in dataset); for any NIR graph, the first ``N`` rows
of ``--input`` (one ``(T, B, *shape)`` array per Input node); else ``N`` random inputs
(standard normal, ``T`` steps), said so in the report. The neuron semantics (``--dt``,
``--semantics``...: :mod:`mksgn.convert.graph_options`) are written into the quantised graph,
so that every later command runs it the same way. A synapse whose weights would all round to
zero is refused, naming it (a wrong ``dt`` does that). Writes ``MODEL.q.nir``
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
from mksgn.convert.defaults import INPUT_BITS, INPUT_BITS_RANGE, QUANTIZE_SAMPLES
from mksgn.convert.graph_options import add_graph_options

PROG = "mksgn-quantize"


def build_parser() -> ArgumentParser:
    """The argument parser of ``mksgn-quantize`` (imports nothing heavy)."""
    p = command_parser(PROG, __doc__)
    p.add_argument("model", type=Path, help="float NIR graph (MODEL.nir)")
    add_out_option(p, "quantised graph to write (MODEL.q.nir)", "file", required=True)
    add_data_option(p, "CTR-GCN .npz to calibrate on (default: the data the graph records, else the built-in "
                       "dataset)")
    p.add_argument("--samples", type=int, default=QUANTIZE_SAMPLES, help="calibration samples (default %(default)s)")
    p.add_argument("--steps", type=int, default=4, help="time steps of random calibration inputs (foreign graphs)")
    p.add_argument("--seed", type=int, default=0, help="seed of random calibration inputs")
    p.add_argument("--input-bits", type=int,
                   help=f"bits of the graded input payloads, {INPUT_BITS_RANGE[0]}..{INPUT_BITS_RANGE[1]} (default "
                        f"{INPUT_BITS}; a snapped graph keeps the bits it was snapped with)")
    add_graph_options(p)
    add_quiet_option(p, "print only the files written (no summary lines)")
    p.add_check(lambda args: _check(p, args))
    return p


def _check(p: ArgumentParser, args) -> None:
    if args.samples < 1 or args.steps < 1:
        p.error("--samples and --steps must be >= 1")
    if args.out.resolve() == args.model.resolve():
        p.error("-o must differ from the input graph")
    if args.input is not None and args.data is not None:
        p.error("--input and --data: calibrate on the arrays or on skeleton data, not both")
    lo, hi = INPUT_BITS_RANGE
    if args.input_bits is not None and not lo <= args.input_bits <= hi:
        p.error(f"--input-bits must be {lo}..{hi}, got {args.input_bits}")


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # the heavy imports after parsing: --help and usage errors never load torch
    from mksgn.convert.graph_options import graph_semantics
    from mksgn.convert.quantize_service import quantize_file
    from mksgn.core.nir_file import read_graph

    graph = read_graph(args.model)
    semantics = graph_semantics(args, graph.metadata, str(args.model))
    data = None if args.input is not None else _data(args, graph)
    rec = quantize_file(args.model, args.out, data, args.samples, args.steps, args.seed, args.input_bits, semantics,
                        args.input, graph)
    if not args.quiet:
        print(f"{rec.populations} populations, {rec.synapses} synapses quantised (8-bit weights, "
              f"{rec.input_bits}-bit graded inputs); calibrated on {rec.calibrated_on}")
        print(f"clipped weights: {rec.clipped_weights}; saturated states on the calibration data: "
              f"{rec.saturated_states}")
    report = Path(rec.report)
    print(f"wrote {args.out}, {report.name}, {report.with_suffix('.md').name}")
    return 0


def _data(args, graph) -> str | None:
    """``--data``, or the data an mksgn graph records (foreign graphs calibrate on random inputs)."""
    from mksgn.core.nir_file import decode_metadata
    from mksgn.data.recorded import choose_data, graph_data_record

    if "input" not in decode_metadata(dict(graph.metadata or {})):
        return args.data  # not an mksgn graph: calibration_inputs refuses --data or draws random inputs
    data = choose_data(args.data, graph_data_record(graph), args.model)
    data.announce()
    return data.path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-quantize``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
