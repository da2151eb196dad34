"""What every ``mksgn-*`` command shares: one-line errors and exit status 2 for bad input, and the
options several commands have (``--data``, ``--limit``, ``--out``, ``--quiet``)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from mksgn.errors import MksgnError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """SIGTERM arrived while :func:`run_cli` ran a command (a ``BaseException``, like
    ``KeyboardInterrupt``, so that ``except Exception`` does not swallow it and cleanup runs)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose usage errors are one line, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def run_cli(prog: str, body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a command body, turning :class:`MksgnError` into one line on stderr and status 2.

    Ctrl-C (``KeyboardInterrupt``) and SIGTERM (:class:`Terminated`, raised by a handler
    installed for the call) end it with one line and status 130 or 143.

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
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main else None
    try:
        return body(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    except MksgnError as exc:
        message = " ".join(str(exc).split("\n"))
        sys.stderr.write(f"{prog}: error: {message}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except Terminated:
        sys.stderr.write(f"{prog}: terminated\n")
        return EXIT_TERMINATED
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


DATA_HELP = "CTR-GCN .npz (default: the built-in dataset)"


def command_parser(prog: str, doc: str | None) -> ArgumentParser:
    """The parser of a command, described by the first paragraph of its module docstring."""
    return ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])


def add_data_option(parser: argparse.ArgumentParser, help: str = DATA_HELP) -> None:
    """``--data X.npz``: a CTR-GCN npz; the built-in dataset when absent."""
    parser.add_argument("--data", help=help)


def add_limit_option(parser: argparse.ArgumentParser, default: int | None = None,
                     help: str = "run only the first N test samples") -> None:
    """``--limit N``: the first ``N`` test samples (checked by :func:`check_at_least_one`)."""
    parser.add_argument("--limit", type=int, default=default, help=help)


def add_out_option(parser: argparse.ArgumentParser, help: str, *, short: bool = False, required: bool = False,
                   default: Path | None = None) -> None:
    """``--out PATH`` (also ``-o`` when ``short``): where the command writes."""
    flags = ("-o", "--out") if short else ("--out",)
    parser.add_argument(*flags, type=Path, required=required, default=default, help=help)


def add_quiet_option(parser: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    """``--quiet``: no progress bar (or whatever ``help`` says is left out)."""
    parser.add_argument("--quiet", action="store_true", help=help)


def check_at_least_one(parser: argparse.ArgumentParser, option: str, value: int | None) -> None:
    """A usage error (one line, status 2) unless ``value`` is ``None`` or at least 1."""
    if value is not None and value < 1:
        parser.error(f"{option} must be >= 1, got {value}")
