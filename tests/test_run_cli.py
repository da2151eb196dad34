"""mksgn-quantize and mksgn-run end to end on an exported tiny student, errors, and torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import nir
import pytest
from helpers import tiny_graph

from mksgn.convert.quantize_cli import main as quantize_main
from mksgn.deploy.run_cli import main as run_main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    graph, _, _ = tiny_graph()
    path = tmp / "student.nir"
    nir.write(str(path), graph)
    assert quantize_main([str(path), "-o", str(tmp / "student.q.nir"), "--samples", "16", "--quiet"]) == 0
    return tmp


def _one_line_error(capsys, code: int, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def _usage_error(capsys, code: int, *needles: str) -> None:
    """A usage error: the usage line(s), then one error line; status 2."""
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("usage:"), err
    last = err.splitlines()[-1]
    assert last.startswith("mksgn-") and ": error: " in last, err
    for needle in needles:
        assert needle in last, err


def test_quantize_writes_graph_and_reports(files):
    report = json.loads((files / "student.q.quantization.json").read_text())
    assert report["calibrated_on"].startswith("16 of ") and "training samples of" in report["calibrated_on"]
    assert len(report["layers"]) == 30 + 29  # neurons and graded relays
    assert (files / "student.q.quantization.md").read_text().startswith("# Quantisation of")
    assert "quantization" in nir.read(str(files / "student.q.nir"), type_check=False).metadata


def test_run_emulator_fixed_and_reference(files, capsys):
    out = files / "fixed.json"
    assert run_main([str(files / "student.q.nir"), "--limit", "6", "--batch", "4", "--out", str(out), "--quiet"]) == 0
    assert "accuracy" in capsys.readouterr().out
    fixed = json.loads(out.read_text())
    assert fixed["tag"] == "fixed_pt" and fixed["samples"] == 6 and len(fixed["predictions"]) == 6
    assert fixed["measured_on"].startswith("6 of ") and "stratified by class" in fixed["measured_on"]
    assert len(set(fixed["labels"])) == 6  # six classes of the 14, not the first six rows
    assert len(fixed["spikes_per_population"]) == 29 and len(fixed["synops_per_synapse"]) == 86
    assert fixed["synops_per_sample"] > 0
    ref_out, emu_out = files / "ref.json", files / "float.json"
    assert run_main([str(files / "student.nir"), "--backend", "reference", "--limit", "6", "--out", str(ref_out),
                     "--quiet"]) == 0
    assert run_main([str(files / "student.nir"), "--tag", "floating_pt", "--timing", "lava", "--limit", "6",
                     "--out", str(emu_out), "--quiet"]) == 0
    ref, emu = json.loads(ref_out.read_text()), json.loads(emu_out.read_text())
    assert ref["predictions"] == emu["predictions"]
    assert ref["spikes_per_population"] == emu["spikes_per_population"]
    assert ref["synops_per_synapse"] == emu["synops_per_synapse"]


def test_bad_inputs_give_one_line_and_status_2(files, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.nir"
    corrupt.write_bytes(b"\x89HDF garbage" * 10)
    _one_line_error(capsys, run_main([str(corrupt), "--quiet"]), "corrupt.nir", "not a NIR file")
    _one_line_error(capsys, run_main([str(tmp_path / "missing.nir"), "--quiet"]), "missing.nir", "no such file")
    # fixed_pt asked of a float graph (without --tag the graph decides: see the test above)
    _one_line_error(capsys, run_main([str(files / "student.nir"), "--tag", "fixed_pt", "--quiet"]),
                    "not a quantised graph")
    _one_line_error(capsys, quantize_main([str(corrupt), "-o", str(tmp_path / "x.q.nir")]), "corrupt.nir")
    assert not (tmp_path / "x.q.nir").exists()
    _usage_error(capsys, run_main([str(files / "student.q.nir"), "--limit", "0"]), "--limit")


@pytest.mark.slow  # two processes under torchrun, about 20 s on 2 cores
def test_torchrun_shards_the_samples_and_gathers_one_result(files, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "mksgn.deploy.run_cli", str(files / "student.q.nir"), "--limit", "7",
           "--batch", "2", "--device", "cpu", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(out.read_text())
    assert run_main([str(files / "student.q.nir"), "--limit", "7", "--out", str(tmp_path / "one.json"), "--quiet"]) == 0
    one = json.loads((tmp_path / "one.json").read_text())
    assert ddp["processes"] == 2 and ddp["samples"] == 7
    for key in ("predictions", "labels", "accuracy", "spikes_per_population", "synops_per_synapse"):
        assert ddp[key] == one[key], key


@pytest.mark.lava
@pytest.mark.slow  # 4 builds of the tiny student, ~140 s on 2 cores; make test runs mksgn-run --backend lava on a
# framework's graph (tests/test_foreign_graphs.py) and the tiny student in Lava through mksgn-parity (test_parity.py)
def test_run_on_lava_equals_the_emulator_and_one_build_per_row(files, tmp_path, monkeypatch):
    import functools

    from mksgn.deploy import lava_builder

    model = str(files / "student.q.nir")
    outs = {name: tmp_path / f"{name}.json" for name in ("lava", "per_row", "emu")}
    # 2 samples: one build per row (below) costs about 20 s a row on 2 cores
    assert run_main([model, "--backend", "lava", "--limit", "2", "--out", str(outs["lava"]), "--quiet"]) == 0
    assert run_main([model, "--limit", "2", "--out", str(outs["emu"]), "--quiet"]) == 0
    with monkeypatch.context() as patch:  # the path before many rows per build: one build per row, gated LIF
        patch.setattr(lava_builder, "run_lava_rows",
                      functools.partial(lava_builder.run_lava_rows, per_build=1, reset=False))
        assert run_main([model, "--backend", "lava", "--limit", "2", "--out", str(outs["per_row"]), "--quiet"]) == 0
    lava, per_row, emu = (json.loads(outs[name].read_text()) for name in ("lava", "per_row", "emu"))
    assert lava["backend"] == "lava" and lava["tag"] == "fixed_pt" and lava["person_rows"] >= 2
    assert {k: v for k, v in lava.items() if k != "seconds"} == {k: v for k, v in per_row.items() if k != "seconds"}
    for key in ("predictions", "spikes_per_population", "synops_per_synapse"):
        assert lava[key] == emu[key], key
