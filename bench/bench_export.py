"""Export of the ``ntu`` student (random weights, non-trivial BatchNorm, calibrated activity).

The model has random weights, random BatchNorm statistics, and BatchNorm biases
calibrated on built-in test samples so that every LIF population fires
(:mod:`mksgn.train.calibrate`). Measured: export (BN folding, graph building),
``nir.write`` and ``nir.read`` times (target: together <= 60 s on 2 cores); then the
spike comparison of the reference executor against the snnTorch model on ``SAMPLES``
built-in test samples (T = 4, F = 64, V = 25) in float64 (must be exact) and float32
(any mismatch must be a rounding tie), with every population's firing rate.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import nir
import numpy as np
import torch

from mksgn.convert.nir_export import export_student
from mksgn.convert.validate import compare
from mksgn.data.builtin import load_dataset
from mksgn.data.pipeline import SkeletonInputs
from mksgn.data.skeletons import NTU25
from mksgn.train.blocks import present_persons
from mksgn.train.calibrate import calibrate_activity, firing_rates, randomise_batchnorm
from mksgn.train.config import preset
from mksgn.train.student import MKSGN

TARGET_S = 60.0
SAMPLES = int(os.environ.get("MKSGN_EXPORT_SAMPLES", "64"))
"""Samples compared (environment ``MKSGN_EXPORT_SAMPLES``)."""
CALIBRATION_SAMPLES = 16
ACTIVE_RANGE = (0.01, 0.5)
"""Every population's firing rate must lie in this range for the comparison to mean something."""


def calibrated_ntu_student(seed: int = 0, classes: int = 60) -> tuple[MKSGN, torch.Tensor, str]:
    """The random ``ntu`` student calibrated on built-in data, its test inputs, and their description."""
    cfg = preset("ntu")
    splits = load_dataset(None)
    torch.manual_seed(seed)
    model = MKSGN(cfg.student, NTU25, classes, cfg.data.modalities).eval()
    randomise_batchnorm(model, seed)
    train = SkeletonInputs(splits.train, cfg.data.frames, cfg.data.modalities, None)
    test = SkeletonInputs(splits.test, cfg.data.frames, cfg.data.modalities, None)
    scale = torch.as_tensor(1.0 / train.channel_std())
    for i, name in enumerate(cfg.data.modalities):
        model.input_scale[name].scale.copy_(scale[i])
    x, _ = test.batch(np.arange(SAMPLES + CALIBRATION_SAMPLES))
    x = torch.as_tensor(x)
    # calibrate on the last samples, compare on the others
    calibrate_activity(model, present_persons(x[SAMPLES:])[0])
    return model, x[:SAMPLES], f"{SAMPLES} test samples of {splits.test.source}"


def run() -> dict:
    model, x, measured_on = calibrated_ntu_student()
    times = {}
    start = time.perf_counter()
    graph = export_student(model, x.shape[3], 25, [f"class_{k}" for k in range(60)], "ntu25")
    times["export_s"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ntu.nir"
        start = time.perf_counter()
        nir.write(str(path), graph)
        times["write_s"] = time.perf_counter() - start
        size = path.stat().st_size
        start = time.perf_counter()
        back = nir.read(str(path), type_check=False)
        times["read_s"] = time.perf_counter() - start
    total = times["export_s"] + times["write_s"] + times["read_s"]
    rates = firing_rates(model, present_persons(x[:8])[0])
    parity = {}
    for dtype in (torch.float64, torch.float32):
        start = time.perf_counter()
        report = compare(model, back, x, dtype)
        parity[report.dtype] = {"mismatches": report.mismatches, "ties": report.ties, "real": report.real,
                                "rows": report.rows, "logit_max_abs_diff": report.logit_max_abs_diff,
                                "seconds": round(time.perf_counter() - start, 1)}
    low, high = ACTIVE_RANGE
    return {
        **{k: round(v, 2) for k, v in times.items()},
        "export_write_read_s": round(total, 2),
        "target_s": TARGET_S,
        "within_target": total <= TARGET_S,
        "file_mb": round(size / 2**20, 1),
        "nodes": len(graph.nodes),
        "lif_nodes": len(rates),
        "parity_measured_on": measured_on,
        "parity": parity,
        "firing_rate_min": round(min(rates.values()), 4),
        "firing_rate_max": round(max(rates.values()), 4),
        "all_layers_active": all(low <= r <= high for r in rates.values()),
        "firing_rates": {k: round(v, 4) for k, v in rates.items()},
    }
