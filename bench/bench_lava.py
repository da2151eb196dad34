"""Lava fixed_pt, many person rows per build: the whole ``tiny`` test split in one build, ``ntu``'s
seconds per row, and the emulator-to-Lava throughput ratio.

``tiny`` and ``ntu`` random students (random BatchNorm, activity calibrated on built-in
samples), exported in the factorised deployment form, fused and quantised on 16 built-in
training samples. Lava runs stock processes only (``LIFReset``, ``Conv``, ``Sparse``, ``Dense``,
``GradedVec``, ...), the rows back to back in one network (:func:`~mksgn.deploy.lava_builder.run_lava_rows`).

``tiny``
    Every sample of the built-in test split (all its person rows) in one build: wall time
    (build, compile, run, read-out), peak memory of the process tree (PSS), and every
    spike of every spiking population and every prediction compared with the fixed-point
    emulator's on the same rows. Target: <= 15 min, 0 mismatches.
``ntu``
    :data:`NTU_ROWS` rows in one build: seconds per row after the build and compilation
    (the steps after the first, per row of ``T`` steps), peak memory, spikes compared with
    the emulator's. Target: <= 5 s per row.
``tiny_emulator_vs_lava``
    The fixed-point emulator's samples/s at batch 64 over Lava's samples/s in the one build.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.bench_emulator import _model
from bench.memory import PeakMemory
from mksgn.convert.graph_inputs import InputSpec, batches
from mksgn.convert.quantize import quantize
from mksgn.core.emulator import Emulator
from mksgn.core.fuse import fuse
from mksgn.data.builtin import load_dataset
from mksgn.deploy.lava_builder import LavaNetwork
from mksgn.train.blocks import sum_per_sample

SLOW = True
NTU_ROWS = 4
TARGETS = {"tiny": {"seconds": 15 * 60.0}, "ntu": {"seconds_per_row": 5.0}}


def _prepare(name: str, splits):
    graph = _model(name, splits, len(splits.train.class_names))
    spec = InputSpec.of(graph)
    sg = fuse(graph)
    calib = next(batches(spec, splits.train, np.arange(16), 16))
    sg, _ = quantize(sg, calib.inputs)
    return sg, spec


def _predictions(out: np.ndarray, batch) -> np.ndarray:
    last = torch.as_tensor(out[-1])
    return sum_per_sample(last.reshape(last.shape[0], -1), batch.sample_index, batch.samples).argmax(dim=1).numpy()


def _lava_rows(sg, spec, dataset, samples: int) -> dict:
    """``samples`` test samples (all their rows) in one Lava build, compared with the emulator."""
    batch = next(batches(spec, dataset, np.arange(samples), samples))
    rows = {k: v.numpy() for k, v in batch.inputs.items()}
    n_rows = int(next(iter(rows.values())).shape[1])
    steps = int(next(iter(rows.values())).shape[0])
    spiking = [n for n, p in sg.populations.items() if p.spiking and n not in sg.inputs]
    out_name = next(iter(sg.outputs))
    with PeakMemory() as mem:
        start = time.perf_counter()
        net = LavaNetwork(sg, "fixed_pt", rows, record=spiking, rows=True)
        result = net.run()
        total = time.perf_counter() - start
    emu_start = time.perf_counter()
    emu = Emulator(sg, "fixed_pt", "lava").run(batch.inputs, record_spikes=True)
    emu_seconds = time.perf_counter() - emu_start
    mismatches = {n: int((result.spikes[n] != emu.spikes[n].numpy()).sum()) for n in spiking}
    lava_pred = _predictions(result.outputs[out_name], batch)
    emu_pred = _predictions(emu.outputs[out_name].numpy(), batch)
    after = result.seconds["run"] - result.seconds["first_run_incl_compile"]
    processes = len(net.ctx.procs) + len(net.ctx.synapses) + len(net.ctx.delays) + len(net.sinks) + len(net.monitors)
    return {"samples": samples, "person_rows": n_rows, "steps_per_row": steps, "lava_steps": result.steps_run,
            "latency_steps": result.latency, "builds": 1, "lava_processes": processes,
            "seconds": round(total, 1), "build_s": round(result.seconds["build"], 2),
            "compile_and_first_step_s": round(result.seconds["first_run_incl_compile"], 2),
            "run_s": round(result.seconds["run"], 1),
            "seconds_per_row": round(total / n_rows, 3),
            "seconds_per_row_after_build": round(after / max(result.steps_run - 1, 1) * steps, 3),
            "peak_gib": mem.peak_gib,
            "spikes_compared": int(sum(emu.spikes[n].numel() for n in spiking)),
            "spike_mismatches": int(sum(mismatches.values())),
            "prediction_agreement": float((lava_pred == emu_pred).mean()),
            "emulator_seconds_same_rows": round(emu_seconds, 2)}


def _emulator_rate(sg, spec, dataset) -> float:
    b = next(batches(spec, dataset, np.arange(64), 64))
    emulator = Emulator(sg, "fixed_pt")
    emulator.run(b.inputs)  # warm-up
    start = time.perf_counter()
    emulator.run(b.inputs)
    return 64 / (time.perf_counter() - start)


def run() -> dict:
    splits = load_dataset(None)
    test = splits.test
    out = {"measured_on": f"built-in test samples ({test.source}), random calibrated students, "
                          f"fixed_pt, stock Lava processes, rows back to back in one build",
           "tag": "fixed_pt"}
    for name, samples in (("tiny", len(test)), ("ntu", None)):
        sg, spec = _prepare(name, splits)
        if samples is None:  # the first samples whose rows make NTU_ROWS
            rows = next(batches(spec, test, np.arange(NTU_ROWS), NTU_ROWS)).sample_index.numpy()
            samples = int(np.searchsorted(np.cumsum(np.bincount(rows)), NTU_ROWS) + 1)
        res = _lava_rows(sg, spec, test, samples)
        value = {"seconds": res["seconds"], "seconds_per_row": res["seconds_per_row_after_build"]}
        res["targets"] = TARGETS[name]
        res["within_targets"] = (all(value[k] <= v for k, v in TARGETS[name].items())
                                 and res["spike_mismatches"] == 0 and res["prediction_agreement"] == 1.0)
        out[name] = res
        if name == "tiny":
            emu_rate = _emulator_rate(sg, spec, test)
            lava_rate = res["samples"] / res["seconds"]
            out["tiny_emulator_vs_lava"] = {"emulator_samples_per_s_batch_64": round(emu_rate, 2),
                                            "lava_samples_per_s_one_build": round(lava_rate, 3),
                                            "ratio": round(emu_rate / lava_rate, 1)}
    return out
