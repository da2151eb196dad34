"""Fuse a NIR graph into populations and synapses (:class:`~mksgn.core.synapse_graph.SynapseGraph`).

Every node a population kind claims (:mod:`mksgn.core.kinds`: NIR neurons become ``neuron``
populations, Inputs ``input`` sources) is a population; every chain of linear nodes between
two populations becomes one synapse, of the first synapse kind whose ``match`` accepts it
(built in: ``elementwise``, ``conv``, ``mix``, then ``dense`` as the fallback); the chains
between the same two populations with the same geometry are summed. A chain's bias goes
into its target's bias, its target's input gain into its weights, its Delay nodes into its
``delay``. Linear nodes feeding an Output directly become a memoryless, non-spiking read-out
population ``<output>.readout``. The graph is validated by the reference executor first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import nir
import numpy as np
import torch

from mksgn.core.executor import NIRExecutionError, NIRExecutor
from mksgn.core.kinds import Kinds, default_kinds
from mksgn.core.kinds.base import ChainView
from mksgn.core.synapse_graph import FusionError, Population, Synapse, SynapseGraph

LINEAR_TYPES = (nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d,
                nir.Flatten, nir.Delay)
"""NIR node types a chain between two populations may hold."""
READOUT_SUFFIX = ".readout"


@dataclass
class _Chain:
    source: str
    nodes: list[str]
    recurrent: bool


class _Fuser:
    def __init__(self, graph: nir.NIRGraph, kinds: Kinds) -> None:
        try:
            self.ex = NIRExecutor(graph, dtype=torch.float64, node_steps=kinds.node_steps())
        except NIRExecutionError as exc:
            raise FusionError(f"invalid graph: {exc}") from exc
        self.kinds = kinds
        self.nodes = self.ex._flat.nodes
        self.back = set(self.ex.back_edges)
        self.sources: dict[str, list[str]] = {n: [] for n in self.ex.order}
        for src, dst in self.ex._flat.edges:
            self.sources[dst].append(src)
        for name in self.ex.order:
            node = self.nodes[name]
            if kinds.for_node(node, self.ex.dt) is None and not isinstance(node, (*LINEAR_TYPES, nir.Input, nir.Output)):
                raise FusionError(f"node {name!r}: type {type(node).__name__} cannot be deployed")

    def neuron_kind(self, name: str):
        """The population kind of a non-Input node, or None for a linear or pass-through node."""
        node = self.nodes[name]
        return None if isinstance(node, nir.Input) else self.kinds.for_node(node, self.ex.dt)

    def is_population(self, name: str) -> bool:
        return self.neuron_kind(name) is not None or name in self.ex.inputs or (
            isinstance(self.nodes[name], nir.Input) and not self.sources[name])

    def chains_into(self, name: str) -> list[_Chain]:
        """Every chain of linear (or pass-through) nodes from a population into ``name``."""
        out: list[_Chain] = []

        def walk(node: str, tail: list[str], recurrent: bool, seen: frozenset[str]) -> None:
            for src in self.sources[node]:
                rec = recurrent or (src, node) in self.back
                if (src, node) in self.back and recurrent:
                    raise FusionError(f"node {name!r}: a chain into it closes two cycles")
                if self.is_population(src):
                    out.append(_Chain(src, tail, rec))
                elif src in seen:
                    raise FusionError(f"node {src!r}: a cycle of linear nodes without a neuron")
                else:
                    walk(src, [src, *tail], rec, seen | {src})

        walk(name, [], False, frozenset())
        return out

    def program(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        step = self.ex.programs[name].step
        return lambda x: step({}, x)[0]

    def chain_bias(self, ops: list[str], src_shape: tuple[int, ...]) -> np.ndarray:
        y = torch.zeros((1, *src_shape), dtype=torch.float64)
        for o in ops:
            y = self.program(o)(y)
        return y[0].numpy()

    def delay_steps(self, name: str) -> int:
        steps = np.round(np.asarray(self.nodes[name].delay, dtype=np.float64) / self.ex.dt).astype(int)
        if np.unique(steps).size != 1:
            raise FusionError(f"node {name!r} (Delay): per-element delays cannot be one synapse's delay")
        return int(np.unique(steps)[0])


def _populations(fuser: _Fuser) -> tuple[dict[str, Population], dict[str, np.ndarray], dict[str, str]]:
    """Populations (with read-outs), their input gains, and output name -> population."""
    ex = fuser.ex
    pops: dict[str, Population] = {}
    gains: dict[str, np.ndarray] = {}
    for name in ex.order:
        kind = fuser.neuron_kind(name)
        if name in ex.inputs:
            pops[name] = Population(name, ex.output_shapes[name], kind="input", nir_type="Input")
        elif kind is not None:
            pops[name], gains[name] = kind.from_nir(name, fuser.nodes[name], ex.input_shapes[name], ex.dt)
            pops[name].kind = kind.name
    outputs: dict[str, str] = {}
    for out in ex.outputs:
        chains = fuser.chains_into(out)
        if len(chains) == 1 and not chains[0].nodes and not chains[0].recurrent:
            outputs[out] = chains[0].source
            continue
        # linear nodes feed the Output directly: a memoryless, non-spiking readout population
        shape = ex.input_shapes[out]
        readout = f"{out}{READOUT_SUFFIX}"
        pops[readout] = Population(readout, shape, du=np.ones(shape), dv=np.ones(shape), bias=np.zeros(shape),
                                   nir_type="Output")
        gains[readout] = np.ones(shape)
        outputs[out] = readout
    return pops, gains, outputs


def _fold_gain(fuser: _Fuser, kind: str, weight: np.ndarray, gain: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Multiply a synapse's weights by its target's input gain (per target neuron)."""
    if np.all(gain == gain.flat[0]):
        return weight if gain.flat[0] == 1.0 else weight * gain.flat[0]
    folded = fuser.kinds.synapse(kind).fold_gain(weight, gain)
    if folded is None:
        raise FusionError(f"population of shape {shape}: an input gain (r, tau) that varies within a channel "
                          f"cannot be folded into a {kind} synapse")
    return folded


def _synapse(fuser: _Fuser, chain: _Chain, pop: Population, gain: np.ndarray, source_shape: tuple[int, ...]
             ) -> Synapse:
    """The synapse of one chain into ``pop`` (its bias added to the population's)."""
    delays = [o for o in chain.nodes if isinstance(fuser.nodes[o], nir.Delay)]
    ops = [o for o in chain.nodes if o not in delays and not isinstance(fuser.nodes[o], (nir.Input, nir.Output))]
    where = f"chain {chain.source!r} -> {pop.name!r}"
    if any(fuser.ex.input_shapes.get(o) is None for o in ops):
        raise FusionError(f"{where}: unknown shapes")
    bias = fuser.chain_bias(ops, source_shape) if ops else np.zeros(pop.shape)
    if bias.shape != pop.shape:
        raise FusionError(f"{where}: delivers shape {bias.shape}, population has {pop.shape}")
    if np.any(bias != 0) and np.any(np.asarray(pop.du) != 1):
        carriers = [o for o in ops if np.any(np.asarray(getattr(fuser.nodes[o], "bias", 0)) != 0)]
        raise FusionError(f"{where}: the bias of {', '.join(map(repr, carriers)) or 'the chain'} enters the "
                          f"synaptic current of {pop.name!r} ({pop.nir_type}: NIR adds it to I, whose decay "
                          f"shapes it over time); a population's bias is its membrane's, so folding it there "
                          f"would change the result: refused (not supported yet)")
    pop.bias = pop.bias + gain * bias
    view = ChainView(tuple(ops), fuser.nodes, fuser.ex.input_shapes, source_shape, pop.shape, fuser.program, where)
    for kind in fuser.kinds.synapses.values():
        spec = kind.match(view)
        if spec is not None:
            break
    else:
        raise FusionError(f"{where}: no synapse kind matches the chain {ops}")
    spec["weight"] = _fold_gain(fuser, kind.name, spec["weight"], gain, pop.shape)
    return Synapse(name=f"{chain.source}->{pop.name}", source=chain.source, target=pop.name, kind=kind.name,
                   delay=sum(fuser.delay_steps(d) for d in delays), recurrent=chain.recurrent,
                   nodes=tuple(chain.nodes), **spec)


def fuse(graph: nir.NIRGraph, kinds: Kinds | None = None) -> SynapseGraph:
    """Fuse a NIR graph into populations and synapses (see the module docstring).

    Parameters
    ----------
    graph
        The NIR graph.
    kinds
        The synapse and population kinds (default :func:`~mksgn.core.kinds.default_kinds`); the
        returned graph carries them.

    Raises
    ------
    FusionError
        Naming the node: an invalid graph, a node type that cannot be deployed, a non-zero
        reset, a chain too large to be a dense synapse, or a cycle without a neuron.
    """
    kinds = kinds or default_kinds()
    fuser = _Fuser(graph, kinds)
    pops, gains, outputs = _populations(fuser)
    synapses: list[Synapse] = []
    for pop_name, pop in pops.items():
        if fuser.kinds.population(pop.kind).source:
            continue
        target = pop_name[: -len(READOUT_SUFFIX)] if pop_name.endswith(READOUT_SUFFIX) else pop_name
        grouped: dict[tuple, Synapse] = {}
        for chain in fuser.chains_into(target):
            syn = _synapse(fuser, chain, pop, gains[pop_name], pops[chain.source].shape)
            key = syn.geometry()
            if key in grouped:
                grouped[key].weight = grouped[key].weight + syn.weight
                grouped[key].nodes += syn.nodes
            else:
                grouped[key] = syn
        named: dict[str, int] = {}
        for syn in grouped.values():
            k = named.get(syn.name, 0)
            named[syn.name] = k + 1
            if k:
                syn.name = f"{syn.name}#{k}"
            synapses.append(syn)
    return SynapseGraph(pops, synapses, list(fuser.ex.inputs), outputs, fuser.ex.dt, dict(graph.metadata or {}),
                        kinds=kinds)
