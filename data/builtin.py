"""The built-in dataset: what every command uses when no data is given.

It is the procedural generator of :mod:`mksgn.data.synth`, written once as a CTR-GCN npz
into a cache folder and read back through the npz reader, so that the pipeline always
goes through the real file format.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from mksgn.data.dataset import DatasetSplits
from mksgn.data.readers.ctrgcn_npz import read_ctrgcn_npz, write_ctrgcn_npz

CACHE_ENV = "MKSGN_CACHE"
"""Environment variable naming the cache folder (default ``~/.cache/mksgn``)."""


@dataclass(frozen=True)
class BuiltinSpec:
    """Parameters of the built-in dataset (the defaults are what commands use)."""

    samples: int = 3000
    seed: int = 0
    frames: int = 64
    difficulty: float = 0.8  # the teacher reaches 70-95 % top-1 on it with the tiny config

    def file_name(self) -> str:
        """A cache file name that changes with every parameter."""
        return f"builtin-n{self.samples}-s{self.seed}-f{self.frames}-d{self.difficulty:g}.npz"


def cache_dir() -> Path:
    """The cache folder: ``$MKSGN_CACHE`` or ``~/.cache/mksgn``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mksgn")


def write_builtin(path: str | os.PathLike[str], spec: BuiltinSpec = BuiltinSpec()) -> Path:
    """Generate the built-in dataset and write it as a CTR-GCN npz at ``path``."""
    from mksgn.data.synth import generate

    write_ctrgcn_npz(path, generate(**asdict(spec)))
    return Path(path)


def builtin_path(spec: BuiltinSpec = BuiltinSpec()) -> Path:
    """The cached npz of ``spec``, generated on first use."""
    path = cache_dir() / spec.file_name()
    if not path.is_file():
        write_builtin(path, spec)
    return path


def load_dataset(path: str | os.PathLike[str] | None = None) -> DatasetSplits:
    """Read a CTR-GCN npz, or the built-in dataset when ``path`` is ``None``."""
    return read_ctrgcn_npz(builtin_path() if path is None else path)
