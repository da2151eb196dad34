"""``mksgn-run``: run an exported (or quantised) graph on skeleton data.

    mksgn-run MODEL.nir [--data X.npz] [--backend emulator|reference|lava] [--tag fixed_pt|floating_pt]
              [--timing aligned|lava] [--limit N] [--batch B] [--device auto|cpu|cuda] [--out RUN.json]

Backends: ``reference`` is the reference NIR executor (float64) on the float graph;
``emulator`` the batched Lava emulator (:mod:`mksgn.core.emulator`); ``lava`` Lava itself
(:mod:`mksgn.deploy.lava_builder`, one person row at a time, about 8 s each for ``tiny``);
``fixed_pt`` needs a quantised graph (``mksgn-quantize``). Prints and writes predictions, labels, accuracy,
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

from mksgn.atomic import atomic_write_text
from mksgn.cli import (
    ArgumentParser, add_data_option, add_limit_option, add_out_option, add_quiet_option, check_at_least_one,
    command_parser, run_cli,
)
from mksgn.deploy.run import BACKENDS, TAGS, load_model, run

PROG = "mksgn-run"


def build_parser() -> ArgumentParser:
    p = command_parser(PROG, __doc__)
    p.add_argument("model", type=Path, help="NIR graph (MODEL.nir, or MODEL.q.nir for fixed_pt)")
    add_data_option(p, "CTR-GCN .npz (default: the built-in dataset); its test split is run")
    p.add_argument("--backend", choices=BACKENDS, default="emulator")
    p.add_argument("--tag", choices=TAGS, default="fixed_pt")
    p.add_argument("--timing", choices=("aligned", "lava"), default="aligned",
                   help="emulator timing: as the reference executor, or Lava's synaptic latency (same results)")
    add_limit_option(p)
    p.add_argument("--batch", type=int, default=64, help="samples per batch (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_out_option(p, "write the result JSON here")
    add_quiet_option(p)
    return p


def _main(argv: Sequence[str] | None) -> int:
    from mksgn.data.builtin import load_dataset

    p = build_parser()
    args = p.parse_args(argv)
    check_at_least_one(p, "--limit", args.limit)
    check_at_least_one(p, "--batch", args.batch)
    loaded = load_model(args.model, args.backend, args.tag)
    result = run(loaded, load_dataset(args.data).test, args.backend, args.tag, args.timing, args.limit, args.batch,
                 args.device, progress=not args.quiet)
    if result is None:  # not rank 0 under torchrun
        return 0
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(result.to_dict(), indent=1) + "\n")
    print(f"{result.backend} {result.tag}: accuracy {result.accuracy:.4f} on {result.measured_on}; "
          f"{result.spikes_per_sample:.0f} spikes and {result.synops_per_sample:.4g} synaptic ops per sample "
          f"({result.seconds:.1f} s)")
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-run``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
