"""Ctrl-C and SIGTERM during a real Lava run: quick exit, one line, status 130/143, nothing left.

Each case starts ``mksgn-run --backend lava`` or ``mksgn-parity`` in a session of its own,
waits until Lava has forked its processes, then signals as a terminal's Ctrl-C does (SIGINT
to the whole process group) or as ``kill`` does (SIGTERM to the main process only). Then: the
command is gone within 10 s with status 130 or 143 and exactly one line on stderr, no process
of its session is left, and no ``/dev/shm`` segment it mapped (nor any new segment that no
process maps) is left.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nir
import pytest
from helpers import default_sigint, save_tiny_student

from mksgn.convert.nir_export import export_student
from mksgn.convert.quantize_service import quantize_file
from mksgn.cli import run_cli
from mksgn.data.builtin import load_dataset
from mksgn.deploy.lava_guard import guarded_run
from mksgn.train.config import preset

SHM = Path("/dev/shm")
LAVA_STARTED = 5
"""Processes besides the command's own in its session: Lava has forked its runtime."""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and /dev/shm")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("interrupt")
    model = save_tiny_student(tmp / "student.pt", seed=3)
    graph = export_student(model, preset("tiny").data.frames, 25, list(load_dataset(None).train.class_names), "ntu25",
                           data={"path": None, "sha256": None})  # it records the built-in dataset: no warning
    nir.write(str(tmp / "student.nir"), graph)
    quantize_file(tmp / "student.nir", tmp / "student.q.nir", samples=8)
    return tmp


def _session(sid: int) -> list[int]:
    """Live processes of session ``sid`` (zombies included: not yet reaped is not gone)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) == sid:
            pids.append(int(entry))
    return pids


def _mapped_segments(pids: list[int] | None = None) -> set[str]:
    """``/dev/shm`` names mapped by ``pids`` (default: by every process this user can read)."""
    names: set[str] = set()
    for pid in pids if pids is not None else [int(e) for e in os.listdir("/proc") if e.isdigit()]:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        names.update(line.split("/dev/shm/", 1)[1].split(" (deleted)")[0]
                     for line in maps.splitlines() if "/dev/shm/" in line)
    return names


def _command(files: Path, command: str) -> tuple[str, list[str]]:
    if command == "run":
        return "mksgn-run", ["-m", "mksgn.deploy.run_cli", str(files / "student.q.nir"), "--backend", "lava",
                             "--limit", "1", "--quiet"]
    return "mksgn-parity", ["-m", "mksgn.deploy.parity_cli", str(files / "student.pt"), str(files / "student.nir"),
                            str(files / "student.q.nir"), "--limit", "1", "--quiet", "--out",
                            str(files / f"parity-{os.getpid()}")]


def _wait_for_lava(proc: subprocess.Popen) -> list[int]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        others = [p for p in _session(proc.pid) if p != proc.pid]
        if len(others) >= LAVA_STARTED:
            return others
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"Lava never started: {proc.communicate()[1].decode()[-2000:]}")


def _gone(sid: int, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while _session(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _session(sid)


@pytest.mark.lava
@pytest.mark.parametrize(("command", "signum", "status", "word"), [
    pytest.param("run", signal.SIGINT, 130, "interrupted", id="SIGINT-run"),
    # each about 20 s on 2 cores: the other three pairs under make bench
    pytest.param("parity", signal.SIGTERM, 143, "terminated", id="SIGTERM-parity", marks=pytest.mark.slow),
    pytest.param("parity", signal.SIGINT, 130, "interrupted", id="SIGINT-parity", marks=pytest.mark.slow),
    pytest.param("run", signal.SIGTERM, 143, "terminated", id="SIGTERM-run", marks=pytest.mark.slow),
])
def test_a_signal_stops_a_lava_run_cleanly(files, command, signum, status, word):
    prog, args = _command(files, command)
    before = set(os.listdir(SHM))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, *args], start_new_session=True, env=env, preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        children = _wait_for_lava(proc)
        ours = _mapped_segments([proc.pid, *children])
        assert ours, "Lava's channels are /dev/shm segments"
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)  # a terminal's Ctrl-C: the whole group
        else:
            os.kill(proc.pid, signum)  # kill: the main process only
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{prog} still running 10 s after {signum.name}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == status
    assert err.decode() == f"{prog}: {word}\n"
    assert _gone(proc.pid, 5.0) == [], "Lava processes left behind"
    left = set(os.listdir(SHM))
    assert ours & left == set(), f"{len(ours & left)} of the run's segments left in /dev/shm"
    assert (left - before) - _mapped_segments() == set(), "new /dev/shm segments that no process maps"


def test_run_cli_turns_sigterm_into_one_line_and_143_and_restores_the_handler(capsys):
    previous = signal.getsignal(signal.SIGTERM)

    def body(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # interrupted by the handler's exception
        return 0

    assert run_cli("mksgn-x", body, []) == 143
    assert capsys.readouterr().err == "mksgn-x: terminated\n"
    assert signal.getsignal(signal.SIGTERM) is previous


@contextlib.contextmanager
def _lif_run():
    """A real (small) Lava run inside :func:`guarded_run`; the block runs while Lava is up."""
    from mksgn.deploy.lava_compat import lava_import

    lif = lava_import("lava.proc.lif.process").LIF(shape=(3,), bias_mant=1.0, vth=10.0)
    run_cfg = lava_import("lava.magma.core.run_configs").Loihi2SimCfg(select_tag="floating_pt")
    steps = lava_import("lava.magma.core.run_conditions").RunSteps(num_steps=2)
    with guarded_run(lif) as guard:
        lif.run(condition=steps, run_cfg=run_cfg)
        guard.check()
        yield lif


@pytest.mark.lava
def test_guarded_run_stops_lava_as_before_and_on_an_interrupt_ends_its_processes_and_segments():
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with _lif_run() as lif:
        assert len(multiprocessing.active_children()) >= 2
        assert signal.getsignal(signal.SIGINT) is not handlers[0]  # wrapped while Lava runs
    assert not lif.runtime._is_started and multiprocessing.active_children() == []
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers

    with pytest.raises(KeyboardInterrupt):
        with _lif_run() as lif:
            children = multiprocessing.active_children()
            segments = _mapped_segments([os.getpid()])
            assert children and segments
            raise KeyboardInterrupt
    assert multiprocessing.active_children() == [] and all(c.exitcode is not None for c in children)
    assert segments & set(os.listdir(SHM)) == set()
    assert not lif.runtime._is_started
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


@pytest.mark.lava
def test_a_lava_process_that_raises_comes_back_named_and_leaves_nothing_running():
    """Lava says only "1 Exception(s) occurred"; guarded_run names the child's exception and where."""
    from mksgn.deploy.lava_compat import lava_import
    from mksgn.deploy.lava_guard import LavaChildError

    lif_models = lava_import("lava.proc.lif.models")
    LIF = lava_import("lava.proc.lif.process").LIF

    class RaisingLif(lif_models.PyLifModelFloat):
        def run_spk(self) -> None:
            raise ZeroDivisionError("division by zero in a test model")

    lif = LIF(shape=(3,), bias_mant=1.0, vth=10.0)
    run_cfg = lava_import("lava.magma.core.run_configs").Loihi2SimCfg(
        select_tag="floating_pt", exception_proc_model_map={LIF: RaisingLif})
    steps = lava_import("lava.magma.core.run_conditions").RunSteps(num_steps=2)
    with pytest.raises(LavaChildError, match=r"ZeroDivisionError: division by zero in a test model \(File .*test_interrupt"
                       ) as caught:
        with guarded_run(lif) as guard:
            lif.run(condition=steps, run_cfg=run_cfg)
            guard.check()
    assert "\n" not in str(caught.value) and "run_spk" in caught.value.tracebacks[0]
    assert multiprocessing.active_children() == [] and not lif.runtime._is_started
