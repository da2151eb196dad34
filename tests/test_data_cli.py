"""mksgn-data end to end: synth, inspect, convert, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mksgn.data.data_cli import main
from mksgn.data.readers.ctrgcn_npz import read_ctrgcn_npz

from helpers import assert_usage_error

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "small.npz"
    assert main(["synth", "--out", str(path), "--samples", "120", "--seed", "3", "--frames", "24"]) == 0
    return path


def test_synth_writes_a_ctrgcn_npz(small_npz, capsys):
    splits = read_ctrgcn_npz(small_npz)
    assert len(splits.train) + len(splits.test) == 120
    assert splits.train.data.shape[1:] == (3, 24, 25, 2)
    assert splits.train.num_classes >= 12


def test_inspect_prints_counts_and_writes_png_and_json(small_npz, tmp_path, capsys):
    assert main(["inspect", str(small_npz), "--out", str(tmp_path), "--sample", "2"]) == 0
    out = capsys.readouterr().out
    splits = read_ctrgcn_npz(small_npz)
    assert str(small_npz) in out  # figures say what they were measured on
    assert f"train: {len(splits.train)} samples" in out
    for name in splits.train.class_names:
        assert name in out
    png = tmp_path / "small_train2.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    summary = json.loads((tmp_path / "small_summary.json").read_text())
    assert summary["splits"]["train"]["class_counts"] == splits.train.class_counts().tolist()
    assert summary["splits"]["test"]["shape"] == list(splits.test.data.shape)


def test_convert_ucla(tmp_path, capsys):
    src = tmp_path / "ucla"
    src.mkdir()
    rng = np.random.default_rng(0)
    for a, v in [(1, 1), (2, 2), (3, 3), (1, 3)]:
        name = f"a{a:02d}_s01_e00_v{v:02d}"
        skel = rng.normal(size=(7, 20, 3)).round(4).tolist()
        (src / f"{name}.json").write_text(json.dumps({"file_name": name, "skeletons": skel, "label": a}))
    out = tmp_path / "ucla.npz"
    assert main(["convert", "--from", "ucla", str(src), "--out", str(out)]) == 0
    splits = read_ctrgcn_npz(out)
    assert (len(splits.train), len(splits.test)) == (2, 2)
    assert splits.train.layout == "ucla20"


def _one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_errors_are_one_line_with_status_2(tmp_path, capsys):
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    _one_line_error(capsys, ["inspect", str(bad)], "corrupt.npz", "npz")
    _one_line_error(capsys, ["convert", "--from", "ucla", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.npz")], "nowhere")
    _one_line_error(capsys, ["synth", "--out", str(tmp_path / "x.npz"), "--difficulty", "3"], "difficulty")
    assert main(["synth"]) == 2  # a usage error: the usage line, then one error line
    assert_usage_error(capsys.readouterr().err, "mksgn-data synth", "--out")
    _one_line_error(capsys, ["inspect", str(bad.with_name("absent.npz"))], "absent.npz", "no such file")
    assert not (tmp_path / "x.npz").exists()


def test_console_script_runs(tmp_path):
    script = Path(sys.executable).with_name("mksgn-data")
    proc = subprocess.run([str(script), "inspect", str(tmp_path / "missing.npz")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("mksgn-data: error:") and "missing.npz" in proc.stderr
