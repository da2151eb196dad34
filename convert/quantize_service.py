"""Quantising a NIR graph file: the service behind ``mksgn-quantize`` (and the demo).

:func:`quantize_file` reads a float graph, fuses it once, calibrates
:func:`~mksgn.convert.quantize.quantize` on data (:func:`calibration_inputs`: training samples
for graphs written by ``mksgn-export``, random inputs for any other graph), writes the quantised
graph (atomically) and beside it its per-layer report (:func:`write_report`: JSON and Markdown).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nir
import torch

from mksgn.atomic import atomic_write_text
from mksgn.convert.defaults import QUANTIZE_SAMPLES as DEFAULT_SAMPLES
from mksgn.convert.quantize import (
    INPUT_BITS, LayerReport, QuantizeError, fixed_point_grid, quantize, write_quantized,
)
from mksgn.convert.graph_inputs import ArrayInputs
from mksgn.core.fuse import fuse
from mksgn.core.nir_file import read_graph
from mksgn.core.semantics import Semantics
from mksgn.core.semantics import resolve as resolve_semantics
from mksgn.core.synapse_graph import FusionError, SynapseGraph


@dataclass
class QuantizeSummary:
    """What :func:`quantize_file` wrote and found (:meth:`to_dict`: JSON-ready)."""

    graph: str
    report: str
    calibrated_on: str
    populations: int
    synapses: int
    synapse_kinds: dict[str, int]
    clipped_weights: int
    saturated_states: int
    input_bits: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record."""
        return asdict(self)


def calibration_inputs(graph: nir.NIRGraph, sg: SynapseGraph, data: str | None, samples: int, steps: int,
                       seed: int) -> tuple[dict[str, torch.Tensor], str]:
    """Inputs to calibrate on, and what they are."""
    from mksgn.convert.graph_inputs import GraphInputError, InputSpec, batches

    try:
        spec = InputSpec.of(graph)
    except GraphInputError:
        spec = None
    if spec is None:
        if data is not None:
            raise QuantizeError("--data needs a graph written by mksgn-export (with input metadata)")
        g = torch.Generator().manual_seed(seed)
        inputs = {name: torch.randn(steps, samples, *sg.populations[name].shape, generator=g, dtype=torch.float64)
                  for name in sg.inputs}
        return inputs, (f"{samples} random standard-normal inputs x {steps} steps (no mksgn input metadata; give "
                        f"--input X.npz to calibrate on the graph's real inputs)")
    from mksgn.data.builtin import load_dataset
    from mksgn.data.splits import stratified_subset

    splits = load_dataset(data)
    index, described = stratified_subset(splits.train, samples, "training")
    batch = next(batches(spec, splits.train, index, len(index)))
    return batch.inputs, described


def write_report(path: Path, reports: list[LayerReport], measured_on: str, model: str,
                 input_bits: int = INPUT_BITS) -> None:
    """JSON and Markdown reports beside the quantised graph."""
    record = {"model": model, "calibrated_on": measured_on, "input_bits": input_bits,
              "layers": [r.to_dict() for r in reports]}
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=1, default=float) + "\n")
    lines = [f"# Quantisation of {model}", "", f"Calibrated on {measured_on}.", "",
             "Decays that differ between neurons are listed by value; such a population becomes one stock Lava "
             "LIF per decay group where its synapses allow (`mksgn.deploy.lava_split`).", "",
             "| population | scale | vth | du | dv | decay groups | synapse | kind | weight_exp | range used | clipped "
             "| zeroed | saturated states |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def decay(d) -> str:
        return str(d) if not isinstance(d, list) else f"{len(d)} values, {d[0]}..{d[-1]}"

    for r in reports:
        for i, (syn, w) in enumerate(r.weights.items()):
            head = (f"{r.population} | {r.scale:.4g} | {r.vth if r.vth is not None else '-'} | {decay(r.du)} | "
                    f"{decay(r.dv)} | {r.decay_groups}" if i == 0 else " | | | | |")
            lines.append(f"| {head} | {syn} | {w['kind']} | {w['weight_exp']} | {w['range_used']:.0%} | "
                         f"{w['clipped']} | {w['zeroed']} | {r.saturated if i == 0 else ''} |")
    atomic_write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")


def _check_input_bits(sg: SynapseGraph, model: Path, input_bits: int | None) -> None:
    """Refuse input bits other than those a snapped graph's grid declares (they could not be honoured)."""
    grid = fixed_point_grid(sg)
    if grid is None or input_bits is None:
        return
    declared = sorted({int(entry["bits"]) for entry in grid["inputs"].values()})
    if declared != [input_bits]:
        raise QuantizeError(f"{model}: snapped with {'/'.join(map(str, declared))}-bit graded inputs (its "
                            f"fixed_point_grid); --input-bits {input_bits} cannot change them: re-snap with "
                            f"mksgn-snap --input-bits {input_bits}, or leave --input-bits out")


def quantize_file(model: Path, out: Path, data: str | None = None, samples: int = DEFAULT_SAMPLES, steps: int = 4,
                  seed: int = 0, input_bits: int | None = None, semantics: Semantics | None = None,
                  arrays: str | Path | None = None, graph: nir.NIRGraph | None = None) -> QuantizeSummary:
    """Quantise the graph file ``model`` into ``out`` with its reports.

    Parameters
    ----------
    model, out
        The float graph to read and the quantised graph to write (``MODEL.q.nir``); the
        reports go beside it (``MODEL.q.quantization.json`` and ``.md``).
    data, samples, steps, seed
        Calibration: ``samples`` training samples of ``data`` (the built-in dataset if
        ``None``) for graphs written by ``mksgn-export``; otherwise ``samples`` random inputs
        of ``steps`` steps drawn with ``seed``.
    input_bits
        Bits of the graded input payloads (``None``: :data:`~mksgn.convert.defaults.INPUT_BITS`).
        A snapped graph's grid fixes its own: asking for other bits is refused.
    semantics
        The neuron semantics to quantise under (default: the graph's, else NIR's, with a warning
        where it states no ``dt``); written into the quantised graph's metadata.
    arrays
        An ``.npz`` of input arrays to calibrate on instead (``--input``: its first ``samples`` rows).
    graph
        The graph, when the caller has already read it from ``model``.

    Raises
    ------
    QuantizeError
        If the graph cannot be fused or quantised.
    """
    start = time.perf_counter()
    graph = read_graph(model) if graph is None else graph
    if semantics is None:
        semantics = resolve_semantics(graph.metadata, where=str(model))
    try:
        sg = fuse(graph, semantics=semantics)
    except FusionError as exc:
        raise QuantizeError(f"{model}: {exc}") from exc
    _check_input_bits(sg, model, input_bits)
    if arrays is not None:
        if data is not None:
            raise QuantizeError("--input and --data: calibrate on the arrays or on skeleton data, not both")
        source = ArrayInputs.read(arrays, {name: sg.populations[name].shape for name in sg.inputs})
        n = min(samples, len(source))
        calib, measured_on = {k: v[:, :n] for k, v in source.arrays.items()}, source.describe(n)
    else:
        calib, measured_on = calibration_inputs(graph, sg, data, samples, steps, seed)
    sg, reports = quantize(sg, calib, INPUT_BITS if input_bits is None else input_bits)
    input_bits = max(v.bits for v in sg.fixed.inputs.values())  # a snapped grid's own
    write_quantized(graph, sg, reports, out)
    report_path = out.with_name(out.name.removesuffix(".nir") + ".quantization.json")
    write_report(report_path, reports, measured_on, str(model), input_bits)
    kinds: dict[str, int] = {}
    for syn in sg.synapses:
        kinds[syn.kind] = kinds.get(syn.kind, 0) + 1
    return QuantizeSummary(
        graph=str(out), report=str(report_path), calibrated_on=measured_on, populations=len(reports),
        synapses=len(sg.synapses), synapse_kinds=kinds,
        clipped_weights=sum(w["clipped"] for r in reports for w in r.weights.values()),
        saturated_states=sum(r.saturated for r in reports), input_bits=input_bits,
        seconds=round(time.perf_counter() - start, 2))
