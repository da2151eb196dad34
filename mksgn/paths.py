"""Checks of the files a command reads and writes, made before any work is done.

An input that is a directory, missing or unreadable, and an output that names a directory
where a file is expected (or a file where a folder is), or lies in a folder this process
cannot write, are refused with one message naming the path and what was expected. The
commands call these right after parsing, so a mistake costs no computation.
"""

from __future__ import annotations

import os
from pathlib import Path

from mksgn.errors import MksgnError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""The first eight bytes of every HDF5 file (a NIR graph is one)."""
ZIP_SIGNATURE = b"PK\x03\x04"
"""The first four bytes of a zip archive (``torch.save`` files and ``.npz`` are zip archives)."""


class PathError(MksgnError, OSError):
    """An input cannot be read, or an output cannot be written where asked."""


def check_input_file(path: str | os.PathLike[str], what: str) -> Path:
    """Refuse an input that is a directory, missing or unreadable.

    Parameters
    ----------
    path
        The input.
    what
        What it should be, for the message (``"a NIR graph"``, ``"a student checkpoint"``).

    Returns
    -------
    Path
        ``path``.
    """
    p = Path(path)
    if p.is_dir():
        raise PathError(f"{p}: a directory, expected {what} (a file)")
    if not p.exists():
        raise PathError(f"{p}: no such file (expected {what})")
    if not os.access(p, os.R_OK):
        raise PathError(f"{p}: permission denied, cannot read {what}")
    return p


def file_signature(path: str | os.PathLike[str]) -> str:
    """``"hdf5"``, ``"zip"`` or ``"other"``: what the first bytes of a readable file say it is."""
    with open(path, "rb") as handle:
        head = handle.read(len(HDF5_SIGNATURE))
    if head.startswith(HDF5_SIGNATURE):
        return "hdf5"
    if head.startswith(ZIP_SIGNATURE):
        return "zip"
    return "other"


def _writable_folder(folder: Path, option: str, target: Path) -> None:
    """The nearest existing ancestor of ``folder`` must be a directory this process may write."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise PathError(f"{option} {target}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PathError(f"{option} {target}: permission denied, cannot write in {existing}")


def check_output_file(path: str | os.PathLike[str], option: str = "-o") -> Path:
    """Refuse an output file that names a directory or lies where this process cannot write.

    Parameters
    ----------
    path
        The file the command will write (its folder is created if missing).
    option
        The option that named it, for the message.
    """
    p = Path(path)
    if p.is_dir():
        raise PathError(f"{option} {p}: a directory, expected a file name")
    _writable_folder(p.parent, option, p)
    return p


def check_output_dir(path: str | os.PathLike[str], option: str = "-o") -> Path:
    """Refuse an output folder that names a file or lies where this process cannot write.

    Parameters
    ----------
    path
        The folder the command will write into (created if missing).
    option
        The option that named it, for the message.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PathError(f"{option} {p}: a file, expected a folder")
    _writable_folder(p, option, p)
    return p
