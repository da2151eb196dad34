"""Lava 0.10.0 on Python 3.11 through mksgn.deploy.lava_compat, and a real simulation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mksgn.deploy.lava_compat import lava_import

EXPECTED_PATCHES = {
    ("CoreEncoder", "x"), ("CoreEncoder", "y"), ("CoreEncoder", "p"),
    ("ChipEncoder", "x"), ("ChipEncoder", "y"), ("ChipEncoder", "z"),
    ("AxonEncoder", "hi"), ("AxonEncoder", "lo"),
}


def _python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (Lava import state is per process)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_unpatched_import_fails_on_this_python():
    proc = _python("import lava.magma.compiler.var_model")
    if sys.version_info < (3, 11):
        pytest.skip("the dataclass default check exists from Python 3.11 on")
    assert proc.returncode != 0
    assert "mutable default" in proc.stderr and "ByteEncoder" in proc.stderr


def test_fix_patches_exactly_the_offending_fields_and_restores_dataclass():
    proc = _python(
        """
        import dataclasses, json
        original = dataclasses.dataclass
        from mksgn.deploy.lava_compat import ensure_lava
        patched = ensure_lava()
        again = ensure_lava()
        from lava.magma.compiler.var_model import CoreEncoder, ByteEncoder
        a, b = CoreEncoder(), CoreEncoder()
        print(json.dumps({
            "patched": [[p.module, p.qualname, p.field, p.default_type] for p in patched],
            "again": len(again),
            "restored": dataclasses.dataclass is original,
            "independent": a.x is not b.x and a.x == ByteEncoder(),
        }))
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {(q, f) for _, q, f, _ in out["patched"]} == EXPECTED_PATCHES
    assert len(out["patched"]) == len(EXPECTED_PATCHES)
    assert all(m == "lava.magma.compiler.var_model" and t == "ByteEncoder" for m, _, _, t in out["patched"])
    assert out["again"] == 0
    assert out["restored"] is True
    assert out["independent"] is True


def test_dataclass_restored_even_when_the_import_fails():
    proc = _python(
        """
        import dataclasses
        from mksgn.deploy.lava_compat import import_patched
        original = dataclasses.dataclass
        try:
            import_patched("lava.no_such_module")
        except ImportError:
            pass
        assert dataclasses.dataclass is original
        print("ok")
        """
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_refuses_a_non_fork_start_method():
    proc = _python(
        """
        import multiprocessing
        multiprocessing.set_start_method("spawn")
        from mksgn.errors import LavaSetupError
        from mksgn.deploy.lava_compat import ensure_lava
        try:
            ensure_lava()
        except LavaSetupError as exc:
            print("refused:", exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout and "'spawn'" in proc.stdout and "fork" in proc.stdout


def test_accepts_an_explicit_fork_start_method():
    proc = _python(
        """
        import multiprocessing
        multiprocessing.set_start_method("fork")
        from mksgn.deploy.lava_compat import lava_import
        lava_import("lava.proc.lif.process")
        print(multiprocessing.get_start_method())
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "fork"


def test_lava_import_only_imports_lava():
    with pytest.raises(ValueError, match="os"):
        lava_import("os")


# --- a real network: source -> Dense -> LIF -> sink ------------------------------------

STEPS = 12
NUM_WEIGHT_BITS = 8            # Dense default
WEIGHT_LSB_DROPPED = 1         # mixed-sign 8-bit weights lose their lowest bit
DECAY_ONE = 4096               # 12-bit decay unit
STATE_SHIFT = 6                # a_in and vth are scaled by 2**6 in the bit-accurate LIF
V_MAX = 2**23 - 1
U_WRAP = 2**24

WEIGHTS = np.array([[61, -40, 90, 7], [120, 33, -128, 101], [-255, 255, 50, 3]], dtype=np.int64)
DU, DV, VTH = 1024, 1500, 150  # fixed point: du, dv in 1/4096 per step, vth mantissa


def _input_spikes() -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.random((WEIGHTS.shape[1], STEPS)) < 0.6).astype(np.float64)


def _decay(x: int, d: int) -> int:
    """``sgn(x * d) * (|x * d| >> 12)``: Lava's decay, rounding toward zero."""
    prod = x * d
    return (1 if prod > 0 else -1 if prod < 0 else 0) * (abs(prod) >> 12)


def _wrap24(x: int) -> int:
    return (x + U_WRAP // 2) % U_WRAP - U_WRAP // 2


def _hand_fixed(spikes: np.ndarray) -> np.ndarray:
    """The documented fixed-point equations, one neuron and one step at a time."""
    shift = WEIGHT_LSB_DROPPED
    w = [[(int(x) >> shift) << shift for x in row] for row in WEIGHTS]
    n_out, n_in = WEIGHTS.shape
    u, v = [0] * n_out, [0] * n_out
    out = np.zeros((n_out, STEPS))
    for t in range(STEPS):
        for i in range(n_out):
            # Dense sends at step t what it accumulated from the spikes of step t - 1.
            a_in = sum(w[i][j] * int(spikes[j, t - 1]) for j in range(n_in)) if t > 0 else 0
            u[i] = _wrap24(_decay(u[i], DECAY_ONE - (DU + 1)) + (a_in << STATE_SHIFT))
            v[i] = max(-V_MAX, min(V_MAX, _decay(v[i], DECAY_ONE - DV) + u[i]))
            if v[i] > (VTH << STATE_SHIFT):
                out[i, t] = 1.0
                v[i] = 0
    return out


def _hand_float(spikes: np.ndarray, w: np.ndarray, du: float, dv: float, vth: float) -> np.ndarray:
    n_out, n_in = w.shape
    u, v = [0.0] * n_out, [0.0] * n_out
    out = np.zeros((n_out, STEPS))
    for t in range(STEPS):
        for i in range(n_out):
            a_in = sum(float(w[i, j]) * spikes[j, t - 1] for j in range(n_in)) if t > 0 else 0.0
            u[i] = u[i] * (1 - du) + a_in
            v[i] = v[i] * (1 - dv) + u[i]
            if v[i] > vth:
                out[i, t] = 1.0
                v[i] = 0.0
    return out


def _simulate(tag: str, weights: np.ndarray, du, dv, vth, spikes: np.ndarray) -> np.ndarray:
    Dense = lava_import("lava.proc.dense.process").Dense
    LIF = lava_import("lava.proc.lif.process").LIF
    Source = lava_import("lava.proc.io.source").RingBuffer
    Sink = lava_import("lava.proc.io.sink").RingBuffer
    RunSteps = lava_import("lava.magma.core.run_conditions").RunSteps
    Loihi2SimCfg = lava_import("lava.magma.core.run_configs").Loihi2SimCfg

    source = Source(data=spikes)
    dense = Dense(weights=weights)
    lif = LIF(shape=(weights.shape[0],), du=du, dv=dv, vth=vth)
    sink = Sink(shape=(weights.shape[0],), buffer=STEPS)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    try:
        sink.run(condition=RunSteps(num_steps=STEPS), run_cfg=Loihi2SimCfg(select_tag=tag))
        return np.asarray(sink.data.get())
    finally:
        sink.stop()


@pytest.mark.lava
def test_dense_lif_fixed_pt_equals_hand_computation():
    spikes = _input_spikes()
    expected = _hand_fixed(spikes)
    assert 0 < expected.sum() < expected.size, "the case must have both spikes and silences"
    got = _simulate("fixed_pt", WEIGHTS, DU, DV, VTH, spikes)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.lava
def test_dense_lif_floating_pt_equals_hand_computation():
    spikes = _input_spikes()
    w = WEIGHTS / 64.0
    du, dv, vth = 0.25, 0.375, 2.3
    expected = _hand_float(spikes, w, du, dv, vth)
    assert 0 < expected.sum() < expected.size
    got = _simulate("floating_pt", w, du, dv, vth, spikes)
    np.testing.assert_array_equal(got, expected)

