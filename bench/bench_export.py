"""Export time of the ``ntu`` student (random weights, non-trivial BatchNorm statistics).

Times export (BN folding, graph building), ``nir.write`` and ``nir.read``, and the
float64 spike comparison of the reference executor against the snnTorch model on 2
samples (T = 4, F = 64, V = 25); target: export + write + read <= 60 s on 2 cores.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import nir
import torch
from torch import nn

from mksgn.convert.nir_export import export_student
from mksgn.convert.validate import compare
from mksgn.train.config import preset
from mksgn.train.skeletons import NTU25
from mksgn.train.student import MKSGN

TARGET_S = 60.0


def run() -> dict:
    cfg = preset("ntu")
    torch.manual_seed(0)
    model = MKSGN(cfg.student, NTU25, 60, cfg.data.modalities).eval()
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    times = {}
    start = time.perf_counter()
    graph = export_student(model, cfg.data.frames, 25, [f"class_{k}" for k in range(60)], "ntu25")
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
    start = time.perf_counter()
    report = compare(model, back, torch.randn(2, 4, 3, cfg.data.frames, 25, 1), torch.float64)
    times["validate_2_samples_float64_s"] = time.perf_counter() - start
    total = times["export_s"] + times["write_s"] + times["read_s"]
    return {
        **{k: round(v, 2) for k, v in times.items()},
        "export_write_read_s": round(total, 2),
        "target_s": TARGET_S,
        "within_target": total <= TARGET_S,
        "file_mb": round(size / 2**20, 1),
        "nodes": len(graph.nodes),
        "mismatches_float64": report.mismatches,
    }
