"""Hardening: untrusted files, graph validation before simulation, interruption, determinism."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch
from helpers import SMALL_TRAINING

from mksgn.core.nir_file import NIRFileError, read_graph
from mksgn.data.data_cli import main as data_main
from mksgn.deploy.run_cli import main as run_main
from mksgn.train.checkpoint import CheckpointError, load_checkpoint

SMALL = SMALL_TRAINING


def _one_line(capsys, code: int, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


# --------------------------------------------------------------------------- untrusted files


def test_nir_file_with_absurd_shape_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.nir"
    with h5py.File(path, "w") as f:  # declares 8 TiB; chunked storage with nothing written takes no space
        f.create_group("node").create_dataset("weight", shape=(1 << 20, 1 << 20), dtype="f8", chunks=(1, 1024))
    assert path.stat().st_size < 1 << 20
    start = time.perf_counter()
    with pytest.raises(NIRFileError, match=r"huge.nir: array 'node/weight' declares shape \(1048576, 1048576\)"):
        read_graph(path)
    assert time.perf_counter() - start < 5


def test_npz_member_declaring_more_than_it_holds_is_refused_before_reading(tmp_path):
    import io
    import zipfile

    from mksgn.data.readers.ctrgcn_npz import read_ctrgcn_npz
    from mksgn.errors import DatasetError

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros((2, 3), dtype=np.float32))
    header = buf.getvalue().replace(b"(2, 3)", b"(99999999, 99999999)".ljust(6))  # 4e16 bytes declared
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", header)
    with pytest.raises(DatasetError, match=r"huge.npz.*member 'x_train.npy' declares shape \(99999999, 99999999\)"):
        read_ctrgcn_npz(path)


def test_pickle_declaring_a_huge_buffer_is_refused_before_allocation(tmp_path):
    import struct

    from mksgn.data.readers.pyskl import read_pyskl
    from mksgn.errors import DatasetError

    path = tmp_path / "bomb.pkl"  # protocol 5: BYTEARRAY8 of 2**62 bytes, 3 bytes present
    path.write_bytes(b"\x80\x05\x96" + struct.pack("<Q", 1 << 62) + b"abc.")
    with pytest.raises(DatasetError, match=r"bomb.pkl.*expected 4611686018427387904 bytes"):
        read_pyskl(path)


def test_malicious_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "student_best.pt"
    torch.save({"format": "mksgn-checkpoint", "model": Exploit()}, path)
    with pytest.raises(CheckpointError, match="student_best.pt: not a loadable mksgn checkpoint"):
        load_checkpoint(path, kind="student")
    assert not marker.exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


# --------------------------------------------------------------------------- graph validation


def _lif(n: int, threshold: float = 1.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2e-4), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.full(n, threshold),
                   v_reset=np.zeros(n))


def _graph(**replace) -> nir.NIRGraph:
    nodes = {"input": nir.Input(np.array([2])), "w": nir.Affine(weight=np.ones((3, 2)), bias=np.zeros(3)),
             "lif": _lif(3), "output": nir.Output(np.array([3]))}
    edges = [("input", "w"), ("w", "lif"), ("lif", "output")]
    extra_edges = replace.pop("edges", [])
    nodes.update(replace)
    return nir.NIRGraph(nodes=nodes, edges=edges + extra_edges, metadata={}, type_check=False)


class Teleport(nir.NIRNode):
    """A node type mksgn does not know."""

    def __init__(self) -> None:
        self.input_type = {"input": np.array([3])}
        self.output_type = {"output": np.array([3])}
        self.metadata = {}


@pytest.mark.parametrize("graph, needle", [
    (_graph(w2=nir.Linear(weight=np.eye(3)), edges=[("w", "w2"), ("w2", "w")]), "has no neuron and no Delay"),
    (_graph(edges=[("lif", "ghost")]), "names destination 'ghost', which is not a node"),
    (_graph(w=nir.Affine(weight=np.ones((4, 2)), bias=np.zeros(4))), "node 'lif' (LIF): field 'tau' has shape (3,)"),
    (_graph(w=nir.Affine(weight=np.full((3, 2), np.nan), bias=np.zeros(3))),
     "node 'w' (Affine): field 'weight' has non-finite values"),
    (_graph(lif=_lif(3, float("inf"))), "node 'lif' (LIF): field 'v_threshold' has non-finite values"),
])
def test_invalid_graphs_are_refused_before_simulation_naming_the_node(tmp_path, capsys, graph, needle):
    path = tmp_path / "bad.nir"
    nir.write(str(path), graph)
    code = run_main([str(path), "--backend", "reference", "--limit", "1", "--quiet"])
    _one_line(capsys, code, needle)


def test_unsupported_node_type_is_named():
    from mksgn.core.executor import NIRExecutionError, NIRExecutor

    graph = _graph(t=Teleport(), edges=[("lif", "t"), ("t", "output")])
    with pytest.raises(NIRExecutionError, match=r"node 't' \(Teleport\): node type Teleport is not supported"):
        NIRExecutor(graph)


# --------------------------------------------------------------------------- interruption and determinism


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "small.npz"
    assert data_main(["synth", "--out", str(path), "--samples", "84", "--frames", "20", "--seed", "1"]) == 0
    return path


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mksgn.train.train_cli", "--data", str(data), "--out", str(out), "--device", "cpu",
            *SMALL, *extra]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    start = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path.name} appeared"
        assert time.monotonic() - start < timeout, f"{path} did not appear"
        time.sleep(0.05)


def test_sigkill_mid_training_then_resume(data, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(data, out, "--epochs", "3"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for(out / "student_last.pt", proc)  # the teacher is done, the student's first epoch saved
    time.sleep(0.3)  # into the student's second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for ckpt in out.glob("*.pt"):  # nothing written half: every checkpoint loads
        load_checkpoint(ckpt)
    json.loads((out / "metrics.json").read_text())
    done = subprocess.run(_train_cmd(data, out, "--epochs", "3", "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for kind in ("teacher", "student"):
        assert [e["epoch"] for e in metrics[kind]["epochs"]] == [1, 2, 3]
    assert load_checkpoint(out / "student_last.pt", kind="student")["epoch"] == 3


@pytest.fixture(scope="module")
def two_runs(data, tmp_path_factory):
    """Two trainings with the same seed."""
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp(name)
        done = subprocess.run(_train_cmd(data, out, "--epochs", "1", "--kd", "none", "--seed", "3"),
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(out)
    return outs


def _strip_times(value):
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items()
                if "second" not in k and "samples_per_s" not in k and k not in ("date", "time")}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def test_same_seed_same_metrics_and_same_exported_nir(two_runs, tmp_path):
    from mksgn.convert.export_cli import main as export_main

    metrics = [_strip_times(json.loads((out / "metrics.json").read_text())) for out in two_runs]
    assert metrics[0] == metrics[1]
    graphs = []
    for i, out in enumerate(two_runs):
        path = tmp_path / f"{i}.nir"
        assert export_main([str(out / "student_best.pt"), "-o", str(path), "--no-validate"]) == 0
        graphs.append(read_graph(path))
    a, b = graphs
    assert list(a.nodes) == list(b.nodes) and a.edges == b.edges
    for name, node in a.nodes.items():
        for field, value in vars(node).items():
            other = vars(b.nodes[name])[field]
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, other, err_msg=f"{name}.{field}")


def test_killed_export_and_quantize_never_leave_a_half_written_file(two_runs, tmp_path):
    target = tmp_path / "student.nir"
    cmd = [sys.executable, "-m", "mksgn.convert.export_cli", str(two_runs[0] / "student_best.pt"), "-o", str(target),
           "--samples", "4"]
    for delay in (0.5, 1.5, 3.0, 6.0):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.exists():  # if anything is at the target, it is a whole, valid graph
            assert isinstance(read_graph(target), nir.NIRGraph)
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert isinstance(read_graph(target), nir.NIRGraph)
    from mksgn.convert.quantize import read_quantized

    quantised = tmp_path / "student.q.nir"
    reports = [tmp_path / "student.q.quantization.json", tmp_path / "student.q.quantization.md"]
    cmd = [sys.executable, "-m", "mksgn.convert.quantize_cli", str(target), "-o", str(quantised), "--samples", "4",
           "--quiet"]
    for delay in (0.5, 1.5, 3.0):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if quantised.exists():
            read_quantized(quantised)
        if reports[0].exists():
            json.loads(reports[0].read_text())
