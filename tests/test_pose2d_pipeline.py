"""The built-in dataset in 2-D (pixels, a confidence, lost extremities) through every stage:
inspect, training, export, quantisation, the emulator, energy and parity (Lava: slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import SMALL_TRAINING

from mksgn.data.builtin import load_dataset
from mksgn.data.data_cli import main as data_main
from mksgn.data.synth import generate
from mksgn.data.synth.image import CAMERA, EXTREMITIES, project_to_image


def test_projection_is_a_pinhole_image_with_lost_extremities():
    splits = generate(samples=56, seed=3, frames=20, difficulty=0.8)
    flat = project_to_image(splits, seed=3, difficulty=0.8)
    ds, src = flat.train, splits.train
    assert ds.data.shape[1] == 2 and ds.confidence.shape == (len(ds), 20, 25, 2)
    lost = (ds.data == 0).all(axis=1)
    assert np.array_equal(lost, ds.confidence == 0)  # missing: (0, 0) and confidence 0, together
    n, f, v, m = np.argwhere(~lost)[0]
    x, y, z = src.data[n, :, f, v, m]
    assert np.allclose(ds.data[n, :, f, v, m], [CAMERA.cx + CAMERA.focal * x / z, CAMERA.cy - CAMERA.focal * y / z],
                       rtol=1e-5)
    present = (np.abs(src.data).max(axis=(1, 3)) > 0)[:, :, None, :] & np.ones((1, 1, 25, 1), bool)
    rate = lost[present].reshape(-1)
    assert 0 < rate.mean() < 0.2
    assert lost[..., list(EXTREMITIES), :][present[..., list(EXTREMITIES), :]].mean() > 2 * rate.mean()
    easy = project_to_image(splits, seed=3, difficulty=0.0).train  # no lost extremity; only off-image joints
    assert (easy.confidence[present] == 0).mean() < rate.mean() / 4
    assert np.array_equal(project_to_image(splits, 3, 0.8).train.data, ds.data)  # deterministic per seed


@pytest.fixture(scope="module")
def run2d(tmp_path_factory):
    from mksgn.convert.export_cli import main as export_main
    from mksgn.convert.quantize_cli import main as quantize_main
    from mksgn.train.train_cli import main as train_main

    tmp = tmp_path_factory.mktemp("pose2d")
    data = tmp / "d2.npz"
    assert data_main(["synth", "-o", str(data), "--samples", "84", "--frames", "20", "--seed", "1", "--2d"]) == 0
    assert train_main(["--data", str(data), "--out", str(tmp / "run"), "--device", "cpu", "--epochs", "1",
                       *SMALL_TRAINING]) == 0
    assert export_main([str(tmp / "run" / "student_best.pt"), "-o", str(tmp / "s.nir"), "--data", str(data)]) == 0
    assert quantize_main([str(tmp / "s.nir"), "-o", str(tmp / "s.q.nir"), "--data", str(data), "--quiet"]) == 0
    return tmp


def test_2d_data_train_with_two_coordinates_and_inspect_counts_missing_joints(run2d, capsys):
    data = run2d / "d2.npz"
    assert load_dataset(data).train.data.shape[1] == 2
    assert data_main(["inspect", str(data), "-o", str(run2d / "inspect")]) == 0
    said = capsys.readouterr().out
    assert "a confidence per joint" in said and "missing joints:" in said
    record = json.loads((run2d / "run" / "metrics.json").read_text())
    assert 0 <= record["student"]["test"]["best"]["top1"] <= 1 and "baseline" in record
    from mksgn.train.checkpoint import load_checkpoint

    assert load_checkpoint(run2d / "run" / "student_best.pt")["data"]["coords"] == 2


def test_2d_graph_runs_and_is_priced(run2d):
    from mksgn.deploy.parity_cli import main as parity_main
    from mksgn.deploy.run_cli import main as run_main
    from mksgn.hw_profiles.energy_cli import main as energy_main

    data, q = str(run2d / "d2.npz"), str(run2d / "s.q.nir")
    assert parity_main([str(run2d / "run" / "student_best.pt"), str(run2d / "s.nir"), q, "--data", data,
                        "--limit", "2", "-o", str(run2d / "parity"), "--quiet", "--no-lava"]) == 0
    report = json.loads((run2d / "parity" / "parity.json").read_text())
    assert report["pairs"]["snntorch = executor"]["mismatches"] == 0
    assert run_main([q, "--data", data, "--limit", "2", "--quiet", "-o", str(run2d / "r.json")]) == 0
    assert energy_main([q, "--data", data, "--limit", "2", "-o", str(run2d / "energy"), "--quiet"]) == 0
    energy = json.loads((run2d / "energy" / "energy.json").read_text())
    assert energy["counts"]["measured_on"].startswith("2 of 14 test samples") and energy["profiles"]


@pytest.mark.slow
def test_2d_graph_runs_exactly_on_lava(run2d):
    """Lava in both tags against the emulator and the executor (slow: ``make bench`` runs it)."""
    from mksgn.deploy.parity_cli import main as parity_main

    data, q = str(run2d / "d2.npz"), str(run2d / "s.q.nir")
    assert parity_main([str(run2d / "run" / "student_best.pt"), str(run2d / "s.nir"), q, "--data", data,
                        "--limit", "2", "-o", str(run2d / "lava"), "--quiet"]) == 0
    report = json.loads((run2d / "lava" / "parity.json").read_text())
    assert report["pairs"]["emulator_fixed_pt = lava_fixed_pt"]["mismatches"] == 0
    assert report["pairs"]["executor = lava_floating_pt"]["mismatches"] == 0
