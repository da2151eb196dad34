"""The exponential moving average of the weights: its arithmetic, and a real training run that
validates, checkpoints, resumes and deploys the average."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import SMALL_TRAINING, synth_small_npz
from torch import nn

from mksgn.train.averaging import WeightAverage, average_decay
from mksgn.train.checkpoint import load_checkpoint
from mksgn.train.config import ConfigError, load_config
from mksgn.train.run import load_student
from mksgn.train.train_cli import main as train_main

EMA = ["--set", "train_student.ema_decay=0.9", "--kd", "none"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synth_small_npz(tmp_path_factory)


def _train(data: Path, out: Path, *extra: str) -> int:
    return train_main(["--data", str(data), "--out", str(out), "--device", "cpu", *SMALL_TRAINING, *EMA, *extra])


def test_the_average_follows_its_equation_and_copies_counters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.99)
    expected = model[0].weight.detach().clone()
    for step in range(1, 6):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        model.train()(torch.randn(4, 3))  # moves the BN statistics and its counter
        average.update(model)
        d = average_decay(0.99, step)
        expected = d * expected + (1 - d) * model[0].weight.detach()
    assert average.steps == 5 and average_decay(0.99, 1) == pytest.approx(2 / 11)
    torch.testing.assert_close(average.model[0].weight, expected)
    assert int(average.model[1].num_batches_tracked) == int(model[1].num_batches_tracked) == 5
    assert not any(p.requires_grad for p in average.model.parameters())
    assert not torch.equal(average.model[0].weight, model[0].weight)  # the model itself is untouched by it


def test_decay_out_of_range_names_the_field():
    with pytest.raises(ConfigError, match="train_student.ema_decay"):
        load_config("tiny", ["train_student.ema_decay=1.0"])
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(nn.Linear(1, 1), 0.0)


def test_training_validates_checkpoints_and_deploys_the_average(data, tmp_path):
    out = tmp_path / "ema"
    assert _train(data, out, "--epochs", "2") == 0
    record = load_checkpoint(out / "student_last.pt", kind="student")
    assert record["average"]["steps"] > 0 and record["average"]["decay"] == 0.9
    changed = [k for k, v in record["model"].items() if v.is_floating_point()
               and not torch.equal(v, record["trained"][k])]
    assert changed  # the average is not the trained weights
    # what the test split reports is the checkpoint's "model": the average
    model, _, _ = load_student(out / "student_last.pt")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, record["model"][k])
    evaluation = json.loads((out / "eval_student.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())["student"]
    assert evaluation["val_top1"] == metrics["best"]["top1"]


def test_resume_restores_the_average(data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(data, a, "--epochs", "2") == 0
    assert _train(data, b, "--epochs", "2", "--stop-after", "1") == 0
    assert _train(data, b, "--epochs", "2", "--resume") == 0
    ra, rb = (load_checkpoint(x / "student_last.pt", kind="student") for x in (a, b))
    assert ra["average"] == rb["average"]
    for k in ra["model"]:
        assert torch.equal(ra["model"][k], rb["model"][k]), k
        assert torch.equal(ra["trained"][k], rb["trained"][k]), k
    ma, mb = (json.loads((x / "metrics.json").read_text())["student"]["epochs"] for x in (a, b))
    assert [e["val"] for e in ma] == [e["val"] for e in mb]
