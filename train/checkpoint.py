"""Checkpoints: tensors and plain data only, written atomically, loaded with ``weights_only``.

A checkpoint is a dict::

    format, format_version, mksgn_version, kind ("teacher" | "student"), config (plain dict),
    data (class names, layout, modalities, frames, source), epoch (completed), seed,
    model (state dict), extra (state dict of training-only modules), optimizer,
    best {"top1", "epoch"}, history (per-epoch metrics)

Loading refuses a file that is not an mksgn checkpoint, has another format version or
mksgn version, another kind, or (where the caller asks) another configuration.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

import mksgn
from mksgn.atomic import atomic_open
from mksgn.errors import MksgnError
from mksgn.paths import PathError, check_input_file, file_signature

FORMAT = "mksgn-checkpoint"
FORMAT_VERSION = 1
KINDS = ("teacher", "student")


class CheckpointError(MksgnError, ValueError):
    """A checkpoint is unreadable, foreign, or incompatible with this run."""


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` plus the format header atomically."""
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "mksgn_version": mksgn.__version__, **payload}
    with atomic_open(path, "wb") as handle:
        torch.save(record, handle)


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def checkpoint_data(given: str | os.PathLike[str] | None, path: str | os.PathLike[str]):
    """The dataset a command on checkpoint ``path`` uses: ``given`` (``--data``) or the one it records.

    See :func:`mksgn.data.recorded.choose_data`; returns its :class:`~mksgn.data.recorded.DataChoice`.
    """
    from mksgn.data.recorded import choose_data

    record = load_checkpoint(path)
    return choose_data(given, record.get("data"), path)


def with_config_defaults(config: Any) -> Any:
    """``config`` with the fields added since it was written at their defaults (which keep the
    behaviour it was trained with), so that a run started before a field existed still resumes;
    returned as it is when it is no valid configuration."""
    from mksgn.train.config import Config, ConfigError

    try:
        return Config.from_dict(config).to_dict() if isinstance(config, dict) else config
    except ConfigError:
        return config


def load_checkpoint(path: str | os.PathLike[str], kind: str | None = None,
                    config: dict[str, Any] | None = None, sections: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check it.

    Parameters
    ----------
    path
        The ``.pt`` file.
    kind
        Required kind, if any.
    config
        If given, the checkpoint's config must equal it (in ``sections`` only, if given).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        check_input_file(path, "a checkpoint (.pt)")
    except PathError as exc:
        raise CheckpointError(str(exc)) from None
    if file_signature(path) == "hdf5":
        raise CheckpointError(f"{path}: an HDF5 file (a NIR graph?), not a checkpoint; give the .pt that "
                              f"mksgn-train or mksgn-snap wrote")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights only load failed" in first.lower():  # torch's advice to unpickle it anyway: not ours to give
            first = "it holds Python objects besides tensors and plain data, which mksgn does not unpickle"
        raise CheckpointError(f"{path}: not a loadable mksgn checkpoint ({first})") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an mksgn checkpoint (no '{FORMAT}' header)")
    if record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {record.get('format_version')}, this mksgn reads {FORMAT_VERSION}"
        )
    if _minor(str(record.get("mksgn_version"))) != _minor(mksgn.__version__):
        raise CheckpointError(
            f"{path}: written by mksgn {record.get('mksgn_version')}, this is mksgn {mksgn.__version__}; "
            f"retrain or use the matching version"
        )
    if kind is not None and record.get("kind") != kind:
        raise CheckpointError(f"{path}: a {record.get('kind')} checkpoint, expected a {kind} checkpoint")
    if config is not None:
        theirs = with_config_defaults(record.get("config", {}))
        keys = sections or tuple(config)
        diff = sorted(k for k in keys if theirs.get(k) != config.get(k))
        if diff:
            raise CheckpointError(
                f"{path}: written with another configuration (differs in {', '.join(diff)}); "
                f"use the same --config or start a new --out folder"
            )
    return record
