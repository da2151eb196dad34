"""Emulator throughput (samples per second) in fixed point, at batch 1 and 64, ``tiny`` and ``ntu``,
beside the float student's own torch forward on the same 64 samples in the same run (whole, and in
chunks of 16: the faster sets the ratio).

Models: random students with random BatchNorm statistics, activity calibrated on built-in
samples (every population fires; :mod:`mksgn.train.calibrate`), exported, fused and
quantised on 16 built-in training samples. Timed: ``Emulator(fixed_pt).run`` on built-in
test samples (all persons of a sample; one warm-up run first), aligned timing, 2 threads.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mksgn.convert.nir_export import export_student
from mksgn.convert.quantize import quantize
from mksgn.core.fuse import fuse
from mksgn.core.emulator import Emulator
from mksgn.convert.graph_inputs import InputSpec, batches
from mksgn.data.builtin import load_dataset
from mksgn.data.pipeline import SkeletonInputs
from mksgn.data.skeletons import NTU25
from mksgn.train.blocks import present_persons
from mksgn.train.calibrate import calibrate_activity, randomise_batchnorm
from mksgn.train.config import preset
from mksgn.train.student import MKSGN

BATCHES = (1, 64)
CALIBRATION = 16
BEFORE_SAMPLES_PER_S = {"ntu": 0.60}
"""Fixed-point samples/s at batch 64 of the fused deployment form (one joints x channels map per graph
convolution), the best of the 0.48-0.60 measured in issue 18 on this machine."""


def _model(name: str, splits, classes: int):
    return _model_and_graph(name, splits, classes)[1]


def _model_and_graph(name: str, splits, classes: int):
    """The random calibrated student and its NIR export."""
    cfg = preset(name)
    torch.manual_seed(0)
    model = MKSGN(cfg.student, NTU25, classes, cfg.data.modalities).eval()
    randomise_batchnorm(model, 0)
    train = SkeletonInputs(splits.train, cfg.data.frames, cfg.data.modalities, None)
    scale = torch.as_tensor(1.0 / train.channel_std())
    for i, mod in enumerate(cfg.data.modalities):
        model.input_scale[mod].scale.copy_(scale[i])
    x, _ = train.batch(np.arange(CALIBRATION))
    calibrate_activity(model, present_persons(x)[0])
    return model, export_student(model, cfg.data.frames, 25, list(splits.train.class_names), "ntu25")


STUDENT_CHUNKS = (64, 16)
"""Samples per forward call of the student: the whole batch, and in chunks (at ``ntu`` size its
forward at batch 64 is memory-bound: 3.0-3.4 samples/s, 8.6 at batch 16; the faster sets the ratio)."""


def _student_forward(model: MKSGN, name: str, splits, b: int) -> dict:
    """The float student's own torch forward (all persons, T steps) on ``b`` test samples, whole and
    in chunks of :data:`STUDENT_CHUNKS`; ``samples_per_s`` is the faster."""
    cfg = preset(name)
    x, _ = SkeletonInputs(splits.test, cfg.data.frames, cfg.data.modalities, None).batch(np.arange(b))
    out: dict = {"samples": b}
    with torch.no_grad():
        model(x[:1])  # warm-up
        for chunk in STUDENT_CHUNKS:
            start = time.perf_counter()
            for i in range(0, b, chunk):
                model(x[i:i + chunk])
            seconds = time.perf_counter() - start
            out[f"chunks_of_{chunk}"] = {"seconds": round(seconds, 3), "samples_per_s": round(b / seconds, 2)}
    out["samples_per_s"] = max(v["samples_per_s"] for k, v in out.items() if k.startswith("chunks_of_"))
    return out


def _measure(name: str, splits) -> dict:
    model, graph = _model_and_graph(name, splits, len(splits.train.class_names))
    spec = InputSpec.of(graph)
    start = time.perf_counter()
    sg = fuse(graph)
    calib = next(batches(spec, splits.train, np.arange(CALIBRATION), CALIBRATION))
    sg, reports = quantize(sg, calib.inputs)
    prepare = time.perf_counter() - start
    emulator = Emulator(sg, "fixed_pt")
    result = {"fuse_and_quantize_s": round(prepare, 2), "populations": len(reports), "synapses": len(sg.synapses),
              "saturated_states_on_calibration": sum(r.saturated for r in reports)}
    for b in BATCHES:
        batch = next(batches(spec, splits.test, np.arange(b), b))
        emulator.run(batch.inputs) if b == 1 else None  # warm-up (allocations) on the small batch
        start = time.perf_counter()
        res = emulator.run(batch.inputs)
        seconds = time.perf_counter() - start
        result[f"batch_{b}"] = {"samples": b, "person_rows": int(batch.sample_index.numel()),
                                "seconds": round(seconds, 3), "samples_per_s": round(b / seconds, 2),
                                "synops_per_sample": int(sum(res.synops.values()) / b)}
    student = _student_forward(model, name, splits, BATCHES[-1])
    emulated = result[f"batch_{BATCHES[-1]}"]["samples_per_s"]
    result["student_forward"] = student
    result["emulator_vs_student"] = round(emulated / student["samples_per_s"], 3)
    if name in BEFORE_SAMPLES_PER_S:
        result["emulator_vs_fused_form"] = round(emulated / BEFORE_SAMPLES_PER_S[name], 1)
        result["targets"] = {"emulator_vs_fused_form": 10.0, "emulator_vs_student": 0.5}
    return result


def run() -> dict:
    torch.set_num_threads(2)
    splits = load_dataset(None)
    return {"measured_on": f"built-in test samples of {splits.test.source}", "tag": "fixed_pt",
            "tiny": _measure("tiny", splits), "ntu": _measure("ntu", splits)}
