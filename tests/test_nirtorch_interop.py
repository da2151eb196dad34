"""The exported student runs under nirtorch (with mksgn's node maps) as under the reference executor."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from test_nir_export import CLASSES, _lively, _tiny_student

from mksgn.convert.nir_export import export_student
from mksgn.core.nir_file import decode_metadata
from mksgn.convert.nirtorch_maps import (
    NODE_MAP, input_order, load_with_nirtorch, merge_inputs, record_with_nirtorch, run_with_nirtorch,
)
from mksgn.core.executor import NIRExecutor

nirtorch = pytest.importorskip("nirtorch")

FRAMES = 16


@pytest.fixture(autouse=True)
def _one_thread():
    """These runs are tiny: one thread avoids oversubscribing a busy machine (seconds, not minutes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def graph(tmp_path_factory) -> nir.NIRGraph:
    path = tmp_path_factory.mktemp("nirtorch") / "student.nir"
    nir.write(str(path), export_student(_lively(_tiny_student(seed=1)), FRAMES, 25, CLASSES, "ntu25"))
    return nir.read(str(path), type_check=False)


def _inputs(graph: nir.NIRGraph, dtype: torch.dtype, batch: int = 3) -> dict[str, torch.Tensor]:
    steps = decode_metadata(graph.metadata)["time_steps"]
    g = torch.Generator().manual_seed(0)
    return {name: torch.randn(1, batch, 3, FRAMES, 25, generator=g, dtype=dtype).expand(steps, -1, -1, -1, -1)
            for name in input_order(graph)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nirtorch_matches_the_reference_executor(graph, dtype):
    inputs = _inputs(graph, dtype)
    spiking = [name for name, node in graph.nodes.items() if isinstance(node, nir.LIF)]
    reference = NIRExecutor(graph, dtype).run(inputs)
    logits, records = record_with_nirtorch(graph, inputs, spiking)
    expected = reference.outputs["output"]
    assert logits.shape == expected.shape == (4, 3, len(CLASSES)) and logits.dtype == dtype
    rates = {name: float(records[name].mean()) for name in spiking}
    assert len(rates) == 29 and sum(0.0 < r < 1.0 for r in rates.values()) >= 20, rates  # the test means something
    mismatches = sum(int((records[name] != reference.records[name]).sum()) for name in spiking)
    if dtype == torch.float64:
        assert mismatches == 0
        torch.testing.assert_close(logits, expected, rtol=0.0, atol=1e-9)
    else:
        # nirtorch sums three or more incoming edges in its own order: a rounding tie may flip a spike
        elements = sum(records[name].numel() for name in spiking)
        assert mismatches <= 1e-5 * elements
        torch.testing.assert_close(logits, expected, rtol=0.0, atol=1e-3)
    assert torch.equal(run_with_nirtorch(graph, inputs), logits)


def test_the_loaded_module_steps_with_state(graph):
    module = load_with_nirtorch(graph, dtype=torch.float64)
    inputs = _inputs(graph, torch.float64, batch=2)
    x = torch.cat([inputs[name] for name in input_order(graph)], dim=2)  # documented input layout
    state, outputs = None, []
    for step in x:
        out, state = module(step, state)
        outputs.append(out)
    torch.testing.assert_close(torch.stack(outputs), run_with_nirtorch(graph, inputs), rtol=0.0, atol=0.0)
    assert outputs[0].shape == (2, len(CLASSES)) and not torch.equal(outputs[0], outputs[-1])  # the readout integrates


def test_merged_inputs_keep_the_node_names(graph):
    merged = merge_inputs(graph)
    names = input_order(graph)
    assert names == tuple(decode_metadata(graph.metadata)["input"]["inputs"])
    assert [n for n, node in merged.nodes.items() if isinstance(node, nir.Input)] == ["input"]
    assert all(isinstance(merged.nodes[name], nir.Conv2d) for name in names)
    assert set(graph.edges) <= set(merged.edges)
    single = nir.NIRGraph.from_list(nir.Input(input_type={"input": np.array([3])}),
                                    nir.Output(output_type={"output": np.array([3])}))
    assert merge_inputs(single) is single


def test_node_map_is_read_only():
    with pytest.raises(TypeError):
        NODE_MAP[nir.Affine] = NODE_MAP[nir.Linear]


def test_nirtorch_default_affine_map_loses_the_bias():
    """Why the custom map exists: nirtorch 2.6's own Affine map leaves torch's random bias in place."""
    weight = np.arange(6, dtype=np.float64).reshape(2, 3)
    node = nir.Affine(weight=weight, bias=np.array([10.0, -20.0]))
    x = torch.ones(1, 3, dtype=torch.float64)
    expected = torch.tensor([[13.0, -8.0]], dtype=torch.float64)
    torch.manual_seed(0)
    default = nirtorch.nir_to_torch(node, {}).double()
    assert not torch.allclose(default(x).detach(), expected)
    torch.testing.assert_close(NODE_MAP[nir.Affine](node).double()(x).detach(), expected)


def test_other_node_types_match_the_reference_executor():
    """Grouped strided Conv2d, IF, SumPool2d, Flatten, Scale, LIF with a leak, LI, on one Input."""
    rng = np.random.default_rng(0)
    conv = nir.Conv2d(input_shape=(6, 6), weight=rng.normal(size=(6, 2, 3, 3)), stride=(2, 1), padding=(1, 0),
                      dilation=1, groups=2, bias=rng.normal(size=6))
    shape = (6, 3, 4)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4, 6, 6])}),
        "conv": conv,
        "if": nir.IF(r=np.full(shape, 2e3), v_threshold=np.full(shape, 0.5), v_reset=np.full(shape, -0.1)),
        "pool": nir.SumPool2d(kernel_size=np.array([1, 2]), stride=np.array([1, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([6, 3, 2])}, start_dim=0, end_dim=-1),
        "scale": nir.Scale(scale=rng.uniform(0.5, 1.5, size=36)),
        "fc": nir.Affine(weight=rng.normal(size=(5, 36)), bias=rng.normal(size=5)),
        "lif": nir.LIF(tau=np.full(5, 4e-4), r=np.full(5, 3.0), v_leak=np.full(5, 0.2), v_threshold=np.full(5, 0.3),
                       v_reset=np.zeros(5)),
        "li": nir.LI(tau=np.full(5, 2e-4), r=np.full(5, 2.0), v_leak=np.full(5, 0.1)),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    edges = [("input", "conv"), ("conv", "if"), ("if", "pool"), ("pool", "flat"), ("flat", "scale"),
             ("scale", "fc"), ("fc", "lif"), ("lif", "li"), ("fc", "li"), ("li", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-4}, type_check=False)
    x = {"input": torch.rand(6, 3, 4, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))}
    reference = NIRExecutor(graph, torch.float64).run(x)
    out, records = record_with_nirtorch(graph, x, ["if", "lif"])
    assert 0.0 < float(records["if"].mean()) < 1.0 and 0.0 < float(records["lif"].mean()) < 1.0
    for name in ("if", "lif"):
        assert torch.equal(records[name], reference.records[name])
    torch.testing.assert_close(out, reference.outputs["output"], rtol=0.0, atol=1e-12)
