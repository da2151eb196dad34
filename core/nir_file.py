"""Reading and writing NIR files: atomic writes, and reads that fail with one clear message."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import nir
import numpy as np

from mksgn.atomic import atomic_path
from mksgn.errors import MksgnError
from mksgn.paths import PathError, check_input_file, file_signature


class NIRFileError(MksgnError, ValueError):
    """A file that is missing, not HDF5, or not a NIR graph; names the file."""


MAX_ARRAY_BYTES = 1 << 30
"""Largest array a NIR file may declare (1 GiB): refused before anything is read."""
MAX_TOTAL_BYTES = 4 << 30
"""Largest sum of the arrays a NIR file may declare (4 GiB)."""


def _check_sizes(f, path: Path) -> None:
    """Refuse absurd declared array sizes from the HDF5 metadata alone (nothing is allocated)."""
    import h5py

    total = 0

    def visit(name: str, obj) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            size = math.prod(int(d) for d in obj.shape) * int(obj.dtype.itemsize)
            if size > MAX_ARRAY_BYTES:
                raise NIRFileError(f"{path}: array {name!r} declares shape {obj.shape} ({size / 2**30:.3g} GiB), more "
                                   f"than the {MAX_ARRAY_BYTES / 2**30:g} GiB mksgn reads")
            total += size

    f.visititems(visit)
    if total > MAX_TOTAL_BYTES:
        raise NIRFileError(f"{path}: its arrays declare {total / 2**30:.3g} GiB together, more than the "
                           f"{MAX_TOTAL_BYTES / 2**30:g} GiB mksgn reads")


def write_graph(graph: nir.NIRGraph, path: Path) -> None:
    """``nir.write`` to a temporary file beside ``path``, then rename (never half a file).

    Arrays are gzip-compressed (NIR's default) unless the graph holds a 0-d array, which HDF5
    cannot compress: nir 1.0.8 reads a field that an older file lacks (``v_reset`` in files of
    nir 1.0.4, as sinabs and norse write them) as a 0-d array, and its own ``write`` then fails.
    """
    compression = None if _has_scalar_arrays(graph.to_dict()) else "gzip"
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph, compression=compression)


def _has_scalar_arrays(value) -> bool:
    if isinstance(value, dict):
        return any(_has_scalar_arrays(v) for v in value.values())
    return isinstance(value, np.ndarray) and value.ndim == 0


def read_graph(path: str | os.PathLike[str]) -> nir.NIRGraph:
    """Read a NIR graph without NIR's type check (mksgn graphs use last-axis Linear and
    non-square Conv2d kernels, which NIR 1.0.8 types wrongly; the executor checks shapes).

    Raises
    ------
    NIRFileError
        If the file is missing, is not HDF5, or holds no NIR graph.
    """
    path = Path(path)
    try:
        check_input_file(path, "a NIR graph (.nir)")
    except PathError as exc:
        raise NIRFileError(str(exc)) from None
    if file_signature(path) == "zip":
        raise NIRFileError(f"{path}: a zip archive (a checkpoint or an .npz?), not a NIR graph (HDF5)")
    try:
        import h5py

        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise NIRFileError(f"{path}: an HDF5 file without a NIR graph (no 'node' group)")
            _check_sizes(f, path)
    except NIRFileError:
        raise
    except OSError as exc:
        raise NIRFileError(f"{path}: not a NIR file (not HDF5: {exc})") from exc
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:  # h5py on a corrupt file
        raise NIRFileError(f"{path}: a corrupt HDF5 file ({type(exc).__name__}: {exc})") from exc
    try:
        graph = nir.read(str(path), type_check=False)
    except Exception as exc:  # nir raises KeyError/ValueError/TypeError on malformed content
        raise NIRFileError(f"{path}: a malformed NIR graph ({type(exc).__name__}: {exc})") from exc
    if not isinstance(graph, nir.NIRGraph):
        raise NIRFileError(f"{path}: holds a single {type(graph).__name__} node, not a NIR graph")
    return graph


METADATA_JSON_KEYS = ("input", "class_names", "module_map", "conventions", "fixed_point_grid", "data")
"""Graph metadata entries stored as JSON strings (HDF5 keeps plain strings faithfully)."""


def encode_metadata(metadata: dict) -> dict:
    """Graph metadata for HDF5: structured entries become JSON strings."""
    return {k: json.dumps(v) if k in METADATA_JSON_KEYS else v for k, v in metadata.items()}


def decode_metadata(metadata: dict) -> dict:
    """The inverse of :func:`encode_metadata` (also accepts plain, unencoded entries)."""
    out = {}
    for k, v in metadata.items():
        if isinstance(v, bytes):
            v = v.decode()
        if k in METADATA_JSON_KEYS and isinstance(v, str):
            v = json.loads(v)
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
