"""``mksgn-parity``: spike parity of the snnTorch checkpoint, NIR, Lava float, emulator and Lava fixed.

    mksgn-parity CKPT MODEL.nir [MODEL.q.nir] [--data X.npz] [--limit N] [--out DIR] [--strict] [--no-lava]

Runs the first ``N`` test samples (default 32) through every backend (see
:mod:`mksgn.deploy.parity`) and writes ``DIR/parity.json``, ``parity.md`` and
``parity_heatmap.png``. Without ``MODEL.q.nir`` the fixed-point pairs are skipped; with
``--no-lava`` the Lava runs (about 6 s per person row and arithmetic for ``tiny``).
Exit status: 0 when every exact pair is exact (rounding ties allowed up to the stated
bound, none with ``--strict``), 1 otherwise, 2 for bad input.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mksgn.atomic import atomic_write_text
from mksgn.cli import ArgumentParser, run_cli
from mksgn.deploy.parity import (
    ParityResult, Recording, _per_sample, compare_recordings, plot_heatmap, record_snntorch, render_markdown,
)
from mksgn.errors import MksgnError

PROG = "mksgn-parity"
DEFAULT_LIMIT = 32


class ParityError(MksgnError, ValueError):
    """Inputs that do not belong together; names the files."""


def _lava_rows(sg, tag: str, inputs: dict[str, torch.Tensor], spiking: list[str], bar
               ) -> tuple[Recording, int, torch.Tensor]:
    from mksgn.deploy.lava_builder import run_lava

    rows = next(iter(inputs.values())).shape[1]
    per_row, outs, latency = [], [], 0
    out_name = next(iter(sg.outputs))
    for r in range(rows):
        res = run_lava(sg, tag, {k: v[:, r].numpy() for k, v in inputs.items()}, record=spiking)
        per_row.append({n: v.astype(bool) for n, v in res.spikes.items()})  # 1 byte a spike
        outs.append(torch.as_tensor(res.outputs[out_name][-1]))
        latency = res.latency
        bar.update(1)
    rec = Recording(spikes={n: torch.as_tensor(np.stack([p[n] for p in per_row], axis=1).astype(bool))
                            for n in spiking})
    return rec, latency, torch.stack(outs)


def run_parity(ckpt: Path, model: Path, quantized: Path | None, data: str | None, limit: int, lava: bool = True,
               strict: bool = False, progress: bool = True) -> ParityResult:
    """Run every backend on the same rows and compare."""
    from mksgn.core.nir_file import decode_metadata
    from mksgn.core.nir_file import read_graph
    from mksgn.convert.quantize import read_quantized
    from mksgn.core.fuse import fuse
    from mksgn.core.emulator import Emulator
    from mksgn.convert.graph_inputs import InputSpec, batches
    from mksgn.core.executor import NIRExecutor
    from mksgn.data.builtin import load_dataset
    from mksgn.train.run import load_student

    student, _, info = load_student(ckpt)
    graph = read_graph(model)
    meta = decode_metadata(graph.metadata or {})
    spec = InputSpec.of(graph, str(model))
    if list(spec.class_names) != list(info["class_names"]) or spec.frames != info["frames"]:
        raise ParityError(f"{model} was not exported from {ckpt} (class names or frames differ)")
    module_map: dict[str, str] = meta["module_map"]
    sg = fuse(graph)
    qsg = None
    if quantized is not None:
        qgraph, qsg = read_quantized(quantized)
        if set(qgraph.nodes) != set(graph.nodes):
            raise ParityError(f"{quantized} is not the quantised {model} (its nodes differ)")
    spiking = [n for n, p in sg.populations.items() if p.spiking]
    thresholds = {n: float(np.unique(sg.populations[n].threshold)[0]) for n in spiking}
    splits = load_dataset(data)
    n = min(limit, len(splits.test))
    batch = next(batches(spec, splits.test, np.arange(n), n))
    rows = batch.sample_index.numel()
    inputs, sample = batch.inputs, batch.sample_index
    recs: dict[str, Recording] = {}
    seconds: dict[str, float] = {}

    # Lava first: each Lava process is forked from this one, and forking is slower the more
    # this process holds (the other backends' recordings).
    latency = None
    if lava:
        runs = [("lava_floating_pt", sg, "floating_pt")] + ([("lava_fixed_pt", qsg, "fixed_pt")] if qsg else [])
        bar = tqdm(total=rows * len(runs), desc="lava", unit="row", disable=not progress)
        for name, graph_, tag in runs:
            start = time.perf_counter()
            rec, latency, outs = _lava_rows(graph_, tag, inputs, spiking, bar)
            rec.logits = _per_sample(outs, sample, n)
            recs[name] = rec
            seconds[name] = time.perf_counter() - start
        bar.close()

    start = time.perf_counter()
    person_rows = torch.stack([inputs[name][0] for name in spec.inputs], dim=1)  # (R, Mod, C, F, V)
    recs["snntorch"] = record_snntorch(student, person_rows, module_map, sample, n)
    seconds["snntorch"] = time.perf_counter() - start

    start = time.perf_counter()
    res = NIRExecutor(graph).run(inputs, record=spiking)
    recs["executor"] = Recording({k: res.records[k] for k in spiking}, {k: res.membranes[k] for k in spiking},
                                 _per_sample(res.outputs[next(iter(sg.outputs))][-1], sample, n))
    seconds["executor"] = time.perf_counter() - start

    if qsg is not None:
        start = time.perf_counter()
        emu = Emulator(qsg, "fixed_pt").run(inputs, record_spikes=True)
        recs["emulator_fixed_pt"] = Recording({k: v.double() for k, v in emu.spikes.items()},
                                              logits=_per_sample(emu.outputs[next(iter(qsg.outputs))][-1], sample, n))
        seconds["emulator_fixed_pt"] = time.perf_counter() - start
    pairs, fvf, accuracy = compare_recordings(recs, module_map, thresholds, batch.labels, spec.time_steps)
    if fvf is not None:
        from mksgn.deploy.error_budget import error_budget

        start = time.perf_counter()
        fvf["error_budget"] = error_budget(qsg, inputs, sample, n)
        seconds["error_budget"] = time.perf_counter() - start
        fvf["snapped"] = student.fixed_point is not None
    measured_on = f"{n} test samples of {splits.test.source}"
    return ParityResult(measured_on, n, rows, spec.time_steps, spiking, pairs, fvf, accuracy, latency,
                        {k: round(v, 2) for k, v in seconds.items()}, strict)


def write_report(result: ParityResult, out: Path) -> None:
    """``parity.json``, ``parity.md`` and ``parity_heatmap.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "parity.json", json.dumps(result.to_dict(), indent=1) + "\n")
    plot_heatmap(result, out / "parity_heatmap.png")
    atomic_write_text(out / "parity.md", render_markdown(result))


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="student checkpoint (student_best.pt)")
    p.add_argument("model", type=Path, help="its exported NIR graph")
    p.add_argument("quantized", type=Path, nargs="?", help="its quantised graph (mksgn-quantize)")
    p.add_argument("--data", help="CTR-GCN .npz (default: the built-in dataset); its test split is used")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="test samples (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("parity"), help="report folder (default %(default)s)")
    p.add_argument("--strict", action="store_true", help="fail on rounding ties too")
    p.add_argument("--no-lava", action="store_true", help="skip the Lava runs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _main(argv: Sequence[str] | None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.limit < 1:
        p.error(f"--limit must be >= 1, got {args.limit}")
    result = run_parity(args.checkpoint, args.model, args.quantized, args.data, args.limit, lava=not args.no_lava,
                        strict=args.strict, progress=not args.quiet)
    write_report(result, args.out)
    for name, pair in result.pairs.items():
        verdict = "ok" if result.exact_ok(name) else "FAIL"
        print(f"{name}: {pair['mismatches']} mismatching spikes ({pair['ties']} rounding ties, "
              f"{pair['propagated']} propagated, {pair['real']} real) of {pair['compared_spikes']} - {verdict}")
        if pair["first_failure"] is not None:
            f = pair["first_failure"]
            print(f"  first real mismatch: layer {f['node']} (module {f['module']}), step {f['step']}, row {f['row']}")
    if result.float_vs_fixed:
        print(f"float vs fixed: prediction agreement {result.float_vs_fixed['prediction_agreement']:.4f}, "
              f"spike agreement {result.float_vs_fixed['spike_agreement']:.4f}")
    print(f"{'PASS' if result.passed else 'FAIL'} on {result.measured_on}; report in {args.out}")
    return 0 if result.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-parity``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
