"""Distillation ablation on the built-in data (slow: about 45 minutes on 2 CPU cores).

Trains the ``tiny`` teacher once (seed 0), then the student with distillation (``--kd
both``, that teacher) and without (``--kd none``) for seeds 0, 1, 2, and reports each
run's test top-1 (at the epoch chosen on the validation split, and at the last epoch) with the mean and standard deviation per variant, the ratio of
student to teacher, and each run's wall time. ``MKSGN_KD_TEACHER=CKPT`` reuses a trained
``tiny`` teacher of the built-in data instead of training one.
Run it with ``python -m bench --all kd`` (it is not part of the default ``make bench``).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from mksgn.data.builtin import builtin_path
from mksgn.train.checkpoint import load_checkpoint
from mksgn.train.config import preset
from mksgn.train.run import train_run

SLOW = True
SEEDS = (0, 1, 2)


def _quiet(_msg: str) -> None:
    pass


def run(out: str | None = None) -> dict:
    cfg = preset("tiny")
    data = str(builtin_path())
    root = Path(out or os.environ.get("MKSGN_KD_OUT") or tempfile.mkdtemp(prefix="mksgn-kd-"))
    start = time.perf_counter()
    teacher_ckpt = os.environ.get("MKSGN_KD_TEACHER")  # reuse a trained tiny teacher of the same data
    if teacher_ckpt:
        load_checkpoint(teacher_ckpt, kind="teacher")  # a readable teacher checkpoint
        evaluation = Path(teacher_ckpt).parent / "eval_teacher.json"  # written beside it by mksgn-train
        teacher_top1 = json.loads(evaluation.read_text())["top1"]
    else:
        teacher = train_run(cfg, root / "teacher", data_path=data, seed=0, device="cpu", progress=False, log=_quiet)
        teacher_top1 = teacher["teacher"]["top1"]
        teacher_ckpt = str(root / "teacher" / "teacher_best.pt")
    result: dict = {
        "data": data,
        "config": "tiny",
        "teacher_checkpoint": teacher_ckpt,
        "teacher_top1": teacher_top1,
        "teacher_training_s": round(time.perf_counter() - start, 1),  # ~0 when reused
        "runs": {},
    }
    for kd in ("both", "none"):
        tops = []
        for seed in SEEDS:
            variant = cfg.__class__.from_dict({**cfg.to_dict(), "distill": {**cfg.to_dict()["distill"], "mode": kd}})
            t0 = time.perf_counter()
            res = train_run(variant, root / f"{kd}-seed{seed}", data_path=data, seed=seed, device="cpu",
                            teacher_ckpt=teacher_ckpt if kd != "none" else None, progress=False, log=_quiet)
            tops.append(res["student"]["top1"])
            result["runs"][f"{kd}-seed{seed}"] = {"top1": res["student"]["top1"], "top5": res["student"]["top5"],
                                                  "epoch": res["student"]["epoch"],
                                                  "last_epoch": res["student"]["last_epoch"],
                                                  "baseline_top1": res["baseline"]["top1"],
                                                  "seconds": round(time.perf_counter() - t0, 1)}
        result[f"student_{kd}"] = {"mean": statistics.mean(tops), "stdev": statistics.stdev(tops),
                                   "min": min(tops), "max": max(tops)}
    result["student_over_teacher"] = result["student_both"]["mean"] / result["teacher_top1"]
    result["distilled_minus_plain"] = result["student_both"]["mean"] - result["student_none"]["mean"]
    result["measured_on"] = f"test split of {data}; checkpoints chosen on the validation split"
    return result
