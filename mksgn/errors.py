"""The exceptions mksgn raises for bad input.

Every error a user can cause (a corrupt file, a wrong shape, an unknown profile) is an
instance of :class:`MksgnError`; the command-line tools print its message on one line and
exit with status 2. Messages name the file and the position, node or field at fault.
"""

from __future__ import annotations

from os import PathLike


class MksgnError(Exception):
    """Base class of the errors caused by bad input or set-up."""


class MksgnWarning(UserWarning):
    """Base class of the warnings that a result depends on something the input did not state (a
    default was assumed and is named); the command-line tools print each on one line."""


class DatasetError(MksgnError, ValueError):
    """A skeleton dataset file or array is unreadable or inconsistent.

    Parameters
    ----------
    message
        What is wrong.
    path
        The file at fault, if any; it prefixes the message.
    position
        Where in the file (for example ``"line 12"``, ``"sample 3"``, ``"key 'x_train'"``).
    """

    def __init__(
        self,
        message: str,
        path: str | PathLike[str] | None = None,
        position: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.position = position
        self.reason = message
        where = ", ".join(p for p in (self.path, position) if p)
        super().__init__(f"{where}: {message}" if where else message)


class LavaSetupError(MksgnError, RuntimeError):
    """Lava cannot be imported or run in this process."""
