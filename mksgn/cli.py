"""What every ``mksgn-*`` command shares: one grammar and one way to fail.

The options (the README's table lists which command has which):

- ``-o/--out PATH``: where the command writes; a file for commands that write one artefact
  (``mksgn-export``, ``-snap``, ``-quantize``, ``-run``), a folder for those that write a
  report (``mksgn-train``, ``-parity``, ``-energy``, ``-demo``, ``mksgn-data inspect``).
  Checked before any work: a file option naming a directory, a folder option naming a file,
  or a place this process cannot write is refused.
- ``--data X.npz``: the dataset (default: the one the model records, else the built-in one);
  ``--limit N``: ``N`` test samples, a seeded subset stratified by class (the first ``N`` rows
  of ``--input`` arrays); ``--device auto|cpu|cuda``; ``--quiet``: no
  progress bars; ``--version``.

Bad input is one line on stderr and exit status 2; a usage error prints the usage line too.
Ctrl-C exits with status 130, SIGTERM with 143, each with one line.

This module imports nothing heavy: ``--help`` and usage errors never load torch.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from mksgn.errors import MksgnError, MksgnWarning

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """SIGTERM arrived while :func:`run_cli` ran a command (a ``BaseException``, like
    ``KeyboardInterrupt``, so that ``except Exception`` does not swallow it and cleanup runs)."""


def raise_terminated(signum: int, frame: object) -> None:
    """The SIGTERM handler :func:`run_cli` installs."""
    raise Terminated()


DEVICES = ("auto", "cpu", "cuda")


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose usage errors are the usage line and one line, status 2.

    Checks added with :meth:`add_check` run after parsing, before the command does any work.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._checks: list[Callable[[argparse.Namespace], None]] = []

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)

    def add_check(self, check: Callable[[argparse.Namespace], None]) -> None:
        """Run ``check(args)`` after parsing (it raises :class:`MksgnError` or calls :meth:`error`)."""
        self._checks.append(check)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        # parse_args and sub-commands both come through here, so a sub-parser's checks run too
        parsed, extras = super().parse_known_args(args, namespace)
        for check in self._checks:
            check(parsed)
        return parsed, extras


def run_cli(prog: str, body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a command body, turning :class:`MksgnError` into one line on stderr and status 2.

    Ctrl-C (``KeyboardInterrupt``) and SIGTERM (:class:`Terminated`, raised by a handler
    installed for the call) end it with one line and status 130 or 143. Each
    :class:`~mksgn.errors.MksgnWarning` (a default was assumed) is one line on stderr,
    ``prog: warning: ...``, written when the command has done its work (a command that fails
    writes its one error line only).

    Parameters
    ----------
    prog
        The command name used as the message prefix.
    body
        The command; returns its exit status.
    argv
        Arguments (``None``: ``sys.argv[1:]``).
    """
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, raise_terminated) if in_main else None
    held: list[str] = []
    try:
        with warnings.catch_warnings():  # restores the warning machinery when the command ends
            shown = warnings.showwarning

            def hold(message, category, filename, lineno, file=None, line=None) -> None:
                if issubclass(category, MksgnWarning):
                    held.append(f"{prog}: warning: {' '.join(str(message).split())}\n")
                else:
                    shown(message, category, filename, lineno, file, line)

            warnings.showwarning = hold
            status = body(argv)
        sys.stderr.write("".join(held))  # after the work: an error alone stays one line
        return status
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    except MksgnError as exc:
        return _one_line(prog, str(exc))
    except OSError as exc:  # a file system refusal the checks could not foresee (disk full, a race)
        return _one_line(prog, str(exc))
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except Terminated:
        sys.stderr.write(f"{prog}: terminated\n")
        return EXIT_TERMINATED
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _one_line(prog: str, message: str) -> int:
    """Write ``prog: error: message`` on one line; the bad-input status."""
    sys.stderr.write(f"{prog}: error: {' '.join(message.split())}\n")
    return EXIT_BAD_INPUT


DATA_HELP = "CTR-GCN .npz (default: the built-in dataset)"


def command_parser(prog: str, doc: str | None) -> ArgumentParser:
    """The parser of a command, described by the first paragraph of its module docstring, with ``--version``."""
    from mksgn import __version__

    p = ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"{prog} (mksgn) {__version__}")
    return p


def add_data_option(parser: argparse.ArgumentParser, help: str = DATA_HELP) -> None:
    """``--data X.npz``: a CTR-GCN npz; the built-in dataset when absent."""
    parser.add_argument("--data", help=help)


def add_limit_option(parser: ArgumentParser, default: int | None = None,
                     help: str = "run only N test samples (stratified by class, seed 0)") -> None:
    """``--limit N``: ``N`` test samples, stratified by class (at least 1, a usage error otherwise)."""
    parser.add_argument("--limit", type=int, default=default, help=help)
    parser.add_check(lambda args: check_at_least_one(parser, "--limit", args.limit))


def add_out_option(parser: ArgumentParser, help: str, kind: str, *, required: bool = False,
                   default: Path | None = None) -> None:
    """``-o/--out PATH``: where the command writes, a ``"file"`` or a ``"folder"``.

    The path is checked right after parsing (:mod:`mksgn.paths`): a file option naming a
    directory, a folder option naming a file, or a place this process cannot write is
    refused before any work.
    """
    from mksgn.paths import check_output_dir, check_output_file

    if kind not in ("file", "folder"):
        raise ValueError(f"add_out_option: kind must be 'file' or 'folder', got {kind!r}")
    parser.add_argument("-o", "--out", type=Path, required=required, default=default,
                        metavar="FILE" if kind == "file" else "DIR", help=help)
    check = check_output_file if kind == "file" else check_output_dir
    parser.add_check(lambda args: args.out is None or check(args.out, "-o/--out"))


def add_device_option(parser: ArgumentParser, help: str = "where torch computes (default %(default)s: cuda "
                      "when available)") -> None:
    """``--device auto|cpu|cuda``."""
    parser.add_argument("--device", choices=DEVICES, default="auto", help=help)


def check_lava_device(parser: ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error for ``--backend lava --device cuda``: Lava simulates on the CPU."""
    if getattr(args, "backend", None) == "lava" and getattr(args, "device", None) == "cuda":
        parser.error("--device cuda: Lava runs on the CPU (use --backend emulator on a GPU)")


def add_quiet_option(parser: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    """``--quiet``: no progress bar (or whatever ``help`` says is left out)."""
    parser.add_argument("--quiet", action="store_true", help=help)


def check_at_least_one(parser: argparse.ArgumentParser, option: str, value: int | None) -> None:
    """A usage error (one line, status 2) unless ``value`` is ``None`` or at least 1."""
    if value is not None and value < 1:
        parser.error(f"{option} must be >= 1, got {value}")
