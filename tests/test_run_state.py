"""A run folder's own state: run.json and --resume, the lock, Ctrl-C checkpoints, data records.

Every training here is a real small one (tests/helpers.py SMALL_TRAINING) on a small npz.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import SMALL_TRAINING, default_sigint, synth_small_npz

import mksgn.train.trainer as trainer_module
from mksgn.data.builtin import BuiltinSpec
from mksgn.train.checkpoint import load_checkpoint
from mksgn.data.recorded import recorded_data
from mksgn.train.run_state import LOCK_FILE, RUN_FILE, RunLock
from mksgn.train.train_cli import main as train_main


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synth_small_npz(tmp_path_factory)


def _train(data: Path, out: Path, *extra: str) -> int:
    return train_main(["--data", str(data), "--out", str(out), "--device", "cpu", *SMALL_TRAINING, *extra])


def _resume(out: Path, *extra: str) -> int:
    return train_main(["--out", str(out), "--resume", "--quiet", "--device", "cpu", *extra])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_resume_restores_the_runs_own_settings(data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.chdir(data.parent)  # a relative --data is recorded as an absolute path
    assert _train(Path(data.name), out, "--kd", "none", "--epochs", "2", "--seed", "3", "--stop-after", "1") == 0
    record = json.loads((out / RUN_FILE).read_text())
    settings = record["settings"]
    assert settings["data"] == str(data) and settings["data_sha256"] == _sha(data)
    assert settings["kd"] == "none" and settings["epochs"] == 2 and settings["seed"] == 3
    assert settings["config"] == "tiny" and "student.channels=[8, 8]" in settings["overrides"]
    assert record["config"]["student"]["channels"] == [8, 8] and record["config"]["train_student"]["epochs"] == 2
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    # a new training into it is refused, with these settings or others
    assert _train(data, out, "--kd", "none", "--epochs", "2", "--seed", "3") == 2
    assert "already holds a run of these settings: continue it with --resume" in _one_line(capsys)
    assert _train(data, out, "--epochs", "2") == 2
    err = _one_line(capsys)
    assert "already holds a run of other settings (--kd, --seed)" in err and "another --out" in err
    # --resume with only --out: the run's data, config, kd, seed and epochs; it says so in one line
    assert _resume(out) == 0
    said = capsys.readouterr().out
    line = next(x for x in said.splitlines() if x.startswith("resuming"))
    assert f"data {data} (sha256 unchanged)" in line and "--kd none" in line and "--seed 3" in line
    assert line.endswith("; student 1/2 epochs")
    assert "student: resumed after epoch 1" in said
    assert not (out / "teacher_last.pt").exists()  # --kd none was restored: no teacher trained
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["student"]["epochs"]] == [1, 2]
    assert str(data) in metrics["student"]["epochs"][-1]["measured_on"]["train"]
    # every checkpoint remembers its data
    for name in ("student_last.pt", "student_best.pt"):
        ckpt = load_checkpoint(out / name)
        assert recorded_data(ckpt["data"]) == (str(data), _sha(data))
    assert not (out / LOCK_FILE).exists()


def test_resume_refuses_conflicts_changed_data_and_empty_folders(data, tmp_path, capsys, monkeypatch):
    copy = tmp_path / "copy.npz"
    copy.write_bytes(data.read_bytes())
    out = tmp_path / "run"
    assert _train(copy, out, "--kd", "none", "--epochs", "3", "--stop-after", "0") == 0  # settings, no epoch
    capsys.readouterr()
    assert _resume(out, "--kd", "soft") == 2
    err = _one_line(capsys)
    assert "--kd: the run has 'none', given 'soft'" in err and str(out) in err
    assert _resume(out, "--epochs", "4", "--set", "data.frames=20") == 2
    err = _one_line(capsys)
    assert "--epochs: the run has 3, given 4" in err and "--set: the run has" in err and "data.frames=20" in err
    assert _resume(out, "--data", str(tmp_path / "other.npz")) == 2
    assert "--data: the run has" in _one_line(capsys)
    # the same values are accepted (relative paths too)
    monkeypatch.chdir(tmp_path)
    assert _resume(out, "--kd", "none", "--epochs", "3", "--data", "copy.npz", "--config", "tiny",
                   "--stop-after", "0") == 0
    assert "resuming" in capsys.readouterr().out
    # the data file changed since the run started
    copy.write_bytes(copy.read_bytes() + b"\0")
    assert _resume(out, "--stop-after", "0") == 2
    err = _one_line(capsys)
    assert f"{copy}: the run's data file changed since the run started" in err
    copy.unlink()
    assert _resume(out) == 2
    assert "data file is gone" in _one_line(capsys)
    # nothing to resume
    assert _resume(tmp_path / "empty") == 2
    assert "nothing to resume" in _one_line(capsys)
    assert not (tmp_path / "empty").exists()
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "metrics.json").write_text("{}")
    assert _resume(legacy) == 2
    assert f"nothing to resume in {legacy}: it holds metrics.json but no run.json" in _one_line(capsys)


def _hold_lock_in_child(out: Path) -> subprocess.Popen:
    code = ("import sys; from mksgn.train.run_state import RunLock; lock = RunLock(sys.argv[1]); lock.acquire(); "
            "print('held', flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_lock_refuses_a_second_training_and_takes_over_stale_ones(data, tmp_path, capsys):
    out = tmp_path / "run"
    child = _hold_lock_in_child(out)
    try:
        assert _train(data, out, "--kd", "none", "--epochs", "1") == 2
        err = _one_line(capsys)
        assert f"{out}: a training is running there (pid {child.pid} on {socket.gethostname()}" in err
        assert not (out / RUN_FILE).exists()
    finally:
        child.kill()  # SIGKILL: no clean-up, the lock stays behind
        child.wait()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == child.pid
    assert _train(data, out, "--kd", "none", "--epochs", "1", "--stop-after", "0") == 0
    said = capsys.readouterr().out
    assert f"taking over a stale lock in {out} (pid {child.pid}: pid {child.pid} is not running)" in said
    assert not (out / LOCK_FILE).exists()  # released at the end
    # a lock from another host (or boot) is stale too
    (out / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere.invalid", "boot_id": "x"}))
    assert _resume(out, "--stop-after", "0") == 0
    assert "(pid " in capsys.readouterr().out and not (out / LOCK_FILE).exists()
    # the lock is released on an error too (here: unreadable data, found after the lock is taken)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an npz")
    assert _train(garbage, tmp_path / "other", "--kd", "none") == 2
    assert "garbage.npz" in _one_line(capsys) and not (tmp_path / "other" / LOCK_FILE).exists()
    with RunLock(out) as lock:  # a live holder (this process)
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        assert _resume(out, "--stop-after", "0") == 2
        assert f"a training is running there (pid {os.getpid()}" in _one_line(capsys)
        assert lock.path.is_file()
    assert not (out / LOCK_FILE).exists()


def _interrupt_at(monkeypatch, call: int, how: str) -> None:
    """Interrupt training at the ``call``-th learning-rate look-up (the start of a batch)."""
    calls = []
    real = trainer_module.learning_rate

    def patched(cfg, progress):
        calls.append(progress)
        if len(calls) == call:
            if how == "signal":
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: it takes effect after this batch
            else:
                raise KeyboardInterrupt
        return real(cfg, progress)

    monkeypatch.setattr(trainer_module, "learning_rate", patched)


def _metrics(out: Path, kind: str) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())[kind]["epochs"]


@pytest.fixture
def sigint_handled():
    """Python's Ctrl-C handler for the test (pytest may run as a background job, with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_mid_epoch_saves_and_resume_continues_there(data, tmp_path, capsys, monkeypatch, sigint_handled):
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert _train(data, reference, "--kd", "none", "--epochs", "2") == 0
    _interrupt_at(monkeypatch, 2, "signal")  # SIGINT during batch 2 of epoch 1
    assert _train(data, out, "--kd", "none", "--epochs", "2") == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.err
    assert "student: interrupted in epoch 1 after batch 2 of" in captured.out
    assert "student_interrupted.pt" in captured.out
    assert not (out / LOCK_FILE).exists() and not (out / "student_last.pt").exists()
    saved = load_checkpoint(out / "student_interrupted.pt", kind="student")
    assert saved["epoch"] == 0 and saved["position"]["batch"] == 2 and saved["position"]["epoch"] == 0
    assert set(saved["rng"]) >= {"torch"} and saved["optimizer"]["state"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored
    monkeypatch.undo()
    assert _resume(out) == 0
    said = capsys.readouterr().out
    assert "student 0/2 epochs + part of epoch 1" in said
    assert "student: resumed in epoch 1 at batch 2 of" in said
    assert not (out / "student_interrupted.pt").exists()
    # the interrupted and resumed run computes what the uninterrupted one did
    for ea, eb in zip(_metrics(reference, "student"), _metrics(out, "student"), strict=True):
        assert ea["train"]["loss"] == eb["train"]["loss"] and ea["train"]["loss_curve"] == eb["train"]["loss_curve"]
        assert ea["val"] == eb["val"]


@pytest.mark.slow  # about 20 s on 2 cores; make test interrupts the student (the test above)
def test_keyboard_interrupt_in_the_teacher_saves_the_last_batch_boundary(data, tmp_path, capsys, monkeypatch):
    reference, out = tmp_path / "reference", tmp_path / "run"
    extra = ("--kd", "soft", "--epochs", "1", "--set", "teacher.dropout=0.3")  # dropout: the RNG state matters
    assert _train(data, reference, *extra) == 0
    _interrupt_at(monkeypatch, 3, "raise")  # raised at the start of batch 3: 2 batches done
    assert _train(data, out, *extra) == 130
    assert "teacher: interrupted in epoch 1 after batch 2 of" in capsys.readouterr().out
    assert load_checkpoint(out / "teacher_interrupted.pt")["position"]["batch"] == 2
    assert not (out / LOCK_FILE).exists()
    monkeypatch.undo()
    assert _resume(out) == 0
    assert "teacher: resumed in epoch 1 at batch 2 of" in capsys.readouterr().out
    for kind in ("teacher", "student"):
        for ea, eb in zip(_metrics(reference, kind), _metrics(out, kind), strict=True):
            assert ea["train"]["loss"] == eb["train"]["loss"] and ea["val"] == eb["val"]


@pytest.mark.parametrize("signum, status, said", [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_a_signal_to_a_training_process_leaves_a_resumable_checkpoint(data, tmp_path, signum, status, said):
    out = tmp_path / "run"
    code = ("import sys, mksgn.train.trainer as t; from mksgn.train.train_cli import main\n"
            "real = t.learning_rate\n"
            "def lr(cfg, progress):\n"
            "    if progress > 0: print('training', flush=True); sys.stdin.readline()\n"
            "    return real(cfg, progress)\n"
            "t.learning_rate = lr\n"
            "sys.exit(main(sys.argv[1:]))\n")
    cmd = [sys.executable, "-c", code, "--data", str(data), "--out", str(out), "--device", "cpu", *SMALL_TRAINING,
           "--kd", "none", "--epochs", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=default_sigint)
    while "training" not in proc.stdout.readline():  # batch 2 is about to start
        pass
    proc.send_signal(signum)
    proc.stdin.write("\n")
    proc.stdin.flush()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == status, stderr
    assert stderr.strip() == f"mksgn-train: {said}" and "after batch 2 of" in stdout
    assert load_checkpoint(out / "student_interrupted.pt")["position"]["batch"] == 2
    assert not (out / LOCK_FILE).exists()


def test_recorded_data_reads_new_and_old_records(tmp_path):
    assert recorded_data({"path": "/d/x.npz", "sha256": "ab", "source": "x.npz"}) == ("/d/x.npz", "ab")
    assert recorded_data({"path": None, "sha256": None, "source": "/cache/whatever.npz"}) == (None, None)
    # checkpoints from before the path and sha256 fields
    builtin = str(tmp_path / BuiltinSpec().file_name())
    assert recorded_data({"source": builtin}) == (None, None)
    assert recorded_data({"source": "runs/data.npz"}) == ("runs/data.npz", None)
    assert recorded_data({}) == (None, None)


def test_library_train_run_records_and_checks_its_run(data, tmp_path):
    from mksgn.train.config import load_config
    from mksgn.train.run import train_run
    from mksgn.train.run_state import RunStateError

    overrides = [SMALL_TRAINING[i + 1] for i, a in enumerate(SMALL_TRAINING) if a == "--set"]
    cfg = load_config("tiny", [*overrides, 'distill.mode="none"', "train_student.epochs=1"])
    out = tmp_path / "lib"
    quiet = lambda _msg: None  # noqa: E731
    assert train_run(cfg, out, data_path=str(data), device="cpu", resume=True, progress=False, log=quiet,
                     stop_after=0) == {"stopped": True}
    assert json.loads((out / RUN_FILE).read_text())["settings"]["data"] == str(data)
    with pytest.raises(RunStateError, match="other settings .differs in seed"):
        train_run(cfg, out, data_path=str(data), seed=1, device="cpu", resume=True, progress=False, log=quiet)
    result = train_run(cfg, out, data_path=str(data), device="cpu", resume=True, progress=False, log=quiet)
    assert result["student"]["epoch"] == 1
    assert torch.load(out / "student_best.pt", weights_only=True)["data"]["sha256"] == _sha(data)
