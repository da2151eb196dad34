"""``mksgn-energy``: energy per sample of a NIR model on hardware profiles, from a real run.

Usage::

    mksgn-energy MODEL.nir [--data X.npz | --input X.npz] [--limit N] [--backend emulator|lava] [--tag fixed_pt|floating_pt]
                 [--profile NAME|FILE ...] [--teacher CKPT | --teacher-config NAME] [--onnx ANN.onnx] [--device auto|cpu|cuda] [-o DIR]
                 [--dt DT] [--semantics PRESET] ...

Runs ``N`` test samples (stratified by class, seed 0) (or, for any NIR graph, the first ``N`` rows of ``--input``:
one ``(T, B, *shape)`` array per Input node, binary ones counted as synaptic events, real ones as
MACs) through the emulator (or Lava), counts what the run did
(:mod:`mksgn.hw_profiles.counts`), prices it on every profile
(:mod:`mksgn.hw_profiles.estimator`), maps the graph to cores
(:mod:`mksgn.hw_profiles.resources`) and compares with the dense ANN baseline (the teacher,
or any GCN given as ONNX). Writes ``energy.json``, ``energy.md``, ``energy_ops.png``,
``energy_profiles.png`` and ``energy_snn_vs_ann.png`` to DIR; prints the table. The model is
read and fused once (:func:`mksgn.deploy.run.load_model`); the work is
:func:`mksgn.hw_profiles.estimate.estimate`'s.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mksgn.cli import (
    ArgumentParser, add_data_option, add_device_option, add_limit_option, add_out_option, add_quiet_option,
    check_lava_device, command_parser, run_cli,
)
from mksgn.convert.graph_options import add_graph_options
from mksgn.deploy.backends import TAGS

PROG = "mksgn-energy"


def build_parser() -> ArgumentParser:
    """The argument parser of ``mksgn-energy`` (imports nothing heavy)."""
    p = command_parser(PROG, __doc__)
    p.add_argument("model", type=Path, help="NIR graph (MODEL.q.nir: fixed-point counts; MODEL.nir: float)")
    add_data_option(p, "CTR-GCN .npz (default: the data the model records, else the built-in dataset); "
                       "its test split is run")
    add_limit_option(p, 32, "test samples to measure on (default %(default)s)")
    p.add_argument("--backend", choices=("emulator", "lava"), default="emulator", help="default %(default)s")
    p.add_argument("--tag", choices=TAGS, help="default: fixed_pt for a quantised graph, floating_pt otherwise")
    p.add_argument("--profile", action="append", default=[],
                   help="built-in profile name or a .toml file; repeat (default: every built-in profile)")
    ann = p.add_mutually_exclusive_group()
    ann.add_argument("--teacher", type=Path, help="teacher checkpoint: the ANN baseline")
    ann.add_argument("--teacher-config", help="count an untrained teacher of this config (tiny, ntu) as the baseline")
    ann.add_argument("--onnx", type=Path, help="any GCN as ONNX (input rows x (B, ...)): the ANN baseline")
    add_device_option(p)
    add_out_option(p, "folder for energy.json, energy.md and the PNG plots", "folder")
    add_graph_options(p)
    add_quiet_option(p)
    p.add_check(lambda args: check_lava_device(p, args))
    p.add_check(lambda args: args.input is not None and args.data is not None and p.error(
        "--input and --data: give the arrays or the skeleton data, not both"))
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # the heavy imports after parsing: --help and usage errors never load torch
    from mksgn.deploy.run import load_for_command
    from mksgn.hw_profiles.estimate import estimate, load_profiles
    from mksgn.hw_profiles.report import terminal_table, write_report

    profiles = load_profiles(args.profile)  # bad profiles fail before the model is read
    loaded, source = load_for_command(args, args.backend, args.tag)
    result = estimate(loaded, source, args.limit, args.backend, profiles, args.teacher,
                      args.teacher_config, args.onnx, not args.quiet, device=args.device)
    record = result.to_dict()
    c = record["counts"]
    print(f"operations measured on {c['measured_on']} ({c['backend']}), energy per sample:")
    print(terminal_table(record))
    if args.out is not None:
        for path in write_report(record, args.out):
            print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-energy``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
