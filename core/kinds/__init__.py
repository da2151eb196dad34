"""The registry of synapse and population kinds (see :mod:`mksgn.core.kinds.base`).

A :class:`Kinds` maps kind names to kind objects; :func:`default_kinds` holds the built-in
ones, one registration line each. A graph's kinds travel with it (``SynapseGraph.kinds``):
``fuse(graph, kinds=default_kinds().with_synapse(MyKind()))`` adds one for that graph and
everything that runs it, with no global state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mksgn.core.kinds.base import PopulationKind, SynapseKind
from mksgn.core.kinds.constant import ConstantSource
from mksgn.core.kinds.conv import Conv
from mksgn.core.kinds.dense import Dense
from mksgn.core.kinds.elementwise import Elementwise
from mksgn.core.kinds.jointmix import JointMix
from mksgn.core.kinds.mix import Mix
from mksgn.core.kinds.neuron import Neuron
from mksgn.core.kinds.pool import SumPool
from mksgn.core.kinds.relay import GradedRelay
from mksgn.core.kinds.source import Source
from mksgn.core.semantics import Semantics
from mksgn.errors import MksgnError


class UnknownKindError(MksgnError, ValueError):
    """A synapse or population names a kind the registry does not hold."""


@dataclass(frozen=True)
class Kinds:
    """Synapse kinds in the order the fuser tries them, and population kinds."""

    synapses: Mapping[str, SynapseKind] = field(default_factory=dict)
    populations: Mapping[str, PopulationKind] = field(default_factory=dict)

    def synapse(self, name: str) -> SynapseKind:
        kind = self.synapses.get(name)
        if kind is None:
            raise UnknownKindError(f"unknown synapse kind {name!r}; known: {list(self.synapses)}")
        return kind

    def population(self, name: str) -> PopulationKind:
        kind = self.populations.get(name)
        if kind is None:
            raise UnknownKindError(f"unknown population kind {name!r}; known: {list(self.populations)}")
        return kind

    def with_synapse(self, kind: SynapseKind, before: str | None = None) -> Kinds:
        """A registry with ``kind`` added (tried by the fuser before ``before``, else before the fallback ``dense``)."""
        items = [(k, v) for k, v in self.synapses.items() if k != kind.name]
        anchor = before if before is not None else ("dense" if "dense" in self.synapses else None)
        at = next((i for i, (k, _) in enumerate(items) if k == anchor), len(items))
        items.insert(at, (kind.name, kind))
        return Kinds(MappingProxyType(dict(items)), self.populations)

    def with_population(self, kind: PopulationKind) -> Kinds:
        """A registry with ``kind`` added (its NIR types take precedence over earlier kinds')."""
        return Kinds(self.synapses, MappingProxyType({**self.populations, kind.name: kind}))

    def for_node(self, node: Any, semantics: Semantics) -> PopulationKind | None:
        """The population kind a NIR node becomes under ``semantics`` (the last registered that
        claims it: its type, then :meth:`~mksgn.core.kinds.base.PopulationKind.claims`), or None."""
        for kind in reversed(list(self.populations.values())):
            if isinstance(node, kind.nir_types) and kind.claims(node, semantics):
                return kind
        return None

    def node_steps(self) -> dict[type, Any]:
        """Reference-executor builders the population kinds bring."""
        return {t: b for kind in self.populations.values() for t, b in kind.node_steps.items()}


def default_kinds() -> Kinds:
    """The built-in kinds: one registration line each."""
    synapses = [Elementwise(), Conv(), JointMix(), SumPool(), Mix(), Dense()]  # tried in order; dense: the fallback
    populations = [Source(), ConstantSource(), Neuron(), GradedRelay()]  # the last that claims a node takes it
    return Kinds(MappingProxyType({k.name: k for k in synapses}), MappingProxyType({k.name: k for k in populations}))
