"""``mksgn-export``: a trained student checkpoint -> a validated NIR graph.

    mksgn-export CKPT -o MODEL.nir [--data X.npz] [--samples N] [--no-validate]

The graph is written to a temporary file, read back, run by the reference executor on
``N`` test samples in float64 and float32 and compared spike for spike with the snnTorch
model at every LIF node; only then is it renamed to ``MODEL.nir``. A float64 mismatch, or
a float32 mismatch that is not a rounding tie, fails the export naming the node. The
comparison is written beside the graph as ``MODEL.parity.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import nir
import numpy as np
import torch

from mksgn.atomic import atomic_write_text
from mksgn.cli import ArgumentParser, run_cli
from mksgn.convert.nir_export import ExportError, export_student

PROG = "mksgn-export"
DEFAULT_SAMPLES = 8


def write_graph(graph: nir.NIRGraph, path: Path) -> None:
    """``nir.write`` to a temporary file beside ``path``, then rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def export_checkpoint(ckpt: str, out: Path, data: str | None = None, samples: int = DEFAULT_SAMPLES,
                      validate: bool = True, log=print) -> dict:
    """Export, write, read back and validate; returns the export record."""
    from mksgn.convert.validate import compare
    from mksgn.train.blocks import present_persons
    from mksgn.train.builtin import load_dataset
    from mksgn.train.pipeline import SkeletonInputs
    from mksgn.train.run import load_student
    from mksgn.train.skeletons import get_layout

    start = time.perf_counter()
    model, cfg, info = load_student(ckpt)
    layout = get_layout(info["layout"])
    graph = export_student(model, info["frames"], layout.num_joints, info["class_names"], info["layout"])
    record: dict = {"checkpoint": str(ckpt), "graph": str(out), "nodes": len(graph.nodes), "edges": len(graph.edges)}
    tmp = out.with_name(f".{out.name}.validating")
    try:
        write_graph(graph, tmp)
        back = nir.read(str(tmp), type_check=False)
        if validate:
            splits = load_dataset(data)
            test = SkeletonInputs(splits.test, info["frames"], info["modalities"])
            x, _ = test.batch(np.arange(min(samples, len(test))))
            record["validated_on"] = f"{min(samples, len(test))} test samples of {splits.test.source}"
            for dtype in (torch.float64, torch.float32):
                report = compare(model, back, x, dtype)
                record[f"parity_{report.dtype}"] = report.to_dict()
                bad = report.first_failure() if dtype == torch.float32 else next((n for n in report.nodes if n.mismatches), None)
                if bad is not None:
                    f = bad.first
                    raise ExportError(
                        f"export validation failed ({report.dtype}): node {bad.node} (module {bad.module}) has "
                        f"{bad.mismatches} mismatching spikes; first at step {f['step']}, row {f['row']}, neuron "
                        f"{tuple(f['neuron'])}: snnTorch {f['snntorch_spike']:.0f}, NIR {f['nir_spike']:.0f}, "
                        f"membrane {f['membrane']:.6g} vs threshold {f['threshold']}"
                    )
                log(f"{report.dtype}: {report.rows} person rows x {report.steps} steps, {len(report.nodes)} LIF nodes: "
                    f"{report.mismatches} mismatching spikes ({report.ties} rounding ties), max logit difference "
                    f"{report.logit_max_abs_diff:.2e} [{record['validated_on']}]")
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    record["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_text(out.with_suffix(".parity.json"), json.dumps(record, indent=1) + "\n")
    log(f"wrote {out}: {record['nodes']} nodes, {record['edges']} edges in {record['seconds']} s")
    return record


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Export a trained MK-SGN student to NIR, validated spike for spike.")
    p.add_argument("checkpoint", help="student checkpoint (student_best.pt)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output .nir file")
    p.add_argument("--data", help="CTR-GCN .npz for validation samples (default: the built-in dataset)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="test samples to validate on (default %(default)s)")
    p.add_argument("--no-validate", action="store_true", help="skip the spike comparison (not recommended)")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    export_checkpoint(args.checkpoint, args.out, args.data, args.samples, validate=not args.no_validate)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-export``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
