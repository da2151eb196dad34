"""``mksgn-data``: make, convert and inspect skeleton datasets (CTR-GCN npz).

Sub-commands::

    mksgn-data synth -o X.npz [--samples N] [--seed S] [--frames F] [--difficulty D] [--2d]
    mksgn-data convert --from {ntu-skeleton,pyskl,ucla,kinetics-json} SRC -o X.npz [--benchmark B] [--layout L]
    mksgn-data inspect [X.npz] [-o DIR] [--split train|test] [--sample I]

Bad input exits with status 2 and one line naming the file and position.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mksgn.cli import ArgumentParser, add_out_option, command_parser, run_cli

PROG = "mksgn-data"
SOURCES = ("ntu-skeleton", "pyskl", "ucla", "kinetics-json")
BENCHMARKS = ("xsub", "xview", "xset")


def build_parser() -> ArgumentParser:
    """The argument parser of ``mksgn-data``."""
    from mksgn.data.builtin import BuiltinSpec

    parser = command_parser(PROG, __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = BuiltinSpec()

    synth = sub.add_parser("synth", help="write the built-in procedural dataset")
    add_out_option(synth, "output .npz", "file", required=True)
    synth.add_argument("--samples", type=int, default=defaults.samples, help="samples, train + test (default %(default)s)")
    synth.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
    synth.add_argument("--frames", type=int, default=defaults.frames, help="frames per clip (default %(default)s)")
    synth.add_argument("--difficulty", type=float, default=defaults.difficulty, help="0 (easy) .. 1 (hard), default %(default)s")
    synth.add_argument("--2d", dest="image", action="store_true",
                       help="as a 2-D pose estimator sees it: pixel coordinates on a 1920x1080 image, a confidence "
                            "per joint, lost extremities written as (0, 0)")

    convert = sub.add_parser("convert", help="convert NTU .skeleton files, a pyskl pickle, NW-UCLA or Kinetics-skeleton json")
    convert.add_argument("--from", dest="source_format", required=True, choices=SOURCES)
    convert.add_argument("src", type=Path, help="a directory (ntu-skeleton, ucla, kinetics-json: ST-GCN's kinetics "
                         "folder) or a .pkl file (pyskl)")
    add_out_option(convert, "output .npz", "file", required=True)
    convert.add_argument("--benchmark", choices=BENCHMARKS, default="xsub", help="split (default %(default)s; ucla: by view)")
    convert.add_argument("--max-frames", type=int, default=300, help="cut clips longer than this (default %(default)s)")
    convert.add_argument("--layout", help="pyskl: the skeleton layout (default by joint count; 2-D with 25 joints: "
                         "ntu25 or body25)")

    inspect = sub.add_parser("inspect", help="counts per class, shapes, value ranges and a PNG strip of one sample")
    inspect.add_argument("data", nargs="?", type=Path, help="a CTR-GCN .npz (default: the built-in dataset)")
    add_out_option(inspect, "folder for the PNG and JSON (default: beside the data)", "folder")
    inspect.add_argument("--split", choices=("train", "test"), default="train")
    inspect.add_argument("--sample", type=int, default=0, help="index of the sample to draw")
    return parser


def _synth(args) -> int:
    from mksgn.data.readers.ctrgcn_npz import write_ctrgcn_npz
    from mksgn.data.synth import generate
    from mksgn.errors import DatasetError

    start = time.perf_counter()
    try:
        splits = generate(samples=args.samples, seed=args.seed, frames=args.frames, difficulty=args.difficulty)
    except ValueError as exc:
        raise DatasetError(f"synth: {exc}") from exc
    if args.image:
        from mksgn.data.synth.image import project_to_image

        splits = project_to_image(splits, args.seed, args.difficulty)
    write_ctrgcn_npz(args.out, splits)
    print(
        f"wrote {args.out}: built-in dataset{' in 2-D (pixels, confidence)' if args.image else ''} "
        f"(seed {args.seed}, difficulty {args.difficulty:g}), "
        f"{len(splits.train)} train + {len(splits.test)} test samples, {splits.train.num_classes} classes, "
        f"{args.frames} frames, in {time.perf_counter() - start:.1f} s"
    )
    return 0


def _convert(args) -> int:
    from mksgn.data.dataset import DatasetSplits
    from mksgn.data.readers.ctrgcn_npz import write_ctrgcn_npz

    splits: DatasetSplits
    if args.source_format == "ntu-skeleton":
        from mksgn.data.readers.ntu_skeleton import read_ntu_skeleton_dir

        splits = read_ntu_skeleton_dir(args.src, args.benchmark, max_frames=args.max_frames)
    elif args.source_format == "pyskl":
        from mksgn.data.readers.pyskl import read_pyskl

        splits = read_pyskl(args.src, args.benchmark, max_frames=args.max_frames, layout=args.layout)
    elif args.source_format == "kinetics-json":
        from mksgn.data.readers.kinetics_json import read_kinetics_dir

        splits = read_kinetics_dir(args.src, max_frames=args.max_frames)
    else:
        from mksgn.data.readers.ucla import read_ucla_dir

        splits = read_ucla_dir(args.src)
    write_ctrgcn_npz(args.out, splits)
    print(
        f"wrote {args.out}: {splits.benchmark} from {args.src}, {len(splits.train)} train + "
        f"{len(splits.test)} test samples, {splits.train.num_classes} classes"
    )
    return 0


def _inspect(args) -> int:
    from mksgn.atomic import atomic_write_text
    from mksgn.data.builtin import builtin_path
    from mksgn.data.data_report import format_summary, plot_sample_strip, summarise
    from mksgn.data.readers.ctrgcn_npz import read_ctrgcn_npz
    from mksgn.errors import DatasetError

    path = args.data or builtin_path()
    splits = read_ctrgcn_npz(path)
    summary = summarise(splits, str(path))
    print(format_summary(summary))
    ds = getattr(splits, args.split)
    if not 0 <= args.sample < len(ds):
        raise DatasetError(f"--sample {args.sample} outside 0..{len(ds) - 1} of the {args.split} split", path)
    out = args.out or Path(path).parent
    png = out / f"{Path(path).stem}_{args.split}{args.sample}.png"
    plot_sample_strip(ds, args.sample, png)
    js = out / f"{Path(path).stem}_summary.json"
    atomic_write_text(js, json.dumps(summary, indent=2) + "\n")
    print(f"wrote {png} and {js}")
    return 0


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "convert" and args.layout is not None and args.source_format != "pyskl":
        parser.error(f"--layout applies to --from pyskl only ({args.source_format} has its own layout)")
    return {"synth": _synth, "convert": _convert, "inspect": _inspect}[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-data``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
