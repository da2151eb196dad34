"""Fuse a NIR graph into populations and synapses (:class:`~mksgn.core.synapse_graph.SynapseGraph`).

Every node a population kind claims (:mod:`mksgn.core.kinds`: NIR neurons become ``neuron``
populations, Inputs ``input`` sources) is a population; every chain of linear nodes between
two populations becomes one synapse, of the first synapse kind whose ``match`` accepts it
(built in: ``elementwise``, ``conv``, ``mix``, then ``dense`` as the fallback); the chains
between the same two populations with the same geometry are summed. A chain's bias goes
into its target's bias where that computes the same (else a ``constant`` source carries it:
into a synaptic current, after a Delay, or on a cycle's back edge), its target's input gain
into its weights, its Delay nodes into its ``delay``. Per-neuron thresholds are made one by
scaling each neuron's gain, bias and floor (:func:`_fold_thresholds`); a gain that varies where
the weights are shared (a conv kernel) is carried by a graded relay ``<target>:gain`` and an
``elementwise`` synapse instead. Linear nodes feeding an Output directly become a memoryless,
non-spiking read-out population ``<output>.readout``. The neuron semantics (:mod:`mksgn.core.semantics`)
decide each spiking population's rule. The graph is validated by the reference executor first.
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
from mksgn.core.kinds.constant import SUFFIX as CONSTANT_SUFFIX
from mksgn.core.semantics import Semantics
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
    def __init__(self, graph: nir.NIRGraph, kinds: Kinds, semantics: Semantics | None) -> None:
        try:
            self.ex = NIRExecutor(graph, dtype=torch.float64, node_steps=kinds.node_steps(), semantics=semantics)
        except NIRExecutionError as exc:
            raise FusionError(f"invalid graph: {exc}") from exc
        self.kinds = kinds
        self.semantics = self.ex.semantics
        self.claimed: set[tuple[tuple[str, ...], str]] = set()
        """Paths (nodes, target) whose biases a chain has already counted (:meth:`chain_biases`)."""
        self.nodes = self.ex._flat.nodes
        self.back = set(self.ex.back_edges)
        self.sources: dict[str, list[str]] = {n: [] for n in self.ex.order}
        for src, dst in self.ex._flat.edges:
            self.sources[dst].append(src)
        for name in self.ex.order:
            node = self.nodes[name]
            linear = isinstance(node, (*LINEAR_TYPES, nir.Input, nir.Output))
            if kinds.for_node(node, self.semantics) is None and not linear:
                raise FusionError(f"node {name!r}: type {type(node).__name__} cannot be deployed")

    def neuron_kind(self, name: str):
        """The population kind of a non-Input node, or None for a linear or pass-through node."""
        node = self.nodes[name]
        return None if isinstance(node, nir.Input) else self.kinds.for_node(node, self.semantics)

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

    def chain_biases(self, chain: _Chain, target: str) -> dict[tuple[int, bool], np.ndarray]:
        """The constant part of a chain's output, by the Delay steps that follow it and whether a back
        edge follows it (then it misses ``t = 0`` where back edges start at zero).

        Each node adds its output on zeros; Delay nodes hold back what entered before them (zeros
        until then). A node's bias reaches ``target`` once per path: chains that share the path
        from a node on (several populations feeding one Affine) count its bias once.
        """
        hops = [chain.source, *chain.nodes, target]
        parts: dict[tuple[int, bool], torch.Tensor] = {}
        for i, name in enumerate(chain.nodes):
            node = self.nodes[name]
            if isinstance(node, nir.Delay):
                steps = self.delay_steps(name)
                parts = {(d + steps, crossed): y for (d, crossed), y in parts.items()}
            elif not isinstance(node, (nir.Input, nir.Output)):
                f = self.program(name)
                zero = f(torch.zeros((1, *self.ex.input_shapes[name]), dtype=torch.float64))
                parts = {key: f(y) - zero for key, y in parts.items()}
                suffix = (tuple(chain.nodes[i:]), target)
                if suffix not in self.claimed and bool(torch.any(zero != 0)):
                    self.claimed.add(suffix)
                    parts[(0, False)] = parts[(0, False)] + zero if (0, False) in parts else zero
            if (name, hops[i + 2]) in self.back:
                parts = {(d, True): y for (d, _), y in parts.items()}
        return {key: y[0].numpy() for key, y in parts.items()}

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
            pops[name], gains[name] = kind.from_nir(name, fuser.nodes[name], ex.input_shapes[name], fuser.semantics,
                                                    name in ex.cyclic)
            pops[name].kind = kind.name
            gains[name] = _fold_thresholds(pops[name], gains[name])
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


def _fold_thresholds(pop: Population, gain: np.ndarray) -> np.ndarray:
    """Per-neuron thresholds made one: neuron ``i``'s membrane scaled by ``f_i = max(theta) / theta_i``
    (its input gain, bias and floor times ``f_i``); returns the new input gain.

    Exact for every reset of :mod:`mksgn.core.semantics` (reset to 0, to zero next step, by
    subtraction of the threshold) and for multi-spike counts: the membrane is linear up to the
    threshold test, and ``v > theta_i`` is ``f_i v > max(theta)``. Also sets the population's
    per-neuron floor (``rule.v_min``, scaled).
    """
    floor = None if not pop.spiking or pop.rule.v_min is None else np.full(pop.shape, float(pop.rule.v_min))
    if not pop.spiking or np.all(pop.threshold == pop.threshold.flat[0]):
        pop.v_min = floor
        return gain
    theta = np.broadcast_to(np.asarray(pop.threshold, dtype=np.float64), pop.shape)
    if np.any(theta <= 0):
        raise FusionError(f"node {pop.name!r} ({pop.nir_type}): thresholds must be > 0 to be made one per "
                          f"population (min {theta.min():g})")
    factor = theta.max() / theta
    pop.threshold = np.full(pop.shape, theta.max())
    pop.bias = np.asarray(pop.bias) * factor
    pop.v_min = None if floor is None else floor * factor
    return gain * factor


def _fold_gain(fuser: _Fuser, kind: str, weight: np.ndarray, gain: np.ndarray) -> np.ndarray | None:
    """Multiply a synapse's weights by its target's input gain (per target neuron); None where the kind
    cannot hold a gain that varies (a conv kernel shared by positions of different gains)."""
    if np.all(gain == gain.flat[0]):
        return weight if gain.flat[0] == 1.0 else weight * gain.flat[0]
    return fuser.kinds.synapse(kind).fold_gain(weight, gain)


def _synapse(fuser: _Fuser, chain: _Chain, pop: Population, gain: np.ndarray, source_shape: tuple[int, ...]
             ) -> tuple[Synapse, dict[tuple[int, bool], np.ndarray]]:
    """The synapse of one chain into ``pop`` (its weights without ``pop``'s input gain) and the chain's
    non-zero biases times that gain, by the Delay steps and the back edge that follow them
    (:meth:`_Fuser.chain_biases`)."""
    delays = [o for o in chain.nodes if isinstance(fuser.nodes[o], nir.Delay)]
    ops = [o for o in chain.nodes if o not in delays and not isinstance(fuser.nodes[o], (nir.Input, nir.Output))]
    where = f"chain {chain.source!r} -> {pop.name!r}"
    if any(fuser.ex.input_shapes.get(o) is None for o in ops):
        raise FusionError(f"{where}: unknown shapes")
    biases = fuser.chain_biases(chain, pop.name[: -len(READOUT_SUFFIX)] if pop.nir_type == "Output" else pop.name)
    for bias in biases.values():
        if bias.shape != pop.shape:
            raise FusionError(f"{where}: delivers shape {bias.shape}, population has {pop.shape}")
    view = ChainView(tuple(ops), fuser.nodes, fuser.ex.input_shapes, source_shape, pop.shape, fuser.program, where)
    for kind in fuser.kinds.synapses.values():
        spec = kind.match(view)
        if spec is not None:
            break
    else:
        raise FusionError(f"{where}: no synapse kind matches the chain {ops}")
    syn = Synapse(name=f"{chain.source}->{pop.name}", source=chain.source, target=pop.name, kind=kind.name,
                  delay=sum(fuser.delay_steps(d) for d in delays), recurrent=chain.recurrent,
                  nodes=tuple(chain.nodes), **spec)
    return syn, {d: gain * b for d, b in biases.items() if np.any(b != 0)}


def _place_biases(pop: Population, biases: dict[tuple[int, bool], np.ndarray], constants: dict[str, Population],
                  recurrent_initial: str) -> list[Synapse]:
    """Add a chain's biases (by the Delay steps and back edge after them, times the input gain) to
    ``pop``'s bias where that is the same, else return ``elementwise`` synapses from ``pop``'s
    ``constant`` source (:mod:`mksgn.core.kinds.constant`, made on first use) that carry them: a
    bias entering a synaptic current (``du != 1``, whose decay shapes it), one held back by a Delay
    (zeros until it arrives), or one before a back edge that starts at zero (``recurrent_initial``)."""
    carried = []
    for (delay, crossed), bias in biases.items():
        recurrent = crossed and recurrent_initial == "zero"
        if delay == 0 and not recurrent and np.all(np.asarray(pop.du) == 1):
            pop.bias = pop.bias + bias
            continue
        name = f"{pop.name}{CONSTANT_SUFFIX}"
        constants.setdefault(name, Population(name, pop.shape, kind="constant", nir_type="bias"))
        carried.append(Synapse(name=f"{name}->{pop.name}", source=name, target=pop.name, kind="elementwise",
                               weight=np.broadcast_to(bias, pop.shape).copy(), delay=delay, recurrent=recurrent))
    return carried


def _grouped(synapses: list[Synapse]) -> list[Synapse]:
    """Synapses with the same geometry summed into one, then named uniquely (``name#k``)."""
    grouped: dict[tuple, Synapse] = {}
    for syn in synapses:
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
    return list(grouped.values())


def _incoming(fuser: _Fuser, pop: Population, gain: np.ndarray, pops: dict[str, Population],
              extra: dict[str, Population]) -> list[Synapse]:
    """Every synapse into ``pop``: its chains' and its bias carriers'."""
    target = pop.name[: -len(READOUT_SUFFIX)] if pop.nir_type == "Output" else pop.name
    synapses: list[Synapse] = []
    carriers: list[Synapse] = []
    for chain in fuser.chains_into(target):
        syn, biases = _synapse(fuser, chain, pop, gain, pops[chain.source].shape)
        folded = _fold_gain(fuser, syn.kind, syn.weight, gain)
        if folded is None:  # a per-position gain behind shared weights: the chain feeds a relay, the gain follows
            if f"{pop.name}{GAIN_SUFFIX}" not in extra:  # one relay and one gain for every such chain
                carriers.append(_gain_relay(pop, gain, extra))
            syn.name, syn.target = f"{syn.source}->{pop.name}{GAIN_SUFFIX}", f"{pop.name}{GAIN_SUFFIX}"
        else:
            syn.weight = folded
        synapses.append(syn)
        carriers += _place_biases(pop, biases, extra, fuser.semantics.recurrent_initial)
    return _grouped(synapses) + _grouped(carriers)


GAIN_SUFFIX = ":gain"
"""The graded relay that carries a chain whose target's gain varies within a shared kernel is named
after the target with this suffix."""


def _gain_relay(pop: Population, gain: np.ndarray, extra: dict[str, Population]) -> Synapse:
    """A graded relay of ``pop``'s shape (made on first use, in ``extra``) and the ``elementwise`` synapse
    that multiplies what it passes on by ``pop``'s per-neuron input gain: a conv kernel applied at
    positions of different gains (per-neuron ``tau``, ``r`` or thresholds) stays shared."""
    name = f"{pop.name}{GAIN_SUFFIX}"
    extra.setdefault(name, Population(name, pop.shape, kind="relay", du=np.ones(pop.shape), dv=np.ones(pop.shape),
                                      bias=np.zeros(pop.shape), nir_type="gain"))
    return Synapse(name=f"{name}->{pop.name}", source=name, target=pop.name, kind="elementwise",
                   weight=np.broadcast_to(gain, pop.shape).copy())


def fuse(graph: nir.NIRGraph, kinds: Kinds | None = None, semantics: Semantics | None = None) -> SynapseGraph:
    """Fuse a NIR graph into populations and synapses (see the module docstring).

    Parameters
    ----------
    graph
        The NIR graph.
    kinds
        The synapse and population kinds (default :func:`~mksgn.core.kinds.default_kinds`); the
        returned graph carries them.
    semantics
        The neuron semantics (:mod:`mksgn.core.semantics`; default what the graph's metadata
        states, else NIR's); each spiking population carries its type's rule.

    Raises
    ------
    FusionError
        Naming the node: an invalid graph, a node type that cannot be deployed, a non-zero
        reset, a chain too large to be a dense synapse, or a cycle without a neuron.
    """
    kinds = kinds or default_kinds()
    fuser = _Fuser(graph, kinds, semantics)
    pops, gains, outputs = _populations(fuser)
    synapses: list[Synapse] = []
    extra: dict[str, Population] = {}  # bias sources and gain relays
    for pop_name, pop in pops.items():
        if not fuser.kinds.population(pop.kind).source:
            synapses += _incoming(fuser, pop, gains[pop_name], pops, extra)
    clashes = sorted(set(extra) & set(pops))
    if clashes:
        raise FusionError(f"node {clashes[0]!r}: its name is taken for a bias source or a gain relay; rename it")
    populations = {n: p for n, p in pops.items() if kinds.population(p.kind).source}
    populations.update({n: p for n, p in extra.items() if kinds.population(p.kind).source})
    for name, pop in pops.items():  # a gain relay just before its target: after the target's sources
        if not kinds.population(pop.kind).source:
            if f"{name}{GAIN_SUFFIX}" in extra:
                populations[f"{name}{GAIN_SUFFIX}"] = extra[f"{name}{GAIN_SUFFIX}"]
            populations[name] = pop
    return SynapseGraph(populations, synapses, list(fuser.ex.inputs), outputs, fuser.ex.dt,
                        dict(graph.metadata or {}), kinds=kinds, semantics=fuser.semantics)
