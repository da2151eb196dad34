"""``mksgn-run``: run an exported (or quantised) graph on skeleton data.

    mksgn-run MODEL.nir [--data X.npz] [--backend emulator|reference|lava] [--tag fixed_pt|floating_pt]
              [--timing aligned|lava] [--limit N] [--batch B] [--device auto|cpu|cuda] [--out RUN.json]

Backends: ``reference`` is the reference NIR executor (float64) on the float graph;
``emulator`` the batched Lava emulator (:mod:`mksgn.core.emulator`); ``lava`` Lava itself
(:mod:`mksgn.deploy.lava_builder`, one person row at a time, about 8 s each for ``tiny``);
``fixed_pt`` needs a quantised graph (``mksgn-quantize``). Prints and writes predictions, labels, accuracy,
spike counts per population and synaptic operations per synapse, each saying what it
was measured on. Under ``torchrun --nproc_per_node N`` every rank runs its share of the
samples and rank 0 gathers one result.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from mksgn.atomic import atomic_write_text
from mksgn.cli import ArgumentParser, run_cli
from mksgn.errors import MksgnError

PROG = "mksgn-run"
BACKENDS = ("emulator", "reference", "lava")


class RunError(MksgnError, ValueError):
    """A run that cannot start; names the file or option."""


def _load(path: Path, backend: str, tag: str):
    from mksgn.core.nir_file import read_graph
    from mksgn.convert.quantize import read_quantized
    from mksgn.core.fuse import fuse
    from mksgn.core.synapse_graph import FusionError

    if backend in ("emulator", "lava") and tag == "fixed_pt":
        return read_quantized(path)
    graph = read_graph(path)
    try:
        return graph, fuse(graph)
    except FusionError as exc:
        raise RunError(f"{path}: {exc}") from exc


def _reference_run(graph, sg, inputs: dict[str, torch.Tensor], device: torch.device):
    """The reference executor, with spikes and synaptic operations counted like the emulator."""
    from mksgn.core.emulator import EmulatorResult, fanout
    from mksgn.core.executor import NIRExecutor

    res = NIRExecutor(graph, dtype=torch.float64, device=device).run(
        {k: v.to(device) for k, v in inputs.items()},
        record=[p for p in sg.populations if not p.endswith(".readout")])
    counts = {name: int(res.records[name].sum()) for name, p in sg.populations.items() if p.spiking}
    synops = {}
    for syn in sg.synapses:
        fan = fanout(sg, syn).to(device)
        synops[syn.name] = int((res.records[syn.source].ne(0).to(torch.float64) * fan).sum())
    outputs = {o: res.outputs[o] for o in res.outputs}
    return EmulatorResult(outputs=outputs, spike_counts=counts, synops=synops)


def _lava_run(sg, tag: str, inputs: dict[str, torch.Tensor]):
    """Lava, one person row at a time, with spikes and synaptic operations counted like the emulator."""
    from mksgn.core.emulator import Emulator, EmulatorResult
    from mksgn.deploy.lava_builder import run_lava

    spiking = [n for n, p in sg.populations.items() if p.spiking]
    rows = next(iter(inputs.values())).shape[1]
    counter = Emulator(sg, tag)  # its fan-outs: quantised weights in fixed point, as the emulator counts
    fans = {s.name: counter.fanout(s.name).numpy() for s in sg.synapses}
    outputs: dict[str, list[torch.Tensor]] = {o: [] for o in sg.outputs}
    counts = dict.fromkeys(spiking, 0)
    synops = dict.fromkeys(fans, 0)
    for r in range(rows):
        row = {k: v[:, r].numpy() for k, v in inputs.items()}
        res = run_lava(sg, tag, row, record=spiking)
        for o in sg.outputs:
            outputs[o].append(torch.as_tensor(res.outputs[o][-1]))
        for n in spiking:
            counts[n] += int(res.spikes[n].sum())
        if tag == "fixed_pt":  # graded inputs count where their integer is non-zero, as in the emulator
            row = {k: sg.fixed.inputs[k].encode(v).numpy() for k, v in row.items()}
        for syn in sg.synapses:
            src = res.spikes[syn.source] if syn.source in res.spikes else row[syn.source]
            synops[syn.name] += int(((src != 0).sum(axis=0) * fans[syn.name]).sum())
    return EmulatorResult(outputs={o: torch.stack(v)[None] for o, v in outputs.items()}, spike_counts=counts,
                          synops=synops)


def run(model: Path, data: str | None, backend: str, tag: str, timing: str, limit: int | None, batch: int,
        device: str, progress: bool = True) -> dict:
    """Run and return the result record (on rank 0 under torchrun; other ranks get ``{}``)."""
    from mksgn.core.emulator import Emulator
    from mksgn.convert.graph_inputs import InputSpec, batches
    from mksgn.data.builtin import load_dataset
    from mksgn.train.blocks import sum_per_sample
    from mksgn.train.trainer import close_context, init_context

    graph, sg = _load(model, backend, tag)
    spec = InputSpec.of(graph, str(model))
    ctx = init_context(device)
    try:
        splits = load_dataset(data)
        test = splits.test
        n = len(test) if limit is None else min(limit, len(test))
        mine = np.arange(n)[ctx.rank::ctx.world_size]
        emulator = Emulator(sg, tag, timing, device=ctx.device) if backend == "emulator" else None
        preds, labels, indices = [], [], []
        rows = 0
        spikes: dict[str, int] = {}
        synops: dict[str, int] = {}
        start = time.perf_counter()
        bar = tqdm(total=len(mine), desc=f"{backend} {tag if backend != 'reference' else 'float64'}",
                   disable=not progress or not ctx.is_main, unit="sample")
        for b in batches(spec, test, mine, batch):
            if emulator is not None:
                res = emulator.run(b.inputs)
            elif backend == "lava":
                res = _lava_run(sg, tag, b.inputs)
            else:
                res = _reference_run(graph, sg, b.inputs, ctx.device)
            out = res.outputs[next(iter(sg.outputs))][-1].cpu()
            logits = sum_per_sample(out.reshape(out.shape[0], -1), b.sample_index, b.samples)
            preds.append(logits.argmax(dim=1).numpy())
            labels.append(b.labels)
            indices.append(b.indices)
            for k, v in res.spike_counts.items():
                spikes[k] = spikes.get(k, 0) + v
            for k, v in res.synops.items():
                synops[k] = synops.get(k, 0) + v
            rows += int(next(iter(b.inputs.values())).shape[1])
            bar.update(b.samples)
        bar.close()
        seconds = time.perf_counter() - start
        part = {"preds": np.concatenate(preds).tolist() if preds else [],
                "labels": np.concatenate(labels).tolist() if labels else [],
                "indices": np.concatenate(indices).tolist() if indices else [],
                "spikes": spikes, "synops": synops, "seconds": seconds, "rows": rows}
        parts = [part]
        if ctx.distributed:
            parts = [None] * ctx.world_size
            dist.all_gather_object(parts, part)
        if not ctx.is_main:
            return {}
    finally:
        close_context(ctx)
    order = np.argsort(np.concatenate([p["indices"] for p in parts]))
    pred = np.concatenate([p["preds"] for p in parts])[order]
    label = np.concatenate([p["labels"] for p in parts])[order]
    total_spikes = {k: sum(p["spikes"].get(k, 0) for p in parts) for k in parts[0]["spikes"]}
    total_synops = {k: sum(p["synops"].get(k, 0) for p in parts) for k in parts[0]["synops"]}
    per_layer = {}
    for syn in sg.synapses:
        per_layer[syn.target] = per_layer.get(syn.target, 0) + total_synops.get(syn.name, 0)
    measured_on = f"{n} test samples of {test.source}"
    return {
        "model": str(model), "backend": backend, "tag": tag if backend != "reference" else "float64",
        "timing": {"emulator": timing, "lava": "lava (results aligned)"}.get(backend, "aligned"), "processes": ctx.world_size,
        "measured_on": measured_on, "samples": int(n), "person_rows": sum(p["rows"] for p in parts),
        "time_steps": spec.time_steps,
        "accuracy": float((pred == label).mean()) if n else 0.0,
        "predictions": pred.tolist(), "labels": label.tolist(),
        "spikes_per_population": total_spikes, "synops_per_synapse": total_synops,
        "synops_per_population": per_layer,
        "spikes_per_sample": sum(total_spikes.values()) / max(n, 1),
        "synops_per_sample": sum(total_synops.values()) / max(n, 1),
        "seconds": max(p["seconds"] for p in parts),
    }


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="NIR graph (MODEL.nir, or MODEL.q.nir for fixed_pt)")
    p.add_argument("--data", help="CTR-GCN .npz (default: the built-in dataset); its test split is run")
    p.add_argument("--backend", choices=BACKENDS, default="emulator")
    p.add_argument("--tag", choices=("fixed_pt", "floating_pt"), default="fixed_pt")
    p.add_argument("--timing", choices=("aligned", "lava"), default="aligned",
                   help="emulator timing: as the reference executor, or Lava's synaptic latency (same results)")
    p.add_argument("--limit", type=int, help="run only the first N test samples")
    p.add_argument("--batch", type=int, default=64, help="samples per batch (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", type=Path, help="write the result JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _main(argv: Sequence[str] | None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error(f"--limit must be >= 1, got {args.limit}")
    if args.batch < 1:
        p.error(f"--batch must be >= 1, got {args.batch}")
    result = run(args.model, args.data, args.backend, args.tag, args.timing, args.limit, args.batch, args.device,
                 progress=not args.quiet)
    if not result:
        return 0
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    what = f"{result['backend']} {result['tag']}"
    print(f"{what}: accuracy {result['accuracy']:.4f} on {result['measured_on']}; "
          f"{result['spikes_per_sample']:.0f} spikes and {result['synops_per_sample']:.4g} synaptic ops per sample "
          f"({result['seconds']:.1f} s)")
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-run``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
