"""Run exported NIR graphs with nirtorch: node maps that follow mksgn's conventions.

:data:`NODE_MAP` maps NIR node classes to torch modules for
``nirtorch.nir_to_torch(graph, node_map)`` (nirtorch 2.6); :func:`load_with_nirtorch`
loads a graph with it and :func:`run_with_nirtorch` steps the loaded module over time.
The modules compute what :class:`mksgn.core.executor.NIRExecutor` computes, with
the same operations in the same order, so a float64 run agrees with the reference
executor to rounding (only the order in which nirtorch sums several incoming edges may
differ).

Conventions (those of :mod:`mksgn.convert.nir_export`)
------------------------------------------------------
- Every tensor a module sees is ``(B, *shape)``: one time step, batch first, ``shape``
  the per-sample shape the NIR types describe.
- ``Affine`` and ``Linear`` act on the last axis (``torch.nn.Linear``); ``Affine`` keeps
  its bias.
- ``Scale`` multiplies elementwise (a 1-D scale on an input of two or more axes whose
  first axis has its length multiplies per channel, as the reference executor does).
- ``Conv1d``/``Conv2d`` are ``torch.nn.Conv1d``/``Conv2d`` with ``in_channels =
  weight.shape[1] * groups``, ``out_channels = weight.shape[0]``, the node's stride,
  padding, dilation, groups and bias (a missing bias is zero).
- ``AvgPool2d`` is ``torch.nn.AvgPool2d`` (zero padding counted); ``SumPool2d`` is an
  exact windowed sum (a depthwise convolution with ones).
- ``Flatten``'s ``start_dim``/``end_dim`` index the per-sample shape; non-negative values
  are shifted by one for the batch axis.
- Neurons are stateful the way nirtorch expects: ``forward(x, state=None) -> (output,
  state)``, where ``state`` is the membrane (``None`` means zero). Forward Euler with the
  node map's ``dt``: LIF and LI ``v <- a v + b x + c`` with ``a = 1 - dt/tau``,
  ``b = r dt/tau``, ``c = v_leak dt/tau``; I and IF ``v <- v + r dt x``. LIF and IF spike
  when ``v > v_threshold`` (strictly) and then set ``v = v_reset``; their output is the
  spike (0 or 1 in the input's dtype), that of I and LI is ``v``.

Several Input nodes
-------------------
nirtorch 2.6 builds a graph with one Input node only: a second one fails in torch.fx's
lint (``Node redefined name is_none!``, each Input adds its own ``state`` placeholder).
mksgn's graphs have one Input per modality, so :func:`merge_inputs` rewrites them, with
plain NIR nodes, into one Input ``"input"`` whose value is the modality inputs
concatenated along their first (channel) axis, in the order of
``metadata["input"]["inputs"]``; each original Input becomes a one-hot 1x1 convolution
of the same name that selects its channels (``Linear`` for 1-D inputs). The selection is
exact for finite inputs (one product by 1, the others by 0, a zero bias).

Third-party import paths (checked with nir 1.0.8, nirtorch 2.6, snnTorch 1.0.0)
-------------------------------------------------------------------------------
- nirtorch with these maps (:func:`load_with_nirtorch`): works; the logits agree with
  the reference executor (float64 to 1e-9) and every spike is the same
  (``tests/test_nirtorch_interop.py``).
- nirtorch with its default maps: does not work. Its ``Affine`` map never copies the
  bias (it sets ``module.weight.bias``), so the logits are wrong; its ``Conv2d`` map
  swaps the in and out channel counts of the module it builds (harmless with
  ``groups=1``, where the weight is then replaced, but a ``ValueError`` when the swapped
  counts are not divisible by ``groups``); its ``Flatten`` counts the batch axis
  (``start_dim=0`` flattens the batch, and the readout fails with a shape error); it has
  no map for ``Scale``, ``LIF`` or ``I``; and the several Input nodes fail as described
  above. Its ``Linear`` and ``AvgPool2d`` maps are right.
- snnTorch's ``import_from_nir`` (``snntorch.import_nir``): does not import our graph.
  It stops at ``ValueError: Unknown node type <class 'nir.ir.linear.Scale'>`` (it has no
  map for ``Scale``); given one, it stops at ``I`` (the readout integrator, no map
  either), and past that at nirtorch's single-Input limit (``Node redefined name
  is_none!``). Its ``Flatten`` map would also flatten the batch axis and its ``Conv2d``
  map takes ``in_channels = weight.shape[1]`` (wrong for ``groups > 1``); its
  ``Linear``/``Affine`` maps (last axis, bias copied) fit, and its ``LIF`` map
  (``snn.Leaky``, reset to zero, ``dt`` fixed at 1e-4) was not checked further.
- Lava through lava-dl's NIR reader: not installable here (lava-dl pins ``torch<2.4``
  and Python ``<3.11``); lava-nc 0.10.0, which mksgn imports through
  :mod:`mksgn.deploy.lava_compat`, has no NIR reader of its own.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mksgn.core import fields, timestep
from mksgn.core.neuron import LeakyParams, lif_fire, lif_membrane
from mksgn.core.timestep import DEFAULT_DT

__all__ = [
    "DEFAULT_DT",
    "MERGED_INPUT",
    "NODE_MAP",
    "input_order",
    "load_with_nirtorch",
    "make_node_map",
    "merge_inputs",
    "record_with_nirtorch",
    "run_with_nirtorch",
]

MERGED_INPUT: str = "input"
"""Name of the single Input node that :func:`merge_inputs` creates."""

NodeMap = Mapping[type, Callable[[nir.NIRNode], nn.Module]]
State = torch.Tensor | None

# --------------------------------------------------------------------------- helpers


def _f64(value: Any) -> torch.Tensor:
    """A NIR parameter as a float64 tensor (cast to the run's dtype when the module is)."""
    return torch.tensor(np.asarray(value, dtype=np.float64))


def _with_parameters(module: nn.Module, weight: np.ndarray, bias: np.ndarray | None) -> nn.Module:
    """Set ``module.weight`` (and ``bias``) to the given values, in float64."""
    module.weight = nn.Parameter(_f64(weight))
    if bias is not None:
        module.bias = nn.Parameter(_f64(bias))
    return module


def _shift(dim: int) -> int:
    """A per-sample axis index as an index into ``(B, *shape)``."""
    return dim + 1 if dim >= 0 else dim


# --------------------------------------------------------------------------- modules


class Elementwise(nn.Module):
    """``x * scale``: elementwise, or per channel for a 1-D scale on a ``(C, ...)`` input."""

    def __init__(self, scale: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scale", _f64(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale
        per_channel = (scale.dim() == 1 and x.dim() >= 3 and tuple(x.shape[1:]) != tuple(scale.shape)
                       and x.shape[1] == scale.shape[0])
        if per_channel:
            scale = scale.reshape(scale.shape[0], *([1] * (x.dim() - 2)))
        return x * scale


class SumPool2d(nn.Module):
    """Exact windowed sum over ``(H, W)`` with zero padding."""

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]) -> None:
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        ones = x.new_ones((channels, 1, *self.kernel))
        return F.conv2d(x, ones, None, self.stride, self.padding, 1, channels)


class Neuron(nn.Module):
    """A NIR neuron (LIF, LI, IF, I) as a nirtorch module: :func:`mksgn.core.neuron.lif_step`.

    ``v <- a v + b x + c``; with a threshold it spikes when ``v > threshold`` and then sets
    ``v = reset`` (output: the spike), without one it outputs ``v``. The coefficients come
    from :mod:`mksgn.core.timestep`, as the reference executor's.
    """

    def __init__(self, a: np.ndarray | float, b: np.ndarray, c: np.ndarray | None = None,
                 threshold: np.ndarray | None = None, reset: np.ndarray | None = None) -> None:
        super().__init__()
        for name, value in (("a", a), ("b", b), ("c", c), ("threshold", threshold), ("reset", reset)):
            self.register_buffer(name, None if value is None else _f64(value))

    def params(self) -> LeakyParams:
        """The buffers as :func:`~mksgn.core.neuron.lif_step` coefficients."""
        return LeakyParams(self.a, self.b, self.c, self.threshold, 0.0 if self.reset is None else self.reset)

    def forward(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.zeros_like(x) if state is None else state
        params = self.params()
        v = lif_membrane(x, v, params)
        if self.threshold is None:
            return v, v
        spikes, v = lif_fire(v, params, _strict)
        return spikes.to(x.dtype), v


def _strict(x: torch.Tensor) -> torch.Tensor:
    return x > 0


# --------------------------------------------------------------------------- node maps


def map_affine(node: nir.Affine) -> nn.Linear:
    """``Affine`` -> ``torch.nn.Linear`` with the node's weight and bias (last axis)."""
    n_out, n_in = np.shape(node.weight)
    module = nn.utils.skip_init(nn.Linear, n_in, n_out, bias=True)
    bias = np.broadcast_to(np.asarray(node.bias, dtype=np.float64), (n_out,))
    return _with_parameters(module, node.weight, bias)


def map_linear(node: nir.Linear) -> nn.Linear:
    """``Linear`` -> ``torch.nn.Linear`` without bias (last axis)."""
    n_out, n_in = np.shape(node.weight)
    return _with_parameters(nn.utils.skip_init(nn.Linear, n_in, n_out, bias=False), node.weight, None)


def map_scale(node: nir.Scale) -> Elementwise:
    """``Scale`` -> elementwise product."""
    return Elementwise(node.scale)


def _map_conv(node: nir.Conv1d | nir.Conv2d, nd: int) -> nn.Module:
    weight = np.asarray(node.weight, dtype=np.float64)
    groups = int(np.asarray(node.groups).item())
    n_out = weight.shape[0]
    bias = np.zeros(n_out) if getattr(node, "bias", None) is None else np.asarray(node.bias, dtype=np.float64)
    module = nn.utils.skip_init(
        nn.Conv1d if nd == 1 else nn.Conv2d, weight.shape[1] * groups, n_out, weight.shape[2:],
        stride=fields.int_tuple(node.stride, nd, "stride"), padding=fields.padding(node.padding, nd), dilation=fields.int_tuple(node.dilation, nd, "dilation"),
        groups=groups, bias=True)
    return _with_parameters(module, weight, np.broadcast_to(bias, (n_out,)))


def map_conv1d(node: nir.Conv1d) -> nn.Conv1d:
    """``Conv1d`` -> ``torch.nn.Conv1d`` (channels from the weight, groups, stride, padding, dilation, bias)."""
    return _map_conv(node, 1)


def map_conv2d(node: nir.Conv2d) -> nn.Conv2d:
    """``Conv2d`` -> ``torch.nn.Conv2d`` (channels from the weight, groups, stride, padding, dilation, bias)."""
    return _map_conv(node, 2)


def _pool_geometry(node: nir.AvgPool2d | nir.SumPool2d) -> tuple[tuple[int, ...], ...]:
    kernel = fields.int_tuple(node.kernel_size, 2, "kernel_size")
    stride = kernel if node.stride is None else fields.int_tuple(node.stride, 2, "stride")
    padding = (0, 0) if node.padding is None else fields.int_tuple(node.padding, 2, "padding")
    return kernel, stride, padding


def map_avgpool2d(node: nir.AvgPool2d) -> nn.AvgPool2d:
    """``AvgPool2d`` -> ``torch.nn.AvgPool2d`` (a missing stride means the kernel size)."""
    return nn.AvgPool2d(*_pool_geometry(node))


def map_sumpool2d(node: nir.SumPool2d) -> SumPool2d:
    """``SumPool2d`` -> exact windowed sum."""
    return SumPool2d(*_pool_geometry(node))


def map_flatten(node: nir.Flatten) -> nn.Flatten:
    """``Flatten`` over the per-sample shape -> ``torch.nn.Flatten`` with the batch axis skipped."""
    return nn.Flatten(_shift(int(node.start_dim)), _shift(int(node.end_dim)))


def _param(node: nir.NIRNode, field: str) -> np.ndarray:
    return np.asarray(getattr(node, field), dtype=np.float64)


def _leaky(node: nir.LIF | nir.LI, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return timestep.leaky_coefficients(_param(node, "tau"), _param(node, "r"), _param(node, "v_leak"), dt)


def map_lif(node: nir.LIF, dt: float = DEFAULT_DT) -> Neuron:
    """``LIF`` -> :class:`Neuron` with time step ``dt``."""
    return Neuron(*_leaky(node, dt), _param(node, "v_threshold"), _param(node, "v_reset"))


def map_li(node: nir.LI, dt: float = DEFAULT_DT) -> Neuron:
    """``LI`` -> non-spiking :class:`Neuron` with time step ``dt``."""
    return Neuron(*_leaky(node, dt))


def map_if(node: nir.IF, dt: float = DEFAULT_DT) -> Neuron:
    """``IF`` -> :class:`Neuron` without leak, time step ``dt``."""
    gain = timestep.integrator_gain(_param(node, "r"), dt)
    return Neuron(1.0, gain, None, _param(node, "v_threshold"), _param(node, "v_reset"))


def map_i(node: nir.I, dt: float = DEFAULT_DT) -> Neuron:
    """``I`` -> non-spiking :class:`Neuron` without leak, time step ``dt``."""
    return Neuron(1.0, timestep.integrator_gain(_param(node, "r"), dt))


def _identity(node: nir.NIRNode) -> nn.Identity:
    return nn.Identity()


def _with_dt(mapper: Callable[[Any, float], nn.Module], dt: float) -> Callable[[nir.NIRNode], nn.Module]:
    def mapped(node: nir.NIRNode) -> nn.Module:
        return mapper(node, dt)

    mapped.__doc__ = mapper.__doc__
    return mapped


def make_node_map(dt: float = DEFAULT_DT) -> NodeMap:
    """The node map for ``nirtorch.nir_to_torch``, with neurons discretised at ``dt``.

    Parameters
    ----------
    dt
        Time step of the forward-Euler neuron updates.

    Returns
    -------
    Mapping
        NIR node class -> ``map(node) -> torch.nn.Module`` (read-only).
    """
    return MappingProxyType({
        nir.Input: _identity,
        nir.Output: _identity,
        nir.Affine: map_affine,
        nir.Linear: map_linear,
        nir.Scale: map_scale,
        nir.Conv1d: map_conv1d,
        nir.Conv2d: map_conv2d,
        nir.AvgPool2d: map_avgpool2d,
        nir.SumPool2d: map_sumpool2d,
        nir.Flatten: map_flatten,
        nir.LIF: _with_dt(map_lif, dt),
        nir.LI: _with_dt(map_li, dt),
        nir.IF: _with_dt(map_if, dt),
        nir.I: _with_dt(map_i, dt),
    })


NODE_MAP: NodeMap = make_node_map(DEFAULT_DT)
"""Node map for graphs with ``dt = 1e-4`` (:func:`load_with_nirtorch` uses the graph's ``dt``)."""

# --------------------------------------------------------------------------- graphs


def _metadata(graph: nir.NIRGraph) -> dict:
    from mksgn.core.nir_file import decode_metadata  # local: keeps this module light to import

    return decode_metadata(dict(graph.metadata or {}))


def input_order(graph: nir.NIRGraph) -> tuple[str, ...]:
    """The Input node names: ``metadata["input"]["inputs"]`` if given, else graph order."""
    names = tuple(name for name, node in graph.nodes.items() if isinstance(node, nir.Input))
    declared = (_metadata(graph).get("input") or {}).get("inputs") if len(names) > 1 else None
    if declared is None:
        return names
    if sorted(declared) != sorted(names):
        raise ValueError(f"metadata lists inputs {declared}, the graph has Input nodes {list(names)}")
    return tuple(declared)


def _input_shape(node: nir.Input) -> tuple[int, ...]:
    (shape,) = node.input_type.values()
    return tuple(int(v) for v in np.asarray(shape).ravel())


def _selector(channels: slice, total: int, rest: tuple[int, ...]) -> nir.NIRNode:
    """A NIR node picking ``channels`` of a ``(total, *rest)`` input, exactly."""
    weight = np.zeros((channels.stop - channels.start, total))
    weight[np.arange(weight.shape[0]), np.arange(channels.start, channels.stop)] = 1.0
    bias = np.zeros(weight.shape[0])
    if not rest:
        return nir.Linear(weight=weight)
    if len(rest) == 1:
        return nir.Conv1d(input_shape=rest[0], weight=weight[..., None], stride=1, padding=0, dilation=1,
                          groups=1, bias=bias)
    if len(rest) == 2:
        return nir.Conv2d(input_shape=rest, weight=weight[..., None, None], stride=1, padding=0, dilation=1,
                          groups=1, bias=bias)
    raise ValueError(f"cannot merge inputs of per-sample shape {(channels.stop - channels.start, *rest)}")


def merge_inputs(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph with its Input nodes merged into one, for nirtorch (see the module docstring).

    Parameters
    ----------
    graph
        A graph with one or more Input nodes of shapes ``(C_i, *rest)`` (same ``rest``).

    Returns
    -------
    nir.NIRGraph
        ``graph`` itself if it has one Input; else a new graph whose Input
        :data:`MERGED_INPUT` takes the inputs concatenated along the first axis in
        :func:`input_order`, each old Input replaced by a selector of the same name.
    """
    order = input_order(graph)
    if len(order) <= 1:
        return graph
    if MERGED_INPUT in graph.nodes:
        raise ValueError(f"cannot merge the inputs: the graph already has a node {MERGED_INPUT!r}")
    shapes = [_input_shape(graph.nodes[name]) for name in order]
    rests = {shape[1:] for shape in shapes}
    if len(rests) != 1 or any(len(shape) == 0 for shape in shapes):
        raise ValueError(f"cannot merge inputs of shapes {shapes}: they must differ in their first axis only")
    (rest,) = rests
    total = sum(shape[0] for shape in shapes)
    nodes = {MERGED_INPUT: nir.Input(input_type={"input": np.array((total, *rest))})}
    start = 0
    for name, shape in zip(order, shapes):
        nodes[name] = _selector(slice(start, start + shape[0]), total, rest)
        start += shape[0]
    nodes.update({name: node for name, node in graph.nodes.items() if name not in nodes})
    edges = [(MERGED_INPUT, name) for name in order] + list(graph.edges)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata or {}), type_check=False)


def load_with_nirtorch(graph: nir.NIRGraph, dt: float | None = None, dtype: torch.dtype = torch.float32
                       ) -> torch.fx.GraphModule:
    """Load a graph with ``nirtorch.nir_to_torch`` and :func:`make_node_map`.

    Parameters
    ----------
    graph
        The NIR graph (several Input nodes are merged, see :func:`merge_inputs`).
    dt
        Time step; default ``graph.metadata["dt"]``, else :data:`DEFAULT_DT`.
    dtype
        Precision of the parameters.

    Returns
    -------
    torch.fx.GraphModule
        ``module(x, state=None) -> (output, state)`` for one time step, ``x`` of shape
        ``(B, *input_shape)`` (the inputs concatenated along their first per-sample axis,
        in :func:`input_order`, when there are several); pass ``state`` back at the next step.
    """
    import nirtorch  # local: nirtorch is an optional dependency

    node_map = make_node_map(timestep.graph_dt(graph, dt))
    return nirtorch.nir_to_torch(merge_inputs(graph), dict(node_map), default_map={}, dtype=dtype)


def _module_name(node: str) -> str:
    """The attribute nirtorch gives a node's module (its name with dots and keywords sanitised)."""
    name = node.replace(".", "_")
    return "nir_node_" + name if keyword.iskeyword(name) else name


def _stacked_inputs(graph: nir.NIRGraph, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The ``(T, B, ...)`` input of the loaded module (inputs concatenated along axis 2)."""
    order = input_order(graph)
    if set(inputs) != set(order):
        raise ValueError(f"expected inputs {list(order)}, got {sorted(inputs)}")
    xs = [torch.as_tensor(inputs[name]) for name in order]
    dtype = xs[0].dtype if xs[0].is_floating_point() else torch.float32
    xs = [x.to(dtype) for x in xs]
    return xs[0] if len(xs) == 1 else torch.cat(xs, dim=2)


def record_with_nirtorch(graph: nir.NIRGraph, inputs: Mapping[str, torch.Tensor], nodes: Iterable[str] = (),
                         dt: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run the graph with nirtorch from zero state and record some nodes' outputs.

    Parameters
    ----------
    graph
        The NIR graph.
    inputs
        Input node name -> ``(T, B, *input_shape)`` tensor; the run uses their dtype
        (float32 when they are not floating point).
    nodes
        Names of the nodes to record (spiking nodes record their spikes).
    dt
        Time step; default ``graph.metadata["dt"]``, else :data:`DEFAULT_DT`.

    Returns
    -------
    output : torch.Tensor
        The Output node's value, ``(T, B, K)``.
    records : dict
        Node name -> its output, ``(T, B, *shape)``.
    """
    x = _stacked_inputs(graph, inputs)
    module = load_with_nirtorch(graph, dt, x.dtype)
    traces: dict[str, list[torch.Tensor]] = {}
    handles = [module.get_submodule(_module_name(name)).register_forward_hook(_recorder(traces, name))
               for name in nodes]
    outputs, state = [], None
    try:
        with torch.no_grad():
            for step in x:
                out, state = module(step, state)
                outputs.append(out)
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(outputs), {name: torch.stack(values) for name, values in traces.items()}


def _recorder(traces: dict[str, list[torch.Tensor]], name: str) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        traces.setdefault(name, []).append(output[0] if isinstance(output, tuple) else output)

    return hook


def run_with_nirtorch(graph: nir.NIRGraph, inputs: Mapping[str, torch.Tensor], dt: float | None = None
                      ) -> torch.Tensor:
    """Run the graph with nirtorch from zero state over ``T`` steps.

    Parameters
    ----------
    graph
        The NIR graph.
    inputs
        Input node name -> ``(T, B, *input_shape)`` tensor; the run uses their dtype.
    dt
        Time step; default ``graph.metadata["dt"]``, else :data:`DEFAULT_DT`.

    Returns
    -------
    torch.Tensor
        The Output node's value at every step, ``(T, B, K)``.
    """
    return record_with_nirtorch(graph, inputs, (), dt)[0]
