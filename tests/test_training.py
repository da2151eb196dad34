"""Real training runs on a small built-in dataset: files, metrics, resume, determinism, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import SMALL_TRAINING, synth_small_npz

from mksgn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mksgn.train.run import load_student
from mksgn.train.train_cli import main as train_main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = SMALL_TRAINING


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synth_small_npz(tmp_path_factory)


def _train(data: Path, out: Path, *extra: str) -> int:
    return train_main(["--data", str(data), "--out", str(out), "--device", "cpu", *SMALL, *extra])


def test_train_writes_metrics_checkpoints_and_evaluation(data, tmp_path):
    out = tmp_path / "run"
    assert _train(data, out, "--epochs", "2") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"teacher", "student", "baseline"}
    for kind in ("teacher", "student"):
        epochs = metrics[kind]["epochs"]
        assert [e["epoch"] for e in epochs] == [1, 2]
        for e in epochs:
            assert 0 <= e["val"]["top1"] <= e["val"]["top5"] <= 1 and "test" not in e
            assert e["train"]["loss"] > 0 and e["train"]["samples"] > 0
            assert str(data) in e["measured_on"]["val"] and "performers" in e["measured_on"]["val"]
        for name in ("last", "best"):
            assert (out / f"{kind}_{name}.pt").is_file()
        evaluation = json.loads((out / f"eval_{kind}.json").read_text())
        assert "test split" in evaluation["measured_on"] and len(evaluation["confusion"]) == 14
        assert evaluation["epoch"] == metrics[kind]["best"]["epoch"] and evaluation["last_epoch"]["epoch"] == 2
        assert metrics[kind]["test"]["best"]["top1"] == evaluation["top1"]
        assert "validation" in evaluation["chosen_on"]
        assert (out / f"confusion_{kind}.png").read_bytes()[:8] == PNG_MAGIC
    rates = metrics["student"]["epochs"][-1]["val"]["spike_rate"]
    assert 0 <= metrics["baseline"]["top1"] <= 1 and "test split" in metrics["baseline"]["measured_on"]
    assert "blocks.1.lif_t" in rates and all(0 <= r <= 1 for r in rates.values())
    assert {"ce", "kd_soft", "kd_feature", "mi_probe"} <= set(metrics["student"]["epochs"][0]["train"])
    assert (out / "training_curves.png").read_bytes()[:8] == PNG_MAGIC
    # the checkpoint holds tensors and plain data only
    record = torch.load(out / "student_best.pt", weights_only=True)
    assert record["config"]["student"]["channels"] == [8, 8] and record["kind"] == "student"
    model, cfg, info = load_student(out / "student_best.pt")
    assert cfg.student.channels == (8, 8) and info["layout"] == "ntu25"


def test_resume_continues_and_is_deterministic(data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(data, a, "--epochs", "2", "--kd", "none") == 0
    # an interrupted run: it stops after 1 of 2 epochs, then resumes at epoch 2
    assert _train(data, b, "--epochs", "2", "--kd", "none", "--stop-after", "1") == 0
    assert not (b / "teacher_last.pt").exists()  # --kd none needs no teacher
    assert len(json.loads((b / "metrics.json").read_text())["student"]["epochs"]) == 1
    assert not (b / "eval_student.json").exists()
    assert _train(data, b, "--epochs", "2", "--kd", "none", "--resume") == 0
    ma = json.loads((a / "metrics.json").read_text())["student"]["epochs"]
    mb = json.loads((b / "metrics.json").read_text())["student"]["epochs"]
    assert [e["epoch"] for e in mb] == [1, 2]
    # same seed, same numbers: the resumed run equals the uninterrupted one
    for ea, eb in zip(ma, mb, strict=True):
        assert ea["train"]["loss"] == eb["train"]["loss"]
        assert ea["val"] == eb["val"]


@pytest.mark.parametrize("kd", ["feature"])  # "soft": test_given_teacher_is_used_and_checked
def test_ablations_use_their_losses(data, tmp_path, kd):
    out = tmp_path / kd
    assert _train(data, out, "--epochs", "1", "--kd", kd) == 0
    parts = set(json.loads((out / "metrics.json").read_text())["student"]["epochs"][0]["train"])
    assert ("kd_soft" in parts) == (kd == "soft") and ("kd_feature" in parts) == (kd == "feature")


def test_given_teacher_is_used_and_checked(data, tmp_path, capsys):
    first = tmp_path / "first"
    assert _train(data, first, "--epochs", "1", "--kd", "soft") == 0
    parts = set(json.loads((first / "metrics.json").read_text())["student"]["epochs"][0]["train"])
    assert "kd_soft" in parts and "kd_feature" not in parts  # the soft-label ablation uses its loss
    second = tmp_path / "second"
    assert _train(data, second, "--epochs", "1", "--kd", "soft", "--teacher", str(first / "teacher_best.pt")) == 0
    assert not (second / "teacher_last.pt").exists()
    capsys.readouterr()
    # a student checkpoint is not a teacher
    assert _train(data, tmp_path / "third", "--epochs", "1", "--teacher", str(first / "student_best.pt")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a student checkpoint, expected a teacher" in err


def test_checkpoints_refuse_other_configs_versions_and_code(tmp_path, capsys):
    path = tmp_path / "x.pt"
    save_checkpoint(path, {"kind": "student", "config": {"name": "a", "student": {"channels": [8]}}})
    assert load_checkpoint(path, kind="student")["config"]["name"] == "a"
    with pytest.raises(CheckpointError, match="written with another configuration"):
        load_checkpoint(path, config={"name": "a", "student": {"channels": [16]}})
    with pytest.raises(CheckpointError, match="expected a teacher"):
        load_checkpoint(path, kind="teacher")
    record = torch.load(path, weights_only=True)
    record["mksgn_version"] = "0.0.9"
    torch.save(record, path)
    with pytest.raises(CheckpointError, match="written by mksgn 0.0.9"):
        load_checkpoint(path)
    torch.save({"weights": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="not an mksgn checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a loadable mksgn checkpoint"):
        load_checkpoint(path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": "mksgn-checkpoint", "evil": Evil()}, path)
    with pytest.raises(CheckpointError, match="not a loadable mksgn checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_bad_config_exits_2_with_one_line(data, tmp_path, capsys):
    assert train_main(["--data", str(data), "--out", str(tmp_path), "--set", "student.kernel=4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mksgn-train: error:") and "student.kernel" in err and len(err.splitlines()) == 1


@pytest.mark.slow  # two training processes, about 20 s on 2 cores
def test_torchrun_two_processes(data, tmp_path):
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port),
           "-m", "mksgn.train.train_cli", "--data", str(data), "--out", str(out), "--device", "cpu",
           "--kd", "none", "--epochs", "1", *SMALL, "--set", "data.batch_size=8", "--set", "train_student.lr=0.05"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads((out / "metrics.json").read_text())["student"]["epochs"][-1]
    assert last["world_size"] == 2 and last["ranks_identical"] is True
    curve = last["train"]["loss_curve"]
    assert curve[-1] < curve[0], curve
    held = load_checkpoint(out / "student_last.pt")["data"]["validation"]
    assert last["train"]["samples"] >= held["train_samples"]  # the two ranks together cover the training part


def test_training_curves_plot_every_loss_term_and_say_what_the_total_is(tmp_path):
    from mksgn.train.plots import plot_training_curves, training_curves_figure

    def epoch(i: int, **train: float) -> dict:
        return {"epoch": i, "train": {**train, "top1": 0.5, "samples": 10, "seconds": 1.0, "samples_per_s": 10.0,
                                      "loss_curve": [1.0], "lr_end": 0.01}, "val": {"top1": 0.4, "loss": 1.5}}

    student = {"ce": 2.0, "kd_soft": 3.0, "kd_feature": 1.0, "mi_probe": 10.0, "mi_guidance": 0.5}
    metrics = {"teacher": {"epochs": [epoch(i, loss=2.0 / i, ce_joint=2.0 / i, ce_bone=2.0 / i) for i in (1, 2)]},
               "student": {"epochs": [epoch(i, loss=16.05, **student) for i in (1, 2)]}}
    fig = training_curves_figure(metrics, "a title", {"kd_soft": 1.0, "kd_feature": 1.0, "mi_guidance": 0.1})
    teacher_ax, student_ax, acc_ax = fig.axes
    assert teacher_ax.get_title().endswith("loss = mean of the streams' CE")
    assert student_ax.get_title().endswith("loss = ce + kd_feature + kd_soft + 0.1 x mi_guidance + mi_probe")
    legend = [t.get_text() for t in student_ax.get_legend().get_texts()]
    assert legend[0] == "student's own loss (without the probes' CE)" and legend[-1] == "validation cross-entropy"
    assert "mi_probe: MI probes' own CE (trains the probes only)" in legend
    assert "mi_guidance: MI fusion guidance (x 0.1 in the loss)" in legend
    assert len(student_ax.get_lines()) == 2 + len(student) and acc_ax.get_ylabel() == "validation top-1"
    assert student_ax.get_yscale() == "log" and student_ax.get_lines()[0].get_ydata()[0] == 16.05 - 10.0
    plot_training_curves(metrics, tmp_path / "curves.png", "a title")
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_MAGIC


def test_the_test_split_cannot_influence_the_chosen_checkpoint(data, tmp_path):
    """Shuffled test labels: the same epochs chosen, the same weights; only the test figures move."""
    import numpy as np

    from mksgn.data.dataset import DatasetSplits
    from mksgn.data.readers.ctrgcn_npz import read_ctrgcn_npz, write_ctrgcn_npz

    splits = read_ctrgcn_npz(data)
    test = splits.test.subset(np.arange(len(splits.test)))
    test.labels = np.random.default_rng(0).permutation(test.labels)
    shuffled = tmp_path / "shuffled.npz"
    write_ctrgcn_npz(shuffled, DatasetSplits(splits.train, test, splits.benchmark))
    a, b = tmp_path / "a", tmp_path / "b"
    for source, out in ((data, a), (shuffled, b)):
        assert _train(source, out, "--epochs", "3", "--kd", "soft") == 0
    ma, mb = (json.loads((x / "metrics.json").read_text()) for x in (a, b))
    for kind in ("teacher", "student"):
        assert ma[kind]["best"] == mb[kind]["best"]
        assert [e["val"] for e in ma[kind]["epochs"]] == [e["val"] for e in mb[kind]["epochs"]]
        wa, wb = (load_checkpoint(x / f"{kind}_best.pt")["model"] for x in (a, b))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert ma["baseline"]["l2"] == mb["baseline"]["l2"] and ma["baseline"]["val_top1"] == mb["baseline"]["val_top1"]


def test_patience_stops_after_epochs_without_a_better_validation_top1(tmp_path):
    from torch import nn

    from mksgn.train.config import OptimConfig
    from mksgn.train.trainer import RunContext, Trainer

    class Objective(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = nn.Linear(2, 2)

    trainer = Trainer("student", Objective(), OptimConfig(epochs=10, patience=3), RunContext(), tmp_path,
                      {"config": {}}, 0, 4)
    assert trainer.improves({"top1": 0.0, "loss": 9.0})  # anything beats nothing yet
    trainer.best = {"top1": 0.5, "loss": 1.0, "epoch": 2}
    assert trainer.improves({"top1": 0.6, "loss": 2.0}) and trainer.improves({"top1": 0.5, "loss": 0.9})
    assert not trainer.improves({"top1": 0.5, "loss": 1.0}) and not trainer.improves({"top1": 0.4, "loss": 0.1})
    assert [trainer.patience_ran_out(e) for e in (3, 4, 5, 10)] == [False, False, True, False]  # 10: the end anyway
    trainer.stopped_early = 5
    assert trainer.finished
    never = Trainer("student", Objective(), OptimConfig(epochs=10, patience=0), RunContext(), tmp_path,
                    {"config": {}}, 0, 4)
    never.best = {"top1": 0.5, "loss": 1.0, "epoch": 1}
    assert not never.patience_ran_out(9)


def test_the_optimizer_is_chosen_by_the_config():
    from torch import nn

    from mksgn.train.config import ConfigError, OptimConfig, load_config
    from mksgn.train.trainer import make_optimizer

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    adamw = make_optimizer(model, OptimConfig(optimizer="adamw", lr=0.002, weight_decay=0.01))
    assert isinstance(adamw, torch.optim.AdamW) and [g["weight_decay"] for g in adamw.param_groups] == [0.01, 0.0]
    assert isinstance(make_optimizer(model, OptimConfig()), torch.optim.SGD)
    with pytest.raises(ConfigError, match="train_student.optimizer"):
        load_config("tiny", ['train_student.optimizer="adam"'])


def test_the_schedule_gives_a_small_dataset_as_many_steps():
    from mksgn.train.config import OptimConfig, preset

    cfg = OptimConfig(epochs=10, min_steps=640, schedule="step", milestones=(6, 8))
    assert cfg.for_data(66) is cfg  # the built-in data: 10 epochs already give 660 steps
    small = cfg.for_data(24)  # a dataset of 24 batches per epoch
    assert small.epochs == 27 and small.epochs * 24 >= 640 and small.milestones == (16, 22)
    assert small.patience == 40  # 15 epochs of 10, scaled as the epochs
    assert OptimConfig(epochs=10).for_data(1).epochs == 10  # min_steps 0: the epochs as given
    tiny = preset("tiny")
    assert tiny.train_student.for_data(66).epochs == 15 and tiny.train_teacher.for_data(66).epochs == 6


def test_epochs_flag_means_exactly_that_many_epochs():
    from mksgn.train.config import load_config
    from mksgn.train.run_state import RunSettings

    cfg = load_config("tiny", RunSettings(epochs=3).config_overrides())
    assert cfg.train_student.for_data(2).epochs == 3 and cfg.train_teacher.for_data(2).epochs == 3
