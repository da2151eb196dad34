"""``mksgn-train``: train the GCN teacher (unless given) and the distilled spiking MK-SGN student.

    mksgn-train [--config tiny|ntu|FILE] [--data X.npz] [-o DIR] [--epochs N]
                [--teacher CKPT] [--kd none|soft|feature|both] [--seed S]
                [--device auto|cpu|cuda] [--resume] [--set KEY=VALUE ...]

Several processes: ``torchrun --nproc_per_node N -m mksgn.train.train_cli ...``.
``--resume`` takes the run's settings from ``DIR/run.json`` (see :mod:`mksgn.train.run_state`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mksgn.cli import (
    ArgumentParser, add_data_option, add_device_option, add_out_option, add_quiet_option, command_parser, run_cli,
)

PROG = "mksgn-train"


def build_parser() -> ArgumentParser:
    """The argument parser of ``mksgn-train``."""
    from mksgn.train.config import KD_MODES

    p = command_parser(PROG, __doc__)
    p.add_argument("--config", help="preset (tiny, ntu) or a TOML file (default tiny)")
    add_data_option(p, "a CTR-GCN .npz (default: the built-in dataset)")
    add_out_option(p, "run folder (default %(default)s)", "folder", default=Path("runs/train"))
    p.add_argument("--epochs", type=int, help="epochs for teacher and student (overrides the config)")
    p.add_argument("--teacher", help="a trained teacher checkpoint (skips teacher training)")
    p.add_argument("--kd", choices=KD_MODES, help="distillation: none, soft labels, features, or both")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    add_device_option(p)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its own recorded settings (flags given must agree)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, TOML value syntax (e.g. student.channels=[32,64])")
    p.add_argument("--stop-after", type=int, metavar="EPOCHS",
                   help="train at most this many epochs now (teacher and student together), then stop; "
                        "continue later with --resume")
    add_quiet_option(p)
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from mksgn.train.run import train_command

    flags = {"config": args.config, "overrides": args.overrides or None, "data": args.data, "teacher": args.teacher,
             "kd": args.kd, "seed": args.seed, "epochs": args.epochs}
    train_command(args.out, flags, resume=args.resume, device=args.device, progress=not args.quiet,
                  stop_after=args.stop_after)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-train``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
