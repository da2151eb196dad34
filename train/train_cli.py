"""``mksgn-train``: train the GCN teacher (unless given) and the distilled spiking MK-SGN student.

    mksgn-train [--config tiny|ntu|FILE] [--data X.npz] [-o DIR] [--epochs N]
                [--teacher CKPT] [--kd none|soft|feature|both] [--seed S]
                [--device auto|cpu|cuda] [--resume] [--set KEY=VALUE ...]

Several processes: ``torchrun --nproc_per_node N -m mksgn.train.train_cli ...``.
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
    p.add_argument("--config", default="tiny", help="preset (tiny, ntu) or a TOML file (default %(default)s)")
    add_data_option(p, "a CTR-GCN .npz (default: the built-in dataset)")
    add_out_option(p, "run folder (default %(default)s)", "folder", default=Path("runs/train"))
    p.add_argument("--epochs", type=int, help="epochs for teacher and student (overrides the config)")
    p.add_argument("--teacher", help="a trained teacher checkpoint (skips teacher training)")
    p.add_argument("--kd", choices=KD_MODES, help="distillation: none, soft labels, features, or both")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    add_device_option(p)
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoints")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, TOML value syntax (e.g. student.channels=[32,64])")
    p.add_argument("--stop-after", type=int, metavar="EPOCHS",
                   help="train at most this many epochs now (teacher and student together), then stop; "
                        "continue later with --resume")
    add_quiet_option(p)
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides += [f"train_teacher.epochs={args.epochs}", f"train_student.epochs={args.epochs}"]
        overrides += [f"train_teacher.warmup_epochs={min(args.epochs, 1)}", f"train_student.warmup_epochs={min(args.epochs, 1)}"]
    if args.kd is not None:
        overrides.append(f'distill.mode="{args.kd}"')
    from mksgn.train.config import load_config

    cfg = load_config(args.config, overrides)
    from mksgn.train.run import train_run

    train_run(cfg, args.out, data_path=args.data, teacher_ckpt=args.teacher, seed=args.seed,
              device=args.device, resume=args.resume, progress=not args.quiet, stop_after=args.stop_after)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-train``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
