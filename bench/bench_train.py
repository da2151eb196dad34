"""Training throughput of the ``tiny`` configuration on the built-in data (samples per second).

Times a fixed number of optimisation steps of the teacher and of the distilled student
(soft labels + features + MI guidance, the teacher's forward pass included), after one
warm-up step, on the built-in dataset with the ``tiny`` batch size.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from mksgn.data.builtin import load_dataset
from mksgn.data.pipeline import SkeletonInputs
from mksgn.train.config import preset
from mksgn.train.distill import DistillationLoss
from mksgn.train.run import StudentObjective, TeacherObjective, build_student, build_teacher, data_description
from mksgn.train.trainer import make_optimizer

STEPS = 15


def _throughput(objective, optim_cfg, inputs: SkeletonInputs, batch: int) -> dict:
    opt = make_optimizer(objective, optim_cfg)
    objective.train()
    rng = np.random.default_rng(0)
    batches = [inputs.batch(rng.choice(len(inputs), batch, replace=False), rng) for _ in range(STEPS + 1)]
    seconds = 0.0
    for i, (x, y) in enumerate(batches):
        start = time.perf_counter()
        loss, _, _ = objective(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step warms up
            seconds += time.perf_counter() - start
    return {"steps": STEPS, "batch": batch, "seconds": round(seconds, 3), "samples_per_s": round(STEPS * batch / seconds, 1)}


def run() -> dict:
    cfg = preset("tiny")
    splits = load_dataset()
    data = data_description(splits, cfg)
    inputs = SkeletonInputs(splits.train, cfg.data.frames, cfg.data.modalities, cfg.data.p_interval)
    torch.manual_seed(0)
    teacher = build_teacher(cfg, data)
    result = {"config": "tiny", "data": splits.train.source, "threads": torch.get_num_threads()}
    result["teacher"] = _throughput(TeacherObjective(teacher), cfg.train_teacher, inputs, cfg.data.batch_size)
    teacher.eval()
    distill = DistillationLoss(cfg.distill, (cfg.student.branch_channels, *cfg.student.channels),
                               cfg.teacher.channels, len(cfg.data.modalities), len(data["class_names"]))
    student = StudentObjective(build_student(cfg, data), distill, teacher)
    result["student"] = _throughput(student, cfg.train_student, inputs, cfg.data.batch_size)
    return result
