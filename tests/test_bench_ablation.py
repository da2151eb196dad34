"""The training ablation never aggregates a run trained under other defaults than today's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_ablation
from mksgn.train.config import load_config


def _fake_run(folder: Path, config: dict, top1: float) -> None:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"config": config}))
    record = {"dataset": folder.parent.name, "variant": folder.name.rsplit("-seed", 1)[0], "seed": 0,
              "seconds": 1.0, "student_top1": top1, "student_last_top1": top1, "student_val_top1": top1,
              "chosen_epoch": 1, "epochs_trained": 1, "teacher_top1": None, "baseline_top1": 0.5,
              "measured_on": "test split"}
    (folder / "record.json").write_text(json.dumps(record))


def test_a_run_under_the_current_defaults_is_reused_and_a_stale_one_is_set_aside(tmp_path, capsys):
    current = load_config("tiny").to_dict()
    old = load_config("tiny", ["data.p_interval=[0.5, 0.9]"]).to_dict()
    _fake_run(tmp_path / "builtin" / "no-kd-seed0", current, 0.7)
    assert bench_ablation.run_one(tmp_path, "builtin", "no-kd", 0)["student_top1"] == 0.7  # reused, not trained

    lr = load_config("tiny", ["train_student.lr=0.05"]).to_dict()
    _fake_run(tmp_path / "builtin" / "lr-0.05-seed0", lr, 0.6)
    assert not bench_ablation._stale(tmp_path / "builtin" / "lr-0.05-seed0", bench_ablation.VARIANTS["lr-0.05"][0])
    # a run recorded before a field was added (here the weight average) at the default that keeps the
    # old behaviour is not stale; a field that no longer exists is
    older = json.loads(json.dumps(current))
    del older["train_student"]["ema_decay"]
    _fake_run(tmp_path / "builtin" / "default-seed0", older, 0.8)
    assert not bench_ablation._stale(tmp_path / "builtin" / "default-seed0", [])
    older["train_student"]["retired_knob"] = 1
    (tmp_path / "builtin" / "default-seed0" / "run.json").write_text(json.dumps({"config": older}))
    assert bench_ablation._stale(tmp_path / "builtin" / "default-seed0", [])
    assert bench_ablation._stale(tmp_path / "builtin" / "no-kd-seed0", bench_ablation.VARIANTS["lr-0.05"][0])

    _fake_run(tmp_path / "pose-kit" / "default-seed0", old, 0.9)
    folder = tmp_path / "pose-kit" / "default-seed0"
    assert bench_ablation._stale(folder, [])
    bench_ablation._set_aside(tmp_path, folder)
    assert not folder.exists()
    kept = tmp_path / "stale" / "pose-kit" / "default-seed0-0"
    assert json.loads((kept / "record.json").read_text())["student_top1"] == 0.9
    assert "other defaults" in capsys.readouterr().out
    assert {r["dataset"] for r in bench_ablation.recorded(tmp_path)} == {"builtin"}  # nothing from stale/


def test_only_student_variants_share_the_default_runs_teacher():
    """They are set aside with a stale ``default`` run; variants with their own teacher or none are not."""
    assert bench_ablation._distilled_from_default("lr-0.05")
    assert not bench_ablation._distilled_from_default("no-kd")  # no teacher at all
    assert not bench_ablation._distilled_from_default("crop-0.5")  # trains its own


def test_teachers_are_trained_before_the_students_that_distil_from_them():
    runs = [("builtin", "lr-0.05", 0), ("builtin", "no-kd", 0), ("builtin", "crop-0.5", 1), ("builtin", "ema", 0)]
    first, second = bench_ablation.waves(runs)
    assert first == [("builtin", "no-kd", 0), ("builtin", "crop-0.5", 1), ("builtin", "default", 0)]
    assert second == [("builtin", "lr-0.05", 0), ("builtin", "ema", 0)]
    assert bench_ablation.waves([("builtin", "default", 2), ("builtin", "time-steps-6", 2)]) == [
        [("builtin", "default", 2)], [("builtin", "time-steps-6", 2)]]


def test_parallel_jobs_aggregate_every_run_and_name_the_device(tmp_path, monkeypatch):
    """Two worker processes (spawned) find the recorded runs; the summary lists where they ran."""
    current = load_config("tiny").to_dict()
    _fake_run(tmp_path / "builtin" / "default-seed0", current, 0.8)
    _fake_run(tmp_path / "builtin" / "no-kd-seed0", current, 0.7)
    record = tmp_path / "builtin" / "default-seed0" / "record.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "device": "cuda: a GPU"}))
    for key, value in {"DATASETS": "builtin", "VARIANTS": "default,no-kd", "SEEDS": "0", "JOBS": "2"}.items():
        monkeypatch.setenv(f"MKSGN_ABLATION_{key}", value)
    summary = bench_ablation.run(str(tmp_path))["summary"]["builtin"]
    assert summary["default"]["student_top1"]["mean"] == 0.8 and summary["default"]["devices"] == ["cuda: a GPU"]
    assert summary["no-kd"]["devices"] == ["cpu (not recorded)"]
    monkeypatch.setenv("MKSGN_ABLATION_DEVICE", "tpu")
    with pytest.raises(ValueError, match="MKSGN_ABLATION_DEVICE"):
        bench_ablation.run(str(tmp_path))
    assert bench_ablation.device_description("cpu").startswith("cpu: ") and "thread" in bench_ablation.device_description("cpu")
