"""What every ``mksgn-*`` command shares: one-line errors and exit status 2 for bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mksgn.errors import MksgnError

EXIT_BAD_INPUT = 2


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose usage errors are one line, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def run_cli(prog: str, body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a command body, turning :class:`MksgnError` into one line on stderr and status 2.

    Parameters
    ----------
    prog
        The command name used as the message prefix.
    body
        The command; returns its exit status.
    argv
        Arguments (``None``: ``sys.argv[1:]``).
    """
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
        return 130
