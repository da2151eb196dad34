"""Activity calibration of random students, and export parity on them (the `ntu` size included)."""

from __future__ import annotations

import nir
import pytest
import torch

from mksgn.convert.nir_export import export_student
from mksgn.convert.validate import compare
from mksgn.data.skeletons import NTU25
from mksgn.train.calibrate import calibrate_activity, firing_rates, randomise_batchnorm
from mksgn.train.config import preset
from mksgn.train.student import MKSGN

ACTIVE = (0.01, 0.5)


def _student(name: str, classes: int, seed: int = 0) -> MKSGN:
    torch.manual_seed(seed)
    cfg = preset(name)
    model = MKSGN(cfg.student, NTU25, classes, cfg.data.modalities).eval()
    randomise_batchnorm(model, seed)
    return model


def _rows(n: int, frames: int, seed: int) -> torch.Tensor:
    """Smooth random person rows ``(n, 4, 3, F, V)`` (a random walk over frames, like motion)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 3, frames, 25, generator=g).cumsum(dim=3) / frames**0.5


def test_calibration_makes_every_population_fire_within_range():
    model = _student("tiny", 14)
    rows = _rows(8, 32, seed=1)
    before = firing_rates(model, rows)
    biases = {n: m.bias.clone() for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    calibrate_activity(model, rows)
    after = firing_rates(model, _rows(8, 32, seed=2))  # fresh rows: a property of the model, not the data
    assert set(after) == set(before) and len(after) == 29
    assert all(ACTIVE[0] <= r <= ACTIVE[1] for r in after.values()), after
    changed = [n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
               and not torch.equal(m.bias, biases[n])]
    assert len(changed) == 4 * 3 + 3 * 3 + 1  # branch gcn/gate/tcn, block gcn/gate/tcn, fusion


def test_bad_targets_are_refused():
    with pytest.raises(ValueError, match="'gate'"):
        calibrate_activity(_student("tiny", 14), _rows(2, 32, 0), {"gate": 1.5})


def test_ntu_export_is_spike_exact_on_a_calibrated_random_model(tmp_path):
    model = _student("ntu", 60)
    frames = preset("ntu").data.frames
    calibrate_activity(model, _rows(4, frames, seed=3))
    rows = _rows(2, frames, seed=4)
    rates = firing_rates(model, rows)
    assert all(ACTIVE[0] <= r <= ACTIVE[1] for r in rates.values()), rates
    path = tmp_path / "ntu.nir"
    nir.write(str(path), export_student(model, frames, 25, [f"c{k}" for k in range(60)], "ntu25"))
    report = compare(model, nir.read(str(path), type_check=False), rows.unsqueeze(-1), torch.float64)
    assert report.rows == 2 and len(report.nodes) == len(rates)
    assert report.mismatches == 0, report.first_failure()
