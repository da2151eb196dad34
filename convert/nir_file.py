"""Reading and writing NIR files: atomic writes, and reads that fail with one clear message."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import nir

from mksgn.errors import MksgnError


class NIRFileError(MksgnError, ValueError):
    """A file that is missing, not HDF5, or not a NIR graph; names the file."""


def write_graph(graph: nir.NIRGraph, path: Path) -> None:
    """``nir.write`` to a temporary file beside ``path``, then rename (never half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_graph(path: str | os.PathLike[str]) -> nir.NIRGraph:
    """Read a NIR graph (without NIR's 1-D type check: mksgn graphs use last-axis Linear).

    Raises
    ------
    NIRFileError
        If the file is missing, is not HDF5, or holds no NIR graph.
    """
    path = Path(path)
    if not path.is_file():
        raise NIRFileError(f"{path}: no such file")
    try:
        import h5py

        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise NIRFileError(f"{path}: an HDF5 file without a NIR graph (no 'node' group)")
    except NIRFileError:
        raise
    except OSError as exc:
        raise NIRFileError(f"{path}: not a NIR file (not HDF5: {exc})") from None
    try:
        graph = nir.read(str(path), type_check=False)
    except Exception as exc:  # nir raises KeyError/ValueError/TypeError on malformed content
        raise NIRFileError(f"{path}: a malformed NIR graph ({type(exc).__name__}: {exc})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NIRFileError(f"{path}: holds a single {type(graph).__name__} node, not a NIR graph")
    return graph
