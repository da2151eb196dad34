"""Many person rows in one Lava build (stock ``LIFReset``, rows back to back) equal one build per
row (the bias-gated ``LIF`` path) and the emulator exactly, in ``fixed_pt`` and ``floating_pt``;
graphs whose rows cannot share a build run one build per row."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import graph_inputs, recurrent_cubalif_graph, tiny_graph

from mksgn.convert.quantize import quantize
from mksgn.core.emulator import Emulator
from mksgn.core.fuse import fuse
from mksgn.deploy.lava_builder import LavaBuildError, LavaNetwork, rows_blocker, run_lava, run_lava_rows

pytestmark = pytest.mark.lava
PER_ROW = (1, 2)
"""Rows also run one build each (a row cut short after a full one, an absent person after it):
each such build costs about 20 s on 2 cores, so not every row is rebuilt."""
TINY_SLOW = pytest.mark.slow
"""The tiny student's runs here (about 30 s a build on 2 cores) are under ``make bench``. ``make
test`` covers each claim more cheaply: rows back to back in one build equal to the emulator on
a random graph with a row cut short (below), one build per row equal to the emulator on random
graphs (``tests/test_lava_builder.py``), and the tiny student in one build of rows in both tags
(``tests/test_parity.py``)."""


@pytest.fixture(scope="module")
def tiny():
    """The lively tiny student's graph (fused, and quantised) and 4 person rows: a full one, two
    cut short (zero padding from frame 12 and 25 on) and an absent person (all zeros)."""
    graph, _, rows = tiny_graph(seed=2)
    rows = rows[:4].clone()
    rows[1, :, :, 12:] = 0.0
    rows[2] = 0.0
    rows[3, :, :, 25:] = 0.0
    inputs = graph_inputs(graph, rows)
    sg = fuse(graph)
    qsg, _ = quantize(sg, inputs)
    return {"floating_pt": sg, "fixed_pt": qsg}, inputs


@TINY_SLOW
@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_rows_in_one_build_equal_one_build_per_row_and_the_emulator(tiny, tag):
    graphs, inputs = tiny
    sg = graphs[tag]
    assert rows_blocker(sg) is None
    spiking = [n for n, p in sg.populations.items() if p.spiking]
    out = next(iter(sg.outputs))
    xs = {k: v.numpy() for k, v in inputs.items()}
    many = run_lava_rows(sg, tag, xs, record=spiking)
    assert many.builds == 1 and many.steps_run == 4 * 4 + many.latency
    emu = Emulator(sg, tag).run(inputs, record_spikes=True)
    for r in range(4):
        for name in spiking:
            np.testing.assert_array_equal(many.spikes[name][:, r], emu.spikes[name][:, r].numpy(), err_msg=name)
        if r in PER_ROW:
            one = run_lava(sg, tag, {k: v[:, r] for k, v in xs.items()}, record=spiking, reset=False)
            for name in spiking:
                np.testing.assert_array_equal(many.spikes[name][:, r], one.spikes[name].astype(bool), err_msg=name)
            np.testing.assert_array_equal(many.outputs[out][:, r], one.outputs[out])
        if tag == "fixed_pt":
            np.testing.assert_array_equal(many.outputs[out][-1, r], emu.outputs[out][-1, r].numpy())
        else:  # the same float operations in another order (numpy in Lava, torch here): equal to ~1e-13
            np.testing.assert_allclose(many.outputs[out][-1, r], emu.outputs[out][-1, r].numpy(), rtol=1e-12,
                                       atol=1e-12)
    counts = [sum(int(s[:, r].sum()) for s in many.spikes.values()) for r in range(4)]
    assert counts[0] > 0 and counts[1] > 0 and counts[3] > 0  # rows that differ, all alive
    assert len({tuple(many.outputs[out][-1, r]) for r in range(4)}) == 4


def test_rows_split_over_builds_equal_one_build():
    from test_lava_builder import _random_dag

    x = torch.as_tensor(np.random.default_rng(11).random((8, 4, 2, 6, 6)) * 2.0, dtype=torch.float64)
    x[:, 2, :, 5:] = 0.0
    inputs = {"input": x}
    sg, _ = quantize(fuse(_random_dag(0)), inputs)
    spiking = [n for n, p in sg.populations.items() if p.spiking]
    xs = {k: v.numpy() for k, v in inputs.items()}
    seen = []
    split = run_lava_rows(sg, "fixed_pt", xs, record=spiking, per_build=3, done=seen.append)
    assert split.builds == 2 and seen == [3, 1]
    assert all(split.spikes[name][:, 3].any() for name in spiking)  # the row of the second build is alive
    emu = Emulator(sg, "fixed_pt").run(inputs, record_spikes=True)
    for name in spiking:
        np.testing.assert_array_equal(split.spikes[name], emu.spikes[name].numpy(), err_msg=name)
    out = next(iter(sg.outputs))
    np.testing.assert_array_equal(split.outputs[out][-1], emu.outputs[out][-1].numpy())


def test_a_recurrent_graph_runs_one_build_per_row():
    rng = np.random.default_rng(2)
    graph = recurrent_cubalif_graph(rng, 10, 5)
    x = torch.as_tensor(rng.random((8, 3, 5)), dtype=torch.float64)
    sg, _ = quantize(fuse(graph), {"input": x})
    assert "recurrent" in rows_blocker(sg)
    with pytest.raises(LavaBuildError, match="recurrent"):
        LavaNetwork(sg, "fixed_pt", {"input": x.numpy()}, rows=True)
    spiking = [n for n, p in sg.populations.items() if p.spiking]
    res = run_lava_rows(sg, "fixed_pt", {"input": x.numpy()}, record=spiking)
    assert res.builds == 3
    emu = Emulator(sg, "fixed_pt").run({"input": x}, record_spikes=True)
    for name in spiking:
        assert res.spikes[name].sum() > 0
        np.testing.assert_array_equal(res.spikes[name], emu.spikes[name].numpy(), err_msg=name)
    out = next(iter(sg.outputs))
    np.testing.assert_array_equal(res.outputs[out][-1], emu.outputs[out][-1].numpy())


@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_random_dag_rows_in_one_build_equal_the_emulator(tag):
    from test_lava_builder import _random_dag

    graph = _random_dag(0)  # residual branch, convolutions, pooling, a coincidence neuron, a leaky read-out
    x = torch.as_tensor(np.random.default_rng(10).random((8, 3, 2, 6, 6)) * 2.0, dtype=torch.float64)
    x[:, 1, :, 3:] = 0.0
    sg = fuse(graph)
    if tag == "fixed_pt":
        sg, _ = quantize(sg, {"input": x})
    spiking = [n for n, p in sg.populations.items() if p.spiking]
    res = run_lava_rows(sg, tag, {"input": x.numpy()}, record=spiking)
    emu = Emulator(sg, tag).run({"input": x}, record_spikes=True)
    assert res.builds == 1
    for name in spiking:
        assert res.spikes[name].sum() > 0
        np.testing.assert_array_equal(res.spikes[name], emu.spikes[name].numpy(), err_msg=name)
    out = next(iter(sg.outputs))
    tol = 0.0 if tag == "fixed_pt" else 1e-12  # float: the same operations in another order
    np.testing.assert_allclose(res.outputs[out][-1], emu.outputs[out][-1].numpy(), rtol=tol, atol=tol)
