"""``mksgn-snap``: a trained student -> the same student on Loihi's fixed-point grid.

    mksgn-snap CKPT -o SNAPPED.pt [--data X.npz] [--samples N] [--input-bits B] [--no-eval]

Rewrites the student in deployment form and rounds its weights, biases and inputs onto the
dyadic fixed-point grid (:mod:`mksgn.convert.snap`), calibrated on ``N`` training samples.
Export the snapped checkpoint with ``mksgn-export`` and quantise it with ``mksgn-quantize``:
its float model (snnTorch, the NIR executor, Lava ``floating_pt``) and its fixed-point model
(the emulator, Lava ``fixed_pt``) then compute the same spikes. The test-split top-1 of the
student before and after snapping, and how many predictions snapping changed, are printed
and written to ``SNAPPED.snap.json`` (skip with ``--no-eval``).
"""

from __future__ import annotations

import copy
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
from mksgn.errors import MksgnError

PROG = "mksgn-snap"
DEFAULT_SAMPLES = 64
"""Calibration samples (as ``mksgn-quantize``)."""


class SnapCLIError(MksgnError, ValueError):
    """Bad input to mksgn-snap."""


def predictions(model, dataset, frames: int, modalities, batch_size: int = 64, progress: bool = True,
                desc: str = "eval") -> np.ndarray:
    """Top-1 predictions of a student on every sample of ``dataset``."""
    from mksgn.data.pipeline import SkeletonInputs

    inputs = SkeletonInputs(dataset, frames, modalities)
    batches = inputs.batches(range(len(inputs)), batch_size)
    with torch.no_grad():
        out = [model(x).argmax(1).numpy() for x, _ in tqdm(batches, desc=desc, unit="batch", disable=not progress,
                                                           total=-(-len(inputs) // batch_size))]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def snap_checkpoint(ckpt: Path, out: Path, data: str | None = None, samples: int = DEFAULT_SAMPLES,
                    input_bits: int = 8, evaluate: bool = True, progress: bool = True) -> dict:
    """Snap ``ckpt`` into ``out`` (atomically); returns the record also written to ``OUT.snap.json``."""
    from mksgn.convert.snap import snap
    from mksgn.data.builtin import load_dataset
    from mksgn.data.pipeline import SkeletonInputs
    from mksgn.data.skeletons import get_layout
    from mksgn.train.blocks import present_persons
    from mksgn.train.checkpoint import load_checkpoint, save_checkpoint
    from mksgn.train.run import load_student

    start = time.perf_counter()
    record = load_checkpoint(ckpt, kind="student")
    if record.get("fixed_point") is not None:
        raise SnapCLIError(f"{ckpt}: already snapped onto the fixed-point grid")
    model, cfg, info = load_student(ckpt)
    layout = get_layout(info["layout"])
    splits = load_dataset(data)
    if splits.train.skeleton.num_joints != layout.num_joints or list(splits.train.class_names) != list(info["class_names"]):
        raise SnapCLIError(f"{splits.train.source}: not the data {ckpt} was trained on (joints or class names differ)")
    n = min(samples, len(splits.train))
    x, _ = SkeletonInputs(splits.train, info["frames"], info["modalities"]).batch(np.arange(n))
    rows, _ = present_persons(x)
    calibrated_on = f"{n} training samples of {splits.train.source}"
    snapped, report = snap(model, rows, info["frames"], list(info["class_names"]), info["layout"], input_bits,
                           calibrated_on)
    result = {"checkpoint": str(ckpt), "snapped": str(out), "calibrated_on": calibrated_on,
              "input_bits": input_bits, **report.to_dict()}
    if evaluate:
        labels = np.asarray(splits.test.labels)
        before = predictions(model, splits.test, info["frames"], info["modalities"], progress=progress,
                             desc="eval float")
        after = predictions(snapped.float(), splits.test, info["frames"], info["modalities"], progress=progress,
                            desc="eval snapped")
        result.update({"measured_on": f"test split of {splits.test.source} ({len(labels)} samples)",
                       "top1_float": float((before == labels).mean()), "top1_snapped": float((after == labels).mean()),
                       "predictions_changed": int((before != after).sum())})
    payload = {k: v for k, v in record.items() if k not in ("format", "format_version", "mksgn_version")}
    payload["model"] = copy.deepcopy(snapped).float().state_dict()
    payload["fixed_point"] = snapped.fixed_point
    payload["snapped_from"] = str(ckpt)
    save_checkpoint(out, payload)
    result["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_text(out.with_suffix(".snap.json"), json.dumps(result, indent=1) + "\n")
    return result


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="trained student checkpoint (student_best.pt)")
    p.add_argument("-o", "--out", type=Path, required=True, help="snapped checkpoint to write")
    p.add_argument("--data", help="CTR-GCN .npz it was trained on (default: the built-in dataset)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="calibration samples (default %(default)s)")
    p.add_argument("--input-bits", type=int, default=8, help="bits of the graded input payloads, 2..24 (default 8)")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split accuracy before and after")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _main(argv: Sequence[str] | None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.samples < 1:
        p.error("--samples must be >= 1")
    if not 2 <= args.input_bits <= 24:
        p.error(f"--input-bits must be 2..24, got {args.input_bits}")
    if args.out.resolve() == args.checkpoint.resolve():
        p.error("-o must differ from the checkpoint")
    rec = snap_checkpoint(args.checkpoint, args.out, args.data, args.samples, args.input_bits, not args.no_eval,
                          not args.quiet)
    print(f"snapped {rec['synapses']} synapses into {rec['populations']} populations onto the dyadic grid "
          f"(calibrated on {rec['calibrated_on']}): {rec['weights_changed']} weights rounded, "
          f"{rec['weights_zeroed']} to zero; state arithmetic exact for {min(rec['exact_steps'], 10**6)} steps "
          f"(T = {rec['time_steps']})")
    if rec["exact_steps"] < rec["time_steps"]:
        print(f"warning: Loihi's decay truncates the membrane from step {rec['exact_steps'] + 1} on: float and "
              f"fixed point can differ after it (beta 0.5 stays exact for 7 steps, 0.75 for 4, 0.875 for 3)")
    if "top1_float" in rec:
        print(f"top-1 {rec['top1_float']:.4f} float -> {rec['top1_snapped']:.4f} snapped, "
              f"{rec['predictions_changed']} predictions changed [{rec['measured_on']}]")
    print(f"wrote {args.out}, {args.out.with_suffix('.snap.json').name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-snap``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
