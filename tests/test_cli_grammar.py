"""One grammar for every command, and the mistakes people make answered in one line before any work.

Covers issue 17's list: ``--help`` fast and free of torch, ``--version``, ``-o/--out`` a file
or a folder checked before work, ``--device`` with fixed choices, usage errors with the
usage line, inputs that are directories or unreadable or of the wrong kind, outputs that
honour the umask and never share a temporary name, options that would be ignored refused,
and commands that default to the data their model records.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nir
import pytest

from helpers import assert_usage_error, save_tiny_student, tiny_graph

COMMANDS = {
    "mksgn-run": "mksgn.deploy.run_cli", "mksgn-parity": "mksgn.deploy.parity_cli",
    "mksgn-energy": "mksgn.hw_profiles.energy_cli", "mksgn-export": "mksgn.convert.export_cli",
    "mksgn-quantize": "mksgn.convert.quantize_cli", "mksgn-snap": "mksgn.convert.snap_cli",
    "mksgn-train": "mksgn.train.train_cli", "mksgn-data": "mksgn.data.data_cli", "mksgn-demo": "mksgn.demo",
}
"""Every console script and its module (pyproject.toml's [project.scripts])."""
FILE_OUT = ("mksgn-run", "mksgn-export", "mksgn-quantize", "mksgn-snap")
FOLDER_OUT = ("mksgn-parity", "mksgn-energy", "mksgn-train", "mksgn-demo")
DEVICE = ("mksgn-run", "mksgn-energy", "mksgn-train")
HEAVY = ("torch", "nir", "h5py", "lava")
HELP_RATIO = 12.0
"""``--help`` may take this many times ``python -c pass`` (about 0.5 s where that takes 40 ms)."""


def _cli(prog: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name(prog)), *args], capture_output=True, text=True,
                          **kwargs)


def _best_of(argv: list[str], n: int = 3) -> float:
    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        best = min(best, time.perf_counter() - start)
    return best


def test_every_command_has_version_and_a_help_that_loads_nothing_heavy():
    """--help only builds the parser: no torch, nir, h5py or Lava is imported (checked, not timed)."""
    for prog, module in COMMANDS.items():
        code = (f"import contextlib, io, sys\nfrom {module} import main\n"
                "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['--help']) == 0\n"
                f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert proc.stdout.strip() == "[]", (prog, proc.stdout)
        version = _cli(prog, "--version")
        assert version.returncode == 0 and version.stdout.strip().startswith(f"{prog} (mksgn) "), (prog, version)


def test_help_time_is_a_small_multiple_of_starting_python():
    """The ratio to ``python -c pass`` measured in one run, not a wall time."""
    base = _best_of([sys.executable, "-c", "pass"])
    ratios = {prog: _best_of([str(Path(sys.executable).with_name(prog)), "--help"]) / base for prog in COMMANDS}
    assert max(ratios.values()) < HELP_RATIO, ratios


def test_usage_errors_print_the_usage_line_and_one_error():
    for prog in DEVICE:
        args = ["x.nir"] if prog != "mksgn-train" else []
        proc = _cli(prog, *args, "--device", "gpu")
        assert proc.returncode == 2
        assert_usage_error(proc.stderr, prog, "--device", "gpu")
    proc = _cli("mksgn-run", "x.nir", "--backend", "reference", "--tag", "fixed_pt")
    assert proc.returncode == 2
    assert_usage_error(proc.stderr, "mksgn-run", "--tag", "float64")
    proc = _cli("mksgn-run", "x.nir", "--backend", "lava", "--device", "cuda")
    assert_usage_error(proc.stderr, "mksgn-run", "Lava runs on the CPU")


def _one_line(proc: subprocess.CompletedProcess, prog: str, *needles: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and err.startswith(f"{prog}: error:"), proc
    for needle in needles:
        assert needle in err, err


def test_outputs_of_the_wrong_kind_are_refused_before_any_work(tmp_path):
    a_file = tmp_path / "a.txt"
    a_file.write_text("x")
    _one_line(_cli("mksgn-run", "missing.nir", "-o", str(tmp_path)), "mksgn-run", "a directory, expected a file")
    _one_line(_cli("mksgn-quantize", "missing.nir", "-o", str(tmp_path)), "mksgn-quantize", "a directory")
    _one_line(_cli("mksgn-snap", "missing.pt", "-o", str(tmp_path)), "mksgn-snap", "a directory")
    _one_line(_cli("mksgn-export", "missing.pt", "-o", str(tmp_path)), "mksgn-export", "a directory")
    _one_line(_cli("mksgn-energy", "missing.nir", "-o", str(a_file)), "mksgn-energy", "a file, expected a folder")
    _one_line(_cli("mksgn-parity", "a.pt", "b.nir", "--out", str(a_file)), "mksgn-parity", "expected a folder")
    _one_line(_cli("mksgn-train", "-o", str(a_file / "run")), "mksgn-train", "is a file, not a folder")
    _one_line(_cli("mksgn-data", "synth", "-o", str(tmp_path)), "mksgn-data", "a directory")
    # each came from the parser: the missing inputs were never reached


def _as_unprivileged() -> dict | None:
    """subprocess arguments that run a command without root's bypass of permissions, or None if impossible."""
    if os.geteuid() != 0:
        return {}
    as_user = {"user": 65534, "group": 65534, "extra_groups": []}  # nobody
    try:
        subprocess.run([sys.executable, "-c", "pass"], check=True, capture_output=True, **as_user)
    except (OSError, subprocess.CalledProcessError):
        return None
    return as_user


def test_output_in_a_read_only_folder_is_refused_before_work(tmp_path):
    as_user = _as_unprivileged()
    if as_user is None:  # root: a folder on a read-only mount refuses even root
        if os.access("/proc/sys", os.W_OK):
            pytest.skip("running as root with no read-only folder at hand")
        _one_line(_cli("mksgn-run", "missing.nir", "-o", "/proc/sys/r.json"), "mksgn-run",
                  "permission denied, cannot write in /proc/sys")
        _one_line(_cli("mksgn-energy", "missing.nir", "-o", "/proc/sys/energy"), "mksgn-energy", "permission denied")
        return
    base = Path(tempfile.mkdtemp(prefix="mksgn-perm-"))
    try:
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        env = {**os.environ, "HOME": str(base), "MPLCONFIGDIR": str(base)}
        _one_line(_cli("mksgn-run", "missing.nir", "-o", str(locked / "r.json"), env=env, **as_user), "mksgn-run",
                  "permission denied, cannot write in", "locked")
        _one_line(_cli("mksgn-energy", "missing.nir", "-o", str(locked / "e"), env=env, **as_user), "mksgn-energy",
                  "permission denied")
    finally:
        shutil.rmtree(base)


def test_unreadable_input_says_permission_denied(tmp_path):
    as_user = _as_unprivileged()
    if as_user is None:
        pytest.skip("running as root (which reads mode-000 files) and user nobody cannot start this Python")
    base = Path(tempfile.mkdtemp(prefix="mksgn-perm-"))
    try:
        base.chmod(0o755)
        secret = base / "secret.nir"
        secret.write_bytes(b"x")
        secret.chmod(0o000)
        env = {**os.environ, "HOME": str(base), "MPLCONFIGDIR": str(base)}
        _one_line(_cli("mksgn-run", str(secret), env=env, **as_user), "mksgn-run", "permission denied",
                  "secret.nir")
    finally:
        shutil.rmtree(base)


def test_inputs_that_are_folders_or_of_the_wrong_kind(tmp_path):
    from mksgn.core.nir_file import NIRFileError, read_graph
    from mksgn.train.checkpoint import CheckpointError, load_checkpoint

    _one_line(_cli("mksgn-run", str(tmp_path)), "mksgn-run", "a directory, expected a NIR graph")
    graph, _, _ = tiny_graph()
    nir.write(str(tmp_path / "g.nir"), graph)
    with pytest.raises(CheckpointError, match="HDF5 file .* not a checkpoint") as err:
        load_checkpoint(tmp_path / "g.nir")
    assert "weights_only" not in str(err.value)
    save_tiny_student(tmp_path / "s.pt")
    with pytest.raises(NIRFileError, match="zip archive .* not a NIR graph"):
        read_graph(tmp_path / "s.pt")
    _one_line(_cli("mksgn-snap", str(tmp_path / "g.nir"), "-o", str(tmp_path / "x.pt")), "mksgn-snap", "HDF5")


def test_outputs_honour_the_umask_and_never_share_a_temporary_name(tmp_path):
    from mksgn.atomic import atomic_path, atomic_write_text
    from mksgn.core.nir_file import write_graph

    graph, _, _ = tiny_graph()
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        write_graph(graph, tmp_path / "g.nir")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "g.nir").stat().st_mode) == 0o640
    with atomic_path(tmp_path / "same.nir") as one, atomic_path(tmp_path / "same.nir") as two:
        assert one != two and one.exists() and two.exists()
        one.write_text("1")
        two.write_text("2")
    assert (tmp_path / "same.nir").read_text() in ("1", "2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "g.nir", "same.nir"]


def test_export_checks_the_teacher_before_writing_anything(tmp_path, capsys):
    from mksgn.convert.export_cli import main as export_main

    save_tiny_student(tmp_path / "s.pt")
    code = export_main([str(tmp_path / "s.pt"), "-o", str(tmp_path / "m.nir"), "--teacher", str(tmp_path / "s.pt"),
                        "--onnx", str(tmp_path / "t.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "teacher" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt"]


def test_commands_default_to_the_data_their_model_records(tmp_path, capsys):
    """A model trained on X.npz is run on X.npz without --data; gone or changed data is refused."""
    from mksgn.convert.export_cli import main as export_main
    from mksgn.data.builtin import builtin_path
    from mksgn.data.recorded import data_record
    from mksgn.deploy.run_cli import main as run_main
    from mksgn.train.checkpoint import load_checkpoint, save_checkpoint

    data = tmp_path / "small.npz"
    shutil.copyfile(builtin_path(), data)
    save_tiny_student(tmp_path / "s.pt")
    record = load_checkpoint(tmp_path / "s.pt")
    record["data"].update(data_record(data))
    save_checkpoint(tmp_path / "s.pt", {k: v for k, v in record.items()
                                        if k not in ("format", "format_version", "mksgn_version")})
    assert export_main([str(tmp_path / "s.pt"), "-o", str(tmp_path / "m.nir"), "--samples", "1"]) == 0
    out = capsys.readouterr()
    assert f"data: {data}" in out.out, out
    assert run_main([str(tmp_path / "m.nir"), "--limit", "2", "--quiet", "-o", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr()
    assert f"data: {data} (recorded by" in out.out and "floating_pt" in out.out, out
    assert str(data) in (tmp_path / "r.json").read_text()
    with open(data, "ab") as handle:
        handle.write(b"\0")
    assert run_main([str(tmp_path / "m.nir"), "--limit", "2", "--quiet"]) == 2
    assert "has changed since" in capsys.readouterr().err
    data.unlink()
    assert run_main([str(tmp_path / "m.nir"), "--limit", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "which is gone; give --data" in err, err
    graph = nir.read(str(tmp_path / "m.nir"), type_check=False)
    graph.metadata.pop("data")  # a graph that records nothing: the built-in dataset, with a warning
    nir.write(str(tmp_path / "bare.nir"), graph)
    assert run_main([str(tmp_path / "bare.nir"), "--limit", "1", "--quiet"]) == 0
    assert "does not record its data; using the built-in dataset" in capsys.readouterr().err
