"""``mksgn-run``: run an exported (or quantised) graph on skeleton data, or any NIR graph on arrays.

    mksgn-run MODEL.nir [--data X.npz | --input X.npz [--save-outputs Y.npz]]
              [--backend emulator|reference|lava] [--tag fixed_pt|floating_pt]
              [--timing aligned|lava] [--limit N] [--batch B] [--device auto|cpu|cuda] [-o RUN.json]
              [--dt DT] [--semantics PRESET] [--reset ...] [--threshold-test ...] [--spikes ...] [--v-min V]

Any NIR graph (snnTorch, sinabs, norse...) runs on ``--input``: one ``(T, B, *shape)`` array per
Input node; its outputs per Output node can be saved with ``--save-outputs``. The neuron
semantics the file does not state (``dt``, reset, threshold test...) are the graph's own, a
preset's (``--semantics``) or set one by one (:mod:`mksgn.convert.graph_options`); a graph that
states no ``dt`` runs at the default with a warning naming it.

Backends: ``reference`` is the reference NIR executor (float64) on the float graph;
``emulator`` the batched Lava emulator (:mod:`mksgn.core.emulator`); ``lava`` Lava itself
(:mod:`mksgn.deploy.lava_builder`, one person row at a time, about 8 s each for ``tiny``);
``fixed_pt`` needs a quantised graph (``mksgn-quantize``); without ``--tag`` the graph decides
(``fixed_pt`` for a quantised graph, ``floating_pt`` otherwise). Prints and writes predictions, labels, accuracy,
spike counts per population and synaptic operations per synapse, each saying what it
was measured on. Under ``torchrun --nproc_per_node N`` every rank runs its share of the
samples and rank 0 gathers one result. The work is :mod:`mksgn.deploy.run`'s; this module
parses, loads, calls it, prints and writes the JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mksgn.cli import (
    ArgumentParser, add_data_option, add_device_option, add_limit_option, add_out_option, add_quiet_option,
    check_at_least_one, check_lava_device, command_parser, run_cli,
)
from mksgn.convert.graph_options import add_graph_options
from mksgn.deploy.backends import BACKENDS, TAGS

PROG = "mksgn-run"


def build_parser() -> ArgumentParser:
    """The argument parser of ``mksgn-run`` (imports nothing heavy)."""
    p = command_parser(PROG, __doc__)
    p.add_argument("model", type=Path, help="NIR graph (MODEL.nir, or MODEL.q.nir for fixed_pt)")
    add_data_option(p, "CTR-GCN .npz (default: the data the model records, else the built-in dataset); "
                       "its test split is run")
    p.add_argument("--backend", choices=BACKENDS, default="emulator", help="default %(default)s")
    p.add_argument("--tag", choices=TAGS,
                   help="arithmetic of the emulator and Lava (default: fixed_pt for a quantised graph, "
                        "floating_pt otherwise); the reference executor has one, float64")
    p.add_argument("--timing", choices=("aligned", "lava"), default="aligned",
                   help="emulator timing: as the reference executor, or Lava's synaptic latency (same results)")
    add_limit_option(p)
    p.add_argument("--batch", type=int, default=64, help="samples per batch (default %(default)s)")
    add_device_option(p)
    add_out_option(p, "write the result JSON to this file", "file")
    add_graph_options(p)
    p.add_argument("--save-outputs", type=Path, metavar="Y.npz",
                   help="with --input: write each Output node's (T, B, *shape) values to this .npz")
    add_quiet_option(p)
    p.add_check(lambda args: check_at_least_one(p, "--batch", args.batch))
    p.add_check(lambda args: _check_backend_options(p, args))
    return p


def _check_backend_options(p: ArgumentParser, args) -> None:
    """Options that mean nothing for the chosen backend are usage errors, not silently ignored."""
    if args.backend == "reference" and args.tag is not None:
        p.error("--tag: the reference executor computes in float64 only; --tag is for --backend emulator or lava")
    if args.backend != "emulator" and args.timing != "aligned":
        p.error("--timing is an emulator option")
    if args.input is not None and args.data is not None:
        p.error("--input and --data: give the arrays or the skeleton data, not both")
    if args.save_outputs is not None:
        from mksgn.paths import check_output_file

        if args.input is None:
            p.error("--save-outputs needs --input (skeleton runs report predictions)")
        check_output_file(args.save_outputs, "--save-outputs")
    check_lava_device(p, args)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # the heavy imports after parsing: --help and usage errors never load torch
    from mksgn.atomic import atomic_write_text
    from mksgn.convert.graph_inputs import write_arrays
    from mksgn.deploy.run import load_for_command, run

    loaded, source = load_for_command(args, args.backend, args.tag)
    result = run(loaded, source, args.backend, args.tag, args.timing, args.limit, args.batch, args.device,
                 progress=not args.quiet)
    if result is None:  # not rank 0 under torchrun
        return 0
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(result.to_dict(), indent=1) + "\n")
    if args.save_outputs is not None:
        write_arrays(args.save_outputs, result.outputs or {})
    head = f"accuracy {result.accuracy:.4f}" if result.accuracy is not None else "outputs"
    print(f"{result.backend} {result.tag}: {head} on {result.measured_on}; "
          f"{result.spikes_per_sample:.0f} spikes and {result.synops_per_sample:.4g} synaptic ops per sample "
          f"({result.seconds:.1f} s); semantics {result.semantics}")
    for path in (args.out, args.save_outputs):
        if path is not None:
            print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-run``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
