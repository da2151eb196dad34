"""Running a NIR graph on skeleton data: the service behind ``mksgn-run`` and ``mksgn-energy``.

:func:`load_model` reads a graph and fuses it into its synapse graph, once, for a backend and
an arithmetic (``fixed_pt`` on the emulator or Lava needs a quantised graph, ``mksgn-quantize``).
:func:`run` runs the first test samples of a dataset through one backend: ``reference`` is the
reference NIR executor (float64) on the float graph; ``emulator`` the batched Lava emulator
(:mod:`mksgn.core.emulator`); ``lava`` Lava itself (:mod:`mksgn.deploy.lava_builder`, one
person row at a time). It returns predictions, labels, accuracy, spike counts per population
and synaptic operations per synapse, each saying what it was measured on. Under ``torchrun``
every rank runs its share of the samples and rank 0 gathers one result.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from mksgn.convert.graph_inputs import InputSpec
from mksgn.deploy.backends import BACKENDS, TAGS
from mksgn.core.synapse_graph import SynapseGraph
from mksgn.errors import MksgnError



class RunError(MksgnError, ValueError):
    """A run that cannot start; names the file or option."""


@dataclass(frozen=True)
class LoadedModel:
    """A NIR graph read from its file and fused once.

    Attributes
    ----------
    path
        The file it was read from.
    graph
        The float NIR graph.
    sg
        Its synapse graph; with its fixed-point records (``sg.fixed``) when loaded for
        ``fixed_pt`` on the emulator or Lava.
    tag
        The arithmetic it was loaded for: ``fixed_pt`` or ``floating_pt``.
    """

    path: Path
    graph: nir.NIRGraph
    sg: SynapseGraph
    tag: str

    def input_spec(self) -> InputSpec:
        """What the graph expects as input (only graphs written by ``mksgn-export`` have it)."""
        return InputSpec.of(self.graph, str(self.path))


def load_model(path: str | os.PathLike[str], backend: str = "emulator", tag: str | None = None) -> LoadedModel:
    """Read a graph and fuse it, once, for ``backend`` and ``tag``.

    Parameters
    ----------
    path
        A NIR graph (``MODEL.nir``, or ``MODEL.q.nir`` for ``fixed_pt``).
    backend
        ``emulator``, ``reference`` or ``lava``.
    tag
        ``fixed_pt`` or ``floating_pt``; ``None``: ``fixed_pt`` for a quantised graph,
        ``floating_pt`` otherwise.

    Raises
    ------
    NIRFileError
        If the file is not a NIR graph.
    QuantizeError
        If ``fixed_pt`` on the emulator or Lava is asked of a graph that is not quantised.
    RunError
        If the graph cannot be fused into populations and synapses.
    """
    from mksgn.convert.quantize import quantized_synapse_graph
    from mksgn.core.fixed_point import is_quantized
    from mksgn.core.fuse import fuse
    from mksgn.core.nir_file import read_graph
    from mksgn.core.synapse_graph import FusionError

    if backend not in BACKENDS or tag not in (*TAGS, None):
        raise RunError(f"backend {backend!r} / tag {tag!r}: expected one of {BACKENDS} / {TAGS}")
    path = Path(path)
    graph = read_graph(path)
    if tag is None:
        tag = "fixed_pt" if is_quantized(graph.metadata or {}) else "floating_pt"
    if backend in ("emulator", "lava") and tag == "fixed_pt":
        return LoadedModel(path, graph, quantized_synapse_graph(graph, path), tag)
    try:
        sg = fuse(graph)
    except FusionError as exc:
        raise RunError(f"{path}: {exc}") from exc
    return LoadedModel(path, graph, sg, tag)


@dataclass
class RunResult:
    """What a run measured (``mksgn-run``'s JSON record, :meth:`to_dict`)."""

    model: str
    backend: str
    tag: str
    """``fixed_pt``/``floating_pt``; ``float64`` for the reference executor."""
    timing: str
    processes: int
    measured_on: str
    samples: int
    person_rows: int
    time_steps: int
    accuracy: float
    predictions: list[int]
    labels: list[int]
    spikes_per_population: dict[str, int]
    synops_per_synapse: dict[str, int]
    synops_per_population: dict[str, int]
    spikes_per_sample: float
    synops_per_sample: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record."""
        return dataclasses.asdict(self)


def _reference_run(graph, sg, inputs: dict[str, torch.Tensor], device: torch.device):
    """The reference executor, with spikes and synaptic operations counted like the emulator."""
    from mksgn.core.emulator import EmulatorResult, fanout
    from mksgn.core.executor import NIRExecutor

    res = NIRExecutor(graph, dtype=torch.float64, device=device).run(
        {k: v.to(device) for k, v in inputs.items()},
        record=[p for p in sg.populations if not p.endswith(".readout")])
    counts = {name: int(res.records[name].sum()) for name, p in sg.populations.items() if p.spiking}
    synops = {}
    for syn in sg.synapses:
        fan = fanout(sg, syn).to(device)
        synops[syn.name] = int((res.records[syn.source].ne(0).to(torch.float64) * fan).sum())
    outputs = {o: res.outputs[o] for o in res.outputs}
    return EmulatorResult(outputs=outputs, spike_counts=counts, synops=synops)


def _lava_run(sg, tag: str, inputs: dict[str, torch.Tensor]):
    """Lava, the person rows back to back in one build (one per row where rows cannot share one),
    with spikes and synaptic operations counted like the emulator."""
    from mksgn.core.emulator import Emulator, EmulatorResult
    from mksgn.deploy.lava_builder import run_lava_rows

    spiking = [n for n, p in sg.populations.items() if p.spiking]
    relays = [n for n in sg.neurons() if sg.is_graded(n)]  # graded spikes: each non-zero payload is an event
    counter = Emulator(sg, tag)  # its fan-outs: quantised weights in fixed point, as the emulator counts
    fans = {s.name: counter.fanout(s.name).numpy() for s in sg.synapses}
    rows = {k: v.numpy() for k, v in inputs.items()}
    res = run_lava_rows(sg, tag, rows, record=spiking + relays)
    counts = {n: int(res.spikes[n].sum()) for n in spiking}
    if tag == "fixed_pt":  # graded inputs count where their integer is non-zero, as in the emulator
        rows = {k: sg.fixed.inputs[k].encode(v).numpy() for k, v in inputs.items()}
    synops = {}
    for syn in sg.synapses:
        src = res.spikes[syn.source] if syn.source in res.spikes else rows[syn.source]
        synops[syn.name] = int(((src != 0).sum(axis=(0, 1)) * fans[syn.name]).sum())
    return EmulatorResult(outputs={o: torch.as_tensor(res.outputs[o][-1:]) for o in sg.outputs},
                          spike_counts=counts, synops=synops)


def _run_share(loaded: LoadedModel, dataset, spec: InputSpec, mine: np.ndarray, backend: str, tag: str,
               timing: str, batch: int, ctx, progress: bool) -> dict[str, Any]:
    """This process's samples ``mine`` through the backend: its part of the result."""
    from mksgn.convert.graph_inputs import batches
    from mksgn.core.emulator import Emulator
    from mksgn.train.blocks import sum_per_sample

    sg = loaded.sg
    emulator = Emulator(sg, tag, timing, device=ctx.device) if backend == "emulator" else None
    preds, labels, indices = [], [], []
    rows = 0
    spikes: dict[str, int] = {}
    synops: dict[str, int] = {}
    start = time.perf_counter()
    bar = tqdm(total=len(mine), desc=f"{backend} {tag if backend != 'reference' else 'float64'}",
               disable=not progress or not ctx.is_main, unit="sample")
    with bar:  # closed on Ctrl-C too, before the command's one line
        for b in batches(spec, dataset, mine, batch):
            if emulator is not None:
                res = emulator.run(b.inputs)
            elif backend == "lava":
                res = _lava_run(sg, tag, b.inputs)
            else:
                res = _reference_run(loaded.graph, sg, b.inputs, ctx.device)
            out = res.outputs[next(iter(sg.outputs))][-1].cpu()
            logits = sum_per_sample(out.reshape(out.shape[0], -1), b.sample_index, b.samples)
            preds.append(logits.argmax(dim=1).numpy())
            labels.append(b.labels)
            indices.append(b.indices)
            for k, v in res.spike_counts.items():
                spikes[k] = spikes.get(k, 0) + v
            for k, v in res.synops.items():
                synops[k] = synops.get(k, 0) + v
            rows += int(next(iter(b.inputs.values())).shape[1])
            bar.update(b.samples)
    return {"preds": np.concatenate(preds).tolist() if preds else [],
            "labels": np.concatenate(labels).tolist() if labels else [],
            "indices": np.concatenate(indices).tolist() if indices else [],
            "spikes": spikes, "synops": synops, "seconds": time.perf_counter() - start, "rows": rows}


def _gathered(loaded: LoadedModel, parts: list[dict[str, Any]], n: int, source: str, backend: str, tag: str,
              timing: str, time_steps: int) -> RunResult:
    """One result from every process's part, in sample order."""
    order = np.argsort(np.concatenate([p["indices"] for p in parts]))
    pred = np.concatenate([p["preds"] for p in parts])[order]
    label = np.concatenate([p["labels"] for p in parts])[order]
    total_spikes = {k: sum(p["spikes"].get(k, 0) for p in parts) for k in parts[0]["spikes"]}
    total_synops = {k: sum(p["synops"].get(k, 0) for p in parts) for k in parts[0]["synops"]}
    per_layer: dict[str, int] = {}
    for syn in loaded.sg.synapses:
        per_layer[syn.target] = per_layer.get(syn.target, 0) + total_synops.get(syn.name, 0)
    return RunResult(
        model=str(loaded.path), backend=backend, tag=tag if backend != "reference" else "float64",
        timing={"emulator": timing, "lava": "lava (results aligned)"}.get(backend, "aligned"), processes=len(parts),
        measured_on=f"{n} test samples of {source}", samples=int(n), person_rows=sum(p["rows"] for p in parts),
        time_steps=time_steps, accuracy=float((pred == label).mean()) if n else 0.0,
        predictions=pred.tolist(), labels=label.tolist(),
        spikes_per_population=total_spikes, synops_per_synapse=total_synops, synops_per_population=per_layer,
        spikes_per_sample=sum(total_spikes.values()) / max(n, 1),
        synops_per_sample=sum(total_synops.values()) / max(n, 1),
        seconds=max(p["seconds"] for p in parts),
    )


def run(loaded: LoadedModel, dataset, backend: str = "emulator", tag: str | None = None, timing: str = "aligned",
        limit: int | None = None, batch: int = 64, device: str = "auto", progress: bool = True) -> RunResult | None:
    """Run the first test samples of ``dataset`` through one backend.

    Parameters
    ----------
    loaded
        The graph (:func:`load_model`).
    dataset
        The samples to run (a dataset split, e.g. ``load_dataset(path).test``).
    backend
        ``emulator``, ``reference`` (float64) or ``lava``.
    tag
        ``fixed_pt`` or ``floating_pt`` (``None``: what ``loaded`` was loaded for).
    timing
        Emulator timing: ``aligned`` (as the reference executor) or ``lava`` (Lava's latency).
    limit, batch
        Run only the first ``limit`` samples (``None``: all), ``batch`` samples at a time.
    device
        ``auto``, ``cpu`` or ``cuda``.
    progress
        Show a progress bar (on rank 0).

    Returns
    -------
    RunResult or None
        The result on rank 0 under ``torchrun`` (every process's share gathered), ``None`` on
        the other ranks.
    """
    from mksgn.train.trainer import close_context, init_context

    tag = loaded.tag if tag is None else tag
    if backend != "reference" and tag == "fixed_pt" and loaded.sg.fixed is None:
        raise RunError(f"{loaded.path}: loaded without fixed-point records; load it for fixed_pt")
    spec = loaded.input_spec()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    ctx = init_context(device)
    try:
        part = _run_share(loaded, dataset, spec, np.arange(n)[ctx.rank::ctx.world_size], backend, tag, timing,
                          batch, ctx, progress)
        parts = [part]
        if ctx.distributed:
            parts = [None] * ctx.world_size
            dist.all_gather_object(parts, part)
        if not ctx.is_main:
            return None
    finally:
        close_context(ctx)
    return _gathered(loaded, parts, n, dataset.source, backend, tag, timing, spec.time_steps)
