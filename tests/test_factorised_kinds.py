"""The kinds of a factorised graph convolution: joint mixing (``jointmix``) into graded relays
(``relay``: a NIR ``LI`` with ``tau = dt``), 1x1 channel convolutions out of them, and a sum-pool
read-out (``sumpool``) into a relay; through fuse, quantisation, the emulator and stock Lava
processes (``Conv`` on transposed ports, ``GradedVec``), rows back to back.

The test graph's weights, inputs and parameters are dyadic (few bits), so every float sum is
exact in float64 whatever its order: Lava ``floating_pt`` equals the reference executor
exactly, and on a dyadic grid the fixed-point integers compute the same spikes.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from mksgn.convert.quantize import quantize
from mksgn.core.emulator import Emulator, fan_in, fanout
from mksgn.core.executor import NIRExecutor
from mksgn.core.fuse import fuse
from mksgn.core.kinds.relay import memoryless_li
from mksgn.deploy.lava_builder import LavaNetwork
from mksgn.deploy.lava_compat import lava_import

DT = 1e-3
C_IN, C_OUT, F, V, K = 2, 3, 4, 5, 4
STEPS, ROWS = 4, 3


def _relay(shape: tuple[int, ...], r: float = 1.0) -> nir.LI:
    return nir.LI(tau=np.full(shape, DT), r=np.full(shape, r), v_leak=np.zeros(shape))


def _lif(shape: tuple[int, ...], threshold: float) -> nir.LIF:
    ones = np.ones(shape)
    return nir.LIF(tau=2 * DT * ones, r=ones, v_leak=0 * ones, v_threshold=threshold * ones, v_reset=0 * ones)


def factorised_graph(seed: int = 0) -> nir.NIRGraph:
    """``x -> [A_k: jointmix] -> relay_k -> [W_k: 1x1 conv] -> s``, ``s -> sum pool -> relay_p -> fc -> b``."""
    rng = np.random.default_rng(seed)
    nodes: dict[str, nir.NIRNode] = {"x": nir.Input(input_type={"input": np.array([C_IN, F, V])})}
    edges = []
    for k in range(2):
        a = rng.integers(0, 5, size=(V, V)) / 4.0  # an adjacency-like partition on a 2**-2 grid
        w = rng.integers(-6, 8, size=(C_OUT, C_IN, 1, 1)) / 8.0
        nodes |= {f"A{k}": nir.Linear(weight=a), f"relay{k}": _relay((C_IN, F, V), r=2.0 if k else 1.0),
                  f"W{k}": nir.Conv2d(input_shape=(F, V), weight=w, stride=1, padding=0, dilation=1, groups=1,
                                      bias=np.zeros(C_OUT))}
        edges += [("x", f"A{k}"), (f"A{k}", f"relay{k}"), (f"relay{k}", f"W{k}"), (f"W{k}", "s")]
    nodes |= {
        "s": _lif((C_OUT, F, V), 0.5),
        "pool": nir.SumPool2d(kernel_size=np.array([F, V]), stride=np.array([F, V]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([C_OUT, 1, 1])}, start_dim=0, end_dim=-1),
        "relay_p": _relay((C_OUT,)),
        "fc": nir.Affine(weight=rng.integers(-8, 8, size=(K, C_OUT)) / 16.0, bias=np.array([0.25, 0, -0.125, 0])),
        "b": _lif((K,), 1.0),
        "out": nir.Output(output_type={"output": np.array([K])}),
        "pooled": nir.Output(output_type={"output": np.array([C_OUT])}),
    }
    edges += [("s", "pool"), ("pool", "flat"), ("flat", "relay_p"), ("relay_p", "fc"), ("fc", "b"), ("b", "out"),
              ("relay_p", "pooled")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(7)
    return {"x": torch.as_tensor(rng.integers(0, 16, size=(STEPS, ROWS, C_IN, F, V)) / 16.0)}


def test_the_factorised_chains_become_their_kinds():
    sg = fuse(factorised_graph())
    kinds = {s.name: s.kind for s in sg.synapses}
    assert kinds == {"x->relay0": "jointmix", "x->relay1": "jointmix", "relay0->s": "conv", "relay1->s": "conv",
                     "s->relay_p": "sumpool", "relay_p->b": "dense"}
    assert {n: p.kind for n, p in sg.populations.items()} == {
        "x": "input", "relay0": "relay", "relay1": "relay", "s": "neuron", "relay_p": "relay", "b": "neuron"}
    assert sg.is_graded("relay0") and not sg.populations["relay0"].spiking
    joint = next(s for s in sg.synapses if s.name == "x->relay1")
    np.testing.assert_array_equal(joint.weight, 2.0 * factorised_graph().nodes["A1"].weight)  # r folded in
    assert sg.outputs == {"out": "b", "pooled": "relay_p"}
    # an LI that leaks, or has a leak potential, stays a neuron
    assert memoryless_li(_relay((2,)), DT) and not memoryless_li(_relay((2,)), 2 * DT)
    assert not memoryless_li(nir.LI(tau=np.full(2, DT), r=np.ones(2), v_leak=np.full(2, 0.1)), DT)


def test_jointmix_and_sumpool_maps_fans_and_dense_forms():
    sg = fuse(factorised_graph())
    joint = next(s for s in sg.synapses if s.kind == "jointmix")
    kind = sg.kinds.synapse("jointmix")
    x = torch.rand(2, C_IN, F, V, dtype=torch.float64)
    y = kind.forward(joint, x, torch.as_tensor(joint.weight), (C_IN, F, V))
    np.testing.assert_allclose(y.numpy(), np.einsum("wv,bcfv->bcfw", joint.weight, x.numpy()), rtol=1e-12)
    dense = kind.dense(joint, joint.weight, (C_IN, F, V), (C_IN, F, V))
    np.testing.assert_allclose(dense @ x[0].reshape(-1).numpy(), y[0].reshape(-1).numpy(), rtol=1e-12)
    nonzero = torch.as_tensor(joint.weight != 0, dtype=torch.float64)
    assert torch.equal(fanout(sg, joint), nonzero.sum(0).expand(C_IN, F, V))  # each joint drives its column
    assert torch.equal(fan_in(sg, joint), nonzero.sum(1).expand(C_IN, F, V))
    pool = next(s for s in sg.synapses if s.kind == "sumpool")
    spikes = (torch.rand(2, C_OUT, F, V) < 0.5).double()
    pooled = sg.kinds.synapse("sumpool").forward(pool, spikes, torch.as_tensor(pool.weight), (C_OUT,))
    assert torch.equal(pooled, spikes.sum(dim=(2, 3)))
    assert torch.equal(fan_in(sg, pool), torch.full((C_OUT,), float(F * V)))


def test_float_emulator_equals_the_reference_executor(inputs):
    graph = factorised_graph()
    sg = fuse(graph)
    ref = NIRExecutor(graph).run(inputs)
    for timing in ("aligned", "lava"):
        emu = Emulator(sg, "floating_pt", timing).run(inputs, record_spikes=True)
        for out in ("out", "pooled"):
            assert torch.equal(emu.outputs[out], ref.outputs[out]), (timing, out)
        assert torch.equal(emu.spikes["s"].double(), ref.records["s"]), timing
    assert 0 < float(ref.records["s"].mean()) < 1 and float(ref.records["b"].sum()) > 0


def test_dyadic_quantisation_of_relays_and_exact_fixed_point(inputs):
    sg, reports = quantize(fuse(factorised_graph()), inputs, dyadic=True)
    fixed = sg.fixed
    for name in ("relay0", "relay1", "relay_p"):
        scale = fixed.populations[name].scale
        assert scale > 0 and float(np.log2(scale)).is_integer(), name
    for name in ("x->relay0", "x->relay1", "relay0->s", "relay1->s", "s->relay_p"):
        q = fixed.synapses[name]  # Conv semantics: no exponent, 8 bits as given
        assert q.weight_exp == 0 and int(np.abs(q.weight).max()) <= 254, name
    pool = fixed.synapses["s->relay_p"].weight * fixed.populations["relay_p"].scale
    assert np.all(pool == 1.0)  # the pool counts spikes (in the relay's unit: the finest the 8 bits allow)
    assert sum(r.saturated for r in reports) == 0
    floating = Emulator(sg, "floating_pt").run(inputs, record_spikes=True)
    aligned = Emulator(sg, "fixed_pt").run(inputs, record_spikes=True)
    lava_timed = Emulator(sg, "fixed_pt", "lava").run(inputs, record_spikes=True)
    for out in ("out", "pooled"):
        assert torch.equal(aligned.outputs[out], lava_timed.outputs[out]), out
        assert torch.equal(aligned.outputs[out], floating.outputs[out]), out  # dyadic: float == integers
    assert torch.equal(aligned.spikes["s"], floating.spikes["s"])
    assert sum(aligned.saturation.values()) == 0


def test_float_graded_vec_model_equals_the_stock_fixed_model():
    from mksgn.deploy.lava_procs.models import float_graded_models

    GradedVec = lava_import("lava.proc.graded.process").GradedVec
    Source = lava_import("lava.proc.io.source").RingBuffer
    Sink = lava_import("lava.proc.io.sink").RingBuffer
    RunSteps = lava_import("lava.magma.core.run_conditions").RunSteps
    Loihi2SimCfg = lava_import("lava.magma.core.run_configs").Loihi2SimCfg
    rng = np.random.default_rng(3)
    n, steps = 7, 9
    data = rng.integers(-(1 << 22), 1 << 22, size=(n, steps)) * (rng.random((n, steps)) < 0.7)

    def run(tag: str) -> np.ndarray:
        source, relay, sink = Source(data=data.astype(np.int32 if tag == "fixed_pt" else float)), \
            GradedVec(shape=(n,), vth=0), Sink(shape=(n,), buffer=steps)
        source.s_out.connect(relay.a_in)
        relay.s_out.connect(sink.a_in)
        cfg = Loihi2SimCfg(select_tag=tag, exception_proc_model_map=float_graded_models()[tag])
        try:
            relay.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
            return np.asarray(sink.data.get())
        finally:
            relay.stop()

    stock, floating = run("fixed_pt"), run("floating_pt")
    np.testing.assert_array_equal(stock, data)  # the identity (no synapse between: no step late)
    np.testing.assert_array_equal(floating, stock)


@pytest.mark.lava
@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_lava_runs_the_factorised_kinds_on_stock_processes(tag, inputs):
    graph = factorised_graph()
    sg = fuse(graph)
    if tag == "fixed_pt":
        sg, _ = quantize(sg, inputs, dyadic=True)
        emu = Emulator(sg, "fixed_pt", "lava").run(inputs, record_spikes=True)
        expected = {"s": emu.spikes["s"].numpy(), "out": emu.outputs["out"].numpy(),
                    "pooled": emu.outputs["pooled"].numpy()}
    else:
        ref = NIRExecutor(graph).run(inputs)
        expected = {"s": ref.records["s"].numpy().astype(bool), "out": ref.outputs["out"].numpy(),
                    "pooled": ref.outputs["pooled"].numpy()}
    net = LavaNetwork(sg, tag, {"x": inputs["x"].numpy()}, record=["s"], rows=True)
    kinds = {n: type(p).__name__ for n, p in net.ctx.procs.items()}
    assert kinds["relay0"] == kinds["relay_p"] == "GradedVec" and kinds["s"] == "LIFReset"
    assert {type(net.ctx.synapses[n]).__name__ for n in ("x->relay0", "relay0->s", "s->relay_p")} == {"Conv"}
    res = net.run()
    np.testing.assert_array_equal(res.spikes["s"], expected["s"])
    np.testing.assert_array_equal(res.outputs["out"], expected["out"])
    np.testing.assert_array_equal(res.outputs["pooled"], expected["pooled"])
    assert res.outputs["pooled"].shape == (STEPS, ROWS, C_OUT) and float(np.abs(expected["pooled"]).sum()) > 0


def test_merged_groups_sum_the_same_integers_within_lavas_127_groups():
    from mksgn.deploy.lava_builder import LAVA_CONV_FIELD_MAX, merged_groups
    from mksgn.deploy.lava_procs.models import _conv_hwc

    rng = np.random.default_rng(3)
    for groups, per_out, per_in in ((256, 1, 1), (254, 2, 3), (131, 1, 2)):
        weight = rng.integers(-8, 8, size=(groups * per_out, 2, 3, per_in))
        x = rng.integers(-4, 5, size=(4, 5, groups * per_in))
        merged, g = merged_groups(weight, groups)
        assert g <= LAVA_CONV_FIELD_MAX and groups % g == 0 and merged.shape[3] == per_in * groups // g
        np.testing.assert_array_equal(_conv_hwc(x, merged, (1, 1), (1, 1), (1, 1), g),
                                      _conv_hwc(x, weight, (1, 1), (1, 1), (1, 1), groups))
    assert merged_groups(weight[:4], 4)[1] == 4  # within the limit: unchanged


def _pool_graph(channels: int, frames: int, joints: int) -> nir.NIRGraph:
    """``x (C, F, V) -> sum pool over (F, V) -> relay -> out``."""
    nodes = {
        "x": nir.Input(input_type={"input": np.array([channels, frames, joints])}),
        "pool": nir.SumPool2d(kernel_size=np.array([frames, joints]), stride=np.array([frames, joints]),
                              padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([channels, 1, 1])}, start_dim=0, end_dim=-1),
        "relay": _relay((channels,)),
        "out": nir.Output(output_type={"output": np.array([channels])}),
    }
    edges = [("x", "pool"), ("pool", "flat"), ("flat", "relay"), ("relay", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)


@pytest.mark.lava
def test_lava_pools_more_channels_than_a_stock_conv_has_groups():
    """``ntu``'s read-out pools 256 channels: Lava's Conv keeps ``groups`` in an int8 (256 -> 0)."""
    channels = 130
    x = {"x": torch.as_tensor(np.random.default_rng(5).integers(0, 16, size=(2, 2, channels, 3, 2)) / 16.0)}
    sg, _ = quantize(fuse(_pool_graph(channels, 3, 2)), x, dyadic=True)
    expected = Emulator(sg, "fixed_pt", "lava").run(x).outputs["out"].numpy()
    net = LavaNetwork(sg, "fixed_pt", {"x": x["x"].numpy()}, rows=True)
    assert int(np.asarray(net.ctx.synapses["x->relay"].groups.init).reshape(-1)[0]) == 65
    np.testing.assert_array_equal(net.run().outputs["out"], expected)
    assert float(np.abs(expected).sum()) > 0


def test_a_pool_kernel_beyond_lavas_int8_fields_is_refused_naming_the_synapse():
    from mksgn.deploy.lava_builder import LavaBuildError

    x = {"x": torch.ones(1, 1, 1, 128, 1)}
    sg, _ = quantize(fuse(_pool_graph(1, 128, 1)), x, dyadic=True)
    with pytest.raises(LavaBuildError, match=r"synapse 'x->relay': kernel size \(128, 1\) exceeds 127"):
        LavaNetwork(sg, "fixed_pt", {"x": x["x"].numpy()}, rows=True)


def _fused_graph(seed: int = 1) -> nir.NIRGraph:
    """``x -> Linear(A) -> 1x1 Conv2d(W) -> s``: a graph convolution with no relay (the ``mix`` kind)."""
    rng = np.random.default_rng(seed)
    nodes = {
        "x": nir.Input(input_type={"input": np.array([C_IN, F, V])}),
        "A": nir.Linear(weight=rng.integers(-2, 5, size=(V, V)) / 4.0),
        "W": nir.Conv2d(input_shape=(F, V), weight=rng.integers(-6, 8, size=(C_OUT, C_IN, 1, 1)) / 8.0, stride=1,
                        padding=0, dilation=1, groups=1, bias=np.full(C_OUT, 0.125)),
        "s": _lif((C_OUT, F, V), 0.5),
        "out": nir.Output(output_type={"output": np.array([C_OUT, F, V])}),
    }
    edges = [("x", "A"), ("A", "W"), ("W", "s"), ("s", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)


@pytest.mark.lava
@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_lava_runs_a_fused_graph_convolution_mix_as_a_stock_conv(tag, inputs):
    """A foreign graph's fused graph convolution (``mix``) is a stock ``Conv`` with a ``(1, V)`` kernel."""
    graph = _fused_graph()
    sg = fuse(graph)
    assert [s.kind for s in sg.synapses] == ["mix"]
    if tag == "fixed_pt":
        sg, _ = quantize(sg, inputs, dyadic=True)
        expected = Emulator(sg, "fixed_pt", "lava").run(inputs, record_spikes=True).spikes["s"].numpy()
    else:
        expected = NIRExecutor(graph).run(inputs).records["s"].numpy().astype(bool)
    net = LavaNetwork(sg, tag, {"x": inputs["x"].numpy()}, record=["s"], rows=True)
    assert type(net.ctx.synapses["x->s"]).__name__ == "Conv"
    got = net.run().spikes["s"]
    np.testing.assert_array_equal(got, expected)
    assert 0 < expected.sum() < expected.size
