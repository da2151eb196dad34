"""The inputs of a graph, batch by batch: skeleton samples, or arrays given as they are.

An mksgn graph records in its metadata which Input node takes which modality, the frames,
the time steps, the class names and the normalisation of its inputs
(:mod:`mksgn.convert.nir_export`). A sample's persons
are separate rows; the logits of a sample are the sum of its rows' logits.

Any graph (one written by snnTorch, sinabs, norse...) runs on arrays instead
(:class:`ArrayInputs`, ``--input X.npz``): one ``(T, B, *shape)`` array per Input node, each of
the ``B`` rows a sample of its own, unlabelled. :func:`read_arrays` reads and checks them (and a
framework's recorded outputs, per Output node); :func:`write_arrays` writes outputs atomically.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from mksgn.core.fixed_point import QuantizedInput
from mksgn.core.nir_file import decode_metadata
from mksgn.errors import MksgnError
from mksgn.paths import PathError, check_input_file, file_signature


class GraphInputError(MksgnError, ValueError):
    """A graph whose inputs cannot be fed from skeleton data; names what is missing."""


@dataclass(frozen=True)
class InputSpec:
    """What an mksgn graph expects."""

    inputs: tuple[str, ...]
    modalities: tuple[str, ...]
    frames: int
    joints: int
    time_steps: int
    class_names: tuple[str, ...]
    layout: str
    input_grid: dict | None = None
    """Input node -> ``{"scale", "bits"}`` of a snapped graph (``metadata["fixed_point_grid"]``):
    its inputs are fed rounded to that grid, to every backend alike, as the host sends them
    to Loihi as graded messages (:mod:`mksgn.convert.snap`)."""
    coords: int = 3
    """Coordinates per joint ``C`` of each input (the first axis of ``metadata["input"]["shape"]``;
    3 for graphs that do not state it)."""
    normalise: str = "none"
    """How the skeleton inputs are normalised (``metadata["input"]["normalise"]``,
    :mod:`mksgn.data.normalise`; ``"none"`` for graphs that do not state it)."""

    @classmethod
    def of(cls, graph: nir.NIRGraph, where: str = "graph") -> InputSpec:
        meta = decode_metadata(dict(graph.metadata or {}))
        info = meta.get("input")
        if not isinstance(info, dict) or "inputs" not in info:
            raise GraphInputError(f"{where}: no mksgn input metadata (metadata['input']); only graphs written by "
                                  f"mksgn-export can be fed skeleton data")
        from mksgn.data.normalise import normalisation_of

        try:
            grid = meta.get("fixed_point_grid")
            return cls(tuple(info["inputs"]), tuple(info["modalities"]), int(info["frames"]), int(info["joints"]),
                       int(meta["time_steps"]), tuple(meta.get("class_names", ())), str(info.get("skeleton", "")),
                       dict(grid["inputs"]) if isinstance(grid, dict) else None, int(info.get("shape", [3])[0]),
                       normalisation_of(info))
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphInputError(f"{where}: malformed input metadata ({exc})") from exc


@dataclass
class Batch:
    """Graph inputs ``(T, R, *shape)`` per Input node for ``n`` samples, their rows' sample index."""

    inputs: dict[str, torch.Tensor]
    sample_index: torch.Tensor
    labels: np.ndarray
    indices: np.ndarray

    @property
    def samples(self) -> int:
        return len(self.indices)


def on_grid(spec: InputSpec, name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to input ``name``'s graded grid, if the graph declares one (else ``x``)."""
    if not spec.input_grid:
        return x
    entry = spec.input_grid[name]
    return QuantizedInput(float(entry["scale"]), int(entry["bits"])).realise(x)


def batches(spec: InputSpec, dataset, indices: np.ndarray, batch_size: int) -> Iterator[Batch]:
    """Batches of ``dataset`` (a :class:`~mksgn.data.dataset.SkeletonDataset`) at ``indices``."""
    from mksgn.data.pipeline import SkeletonInputs, warn_frame_mismatch
    from mksgn.train.blocks import present_persons

    joints = dataset.skeleton.num_joints
    if joints != spec.joints:
        raise GraphInputError(f"{dataset.source}: the data has {joints} joints, the graph expects {spec.joints}")
    if dataset.data.shape[1] != spec.coords:
        raise GraphInputError(f"{dataset.source}: the data has {dataset.data.shape[1]} coordinates per joint, "
                              f"the graph expects {spec.coords}")
    if spec.class_names and len(dataset.class_names) != len(spec.class_names):
        raise GraphInputError(f"{dataset.source}: the data has {len(dataset.class_names)} classes, the graph "
                              f"{len(spec.class_names)}")
    warn_frame_mismatch(dataset, spec.frames)
    source = SkeletonInputs(dataset, spec.frames, spec.modalities, None, normalise=spec.normalise)
    for start in range(0, len(indices), batch_size):
        idx = np.asarray(indices[start:start + batch_size])
        x, y = source.batch(idx)
        rows, sample = present_persons(x)
        inputs = {name: on_grid(spec, name, rows[:, i].to(torch.float64)).unsqueeze(0).expand(
            spec.time_steps, *rows[:, i].shape) for i, name in enumerate(spec.inputs)}
        yield Batch(inputs, sample, np.asarray(y), idx)


def read_arrays(path: str | os.PathLike[str], nodes: Mapping[str, tuple[int, ...]], what: str = "Input"
                ) -> dict[str, np.ndarray]:
    """The ``(T, B, *shape)`` float64 arrays of an ``.npz`` for the graph nodes ``nodes`` (name -> shape).

    Arrays are matched to nodes by name (other arrays in the file are not read: one file may hold a
    run's inputs and outputs); a single node takes the file's single array whatever its name.
    Every node needs one; T and B must agree; values must be finite.

    Raises
    ------
    GraphInputError
        Naming the file and the array or node: not an npz, a missing or unknown array, a wrong
        shape, a non-numeric or non-finite value.
    """
    path = Path(path)
    try:
        check_input_file(path, f"{what.lower()} arrays (.npz)")
    except PathError as exc:
        raise GraphInputError(str(exc)) from None
    if file_signature(path) != "zip":
        raise GraphInputError(f"{path}: not an .npz archive (expected one (T, B, ...) array per {what} node)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            raw = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise GraphInputError(f"{path}: a corrupt .npz ({exc})") from exc
    if len(nodes) == 1 and len(raw) == 1:
        raw = {next(iter(nodes)): next(iter(raw.values()))}
    missing = sorted(set(nodes) - set(raw))
    if missing:
        raise GraphInputError(f"{path}: no array for the graph's {what} nodes {missing} (it holds {sorted(raw)}; "
                              f"name each array after its node)")
    out: dict[str, np.ndarray] = {}
    for name, shape in nodes.items():
        x = raw[name]
        if x.dtype.kind not in "biuf":
            raise GraphInputError(f"{path}: array {name!r} has dtype {x.dtype}, not numbers")
        if x.ndim != 2 + len(shape) or tuple(x.shape[2:]) != tuple(shape) or x.shape[0] < 1 or x.shape[1] < 1:
            raise GraphInputError(f"{path}: array {name!r} has shape {x.shape}; {what} node {name!r} needs "
                                  f"(T, B, {', '.join(map(str, shape))})")
        x = x.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise GraphInputError(f"{path}: array {name!r} has {int((~np.isfinite(x)).sum())} non-finite values")
        out[name] = x
    if len({x.shape[:2] for x in out.values()}) > 1:
        raise GraphInputError(f"{path}: the arrays differ in (T, B): { {k: x.shape[:2] for k, x in out.items()} }")
    return out


def write_arrays(path: str | os.PathLike[str], arrays: Mapping[str, Any]) -> None:
    """Write named arrays to an ``.npz`` atomically (outputs ``(T, B, *shape)`` per Output node)."""
    import io

    from mksgn.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buffer.getvalue())


@dataclass(frozen=True)
class ArrayInputs:
    """Arrays fed to a graph's Input nodes as they are (``--input X.npz``): every row a sample,
    unlabelled.

    Attributes
    ----------
    arrays
        Input node -> ``(T, B, *shape)`` float64 tensor.
    source
        Where they came from (the file).
    """

    arrays: dict[str, torch.Tensor]
    source: str

    @classmethod
    def read(cls, path: str | os.PathLike[str], nodes: Mapping[str, tuple[int, ...]]) -> ArrayInputs:
        """:func:`read_arrays` of ``path`` for the Input nodes ``nodes``."""
        arrays = read_arrays(path, nodes)
        return cls({k: torch.as_tensor(v) for k, v in arrays.items()}, str(path))

    @property
    def time_steps(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    def __len__(self) -> int:
        return int(next(iter(self.arrays.values())).shape[1])

    def binary(self, name: str) -> bool:
        """Whether input ``name`` holds only 0 and 1 (spikes: each event is an accumulate, not a MAC)."""
        x = self.arrays[name]
        return bool(((x == 0) | (x == 1)).all())

    def describe(self, n: int | None = None) -> str:
        n = len(self) if n is None else n
        return f"{n} rows of {self.source} ({self.time_steps} steps)"

    def batches(self, indices: np.ndarray, batch_size: int) -> Iterator[Batch]:
        """Batches of the rows at ``indices`` (each row its own sample; labels -1: none)."""
        for start in range(0, len(indices), batch_size):
            idx = np.asarray(indices[start:start + batch_size])
            rows = torch.as_tensor(idx)
            yield Batch({k: v[:, rows] for k, v in self.arrays.items()}, torch.arange(len(idx)),
                        np.full(len(idx), -1), idx)
