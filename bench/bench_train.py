"""Training throughput of the ``tiny`` configuration on the built-in data (samples per second).

Times a fixed number of optimisation steps of the teacher and of the distilled student
(soft labels + features + MI guidance, the teacher's forward pass included), after one
warm-up step, on the built-in dataset with the ``tiny`` batch size, in each activation
layout (:mod:`mksgn.train.layout`): the default one and channels-last, the same batches and
starting weights in one run, taking turns, and their ratio. The trainer uses
:func:`~mksgn.train.layout.training_format` of its device.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from mksgn.data.builtin import load_dataset
from mksgn.data.pipeline import SkeletonInputs
from mksgn.train.config import preset
from mksgn.train.distill import DistillationLoss
from mksgn.train.layout import activation_format, training_format
from mksgn.train.run import StudentObjective, TeacherObjective, build_student, build_teacher, data_description
from mksgn.train.trainer import make_optimizer

STEPS = 15
ROUNDS = 3
"""The layouts take turns, ``STEPS / ROUNDS`` steps each per round, so that a shared machine's drift
falls on both alike."""
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def _both_layouts(make, optim_cfg, batches: list) -> dict:
    """Each layout trains its own copy from the same starting weights on the same batches (after one
    warm-up step each); ``speedup``: contiguous seconds / channels-last seconds."""
    start = make()
    runs = {}
    for name, fmt in LAYOUTS.items():
        objective = copy.deepcopy(start).train()
        runs[name] = (objective, make_optimizer(objective, optim_cfg), fmt)
    seconds = dict.fromkeys(LAYOUTS, 0.0)
    per_round = STEPS // ROUNDS
    for r in range(ROUNDS):
        chunk = batches[1 + r * per_round: 1 + (r + 1) * per_round]
        for name, (objective, opt, fmt) in runs.items():
            with activation_format([objective], fmt):
                for i, (x, y) in enumerate(batches[:1] + chunk if r == 0 else chunk):
                    start_s = time.perf_counter()
                    loss, _, _ = objective(x, y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if r or i:  # the first step warms up
                        seconds[name] += time.perf_counter() - start_s
    batch = len(batches[0][1])
    out = {name: {"steps": per_round * ROUNDS, "batch": batch, "seconds": round(s, 3),
                  "samples_per_s": round(per_round * ROUNDS * batch / s, 1)} for name, s in seconds.items()}
    out["speedup"] = round(seconds["contiguous"] / seconds["channels_last"], 3)
    return out


def run() -> dict:
    cfg = preset("tiny")
    splits = load_dataset()
    data = data_description(splits, cfg)
    inputs = SkeletonInputs(splits.train, cfg.data.frames, cfg.data.modalities, cfg.data.p_interval)
    rng = np.random.default_rng(0)
    batch = cfg.data.batch_size
    batches = [inputs.batch(rng.choice(len(inputs), batch, replace=False), rng) for _ in range(STEPS + 1)]
    torch.manual_seed(0)
    teacher = build_teacher(cfg, data)
    result = {"config": "tiny", "data": splits.train.source, "threads": torch.get_num_threads(),
              "trainer_layout_cpu": str(training_format(torch.device("cpu")))}
    result["teacher"] = _both_layouts(lambda: TeacherObjective(teacher), cfg.train_teacher, batches)
    teacher.eval()
    distill = DistillationLoss(cfg.distill, (cfg.student.branch_channels, *cfg.student.channels),
                               cfg.teacher.channels, len(cfg.data.modalities), len(data["class_names"]))
    student = build_student(cfg, data)
    result["student"] = _both_layouts(lambda: StudentObjective(student, distill, teacher), cfg.train_student, batches)
    return result
