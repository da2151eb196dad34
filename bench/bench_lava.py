"""Lava end to end, one sample (one person row), and the emulator-to-Lava throughput ratio.

``tiny`` and ``ntu`` random students (random BatchNorm, activity calibrated on built-in
samples), exported, fused and quantised on 16 built-in training samples. Timed for one
person row of a built-in test sample on Lava ``fixed_pt``: build (processes), compile and
run of ``T + latency`` steps (the first run call includes compilation and process start),
read-out; peak memory of the process tree (PSS). Targets: ``tiny`` <= 30 s, ``ntu`` <= 60 s
and <= 8 GB. The ratio: the fixed-point emulator's samples/s at batch 64 over Lava's, for
``tiny``, both measured in this run.
"""

from __future__ import annotations

import time

import numpy as np

from bench.bench_emulator import _model
from bench.memory import PeakMemory
from mksgn.convert.quantize import quantize
from mksgn.core.fuse import fuse
from mksgn.core.emulator import Emulator
from mksgn.convert.graph_inputs import InputSpec, batches
from mksgn.data.builtin import load_dataset
from mksgn.deploy.lava_builder import LavaNetwork

TARGETS = {"tiny": {"seconds": 30.0}, "ntu": {"seconds": 60.0, "peak_gib": 8.0}}


def _prepare(name: str, splits):
    graph = _model(name, splits, len(splits.train.class_names))
    spec = InputSpec.of(graph)
    sg = fuse(graph)
    calib = next(batches(spec, splits.train, np.arange(16), 16))
    sg, _ = quantize(sg, calib.inputs)
    return sg, spec


def _lava_one(sg, spec, splits) -> dict:
    batch = next(batches(spec, splits.test, np.arange(1), 1))
    row = {k: v[:, 0].numpy() for k, v in batch.inputs.items()}
    with PeakMemory() as mem:
        start = time.perf_counter()
        net = LavaNetwork(sg, "fixed_pt", row)
        result = net.run()
        total = time.perf_counter() - start
    processes = len(net.ctx.procs) + len(net.ctx.synapses) + len(net.ctx.delays) + len(net.sinks) + len(net.monitors)
    run_steps = result.steps_run
    return {"seconds_end_to_end": round(total, 2), "build_s": round(result.seconds["build"], 2),
            "compile_and_first_step_s": round(result.seconds["first_run_incl_compile"], 2),
            "run_s": round(result.seconds["run"], 2), "steps": run_steps, "latency_steps": result.latency,
            "ms_per_step_after_compile": round(1000 * (result.seconds["run"] - result.seconds["first_run_incl_compile"])
                                               / max(run_steps - 1, 1), 1),
            "lava_processes": processes, "peak_gib": mem.peak_gib}


def run() -> dict:
    splits = load_dataset(None)
    out = {"measured_on": f"one person row of a built-in test sample ({splits.test.source})", "tag": "fixed_pt"}
    for name in ("tiny", "ntu"):
        sg, spec = _prepare(name, splits)
        res = _lava_one(sg, spec, splits)
        res["targets"] = TARGETS[name]
        res["within_targets"] = all(res["seconds_end_to_end" if k == "seconds" else k] <= v
                                    for k, v in TARGETS[name].items())
        out[name] = res
        if name == "tiny":
            b = next(batches(spec, splits.test, np.arange(64), 64))
            emulator = Emulator(sg, "fixed_pt")
            start = time.perf_counter()
            emulator.run(b.inputs)
            emu_rate = 64 / (time.perf_counter() - start)
            rows_per_sample = b.sample_index.numel() / 64
            lava_rate = 1.0 / (res["seconds_end_to_end"] * rows_per_sample)
            out["tiny_emulator_vs_lava"] = {"emulator_samples_per_s_batch_64": round(emu_rate, 2),
                                            "lava_samples_per_s": round(lava_rate, 4),
                                            "ratio": round(emu_rate / lava_rate, 1), "target_ratio": 100}
    return out
