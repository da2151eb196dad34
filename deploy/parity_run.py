"""Spike parity of loaded models: the service behind ``mksgn-parity``.

:func:`run_parity` runs the same person rows through the snnTorch student, the reference NIR
executor, Lava float, the fixed-point emulator and Lava fixed point, and compares them
(:mod:`mksgn.deploy.parity`). It takes the student (:class:`Student`), its exported graph and
its quantised graph as loaded objects (:func:`mksgn.deploy.run.load_model`), each read once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mksgn.deploy.parity import ParityResult, Recording, compare_recordings, per_sample, record_snntorch
from mksgn.deploy.run import LoadedModel
from mksgn.errors import MksgnError


class ParityError(MksgnError, ValueError):
    """Inputs that do not belong together; names the files."""


@dataclass(frozen=True)
class Student:
    """A student checkpoint, loaded: the model and its data description."""

    path: Path
    model: torch.nn.Module
    info: dict[str, Any]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Student:
        """Load a student checkpoint (trained or snapped)."""
        from mksgn.train.run import load_student

        model, _, info = load_student(path)
        return cls(Path(path), model, info)


def _lava_rows(sg, tag: str, inputs: dict[str, torch.Tensor], spiking: list[str], bar
               ) -> tuple[Recording, int, torch.Tensor]:
    from mksgn.deploy.lava_builder import run_lava_rows

    res = run_lava_rows(sg, tag, {k: v.numpy() for k, v in inputs.items()}, record=spiking, done=bar.update)
    rec = Recording(spikes={n: torch.as_tensor(res.spikes[n].astype(bool)) for n in spiking})  # 1 byte a spike
    return rec, res.latency, torch.as_tensor(res.outputs[next(iter(sg.outputs))][-1])


def _check_together(student: Student, model: LoadedModel, quantized: LoadedModel | None) -> None:
    """The graph was exported from the student, the quantised graph quantised from the graph."""
    spec = model.input_spec()
    from mksgn.data.normalise import normalisation_of

    if list(spec.class_names) != list(student.info["class_names"]) or spec.frames != student.info["frames"]:
        raise ParityError(f"{model.path} was not exported from {student.path} (class names or frames differ)")
    if spec.normalise != normalisation_of(student.info):
        raise ParityError(f"{model.path} was not exported from {student.path} (its inputs are normalised "
                          f"{spec.normalise!r}, the student's {normalisation_of(student.info)!r})")
    if quantized is not None and set(quantized.graph.nodes) != set(model.graph.nodes):
        raise ParityError(f"{quantized.path} is not the quantised {model.path} (its nodes differ)")


def _lava_recordings(model: LoadedModel, quantized: LoadedModel | None, batch, spiking: list[str], n: int,
                     recs: dict[str, Recording], seconds: dict[str, float], progress: bool) -> int | None:
    """Lava float (and fixed) on the batch's rows into ``recs``; returns Lava's latency."""
    rows = batch.sample_index.numel()
    runs = [("lava_floating_pt", model.sg, "floating_pt")]
    runs += [("lava_fixed_pt", quantized.sg, "fixed_pt")] if quantized is not None else []
    latency = None
    with tqdm(total=rows * len(runs), desc="lava", unit="row", disable=not progress) as bar:  # closed on Ctrl-C too
        for name, sg, tag in runs:
            start = time.perf_counter()
            rec, latency, outs = _lava_rows(sg, tag, batch.inputs, spiking, bar)
            rec.logits = per_sample(outs, batch.sample_index, n)
            recs[name] = rec
            seconds[name] = time.perf_counter() - start
    return latency


def _host_recordings(student: Student, model: LoadedModel, quantized: LoadedModel | None, batch,
                     spiking: list[str], module_map: dict[str, str], n: int, recs: dict[str, Recording],
                     seconds: dict[str, float]) -> None:
    """snnTorch, the reference executor and the fixed-point emulator on the batch's rows into ``recs``."""
    from mksgn.core.emulator import Emulator
    from mksgn.core.executor import NIRExecutor

    inputs, sample = batch.inputs, batch.sample_index
    spec = model.input_spec()
    start = time.perf_counter()
    person_rows = torch.stack([inputs[name][0] for name in spec.inputs], dim=1)  # (R, Mod, C, F, V)
    recs["snntorch"] = record_snntorch(student.model, person_rows, module_map, sample, n)
    seconds["snntorch"] = time.perf_counter() - start

    start = time.perf_counter()
    res = NIRExecutor(model.graph).run(inputs, record=spiking)
    recs["executor"] = Recording({k: res.records[k] for k in spiking}, {k: res.membranes[k] for k in spiking},
                                 per_sample(res.outputs[next(iter(model.sg.outputs))][-1], sample, n))
    seconds["executor"] = time.perf_counter() - start

    if quantized is not None:
        qsg = quantized.sg
        start = time.perf_counter()
        emu = Emulator(qsg, "fixed_pt").run(inputs, record_spikes=True)
        recs["emulator_fixed_pt"] = Recording({k: v.double() for k, v in emu.spikes.items()},
                                              logits=per_sample(emu.outputs[next(iter(qsg.outputs))][-1], sample, n))
        seconds["emulator_fixed_pt"] = time.perf_counter() - start


def run_parity(student: Student, model: LoadedModel, quantized: LoadedModel | None, dataset, limit: int,
               lava: bool = True, strict: bool = False, progress: bool = True) -> ParityResult:
    """Run every backend on the same rows and compare.

    Parameters
    ----------
    student
        The student checkpoint the graph was exported from.
    model
        Its exported graph, loaded for ``floating_pt``.
    quantized
        Its quantised graph, loaded for ``fixed_pt`` on the emulator; ``None`` skips the
        fixed-point pairs.
    dataset
        The samples (a test split); ``limit`` of them, stratified by class, are compared.
    lava
        Run Lava float (and fixed); ``False`` skips the Lava pairs.
    strict
        Fail on rounding ties too.
    progress
        Show a progress bar for the Lava runs.

    Raises
    ------
    ParityError
        If the graph was not exported from the student, or the quantised graph is not its quantisation.
    """
    from mksgn.convert.graph_inputs import batches
    from mksgn.core.nir_file import decode_metadata

    _check_together(student, model, quantized)
    spec = model.input_spec()
    module_map: dict[str, str] = decode_metadata(model.graph.metadata or {})["module_map"]
    sg = model.sg
    spiking = [name for name, p in sg.populations.items() if p.spiking]
    thresholds = {name: float(np.unique(sg.populations[name].threshold)[0]) for name in spiking}
    from mksgn.data.splits import stratified_subset

    index, described = stratified_subset(dataset, limit)
    n = len(index)
    batch = next(batches(spec, dataset, index, n))
    recs: dict[str, Recording] = {}
    seconds: dict[str, float] = {}
    # Lava first: each Lava process is forked from this one, and forking is slower the more
    # this process holds (the other backends' recordings).
    latency = _lava_recordings(model, quantized, batch, spiking, n, recs, seconds, progress) if lava else None
    _host_recordings(student, model, quantized, batch, spiking, module_map, n, recs, seconds)
    pairs, fvf, accuracy = compare_recordings(recs, module_map, thresholds, batch.labels, spec.time_steps)
    if fvf is not None:
        from mksgn.deploy.error_budget import error_budget

        start = time.perf_counter()
        fvf["error_budget"] = error_budget(quantized.sg, batch.inputs, batch.sample_index, n)
        seconds["error_budget"] = time.perf_counter() - start
        fvf["snapped"] = student.model.fixed_point is not None
    return ParityResult(described, n, batch.sample_index.numel(), spec.time_steps,
                        spiking, pairs, fvf, accuracy, latency, {k: round(v, 2) for k, v in seconds.items()}, strict)
