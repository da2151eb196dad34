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

from mksgn.convert.graph_inputs import ArrayInputs, InputSpec
from mksgn.data.splits import stratified_subset
from mksgn.core.semantics import Semantics
from mksgn.core.semantics import resolve as resolve_semantics
from mksgn.core.synapse_graph import SynapseGraph
from mksgn.deploy.backends import BACKENDS, TAGS
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


def load_model(path: str | os.PathLike[str], backend: str = "emulator", tag: str | None = None,
               semantics: Semantics | None = None, graph: nir.NIRGraph | None = None) -> LoadedModel:
    """Read a graph and fuse it, once, for ``backend`` and ``tag``, under ``semantics``.

    Parameters
    ----------
    path
        A NIR graph (``MODEL.nir``, or ``MODEL.q.nir`` for ``fixed_pt``).
    backend
        ``emulator``, ``reference`` or ``lava``.
    tag
        ``fixed_pt`` or ``floating_pt``; ``None``: ``fixed_pt`` for a quantised graph,
        ``floating_pt`` otherwise.
    semantics
        The neuron semantics (:mod:`mksgn.core.semantics`); ``None``: what the graph states,
        else NIR's (a warning names the ``dt`` assumed when it states none).
    graph
        The graph, when the caller has already read it from ``path``.

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
    graph = read_graph(path) if graph is None else graph
    if tag is None:
        tag = "fixed_pt" if is_quantized(graph.metadata or {}) else "floating_pt"
    if semantics is None:
        semantics = resolve_semantics(graph.metadata, where=str(path))
    if backend in ("emulator", "lava") and tag == "fixed_pt":
        return LoadedModel(path, graph, quantized_synapse_graph(graph, path, semantics), tag)
    try:
        sg = fuse(graph, semantics=semantics)
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
    accuracy: float | None
    """Top-1 of the last step's output on labelled samples; ``None`` for unlabelled arrays (``--input``)."""
    predictions: list[int]
    labels: list[int]
    spikes_per_population: dict[str, int]
    synops_per_synapse: dict[str, int]
    synops_per_population: dict[str, int]
    spikes_per_sample: float
    synops_per_sample: float
    seconds: float
    semantics: str = ""
    """The neuron semantics the graph ran with (:meth:`~mksgn.core.semantics.Semantics.describe`)."""
    binary_inputs: dict[str, bool] = dataclasses.field(default_factory=dict)
    """Per Input node whether its values were all 0 or 1 (spikes: accumulates, not MACs)."""
    outputs: dict[str, np.ndarray] | None = None
    """Output node -> ``(T, B, *shape)`` (Lava's non-spiking read-outs: the last step only), for runs on
    arrays; not part of the JSON record."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record (without :attr:`outputs`)."""
        record = dataclasses.asdict(dataclasses.replace(self, outputs=None))
        record.pop("outputs")
        return record


def _reference_run(graph, sg, inputs: dict[str, torch.Tensor], device: torch.device):
    """The reference executor, with spikes and synaptic operations counted like the emulator."""
    from mksgn.core.emulator import EmulatorResult, fanout
    from mksgn.core.executor import NIRExecutor

    res = NIRExecutor(graph, dtype=torch.float64, device=device, semantics=sg.semantics).run(
        {k: v.to(device) for k, v in inputs.items()},
        record=[p for p in sg.populations if not p.endswith(".readout")])
    counts = {name: int(res.records[name].sum()) for name, p in sg.populations.items() if p.spiking}
    synops = {}
    for syn in sg.synapses:
        fan = fanout(sg, syn).to(device)
        source = res.records[syn.source]  # a spike count is that many events; a graded value one
        events = source.to(torch.float64) if sg.populations[syn.source].spiking else source.ne(0).to(torch.float64)
        synops[syn.name] = int((events * fan).sum())
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
    for syn in sg.synapses:  # a spike count is that many events, a graded value one
        src = res.spikes[syn.source] if syn.source in res.spikes else rows.get(syn.source)
        if src is None:  # a constant source: one event per neuron and step of each row
            src = np.ones((*next(iter(inputs.values())).shape[:2], *sg.populations[syn.source].shape))
        events = src if sg.populations[syn.source].spiking else (src != 0)
        synops[syn.name] = int((events.sum(axis=(0, 1)) * fans[syn.name]).sum())
    return EmulatorResult(outputs={o: torch.as_tensor(res.outputs[o]) for o in sg.outputs},
                          spike_counts=counts, synops=synops)


def _source_batches(source, spec: InputSpec | None, mine: np.ndarray, batch: int):
    """Batches of skeleton samples (``source`` a dataset split) or of arrays (:class:`ArrayInputs`)."""
    from mksgn.convert.graph_inputs import batches

    return source.batches(mine, batch) if isinstance(source, ArrayInputs) else batches(spec, source, mine, batch)


def _run_share(loaded: LoadedModel, source, spec: InputSpec | None, mine: np.ndarray, backend: str, tag: str,
               timing: str, batch: int, ctx, progress: bool) -> dict[str, Any]:
    """This process's samples ``mine`` through the backend: its part of the result."""
    from mksgn.core.emulator import Emulator
    from mksgn.train.blocks import sum_per_sample

    sg = loaded.sg
    emulator = Emulator(sg, tag, timing, device=ctx.device) if backend == "emulator" else None
    preds, labels, indices = [], [], []
    outputs: dict[str, list[np.ndarray]] = {o: [] for o in sg.outputs}
    rows = 0
    spikes: dict[str, int] = {}
    synops: dict[str, int] = {}
    start = time.perf_counter()
    bar = tqdm(total=len(mine), desc=f"{backend} {tag if backend != 'reference' else 'float64'}",
               disable=not progress or not ctx.is_main, unit="sample")
    with bar:  # closed on Ctrl-C too, before the command's one line
        for b in _source_batches(source, spec, mine, batch):
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
            if isinstance(source, ArrayInputs):
                for name, value in res.outputs.items():
                    outputs[name].append(value.cpu().numpy())
            for k, v in res.spike_counts.items():
                spikes[k] = spikes.get(k, 0) + v
            for k, v in res.synops.items():
                synops[k] = synops.get(k, 0) + v
            rows += int(next(iter(b.inputs.values())).shape[1])
            bar.update(b.samples)
    return {"preds": np.concatenate(preds).tolist() if preds else [],
            "labels": np.concatenate(labels).tolist() if labels else [],
            "indices": np.concatenate(indices).tolist() if indices else [],
            "outputs": {k: np.concatenate(v, axis=1) for k, v in outputs.items() if v},
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
    labelled = n > 0 and bool((label >= 0).all())
    outputs = None
    if parts[0]["outputs"]:
        outputs = {k: np.concatenate([p["outputs"][k] for p in parts], axis=1)[:, order] for k in parts[0]["outputs"]}
    return RunResult(
        model=str(loaded.path), backend=backend, tag=tag if backend != "reference" else "float64",
        timing={"emulator": timing, "lava": "lava (results aligned)"}.get(backend, "aligned"), processes=len(parts),
        measured_on=source, samples=int(n), person_rows=sum(p["rows"] for p in parts),
        time_steps=time_steps, accuracy=float((pred == label).mean()) if labelled else None,
        predictions=pred.tolist(), labels=label.tolist(),
        spikes_per_population=total_spikes, synops_per_synapse=total_synops, synops_per_population=per_layer,
        spikes_per_sample=sum(total_spikes.values()) / max(n, 1),
        synops_per_sample=sum(total_synops.values()) / max(n, 1),
        seconds=max(p["seconds"] for p in parts), semantics=loaded.sg.semantics.describe(), outputs=outputs,
    )


def run(loaded: LoadedModel, dataset, backend: str = "emulator", tag: str | None = None, timing: str = "aligned",
        limit: int | None = None, batch: int = 64, device: str = "auto", progress: bool = True) -> RunResult | None:
    """Run test samples of ``dataset`` (or the first rows of arrays) through one backend.

    Parameters
    ----------
    loaded
        The graph (:func:`load_model`).
    dataset
        The samples to run: a dataset split (e.g. ``load_dataset(path).test``) for a graph written by
        ``mksgn-export``, or :class:`~mksgn.convert.graph_inputs.ArrayInputs` for any graph (each row a
        sample, unlabelled: the outputs are kept in :attr:`RunResult.outputs`).
    backend
        ``emulator``, ``reference`` (float64) or ``lava``.
    tag
        ``fixed_pt`` or ``floating_pt`` (``None``: what ``loaded`` was loaded for).
    timing
        Emulator timing: ``aligned`` (as the reference executor) or ``lava`` (Lava's latency).
    limit, batch
        Run only ``limit`` samples (``None``: all), ``batch`` samples at a time: of a dataset split a
        stratified subset covering every class (:func:`~mksgn.data.splits.stratified_indices`,
        seed 0), of arrays the first ``limit`` rows.
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
    arrays = isinstance(dataset, ArrayInputs)
    spec = None if arrays else loaded.input_spec()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    index, source = (np.arange(n), dataset.describe(n)) if arrays else stratified_subset(dataset, n)
    ctx = init_context(device)
    try:
        part = _run_share(loaded, dataset, spec, index[ctx.rank::ctx.world_size], backend, tag, timing,
                          batch, ctx, progress)
        parts = [part]
        if ctx.distributed:
            parts = [None] * ctx.world_size
            dist.all_gather_object(parts, part)
        if not ctx.is_main:
            return None
    finally:
        close_context(ctx)
    result = _gathered(loaded, parts, n, source, backend, tag, timing,
                       dataset.time_steps if arrays else spec.time_steps)
    if arrays:
        result.binary_inputs = {name: dataset.binary(name) for name in dataset.arrays}
    return result


def load_for_command(args: Any, backend: str, tag: str | None) -> tuple[LoadedModel, Any]:
    """What ``mksgn-run`` and ``mksgn-energy`` run: ``args.model`` loaded under the command line's
    semantics (:mod:`mksgn.convert.graph_options`), and its rows: the ``--input`` arrays
    (:class:`~mksgn.convert.graph_inputs.ArrayInputs`), else the test split of ``--data`` (or of the
    data the graph records, else the built-in dataset)."""
    from mksgn.convert.graph_options import graph_semantics
    from mksgn.core.nir_file import read_graph
    from mksgn.data.recorded import graph_test_split

    graph = read_graph(args.model)
    loaded = load_model(args.model, backend, tag, graph_semantics(args, graph.metadata, str(args.model)), graph)
    if args.input is not None:
        return loaded, ArrayInputs.read(args.input, {n: loaded.sg.populations[n].shape for n in loaded.sg.inputs})
    return loaded, graph_test_split(args.data, loaded.graph, args.model)
