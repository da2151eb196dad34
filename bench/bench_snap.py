"""Snapping onto the fixed-point grid (``mksgn-snap``): cost, size, and float = fixed.

For the ``tiny`` and ``ntu`` students (random weights, non-trivial BatchNorm, activity
calibrated on built-in data so that every population fires): the time to rewrite the
student in deployment form and snap it (export, fusion and dyadic quantisation on
``CALIBRATION`` training samples included), its parameters and NIR nodes before and after,
the time to export and quantise the snapped student, the peak memory while snapping, and
the float and fixed-point emulators on ``SAMPLES`` built-in test samples: every spike must
be equal (the target). Then Lava on the first :data:`LAVA_SAMPLES` test samples (all their
rows in one build, stock processes): ``fixed_pt`` against the fixed-point emulator and
``floating_pt`` against the reference NIR executor, every spike of every spiking population.
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch

from bench.bench_emulator import CALIBRATION, _model_and_graph
from bench.memory import PeakMemory, tree_pss_bytes
from mksgn.convert.nir_export import export_student
from mksgn.convert.quantize import quantize
from mksgn.convert.snap import snap
from mksgn.core.fuse import fuse
from mksgn.core.emulator import Emulator
from mksgn.core.executor import NIRExecutor
from mksgn.convert.graph_inputs import InputSpec, batches
from mksgn.data.builtin import load_dataset
from mksgn.train.blocks import sum_per_sample
from mksgn.train.config import preset

SAMPLES = int(os.environ.get("MKSGN_SNAP_SAMPLES", "32"))
"""Test samples compared (environment ``MKSGN_SNAP_SAMPLES``)."""
PARAMETERS_RATIO_TARGET = 1.25
"""Deployment form parameters at most this many times the student's (issue 18)."""
SNAP_PEAK_GIB_TARGET = {"tiny": None, "ntu": 2.0}
LAVA_SAMPLES = {"tiny": 8, "ntu": 2}
"""Test samples run on Lava per student (``ntu``: 2 samples, 4 person rows, about 2 min)."""
"""Peak memory (PSS of the process, its data and model included) while snapping."""


def _one(name: str) -> tuple[dict, Callable[[], dict]]:
    """The snap figures, and the Lava comparison to run once every student is snapped (a Lava
    run first would raise the process's memory before the next snap)."""
    splits = load_dataset(None)
    classes = list(splits.train.class_names)
    cfg = preset(name)
    model, graph = _model_and_graph(name, splits, len(classes))  # the emulator benchmark's students
    spec = InputSpec.of(graph)
    calib = next(batches(spec, splits.train, np.arange(CALIBRATION), CALIBRATION))
    rows = torch.stack([calib.inputs[n][0] for n in spec.inputs], dim=1)
    start = time.perf_counter()
    before_gib = round(tree_pss_bytes() / 2**30, 2)
    with PeakMemory() as mem:
        snapped, report = snap(model, rows, cfg.data.frames, classes, "ntu25")
    snap_s = time.perf_counter() - start
    start = time.perf_counter()
    sgraph = export_student(snapped, cfg.data.frames, 25, classes, "ntu25")
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    sg = fuse(sgraph)
    sspec = InputSpec.of(sgraph)
    calib = next(batches(sspec, splits.train, np.arange(CALIBRATION), CALIBRATION))
    sg, _ = quantize(sg, calib.inputs)
    quantize_s = time.perf_counter() - start
    plain = copy.copy(sg)
    plain.metadata = {}
    mismatches = compared = agree = 0
    start = time.perf_counter()
    for batch in batches(sspec, splits.test, np.arange(min(SAMPLES, len(splits.test))), 8):
        runs = [Emulator(g, tag).run(batch.inputs, record_spikes=True) for g, tag in ((plain, "floating_pt"),
                                                                                     (sg, "fixed_pt"))]
        for k in runs[0].spikes:
            mismatches += int((runs[0].spikes[k].bool() != runs[1].spikes[k].bool()).sum())
            compared += runs[0].spikes[k].numel()
        preds = [sum_per_sample(r.outputs[next(iter(sg.outputs))][-1].reshape(batch.sample_index.numel(), -1).double(),
                                batch.sample_index, batch.samples).argmax(1) for r in runs]
        agree += int((preds[0] == preds[1]).sum())
    compare_s = time.perf_counter() - start
    n = min(SAMPLES, len(splits.test))
    return {
        "snap_s": round(snap_s, 2), "export_snapped_s": round(export_s, 2),
        "fuse_quantize_snapped_s": round(quantize_s, 2), "compare_s": round(compare_s, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "parameters_deployment_form": sum(p.numel() for p in snapped.parameters()),
        "parameters_ratio": round(sum(p.numel() for p in snapped.parameters())
                                  / sum(p.numel() for p in model.parameters()), 3),
        "parameters_ratio_target": PARAMETERS_RATIO_TARGET,
        "snap_peak_gib": mem.peak_gib, "snap_peak_gib_target": SNAP_PEAK_GIB_TARGET[name],
        "before_snap_gib": before_gib,
        "synapse_kinds": dict(sorted(Counter(s.kind for s in sg.synapses).items())),
        "nodes": len(graph.nodes), "nodes_deployment_form": len(sgraph.nodes),
        "weights_changed": report.weights_changed, "weights_zeroed": report.weights_zeroed,
        "exact_steps": report.exact_steps, "time_steps": report.time_steps,
        "measured_on": f"{n} test samples of {splits.test.source}",
        "compared_spikes": compared, "spike_mismatches": mismatches, "prediction_agreement": agree / max(n, 1),
        "float_equals_fixed": mismatches == 0,
    }, lambda: _lava_parity(sgraph, sg, sspec, splits.test, LAVA_SAMPLES[name])


def _lava_parity(sgraph, sg, spec, dataset, samples: int) -> dict:
    """Lava ``fixed_pt`` = the fixed-point emulator and Lava ``floating_pt`` = the reference executor,
    on ``samples`` test samples (their rows back to back in one build per tag)."""
    from mksgn.deploy.lava_builder import LavaNetwork

    batch = next(batches(spec, dataset, np.arange(samples), samples))
    rows = {k: v.numpy() for k, v in batch.inputs.items()}
    spiking = [n for n, p in sg.populations.items() if p.spiking and n not in sg.inputs]
    expected = {"fixed_pt": Emulator(sg, "fixed_pt", "lava").run(batch.inputs, record_spikes=True).spikes,
                "floating_pt": NIRExecutor(sgraph).run(batch.inputs).records}
    graphs = {"fixed_pt": sg, "floating_pt": fuse(sgraph)}
    out: dict = {"samples": samples, "person_rows": int(batch.sample_index.numel())}
    for tag in ("fixed_pt", "floating_pt"):
        start = time.perf_counter()
        result = LavaNetwork(graphs[tag], tag, rows, record=spiking, rows=True).run()
        seconds = time.perf_counter() - start
        ref = {n: np.asarray(expected[tag][n].numpy() if hasattr(expected[tag][n], "numpy") else expected[tag][n])
               for n in spiking}
        out[tag] = {"against": "emulator fixed_pt" if tag == "fixed_pt" else "reference executor (float64)",
                    "seconds": round(seconds, 1),
                    "compared_spikes": int(sum(ref[n].size for n in spiking)),
                    "spike_mismatches": int(sum((result.spikes[n] != ref[n].astype(bool)).sum() for n in spiking))}
    return out


def run() -> dict:
    results, lava = {}, {}
    for name in ("ntu", "tiny"):  # ntu first: its snap peak from a fresh process (the target is for it)
        results[name], lava[name] = _one(name)
    for name, job in lava.items():
        results[name]["lava"] = job()
        results[name]["lava_equal"] = all(results[name]["lava"][t]["spike_mismatches"] == 0
                                          for t in ("fixed_pt", "floating_pt"))
    return {name: results[name] for name in ("tiny", "ntu")}
