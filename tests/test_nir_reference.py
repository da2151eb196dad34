"""mksgn.core.executor: every node type against hand loops or independent formulas."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import nir
import numpy as np
import pytest
import torch

from mksgn.core.executor import (
    DEFAULT_DT,
    DISCRETISATIONS,
    ExecutionResult,
    NIRExecutionError,
    NIRExecutor,
    NodeProgram,
)
from mksgn.errors import MksgnError

DT = 1e-4


def chain(*named: tuple[str, nir.NIRNode], metadata: dict | None = None) -> nir.NIRGraph:
    """A sequential graph of the given (name, node) pairs, not type-checked by nir."""
    nodes = dict(named)
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])),
                        metadata={"dt": DT} if metadata is None else metadata, type_check=False)


def wrap(node: nir.NIRNode, in_shape, out_shape, **kwargs) -> nir.NIRGraph:
    """Input -> node -> Output."""
    return chain(("in", nir.Input(np.array(in_shape))), ("node", node), ("out", nir.Output(np.array(out_shape))),
                 **kwargs)


def run1(graph: nir.NIRGraph, x, **kwargs) -> ExecutionResult:
    return NIRExecutor(graph, **kwargs).run(torch.as_tensor(np.asarray(x, dtype=np.float64)))


def leaky(beta: float, n: int, threshold: float = 1.0) -> nir.LIF:
    """snnTorch's export of Leaky(beta): tau = dt/(1-beta), r = tau/dt."""
    tau = DT / (1 - beta)
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / DT), v_leak=np.zeros(n),
                   v_threshold=np.full(n, threshold), v_reset=np.zeros(n))


# --------------------------------------------------------------------------- neurons


def test_lif_beta_half_matches_the_discrete_rule_and_threshold_is_strict():
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 6, size=(12, 3, 4)) * 0.25  # multiples of 1/4: exact arithmetic
    x[:3, 0, 0] = [1.0, 0.5, 0.6]  # v = 1.0 (at threshold: no spike), 1.0 again, then 1.1 -> spike
    result = run1(wrap(leaky(0.5, 4), [4], [4]), x)
    v = np.zeros((3, 4))
    spikes, membranes = [], []
    for t in range(12):
        v = 0.5 * v + x[t]
        membranes.append(v.copy())
        s = v > 1.0
        spikes.append(s.astype(float))
        v = np.where(s, 0.0, v)
    np.testing.assert_array_equal(result.outputs["out"].numpy(), np.array(spikes))
    np.testing.assert_array_equal(result.membranes["node"].numpy(), np.array(membranes))
    assert result.outputs["out"][:3, 0, 0].tolist() == [0.0, 0.0, 1.0]
    assert result.membranes["node"][:2, 0, 0].tolist() == [1.0, 1.0]
    assert np.array(spikes).sum() > 5  # the test exercises resets


def test_lif_with_leak_and_reset_potential():
    tau, r, v_leak, thr, reset = 5e-4, 3.0, 0.2, 0.7, -0.1
    node = nir.LIF(tau=np.array([tau]), r=np.array([r]), v_leak=np.array([v_leak]), v_threshold=np.array([thr]),
                   v_reset=np.array([reset]))
    x = np.random.default_rng(1).uniform(0, 2, size=(20, 2, 1))
    out = run1(wrap(node, [1], [1]), x).outputs["out"].numpy()
    v, expected = np.zeros((2, 1)), []
    for t in range(20):
        v = v + DT / tau * (v_leak - v + r * x[t])
        expected.append((v > thr).astype(float))
        v = np.where(v > thr, reset, v)
    np.testing.assert_allclose(out, np.array(expected))
    assert 0 < out.sum() < out.size


def test_li_integrator_and_if():
    x = np.random.default_rng(2).normal(size=(15, 2, 3))
    tau, r, v_leak = np.array([2e-4, 4e-4, 1e-3]), np.array([1.0, 2.0, 0.5]), np.array([0.0, 0.1, -0.2])
    li = run1(wrap(nir.LI(tau=tau, r=r, v_leak=v_leak), [3], [3]), x).outputs["out"].numpy()
    integ = run1(wrap(nir.I(r=np.array([10.0, 20.0, 30.0])), [3], [3]), x).outputs["out"].numpy()
    if_node = nir.IF(r=np.full(3, 1 / DT), v_threshold=np.array([0.5, 1.0, 1.5]), v_reset=np.array([0.0, -1.0, 0.2]))
    res_if = run1(wrap(if_node, [3], [3]), x)
    v_li, v_i, v_if = np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3))
    for t in range(15):
        v_li = (1 - DT / tau) * v_li + r * DT / tau * x[t] + v_leak * DT / tau
        np.testing.assert_allclose(li[t], v_li, rtol=1e-12, atol=1e-12)
        v_i = v_i + np.array([10.0, 20.0, 30.0]) * DT * x[t]
        np.testing.assert_allclose(integ[t], v_i, rtol=1e-12, atol=1e-12)
        v_if = v_if + x[t]  # r = 1/dt: adds the input
        np.testing.assert_allclose(res_if.membranes["node"][t].numpy(), v_if, atol=1e-12)
        s = v_if > np.array([0.5, 1.0, 1.5])
        np.testing.assert_array_equal(res_if.outputs["out"][t].numpy(), s.astype(float))
        v_if = np.where(s, np.array([0.0, -1.0, 0.2]), v_if)


def test_cuba_lif_and_cuba_li():
    n = 3
    p = dict(tau_syn=np.array([2e-4, 3e-4, 5e-4]), tau_mem=np.array([4e-4, 1e-3, 2e-4]), r=np.array([2.0, 3.0, 1.5]),
             v_leak=np.array([0.0, 0.05, -0.05]), w_in=np.array([1.0, 2.0, 0.5]))
    thr, reset = np.array([0.3, 0.5, 0.2]), np.array([0.0, -0.1, 0.05])
    x = np.random.default_rng(3).uniform(0, 1.5, size=(25, 2, n))
    lif = run1(wrap(nir.CubaLIF(**p, v_threshold=thr, v_reset=reset), [n], [n]), x)
    li = run1(wrap(nir.CubaLI(**p), [n], [n]), x).outputs["out"].numpy()
    a_syn, b_syn = 1 - DT / p["tau_syn"], DT / p["tau_syn"] * p["w_in"]
    a, b, c = 1 - DT / p["tau_mem"], p["r"] * DT / p["tau_mem"], p["v_leak"] * DT / p["tau_mem"]
    i1 = v1 = i2 = v2 = np.zeros((2, n))
    for t in range(25):
        i1 = a_syn * i1 + b_syn * x[t]
        v1 = a * v1 + b * i1 + c
        np.testing.assert_allclose(lif.membranes["node"][t].numpy(), v1, atol=1e-12)
        s = v1 > thr
        np.testing.assert_array_equal(lif.outputs["out"][t].numpy(), s.astype(float))
        v1 = np.where(s, reset, v1)
        i2 = a_syn * i2 + b_syn * x[t]
        v2 = a * v2 + b * i2 + c
        np.testing.assert_allclose(li[t], v2, atol=1e-12)
    assert 0 < lif.outputs["out"].sum() < lif.outputs["out"].numel()


def test_threshold_is_strict_and_records_its_input():
    x = np.array([[[0.5, 1.0, 1.5]], [[1.0, 1.0000001, -3.0]]])
    res = run1(wrap(nir.Threshold(threshold=np.ones(3)), [3], [3]), x)
    np.testing.assert_array_equal(res.outputs["out"].numpy(), (x > 1.0).astype(float))
    np.testing.assert_array_equal(res.membranes["node"].numpy(), x)


# --------------------------------------------------------------------------- delay


def test_delay_uniform_and_per_element():
    x = np.random.default_rng(4).normal(size=(8, 2, 3))
    out = run1(wrap(nir.Delay(delay=np.full(3, 2 * DT)), [3], [3]), x).outputs["out"].numpy()
    np.testing.assert_array_equal(out[:2], 0.0)
    np.testing.assert_array_equal(out[2:], x[:-2])
    out = run1(wrap(nir.Delay(delay=np.array([0.0, 1.0, 3.0]) * DT), [3], [3]), x).outputs["out"].numpy()
    for k, lag in enumerate([0, 1, 3]):
        np.testing.assert_array_equal(out[lag:, :, k], x[: 8 - lag, :, k])
        np.testing.assert_array_equal(out[:lag, :, k], 0.0)


def test_delay_must_be_whole_steps():
    with pytest.raises(NIRExecutionError, match=r"node 'node' \(Delay\).*whole number of steps"):
        NIRExecutor(wrap(nir.Delay(delay=np.full(2, 1.5 * DT)), [2], [2]))
    with pytest.raises(NIRExecutionError, match="Delay"):
        NIRExecutor(wrap(nir.Delay(delay=np.full(2, -DT)), [2], [2]))


# --------------------------------------------------------------------------- linear maps


def test_affine_and_linear_act_on_the_last_axis():
    rng = np.random.default_rng(5)
    w, b = rng.normal(size=(4, 3)), rng.normal(size=4)
    x = rng.normal(size=(3, 2, 5, 3))  # per-sample (5, 3): last-axis semantics
    out = run1(wrap(nir.Affine(weight=w, bias=b), [5, 3], [5, 4]), x).outputs["out"].numpy()
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-12)
    out = run1(wrap(nir.Linear(weight=w), [5, 3], [5, 4]), x).outputs["out"].numpy()
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-12)


def test_scale_elementwise_per_channel_and_scalar():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 2, 3, 4, 5))
    s = np.array([1.0, -2.0, 0.5])
    out = run1(wrap(nir.Scale(scale=s), [3, 4, 5], [3, 4, 5]), x).outputs["out"].numpy()
    np.testing.assert_allclose(out, x * s[:, None, None])
    x1 = x[..., 0]  # (C, L)
    out = run1(wrap(nir.Scale(scale=s), [3, 4], [3, 4]), x1).outputs["out"].numpy()
    np.testing.assert_allclose(out, x1 * s[:, None])
    full = rng.normal(size=(3, 4))
    out = run1(wrap(nir.Scale(scale=full), [3, 4], [3, 4]), x1).outputs["out"].numpy()
    np.testing.assert_allclose(out, x1 * full)
    out = run1(wrap(nir.Scale(scale=np.array(2.5)), [3, 4], [3, 4]), x1).outputs["out"].numpy()
    np.testing.assert_allclose(out, 2.5 * x1)
    with pytest.raises(NIRExecutionError, match=r"node 'node' \(Scale\).*node 'in' \(Input\)"):
        NIRExecutor(wrap(nir.Scale(scale=np.ones(7)), [3, 4], [3, 4]))


# --------------------------------------------------------------------------- convolution, pooling, flatten


def conv_reference(x, w, b, stride, padding, dilation, groups):
    """Naive cross-correlation, any number of spatial axes: x (B, C, *S), w (O, C/g, *K)."""
    nd = x.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    out_ch, per_group, *kernel = w.shape
    spatial = [(x.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(nd)]
    y = np.zeros((x.shape[0], out_ch, *spatial))
    per_out = out_ch // groups
    for o in range(out_ch):
        g = o // per_out
        chans = x[:, g * per_group:(g + 1) * per_group]
        for pos in itertools.product(*[range(s) for s in spatial]):
            acc = np.zeros(x.shape[0])
            for k in itertools.product(*[range(kk) for kk in kernel]):
                idx = tuple(pos[i] * stride[i] + k[i] * dilation[i] for i in range(nd))
                acc += chans[(slice(None), slice(None)) + idx] @ w[(o, slice(None)) + k]
            y[(slice(None), o) + pos] = acc + b[o]
    return y


def test_conv2d_with_stride_padding_dilation_groups():
    rng = np.random.default_rng(7)
    w, b = rng.normal(size=(4, 1, 3, 2)), rng.normal(size=4)  # groups=2: 2 input channels, non-square kernel
    node = nir.Conv2d(input_shape=(6, 5), weight=w, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, bias=b)
    x = rng.normal(size=(2, 3, 2, 6, 5))
    expected = np.stack([conv_reference(x[t], w, b, (2, 1), (1, 0), (1, 2), 2) for t in range(2)])
    ex = NIRExecutor(wrap(node, [2, 6, 5], list(expected.shape[2:])))
    np.testing.assert_allclose(ex.run(torch.from_numpy(x)).outputs["out"].numpy(), expected, rtol=1e-10, atol=1e-12)
    assert ex.output_shapes["node"] == (4, 3, 3)


def test_conv1d_including_same_padding():
    rng = np.random.default_rng(8)
    w, b = rng.normal(size=(3, 2, 3)), rng.normal(size=3)
    x = rng.normal(size=(2, 2, 2, 7))
    node = nir.Conv1d(input_shape=7, weight=w, stride=2, padding=1, dilation=1, groups=1, bias=b)
    out = run1(wrap(node, [2, 7], [3, 4]), x).outputs["out"].numpy()
    expected = np.stack([conv_reference(x[t], w, b, (2,), (1,), (1,), 1) for t in range(2)])
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    same = nir.Conv1d(input_shape=7, weight=w, stride=1, padding="same", dilation=1, groups=1, bias=b)
    out = run1(wrap(same, [2, 7], [3, 7]), x).outputs["out"].numpy()
    expected = np.stack([conv_reference(x[t], w, b, (1,), (1,), (1,), 1) for t in range(2)])
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


def test_sum_and_average_pooling():
    rng = np.random.default_rng(9)
    x = rng.integers(-5, 5, size=(2, 2, 3, 5, 6)).astype(float)
    pool = nir.SumPool2d(kernel_size=np.array([2, 3]), stride=np.array([2, 2]), padding=np.array([1, 1]))
    out = run1(wrap(pool, [3, 5, 6], [3, 3, 3]), x).outputs["out"].numpy()
    padded = np.pad(x, [(0, 0)] * 3 + [(1, 1), (1, 1)])
    expected = np.zeros((2, 2, 3, 3, 3))
    for i, j in itertools.product(range(3), range(3)):
        expected[..., i, j] = padded[..., 2 * i:2 * i + 2, 2 * j:2 * j + 3].sum(axis=(-1, -2))
    np.testing.assert_array_equal(out, expected)
    avg = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    out = run1(wrap(avg, [3, 5, 6], [3, 2, 3]), x).outputs["out"].numpy()
    expected = x[..., :4, :].reshape(2, 2, 3, 2, 2, 3, 2).mean(axis=(-3, -1))
    np.testing.assert_allclose(out, expected)


def test_flatten_dims_refer_to_the_sample_shape():
    x = np.arange(2 * 3 * 2 * 3 * 4, dtype=float).reshape(2, 3, 2, 3, 4)
    out = run1(wrap(nir.Flatten(input_type=np.array([2, 3, 4]), start_dim=0, end_dim=-1), [2, 3, 4], [24]), x)
    np.testing.assert_array_equal(out.outputs["out"].numpy(), x.reshape(2, 3, 24))
    out = run1(wrap(nir.Flatten(input_type=np.array([2, 3, 4]), start_dim=1, end_dim=2), [2, 3, 4], [2, 12]), x)
    np.testing.assert_array_equal(out.outputs["out"].numpy(), x.reshape(2, 3, 2, 12))
    out = run1(wrap(nir.Flatten(input_type=None, start_dim=-3, end_dim=-2), [2, 3, 4], [6, 4]), x)
    np.testing.assert_array_equal(out.outputs["out"].numpy(), x.reshape(2, 3, 6, 4))


# --------------------------------------------------------------------------- graph structure


def test_several_incoming_edges_are_summed_and_every_node_is_recorded():
    w1, w2 = np.array([[1.0, 2.0]]), np.array([[-1.0, 0.5, 3.0]])
    g = nir.NIRGraph(
        nodes={"a": nir.Input(np.array([2])), "b": nir.Input(np.array([3])), "la": nir.Linear(weight=w1),
               "lb": nir.Linear(weight=w2), "sum": nir.Scale(scale=np.array([2.0])), "out": nir.Output(np.array([1]))},
        edges=[("a", "la"), ("b", "lb"), ("la", "sum"), ("lb", "sum"), ("sum", "out")],
        metadata={}, type_check=False)
    rng = np.random.default_rng(10)
    xa, xb = rng.normal(size=(4, 2, 2)), rng.normal(size=(4, 2, 3))
    res = NIRExecutor(g).run({"a": torch.from_numpy(xa), "b": torch.from_numpy(xb)})
    np.testing.assert_allclose(res.outputs["out"].numpy(), 2 * (xa @ w1.T + xb @ w2.T), rtol=1e-12)
    assert set(res.records) == {"a", "b", "la", "lb", "sum", "out"}
    assert all(r.shape[:2] == (4, 2) for r in res.records.values())
    assert res.membranes == {}


def test_recording_only_chosen_nodes():
    g = chain(("in", nir.Input(np.array([3]))), ("lin", nir.Linear(weight=np.eye(3) * 2.0)),
              ("lif", leaky(0.5, 3)), ("out", nir.Output(np.array([3]))))
    x = torch.full((4, 2, 3), 0.6, dtype=torch.float64)
    full = NIRExecutor(g).run(x)
    some = NIRExecutor(g).run(x, record={"lif"})
    assert set(some.records) == {"lif", "out"} and set(some.membranes) == {"lif"}
    assert torch.equal(some.records["lif"], full.records["lif"])
    assert torch.equal(some.membranes["lif"], full.membranes["lif"])
    with pytest.raises(NIRExecutionError, match="nope"):
        NIRExecutor(g).run(x, record={"nope"})


def nested_graph(dotted: bool) -> nir.NIRGraph:
    inner = nir.NIRGraph(
        nodes={"i": nir.Input(np.array([2])), "lin": nir.Linear(weight=np.array([[1.0, 1.0], [0.0, 2.0]])),
               "lif": leaky(0.5, 2), "o": nir.Output(np.array([2]))},
        edges=[("i", "lin"), ("lin", "lif"), ("lif", "o")], metadata={}, type_check=False)
    edges = ([("in", "sub.i"), ("sub.o", "out")] if dotted else [("in", "sub"), ("sub", "out")])
    return nir.NIRGraph(nodes={"in": nir.Input(np.array([2])), "sub": inner, "out": nir.Output(np.array([2]))},
                        edges=edges, metadata={"dt": DT}, type_check=False)


@pytest.mark.parametrize("dotted", [False, True])
def test_nested_graph(dotted):
    x = np.random.default_rng(11).integers(0, 3, size=(10, 2, 2)) * 0.5
    res = NIRExecutor(nested_graph(dotted)).run(torch.from_numpy(x))
    v, expected = np.zeros((2, 2)), []
    for t in range(10):
        v = 0.5 * v + x[t] @ np.array([[1.0, 1.0], [0.0, 2.0]]).T
        expected.append((v > 1).astype(float))
        v = np.where(v > 1, 0.0, v)
    np.testing.assert_array_equal(res.outputs["out"].numpy(), np.array(expected))
    assert {"in", "sub.i", "sub.lin", "sub.lif", "sub.o", "sub", "out"} == set(res.records)
    np.testing.assert_array_equal(res.records["sub"].numpy(), res.records["sub.lif"].numpy())
    assert set(res.membranes) == {"sub.lif"}


def test_recurrent_cycle_uses_the_previous_step():
    n = 3
    w_rec = np.array([[0.0, -0.5, 0.8], [0.6, 0.0, -0.4], [0.7, 0.3, 0.0]])
    g = nir.NIRGraph(
        nodes={"in": nir.Input(np.array([n])), "lif": leaky(0.5, n), "rec": nir.Linear(weight=w_rec),
               "out": nir.Output(np.array([n]))},
        edges=[("in", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out")], metadata={"dt": DT})
    x = np.random.default_rng(12).uniform(0, 1.2, size=(30, 4, n))
    ex = NIRExecutor(g)
    assert ex.back_edges == [("rec", "lif")]
    res = ex.run(torch.from_numpy(x))
    v, s, expected = np.zeros((4, n)), np.zeros((4, n)), []
    for t in range(30):
        v = 0.5 * v + x[t] + s @ w_rec.T
        s = (v > 1).astype(float)
        expected.append(s)
        v = np.where(s > 0, 0.0, v)
    np.testing.assert_array_equal(res.outputs["out"].numpy(), np.array(expected))
    np.testing.assert_allclose(res.records["rec"][:-1].numpy(), np.array(expected)[:-1] @ w_rec.T)
    assert 0 < np.sum(expected) < np.size(expected)


def test_recurrent_cuba_lif_and_algebraic_loop_refused():
    n = 2
    cuba = nir.CubaLIF(tau_syn=np.full(n, 2e-4), tau_mem=np.full(n, 4e-4), r=np.full(n, 2.0), v_leak=np.zeros(n),
                       v_threshold=np.full(n, 0.4), v_reset=np.zeros(n), w_in=np.ones(n))
    w_rec = np.array([[0.0, 1.0], [-1.0, 0.0]])
    nodes = {"in": nir.Input(np.array([n])), "acc": nir.Scale(scale=np.full(n, 0.5)), "cuba": cuba,
             "rec": nir.Linear(weight=w_rec), "out": nir.Output(np.array([n]))}
    edges = [("in", "acc"), ("acc", "cuba"), ("cuba", "rec"), ("rec", "cuba"), ("cuba", "out")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)
    ex = NIRExecutor(g)
    assert ex.back_edges == [("rec", "cuba")]
    x = np.random.default_rng(13).uniform(0, 1, size=(20, 3, n))
    res = ex.run(torch.from_numpy(x))
    i, v, s = (np.zeros((3, n)) for _ in range(3))
    for t in range(20):
        acc = 0.5 * x[t]
        i = 0.5 * i + 0.5 * (acc + s @ w_rec.T)
        v = 0.75 * v + 0.5 * i
        s = (v > 0.4).astype(float)
        np.testing.assert_allclose(res.records["acc"][t].numpy(), acc, atol=1e-12)
        np.testing.assert_array_equal(res.outputs["out"][t].numpy(), s)
        v = np.where(s > 0, 0.0, v)
    # a self-loop on a stateless node is an algebraic loop (no neuron, no Delay on the cycle): refused
    looped = nir.NIRGraph(nodes=nodes, edges=[*edges, ("acc", "acc")], metadata={"dt": DT}, type_check=False)
    with pytest.raises(NIRExecutionError, match=r"node 'acc' \(Scale\): a cycle through \['acc'\] has no neuron"):
        NIRExecutor(looped)


def test_write_read_round_trip_runs_identically(tmp_path):
    rng = np.random.default_rng(14)
    nodes = {
        "in": nir.Input(np.array([2, 6, 6])),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=rng.normal(size=(3, 2, 3, 3)), stride=1, padding=1, dilation=1,
                           groups=1, bias=rng.normal(size=3)),
        "lif1": nir.LIF(tau=np.full((3, 6, 6), 2e-4), r=np.full((3, 6, 6), 2.0), v_leak=np.zeros((3, 6, 6)),
                        v_threshold=np.full((3, 6, 6), 0.5), v_reset=np.zeros((3, 6, 6))),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type=np.array([3, 3, 3]), start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(size=(4, 27)), bias=rng.normal(size=4)),
        "delay": nir.Delay(delay=np.full(4, 2 * DT)),
        "cuba": nir.CubaLIF(tau_syn=np.full(4, 3e-4), tau_mem=np.full(4, 5e-4), r=np.full(4, 1.5),
                            v_leak=np.zeros(4), v_threshold=np.full(4, 0.3), v_reset=np.zeros(4), w_in=np.ones(4)),
        "out": nir.Output(np.array([4])),
    }
    names = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), metadata={"dt": DT})
    path = tmp_path / "graph.nir"
    nir.write(path, graph)
    back = nir.read(path)
    x = torch.from_numpy((rng.uniform(size=(8, 2, 2, 6, 6)) > 0.5).astype(np.float64))
    a, b = NIRExecutor(graph).run(x), NIRExecutor(back).run(x)
    assert set(a.records) == set(b.records)
    for name in a.records:
        torch.testing.assert_close(a.records[name], b.records[name], rtol=0, atol=0)
    assert a.outputs["out"].sum() > 0
    nir.write(tmp_path / "nested.nir", nested_graph(dotted=True))
    nested = nir.read(tmp_path / "nested.nir", type_check=False)
    x = torch.ones(5, 1, 2)
    torch.testing.assert_close(NIRExecutor(nested).run(x).outputs["out"],
                               NIRExecutor(nested_graph(dotted=True)).run(x).outputs["out"], rtol=0, atol=0)


def test_float32_matches_float64_and_runs_are_independent():
    g = nir.NIRGraph(
        nodes={"in": nir.Input(np.array([3])), "fc": nir.Affine(weight=np.eye(3) * 0.7, bias=np.full(3, 0.05)),
               "lif": nir.LIF(tau=np.full(3, 3e-4), r=np.full(3, 3.0), v_leak=np.zeros(3),
                              v_threshold=np.full(3, 0.8), v_reset=np.zeros(3)), "out": nir.Output(np.array([3]))},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")], metadata={"dt": DT})
    x = torch.from_numpy(np.random.default_rng(15).uniform(size=(10, 2, 3)))
    r64 = NIRExecutor(g).run(x)
    ex32 = NIRExecutor(g, dtype=torch.float32)
    r32 = ex32.run(x)
    assert r32.outputs["out"].dtype == torch.float32 and r64.outputs["out"].dtype == torch.float64
    torch.testing.assert_close(r32.membranes["lif"].double(), r64.membranes["lif"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ex32.run(x).records["lif"], r32.records["lif"], rtol=0, atol=0)  # state restarts


def test_dt_precedence_record_flag_and_inputs_as_dict():
    node = nir.I(r=np.ones(1))
    x = torch.ones(3, 1, 1, dtype=torch.float64)
    assert NIRExecutor(wrap(node, [1], [1], metadata={})).dt == DEFAULT_DT
    assert NIRExecutor(wrap(node, [1], [1], metadata={"dt": 0.5})).dt == 0.5
    ex = NIRExecutor(wrap(node, [1], [1], metadata={"dt": 0.5}), dt=0.25)
    res = ex.run({"in": x}, record=False)
    assert res.outputs["out"][:, 0, 0].tolist() == [0.25, 0.5, 0.75]
    assert res.records == {} and res.membranes == {}


def test_custom_node_steps():
    @dataclass(eq=False)
    class Square(nir.NIRNode):
        def __post_init__(self):
            self.input_type = {"input": None}
            self.output_type = {"output": None}

    def build(node, ctx):
        return NodeProgram(ctx.input_shape, lambda state, x: (x * x, None))

    g = wrap(Square(), [2], [2])
    with pytest.raises(NIRExecutionError, match=r"node 'node' \(Square\).*not supported"):
        NIRExecutor(g)
    out = NIRExecutor(g, node_steps={Square: build}).run(torch.full((2, 1, 2), 3.0)).outputs["out"]
    assert out.flatten().tolist() == [9.0] * 4


# --------------------------------------------------------------------------- errors


def test_error_is_a_mksgn_value_error():
    assert issubclass(NIRExecutionError, MksgnError) and issubclass(NIRExecutionError, ValueError)


def test_structure_errors():
    lin = nir.Linear(weight=np.eye(2))
    bad_edge = nir.NIRGraph(nodes={"in": nir.Input(np.array([2])), "lin": lin, "out": nir.Output(np.array([2]))},
                            edges=[("in", "lin"), ("lin", "ghost")], metadata={}, type_check=False)
    with pytest.raises(NIRExecutionError, match=r"edge \('lin', 'ghost'\).*'ghost'"):
        NIRExecutor(bad_edge)
    no_input = nir.NIRGraph(nodes={"lin": lin, "out": nir.Output(np.array([2]))}, edges=[("lin", "out")],
                            metadata={}, type_check=False)
    with pytest.raises(NIRExecutionError, match="no Input"):
        NIRExecutor(no_input)
    no_output = nir.NIRGraph(nodes={"in": nir.Input(np.array([2])), "lin": lin}, edges=[("in", "lin")],
                             metadata={}, type_check=False)
    with pytest.raises(NIRExecutionError, match="no Output"):
        NIRExecutor(no_output)
    dup = nir.NIRGraph(nodes={"in": nir.Input(np.array([2])), "out": nir.Output(np.array([2]))},
                       edges=[("in", "out"), ("in", "out")], metadata={}, type_check=False)
    with pytest.raises(NIRExecutionError, match="duplicates"):
        NIRExecutor(dup)
    orphan = nir.NIRGraph(nodes={"in": nir.Input(np.array([2])), "lone": lin, "out": nir.Output(np.array([2]))},
                          edges=[("in", "out"), ("lone", "out")], metadata={}, type_check=False)
    with pytest.raises(NIRExecutionError, match=r"node 'lone' \(Linear\).*not reachable"):
        NIRExecutor(orphan)
    two_outputs = nested_graph(dotted=False)
    two_outputs.nodes["sub"].nodes["o2"] = nir.Output(np.array([2]))
    with pytest.raises(NIRExecutionError, match=r"subgraph 'sub'.*2 Output nodes"):
        NIRExecutor(two_outputs)
    with pytest.raises(NIRExecutionError, match="discretisation 'exact'.*forward-euler"):
        NIRExecutor(wrap(lin, [2], [2], metadata={"discretisation": "exact"}))
    assert DISCRETISATIONS == ("forward-euler", "exponential")


def test_unsupported_node_type_is_named():
    from nir.ir.graph import Identity

    g = wrap(Identity(input_type={"input": np.array([2])}), [2], [2])
    with pytest.raises(NIRExecutionError, match=r"node 'node' \(Identity\).*not supported"):
        NIRExecutor(g)
    nested = nested_graph(dotted=True)
    nested.nodes["sub"].nodes["lin"] = Identity(input_type={"input": np.array([2])})
    with pytest.raises(NIRExecutionError, match=r"node 'sub.lin' \(Identity\)"):
        NIRExecutor(nested)


def test_shape_errors_name_both_nodes():
    w = np.ones((2, 2, 3, 3))
    conv = nir.Conv2d(input_shape=(5, 5), weight=w, stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(2))
    g = chain(("in", nir.Input(np.array([2, 4, 4]))), ("lif", leaky(0.5, 1)), ("conv", conv),
              ("out", nir.Output(np.array([2, 3, 3]))))
    message = r"node 'conv' \(Conv2d\).*\(2, 5, 5\).*node 'lif' \(LIF\).*\(2, 4, 4\)"
    with pytest.raises(NIRExecutionError, match=message):
        NIRExecutor(g)
    flat = nir.Flatten(input_type=np.array([3, 4]), start_dim=0, end_dim=-1)
    g = chain(("in", nir.Input(np.array([4, 3]))), ("flat", flat), ("out", nir.Output(np.array([12]))))
    with pytest.raises(NIRExecutionError, match=r"node 'flat' \(Flatten\).*\(3, 4\).*node 'in' \(Input\)"):
        NIRExecutor(g)
    g = chain(("in", nir.Input(np.array([3]))), ("lif", leaky(0.5, 4)), ("out", nir.Output(np.array([4]))))
    with pytest.raises(NIRExecutionError, match=r"node 'lif' \(LIF\).*'tau'.*node 'in' \(Input\)"):
        NIRExecutor(g)
    g = chain(("in", nir.Input(np.array([3]))), ("fc", nir.Linear(weight=np.ones((2, 3)))),
              ("out", nir.Output(np.array([3]))))
    with pytest.raises(NIRExecutionError, match=r"node 'out' \(Output\).*node 'fc' \(Linear\)"):
        NIRExecutor(g)
    g = nir.NIRGraph(nodes={"a": nir.Input(np.array([2])), "b": nir.Input(np.array([3])),
                            "out": nir.Output(np.array([2]))}, edges=[("a", "out"), ("b", "out")],
                     metadata={}, type_check=False)
    with pytest.raises(NIRExecutionError, match=r"node 'out' \(Output\).*node 'a'.*node 'b'"):
        NIRExecutor(g)
    g = nir.NIRGraph(nodes={"in": nir.Input(np.array([2])), "fc": nir.Linear(weight=np.ones((3, 2))),
                            "out": nir.Output(np.array([3]))},
                     edges=[("in", "fc"), ("fc", "out"), ("fc", "fc")], metadata={}, type_check=False)
    with pytest.raises(NIRExecutionError, match=r"node 'fc' \(Linear\).*cycle"):
        NIRExecutor(g)


def test_non_finite_parameter_is_named():
    node = leaky(0.5, 2)
    node.v_threshold = np.array([1.0, np.nan])
    with pytest.raises(NIRExecutionError, match=r"node 'node' \(LIF\).*'v_threshold'.*non-finite"):
        NIRExecutor(wrap(node, [2], [2]))
    node = nir.Affine(weight=np.array([[np.inf, 0.0]]), bias=np.zeros(1))
    with pytest.raises(NIRExecutionError, match=r"node 'node' \(Affine\).*'weight'"):
        NIRExecutor(wrap(node, [2], [1]))


def test_input_errors_name_the_input():
    g = nir.NIRGraph(nodes={"a": nir.Input(np.array([2])), "b": nir.Input(np.array([2])),
                            "out": nir.Output(np.array([2]))}, edges=[("a", "out"), ("b", "out")],
                     metadata={}, type_check=False)
    ex = NIRExecutor(g)
    ok = torch.zeros(3, 1, 2)
    with pytest.raises(NIRExecutionError, match="2 Input nodes"):
        ex.run(ok)
    with pytest.raises(NIRExecutionError, match=r"node 'b' \(Input\).*no input"):
        ex.run({"a": ok})
    with pytest.raises(NIRExecutionError, match=r"node 'b' \(Input\).*\(T, B, \*\(2,\)\)"):
        ex.run({"a": ok, "b": torch.zeros(3, 1, 3)})
    with pytest.raises(NIRExecutionError, match=r"node 'b' \(Input\).*non-finite"):
        ex.run({"a": ok, "b": torch.full((3, 1, 2), float("nan"))})
    with pytest.raises(NIRExecutionError, match="'c'"):
        ex.run({"a": ok, "b": ok, "c": ok})
