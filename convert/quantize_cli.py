"""``mksgn-quantize``: a float NIR graph -> the same graph with Loihi fixed-point parameters.

    mksgn-quantize MODEL.nir -o MODEL.q.nir [--data X.npz] [--samples N] [--steps T] [--seed S]

Calibration data: for graphs written by ``mksgn-export``, ``N`` samples of the training
split of ``--data`` (default: the built-in dataset); for any other NIR graph, ``N`` random
inputs (standard normal, ``T`` steps), said so in the report. Writes ``MODEL.q.nir``
(atomically) and beside it ``MODEL.q.quantization.json`` and ``.md``: per population the
scale, threshold, decays, and per synapse the weight exponent, the range used, the clipped
and zeroed weights, and the saturated states on the calibration data.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mksgn.atomic import atomic_write_text
from mksgn.cli import ArgumentParser, run_cli
from mksgn.core.nir_file import read_graph
from mksgn.convert.quantize import INPUT_BITS, LayerReport, QuantizeError, quantize, write_quantized
from mksgn.core.fuse import fuse
from mksgn.core.synapse_graph import FusionError, SynapseGraph

PROG = "mksgn-quantize"
DEFAULT_SAMPLES = 64


def calibration_inputs(graph, sg: SynapseGraph, data: str | None, samples: int, steps: int,
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
        return inputs, f"{samples} random standard-normal inputs x {steps} steps (no mksgn input metadata)"
    from mksgn.data.builtin import load_dataset

    splits = load_dataset(data)
    n = min(samples, len(splits.train))
    batch = next(batches(spec, splits.train, np.arange(n), n))
    return batch.inputs, f"{n} training samples of {splits.train.source}"


def write_report(path: Path, reports: list[LayerReport], measured_on: str, model: str,
                 input_bits: int = INPUT_BITS) -> None:
    """JSON and Markdown reports beside the quantised graph."""
    record = {"model": model, "calibrated_on": measured_on, "input_bits": input_bits,
              "layers": [r.to_dict() for r in reports]}
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=1, default=float) + "\n")
    lines = [f"# Quantisation of {model}", "", f"Calibrated on {measured_on}.", "",
             "| population | scale | vth | du | dv | synapse | kind | weight_exp | range used | clipped | zeroed "
             "| saturated states |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        for i, (syn, w) in enumerate(r.weights.items()):
            head = (f"{r.population} | {r.scale:.4g} | {r.vth if r.vth is not None else '-'} | {r.du} | {r.dv}"
                    if i == 0 else " | | | |")
            lines.append(f"| {head} | {syn} | {w['kind']} | {w['weight_exp']} | {w['range_used']:.0%} | "
                         f"{w['clipped']} | {w['zeroed']} | {r.saturated if i == 0 else ''} |")
    atomic_write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")


def quantize_file(model: Path, out: Path, data: str | None = None, samples: int = DEFAULT_SAMPLES, steps: int = 4,
                  seed: int = 0, input_bits: int = INPUT_BITS) -> dict:
    """Quantise ``model`` into ``out`` with its reports; returns a summary record."""
    start = time.perf_counter()
    graph = read_graph(model)
    try:
        sg = fuse(graph)
    except FusionError as exc:
        raise QuantizeError(f"{model}: {exc}") from exc
    calib, measured_on = calibration_inputs(graph, sg, data, samples, steps, seed)
    sg, reports = quantize(sg, calib, input_bits)
    input_bits = max(v.bits for v in sg.fixed.inputs.values())  # a snapped grid's own
    write_quantized(graph, sg, reports, out)
    report_path = out.with_name(out.name.removesuffix(".nir") + ".quantization.json")
    write_report(report_path, reports, measured_on, str(model), input_bits)
    kinds: dict[str, int] = {}
    for syn in sg.synapses:
        kinds[syn.kind] = kinds.get(syn.kind, 0) + 1
    return {"graph": str(out), "report": str(report_path), "calibrated_on": measured_on,
            "populations": len(reports), "synapses": len(sg.synapses), "synapse_kinds": kinds,
            "clipped_weights": sum(w["clipped"] for r in reports for w in r.weights.values()),
            "saturated_states": sum(r.saturated for r in reports), "input_bits": input_bits,
            "seconds": round(time.perf_counter() - start, 2)}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="float NIR graph (MODEL.nir)")
    p.add_argument("-o", "--out", type=Path, required=True, help="quantised graph to write (MODEL.q.nir)")
    p.add_argument("--data", help="CTR-GCN .npz to calibrate on (default: the built-in dataset)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="calibration samples (default %(default)s)")
    p.add_argument("--steps", type=int, default=4, help="time steps of random calibration inputs (foreign graphs)")
    p.add_argument("--seed", type=int, default=0, help="seed of random calibration inputs")
    p.add_argument("--input-bits", type=int, default=INPUT_BITS,
                   help="bits of the graded input payloads, 2..24 (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no table on the terminal")
    return p


def _main(argv: Sequence[str] | None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.samples < 1 or args.steps < 1:
        p.error("--samples and --steps must be >= 1")
    if args.out.resolve() == args.model.resolve():
        p.error("-o must differ from the input graph")
    if not 2 <= args.input_bits <= 24:
        p.error(f"--input-bits must be 2..24, got {args.input_bits}")
    rec = quantize_file(args.model, args.out, args.data, args.samples, args.steps, args.seed, args.input_bits)
    if not args.quiet:
        print(f"{rec['populations']} populations, {rec['synapses']} synapses quantised (8-bit weights, "
              f"{rec['input_bits']}-bit graded inputs); calibrated on {rec['calibrated_on']}")
        print(f"clipped weights: {rec['clipped_weights']}; saturated states on the calibration data: "
              f"{rec['saturated_states']}")
    report = Path(rec["report"])
    print(f"wrote {args.out}, {report.name}, {report.with_suffix('.md').name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-quantize``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
