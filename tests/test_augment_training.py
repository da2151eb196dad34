"""Training with augmentation and per-sample normalisation on: small real runs, end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import SMALL_TRAINING, synth_small_npz

from mksgn.data.builtin import load_dataset
from mksgn.data.pipeline import SkeletonInputs
from mksgn.data.splits import validation_split
from mksgn.train.config import load_config
from mksgn.train.run import StudentObjective, build_student, data_description, load_student
from mksgn.train.train_cli import main as train_main
from mksgn.train.trainer import RunContext, Trainer

AUGMENTED = ["data.rotate_deg=15", "data.tilt_deg=5", "data.scale=0.1", "data.shear=0.1", "data.joint_dropout=0.05",
             "data.normalise='sample'"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synth_small_npz(tmp_path_factory)


@pytest.fixture(scope="module")
def cli_run(data, tmp_path_factory):
    """One epoch of ``mksgn-train --kd none`` with the augmentation and normalisation set."""
    out = tmp_path_factory.mktemp("run") / "aug"
    sets = [arg for a in AUGMENTED for arg in ("--set", a)]
    code = train_main(["--data", str(data), "--out", str(out), "--device", "cpu", *SMALL_TRAINING, *sets,
                       "--kd", "none", "--epochs", "1"])
    return code, out


def test_mksgn_train_accepts_and_records_the_options(cli_run):
    code, out = cli_run
    assert code == 0
    _, cfg, _ = load_student(out / "student_best.pt")
    assert cfg.data.normalise == "sample" and cfg.data.augmentation().rotate_deg == 15.0


def test_mksgn_train_records_the_normalisation_for_deployment(cli_run):
    _, out = cli_run
    _, _, info = load_student(out / "student_best.pt")
    assert info["normalise"] == "sample"


def _overrides() -> list[str]:
    return [SMALL_TRAINING[i + 1] for i, a in enumerate(SMALL_TRAINING) if a == "--set"]


def test_an_epoch_trains_on_augmented_normalised_batches(data, tmp_path):
    from mksgn.train.distill import DistillationLoss

    cfg = load_config("tiny", [*_overrides(), *AUGMENTED, "distill.mode='none'", "train_student.epochs=1"])
    splits = load_dataset(data)
    held = validation_split(splits.train, cfg.data.val_fraction, 0)
    frames, mods = cfg.data.frames, cfg.data.modalities
    train = SkeletonInputs(splits.train.subset(held.train), frames, mods, cfg.data.p_interval,
                           augment=cfg.data.augmentation(), normalise=cfg.data.normalise)
    val = SkeletonInputs(splits.train.subset(held.val), frames, mods, None, normalise=cfg.data.normalise)
    plain = SkeletonInputs(splits.train.subset(held.train), frames, mods, cfg.data.p_interval,
                           normalise=cfg.data.normalise)
    index = np.arange(len(train))
    augmented = next(train.batches(index, 8, seed=0))[0]
    assert not torch.allclose(augmented, next(plain.batches(index, 8, seed=0))[0])  # training batches augmented
    assert torch.equal(next(train.batches(index, 8))[0], next(plain.batches(index, 8))[0])  # evaluation not

    info = {**data_description(splits, cfg), "normalise": cfg.data.normalise}
    torch.manual_seed(0)
    student = build_student(cfg, info)
    scale = torch.as_tensor(1.0 / train.channel_std())
    for i, name in enumerate(mods):
        student.input_scale[name].scale.copy_(scale[i])
    distill = DistillationLoss(cfg.distill, (cfg.student.branch_channels, *cfg.student.channels),
                               cfg.teacher.channels, len(mods), len(info["class_names"]))
    trainer = Trainer("student", StudentObjective(student, distill, None), cfg.train_student, RunContext(), tmp_path,
                      {"config": cfg.to_dict(), "data": info}, 0, cfg.data.batch_size, progress=False)
    record = trainer.fit(train, val, len(info["class_names"]), log=lambda *_: None)
    assert record["epoch"] == 1 and math.isfinite(record["train"]["loss"]) and record["train"]["samples"] == len(train)
    assert 0 <= record["val"]["top1"] <= 1
    _, cfg_back, info_back = load_student(tmp_path / "student_best.pt")
    assert info_back["normalise"] == "sample" and cfg_back.data.joint_dropout == 0.05
