"""Skeleton samples as the inputs of an exported graph, batch by batch.

An mksgn graph records in its metadata which Input node takes which modality, the frames,
the time steps and the class names (:mod:`mksgn.convert.nir_export`). A sample's persons
are separate rows; the logits of a sample are the sum of its rows' logits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import nir
import numpy as np
import torch

from mksgn.core.fixed_point import QuantizedInput
from mksgn.core.nir_file import decode_metadata
from mksgn.errors import MksgnError


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

    @classmethod
    def of(cls, graph: nir.NIRGraph, where: str = "graph") -> InputSpec:
        meta = decode_metadata(dict(graph.metadata or {}))
        info = meta.get("input")
        if not isinstance(info, dict) or "inputs" not in info:
            raise GraphInputError(f"{where}: no mksgn input metadata (metadata['input']); only graphs written by "
                                  f"mksgn-export can be fed skeleton data")
        try:
            grid = meta.get("fixed_point_grid")
            return cls(tuple(info["inputs"]), tuple(info["modalities"]), int(info["frames"]), int(info["joints"]),
                       int(meta["time_steps"]), tuple(meta.get("class_names", ())), str(info.get("skeleton", "")),
                       dict(grid["inputs"]) if isinstance(grid, dict) else None)
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
    from mksgn.data.pipeline import SkeletonInputs
    from mksgn.train.blocks import present_persons

    joints = dataset.skeleton.num_joints
    if joints != spec.joints:
        raise GraphInputError(f"{dataset.source}: the data has {joints} joints, the graph expects {spec.joints}")
    if spec.class_names and len(dataset.class_names) != len(spec.class_names):
        raise GraphInputError(f"{dataset.source}: the data has {len(dataset.class_names)} classes, the graph "
                              f"{len(spec.class_names)}")
    source = SkeletonInputs(dataset, spec.frames, spec.modalities, None)
    for start in range(0, len(indices), batch_size):
        idx = np.asarray(indices[start:start + batch_size])
        x, y = source.batch(idx)
        rows, sample = present_persons(x)
        inputs = {name: on_grid(spec, name, rows[:, i].to(torch.float64)).unsqueeze(0).expand(
            spec.time_steps, *rows[:, i].shape) for i, name in enumerate(spec.inputs)}
        yield Batch(inputs, sample, np.asarray(y), idx)
