"""``mksgn-energy``: energy per sample of a NIR model on hardware profiles, from a real run.

Usage::

    mksgn-energy MODEL.nir [--data X.npz] [--limit N] [--backend emulator|lava] [--tag fixed_pt|floating_pt]
                 [--profile NAME|FILE ...] [--teacher CKPT | --teacher-config NAME] [--onnx ANN.onnx] [--out DIR]

Runs the first ``N`` test samples through the emulator (or Lava), counts what the run did
(:mod:`mksgn.hw_profiles.counts`), prices it on every profile
(:mod:`mksgn.hw_profiles.estimator`), maps the graph to cores
(:mod:`mksgn.hw_profiles.resources`) and compares with the dense ANN baseline (the teacher,
or any GCN given as ONNX). Writes ``energy.json``, ``energy.md``, ``energy_ops.png``,
``energy_profiles.png`` and ``energy_snn_vs_ann.png`` to DIR; prints the table.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mksgn.atomic import atomic_write_text
from mksgn.cli import ArgumentParser, run_cli
from mksgn.errors import MksgnError

PROG = "mksgn-energy"
BASELINE_PROFILE = "cmos45nm"
"""The SNN-vs-ANN reduction compares both on this profile (the paper's convention)."""


class EnergyError(MksgnError, ValueError):
    """Options that cannot work together; names the option."""


def ann_baseline(spec, teacher: Path | None = None, teacher_config: str | None = None,
                 onnx: Path | None = None) -> Any:
    """Dense MAC counts of the ANN baseline (a teacher checkpoint, an untrained teacher config, or ONNX)."""
    from mksgn.hw_profiles.counts import onnx_counts, teacher_counts

    if onnx is not None:
        if not Path(onnx).is_file():
            raise EnergyError(f"{onnx}: no such ONNX file")
        return onnx_counts(onnx)
    if teacher is None and teacher_config is None:
        return None
    from mksgn.train.checkpoint import load_checkpoint
    from mksgn.train.config import Config, preset
    from mksgn.train.run import build_teacher

    if teacher is not None:
        record = load_checkpoint(teacher, kind="teacher")
        model = build_teacher(Config.from_dict(record["config"], str(teacher)), record["data"])
        model.load_state_dict(record["model"])
        frames = int(record["data"]["frames"])
    else:
        cfg = preset(teacher_config)
        data = {"layout": spec.layout, "class_names": list(spec.class_names), "modalities": list(cfg.data.modalities)}
        model = build_teacher(cfg, data)
        frames = cfg.data.frames
    return teacher_counts(model.eval(), frames, spec.joints)


def estimate(model: Path, data: str | None = None, limit: int = 32, backend: str = "emulator", tag: str | None = None,
             profiles: Sequence[str] = (), teacher: Path | None = None, teacher_config: str | None = None,
             onnx: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run, count, price; returns the JSON-ready result (``teacher``/``teacher_config``/``onnx``: the baseline)."""
    from mksgn.core.fixed_point import is_quantized
    from mksgn.core.nir_file import read_graph
    from mksgn.convert.quantize import read_quantized
    from mksgn.core import loihi
    from mksgn.core.emulator import Emulator
    from mksgn.convert.graph_inputs import InputSpec
    from mksgn.deploy.run_cli import _load, run
    from mksgn.hw_profiles.counts import snn_counts
    from mksgn.hw_profiles.estimator import ann_energy, snn_energy
    from mksgn.hw_profiles.profile import builtin_profiles, load_profile
    from mksgn.hw_profiles.resources import graph_resources, resource_map

    loaded = [load_profile(p) for p in (profiles or builtin_profiles())]  # bad profiles fail before the run
    if tag is None:
        tag = "fixed_pt" if is_quantized(read_graph(model).metadata or {}) else "floating_pt"
    graph, sg = read_quantized(model) if tag == "fixed_pt" else _load(model, backend, "floating_pt")
    record = run(model, data, backend, tag, "aligned", limit, 16, "cpu", progress=progress)
    counts = snn_counts(sg, record)
    emulator = Emulator(sg, tag)  # its latency, fan-outs and weights for the resource map
    counts.latency = emulator.latency
    ann = ann_baseline(InputSpec.of(graph, str(model)), teacher, teacher_config, onnx)
    rows_per_sample = counts.person_rows / max(counts.samples, 1)
    weight_bits = loihi.WEIGHT_BITS
    layers = graph_resources(sg, tag, emulator)
    result: dict[str, Any] = {
        "model": str(model), "tag": tag, "counts": counts.to_dict(), "rows_per_sample": rows_per_sample,
        "ann": ann.to_dict() if ann else None, "baseline_profile": BASELINE_PROFILE, "profiles": {},
        "accuracy": record["accuracy"],
    }
    baseline = None
    if ann is not None:
        base = next((p for p in loaded if p.name == BASELINE_PROFILE), None) or load_profile(BASELINE_PROFILE)
        baseline = ann_energy(ann, rows_per_sample, base)
    for p in loaded:
        snn = snn_energy(counts, p)
        ann_e = ann_energy(ann, rows_per_sample, p) if ann is not None else None
        entry = p.to_dict()
        entry.update({"snn": snn.to_dict() if snn else None, "ann": ann_e.to_dict() if ann_e else None,
                      "resources": resource_map(layers, p, weight_bits).to_dict() if p.kind != "ann" else None,
                      "reduction_vs_baseline": (1 - snn.total / baseline.total) if snn and baseline else None})
        result["profiles"][p.name] = entry
    return result


def write_report(result: dict[str, Any], out: Path) -> list[Path]:
    from mksgn.hw_profiles.report import plot_ops, plot_profiles, plot_snn_vs_ann, render_markdown

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "energy.json", out / "energy.md", out / "energy_ops.png", out / "energy_profiles.png"]
    atomic_write_text(paths[0], json.dumps(result, indent=1) + "\n")
    atomic_write_text(paths[1], render_markdown(result))
    plot_ops(result, paths[2])
    plot_profiles(result, paths[3])
    if result.get("ann"):
        paths.append(out / "energy_snn_vs_ann.png")
        plot_snn_vs_ann(result, paths[-1])
    return paths


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="NIR graph (MODEL.q.nir: fixed-point counts; MODEL.nir: float)")
    p.add_argument("--data", help="CTR-GCN .npz (default: the built-in dataset); its test split is run")
    p.add_argument("--limit", type=int, default=32, help="test samples to measure on (default %(default)s)")
    p.add_argument("--backend", choices=("emulator", "lava"), default="emulator")
    p.add_argument("--tag", choices=("fixed_pt", "floating_pt"),
                   help="default: fixed_pt for a quantised graph, floating_pt otherwise")
    p.add_argument("--profile", action="append", default=[],
                   help="built-in profile name or a .toml file; repeat (default: every built-in profile)")
    ann = p.add_mutually_exclusive_group()
    ann.add_argument("--teacher", type=Path, help="teacher checkpoint: the ANN baseline")
    ann.add_argument("--teacher-config", help="count an untrained teacher of this config (tiny, ntu) as the baseline")
    ann.add_argument("--onnx", type=Path, help="any GCN as ONNX (input rows x (B, ...)): the ANN baseline")
    p.add_argument("--out", type=Path, help="write energy.json, energy.md and the PNG plots here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _main(argv: Sequence[str] | None) -> int:
    from mksgn.hw_profiles.report import terminal_table

    p = build_parser()
    args = p.parse_args(argv)
    if args.limit < 1:
        p.error(f"--limit must be >= 1, got {args.limit}")
    result = estimate(args.model, args.data, args.limit, args.backend, args.tag, args.profile, args.teacher,
                      args.teacher_config, args.onnx, not args.quiet)
    c = result["counts"]
    print(f"operations measured on {c['measured_on']} ({c['backend']}), energy per sample:")
    print(terminal_table(result))
    if args.out is not None:
        for path in write_report(result, args.out):
            print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-energy``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
