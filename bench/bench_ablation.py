"""Training ablation: which SNN training choices the defaults should take (slow: hours on 2 cores).

Every run is ``mksgn-train --config tiny`` with one variant's ``--set`` options, on one
dataset, with one seed; checkpoints are chosen on the validation split and the test split
is read once (:mod:`mksgn.train.run`). A run records the test top-1 of the chosen and of the
last epoch, the validation top-1, the teacher's test top-1, the linear baseline's, the
epochs trained and the wall time.

Datasets (``MKSGN_ABLATION_DATASETS``, comma-separated; default all):

- ``builtin``: the built-in data (difficulty 0.8, what every command uses);
- ``builtin-hard``: the same generator at difficulty 1.0 (some clips truly ambiguous);
- ``pose-kit``: real recorded 2-D poses (:mod:`bench.real_data`, OpenPose BODY_25, 20
  classes, 16-frame clips, split by recording segment).

Variants (``MKSGN_ABLATION_VARIANTS``; default all) are the :data:`VARIANTS` below; seeds
``MKSGN_ABLATION_SEEDS`` (default ``0,1,2``). A variant that changes the student only is
distilled from the teacher of the ``default`` run of the same dataset and seed (trained
first when missing), so that students are compared against one teacher.

Runs are kept in ``MKSGN_ABLATION_OUT`` (default ``~/.cache/mksgn/ablation``), one folder
each with its ``record.json``; a run already recorded there is not repeated, so the bench
resumes and can be run piecewise. A run whose resolved config differs from what ``tiny`` and
its variant resolve to now (the defaults changed) is moved to ``stale/`` and trained again,
and so are the student-only variants distilled from a stale ``default`` run's teacher. The
result aggregates every record found (``stale/`` aside): per dataset and variant, the mean,
standard deviation and count over seeds of each figure, and each run.
Run it with ``python -m bench --all ablation`` (not part of the default ``make bench``).

Where the runs compute: ``MKSGN_ABLATION_DEVICE`` (``cpu``, the default, or ``cuda``), and
``MKSGN_ABLATION_JOBS`` runs at a time (default 1), each in a process of its own with
``cores / jobs`` threads on the CPU, one on a GPU. With more than one job, the runs that train a
teacher go first and the student-only variants, which distil from those teachers, after them.
Each record names its device (and the torch version): float rounding differs between CPUs
and GPUs, so the same seed gives other figures on another machine (within a seed's spread).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

SLOW = True
SEEDS = (0, 1, 2)

_TIME_STEPS_3 = ["--set", "student.time_steps=3"]
_TEACHER_6_BLOCKS = ["--set", "teacher.channels=[16, 16, 32, 32, 64, 64]",
                     "--set", "teacher.strides=[1, 1, 2, 1, 2, 1]"]

VARIANTS: dict[str, tuple[list[str], bool]] = {
    "default": ([], True),
    "no-kd": (["--kd", "none"], False),
    "tet": (["--set", "distill.tet=true"], False),
    "adamw": (["--set", 'train_student.optimizer="adamw"', "--set", "train_student.lr=0.002",
               "--set", "train_student.weight_decay=0.01"], False),
    "lr-0.05": (["--set", "train_student.lr=0.05"], False),
    "epochs-10": (["--set", "train_student.epochs=10", "--set", "train_student.patience=4"], False),
    "ema": (["--set", "train_student.ema_decay=0.99"], False),
    "crop-0.5": (["--set", "data.p_interval=[0.5, 1.0]"], True),
    "kd-tau-2": (["--set", "distill.tau=2.0"], False),
    "kd-alpha-2": (["--set", "distill.alpha=2.0"], False),
    "time-steps-6": (["--set", "student.time_steps=6"], False),
    "surrogate-wide": (["--set", "student.surrogate_alpha=1.0"], False),
    "augment": (["--set", "data.rotate_deg=15", "--set", "data.scale=0.1", "--set", "data.shear=0.1"], True),
    "normalise": (["--set", 'data.normalise="sample"'], True),
    # cheaper recipes (make demo's training on a slow 2-core CPU): what each saves against what it costs
    "time-steps-3": (_TIME_STEPS_3, False),
    "epochs-12": (["--set", "train_student.epochs=12", "--set", "train_student.patience=6"], False),
    "teacher-6-blocks": (_TEACHER_6_BLOCKS, True),
    "teacher-epochs-4": (["--set", "train_teacher.epochs=4", "--set", "train_teacher.min_steps=260",
                          "--set", "train_teacher.patience=2"], True),
    "frames-16": (["--set", "data.frames=16"], True),
    "demo-budget": (["--set", "data.frames=16", "--set", "student.time_steps=3", "--set", "train_student.epochs=12",
                     "--set", "train_student.patience=6", "--set", "train_teacher.epochs=4",
                     "--set", "train_teacher.min_steps=260", "--set", "train_teacher.patience=2"], True),
    "lean": (_TEACHER_6_BLOCKS + _TIME_STEPS_3, True),
}
"""Variant -> (``mksgn-train`` options, whether it trains its own teacher). The last seven cut the
training's cost (student steps, time steps, teacher blocks, teacher epochs, frames, those that
fit ``make demo`` in 20 minutes on a slow 2-core CPU together, and ``lean``: the six-block
teacher and three time steps, all epochs and frames kept) for ``make demo`` on a slow CPU; each
record's ``seconds`` and epochs show what it saved."""


def _dataset(name: str) -> str:
    from mksgn.data.builtin import BuiltinSpec, builtin_path

    if name == "builtin":
        return str(builtin_path())
    if name == "builtin-hard":
        return str(builtin_path(BuiltinSpec(difficulty=1.0)))
    if name == "pose-kit":
        from bench.real_data import cache_name, fetch, pose_kit_splits
        from mksgn.data.builtin import cache_dir
        from mksgn.data.readers.ctrgcn_npz import write_ctrgcn_npz

        path = cache_dir() / cache_name()
        if not path.is_file():
            write_ctrgcn_npz(path, pose_kit_splits(fetch(cache_dir() / "pose-classification-kit")))
        return str(path)
    raise ValueError(f"unknown ablation dataset {name!r}")


def _quiet(_msg: str) -> None:
    pass


def run_one(root: Path, dataset: str, variant: str, seed: int, device: str = "cpu") -> dict[str, Any]:
    """Train one (dataset, variant, seed) into ``root`` on ``device`` unless recorded; return its record."""
    from mksgn.atomic import atomic_write_text
    from mksgn.train.run import train_command

    out = root / dataset / f"{variant}-seed{seed}"
    options = VARIANTS[variant][0]
    if (out / "run.json").is_file() and _stale(out, options):
        _set_aside(root, out)
        if variant == "default":  # the students distilled from its teacher go with it
            for other in VARIANTS:
                taught = root / dataset / f"{other}-seed{seed}"
                if _distilled_from_default(other) and taught.is_dir():
                    _set_aside(root, taught)
    if (out / "record.json").is_file():
        return json.loads((out / "record.json").read_text())
    teacher = None
    if _distilled_from_default(variant):
        teacher = str(root / dataset / f"default-seed{seed}" / "teacher_best.pt")
        run_one(root, dataset, "default", seed, device)  # trains it when missing or stale
    flags = _flags(options, dataset, seed, teacher)
    start = time.perf_counter()
    train_command(out, flags, resume=(out / "run.json").is_file(), device=device, progress=False, log=_quiet)
    record = _record(out, dataset, variant, seed, teacher, round(time.perf_counter() - start, 1))
    from bench.__main__ import machine

    record["device"], record["torch"] = device_description(device), machine()["torch"]
    atomic_write_text(out / "record.json", json.dumps(record, indent=1) + "\n")
    return record


def device_description(device: str) -> str:
    """What a run computed on: the GPU's name, or the CPU's model and torch's thread count."""
    import torch

    from bench.__main__ import machine

    if device == "cuda":
        return f"cuda: {torch.cuda.get_device_name()}"
    return f"cpu: {machine()['cpu'] or 'unknown CPU'}, {torch.get_num_threads()} thread(s)"


def _distilled_from_default(variant: str) -> bool:
    """Whether ``variant`` changes the student only and is distilled from the ``default`` run's teacher."""
    options, own_teacher = VARIANTS[variant]
    return not own_teacher and "--kd" not in options


def _stale(out: Path, options: list[str]) -> bool:
    """Whether the run in ``out`` was trained with another config than ``tiny`` and ``options``
    resolve to now (the defaults changed since): its figures no longer measure the variant. A field
    added since, at a default that keeps the old behaviour, changes nothing."""
    from mksgn.train.config import Config, ConfigError, load_config

    recorded = json.loads((out / "run.json").read_text()).get("config")
    try:
        then = Config.from_dict(recorded, str(out / "run.json")).to_dict()
    except (ConfigError, TypeError, AttributeError):  # a field since removed or renamed
        return True
    return then != load_config("tiny", _sets(options)).to_dict()


def _sets(options: list[str]) -> list[str]:
    """The ``--set`` values among a variant's options."""
    return [options[i + 1] for i, o in enumerate(options) if o == "--set"]


def _set_aside(root: Path, out: Path) -> None:
    """Move a stale run to ``root/stale/<dataset>/<run>-<n>`` (kept, not aggregated) and say so."""
    n = 0
    while (target := root / "stale" / out.parent.name / f"{out.name}-{n}").exists():
        n += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    out.rename(target)
    print(f"ablation: {out} was trained with other defaults than this version's; moved to {target}, training again")


def _flags(options: list[str], dataset: str, seed: int, teacher: str | None) -> dict[str, Any]:
    kd = options[options.index("--kd") + 1] if "--kd" in options else None
    return {"config": "tiny", "overrides": _sets(options), "data": _dataset(dataset), "teacher": teacher, "kd": kd,
            "seed": seed}


def _record(out: Path, dataset: str, variant: str, seed: int, teacher: str | None, seconds: float) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    student = json.loads((out / "eval_student.json").read_text())
    teacher_eval = (Path(teacher).parent if teacher else out) / "eval_teacher.json"
    teacher_top1 = json.loads(teacher_eval.read_text())["top1"] if teacher_eval.is_file() else None
    return {
        "dataset": dataset, "variant": variant, "seed": seed, "seconds": seconds,
        "student_top1": student["top1"], "student_last_top1": student["last_epoch"]["top1"],
        "student_val_top1": student["val_top1"], "chosen_epoch": student["epoch"],
        "epochs_trained": len(metrics["student"]["epochs"]), "teacher_top1": teacher_top1,
        "baseline_top1": metrics["baseline"]["top1"], "measured_on": student["measured_on"],
    }


def recorded(root: Path) -> list[dict[str, Any]]:
    """Every run record under ``root`` (``<dataset>/<run>/record.json``; ``stale/`` runs are deeper)."""
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/*/record.json"))]


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per dataset and variant: mean, standard deviation and count over seeds of each figure."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["variant"]), []).append(r)
    out: dict[str, Any] = {}
    for (dataset, variant), runs in sorted(groups.items()):
        row = {"seeds": sorted(r["seed"] for r in runs),
               "devices": sorted({r.get("device", "cpu (not recorded)") for r in runs})}
        for key in ("student_top1", "student_last_top1", "teacher_top1", "baseline_top1", "seconds"):
            values = [r[key] for r in runs if r[key] is not None]
            if values:
                row[key] = {"mean": statistics.mean(values),
                            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0}
        if "teacher_top1" in row:
            row["student_over_teacher"] = row["student_top1"]["mean"] / row["teacher_top1"]["mean"]
        out.setdefault(dataset, {})[variant] = row
    return out


def waves(runs: list[tuple[str, str, int]]) -> list[list[tuple[str, str, int]]]:
    """``runs`` in the order they may run at once: first those that train a teacher (every
    ``default`` run a student-only variant needs, added where missing, and the variants with a
    teacher of their own or none), then the student-only variants that distil from them."""
    first = [r for r in runs if not _distilled_from_default(r[1])]
    needed = [(d, "default", s) for d, v, s in runs if _distilled_from_default(v)]
    first += [r for r in dict.fromkeys(needed) if r not in first]
    return [first, [r for r in runs if _distilled_from_default(r[1])]]


def _run_worker(root: Path, run: tuple[str, str, int], device: str, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    return run_one(root, *run, device=device)


def run_parallel(root: Path, runs: list[tuple[str, str, int]], device: str, jobs: int) -> None:
    """``runs`` with ``jobs`` processes at a time (:func:`waves`); a failed run raises."""
    import multiprocessing

    for dataset in dict.fromkeys(d for d, _, _ in runs):  # each dataset written once, before the workers
        if any(not (root / d / f"{v}-seed{s}" / "record.json").is_file() for d, v, s in runs if d == dataset):
            _dataset(dataset)
    threads = 1 if device == "cuda" else max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # no state of this process (torch threads, CUDA) inherited
    for wave in waves(runs):
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            for future in [pool.submit(_run_worker, root, r, device, threads) for r in wave]:
                future.result()


def run(out: str | None = None) -> dict:
    root = Path(out or os.environ.get("MKSGN_ABLATION_OUT") or Path.home() / ".cache" / "mksgn" / "ablation")
    datasets = os.environ.get("MKSGN_ABLATION_DATASETS", "builtin,builtin-hard,pose-kit").split(",")
    variants = os.environ.get("MKSGN_ABLATION_VARIANTS", ",".join(VARIANTS)).split(",")
    seeds = [int(s) for s in os.environ.get("MKSGN_ABLATION_SEEDS", ",".join(map(str, SEEDS))).split(",")]
    device = os.environ.get("MKSGN_ABLATION_DEVICE", "cpu")
    jobs = int(os.environ.get("MKSGN_ABLATION_JOBS", "1"))
    if device not in ("cpu", "cuda") or jobs < 1:
        raise ValueError(f"MKSGN_ABLATION_DEVICE must be cpu or cuda and MKSGN_ABLATION_JOBS >= 1, "
                         f"got {device!r} and {jobs}")
    runs = [(dataset, variant, seed) for dataset in datasets for variant in variants for seed in seeds]
    if jobs == 1:
        for dataset, variant, seed in runs:
            run_one(root, dataset, variant, seed, device)
    else:
        run_parallel(root, runs, device, jobs)
    records = recorded(root)
    return {"runs_folder": str(root), "summary": summarise(records), "runs": records,
            "measured_on": "test split of each dataset; checkpoints chosen on the validation split"}
