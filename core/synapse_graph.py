"""A NIR graph as neuron populations joined by single synapses: what Loihi and Lava can run.

On Loihi a synapse connects one population to another; NIR chains of linear nodes
(``Scale``, ``Linear``/``Affine``, ``Conv2d``, pooling, ``Flatten``, ``Delay``) between two
neuron nodes have no neuron in between, so :func:`mksgn.core.fuse.fuse` fuses each chain into
one synapse (the chains between the same two populations summed) and returns a
:class:`SynapseGraph`.

Populations (``kind``: a population kind of :mod:`mksgn.core.kinds`)
    ``neuron``: Lava's two-state LIF (see :mod:`mksgn.core.loihi`)::

        u = (1 - du) u + a_in;   v = (1 - dv) v + u + bias;   spike if v > threshold, then v = 0

    Every NIR neuron node (LIF, IF, LI, I, CubaLIF, CubaLI, Threshold) becomes one; its input
    gain (``r dt / tau``, ``w_in dt / tau_syn``...) is folded into the weights of its synapses,
    ``v_leak`` and the synapses' biases into ``bias`` (a bias into a synaptic current: a
    ``constant`` source's synapse). A non-spiking one (LI, I, CubaLI, or linear nodes feeding
    an Output directly: a memoryless readout) has no threshold and
    outputs ``v``. ``input``: a graph Input, a source of graded values. ``constant``: a source of
    one spike per neuron every step, which carries a bias into a synaptic current (CubaLIF,
    CubaLI: :mod:`mksgn.core.kinds.constant`).
Synapses (``kind``: a synapse kind of :mod:`mksgn.core.kinds`)
    ``elementwise``: a weight per neuron (an edge, possibly scaled) - ``y = w x``;
    ``conv``: one Conv1d/Conv2d with per-channel scales folded in - torch's ``conv`` on
    ``(C, H, W)``;
    ``mix``: on ``(C, H, W)`` populations, a map over channels and the last axis shared by
    every position of the middle axis (a graph convolution) - ``weight`` is
    ``(W_out, C_out, W_in, C_in)`` and
    ``y[co, h, wo] = sum_{wi, ci} weight[wo, co, wi, ci] x[ci, h, wi]``;
    ``dense``: anything else, as a ``(N_target, N_source)`` matrix over the flattened populations.
    ``delay`` counts the steps of the chain's Delay nodes; ``recurrent`` marks a chain that
    closes a cycle (it delivers the previous step's spikes, as in the reference executor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mksgn.core.semantics import NeuronRule, Semantics
from mksgn.errors import MksgnError

if TYPE_CHECKING:
    from mksgn.core.fixed_point import FixedPoint
    from mksgn.core.kinds import Kinds


class FusionError(MksgnError, ValueError):
    """A graph that cannot become populations and synapses; names the node at fault."""


def _default_kinds() -> Kinds:
    from mksgn.core.kinds import default_kinds  # the built-in kinds build populations of this module

    return default_kinds()


@dataclass
class Population:
    """Neurons with Lava's dynamics, or a source of input (``kind="input"``).

    Arrays broadcast to ``shape``. ``threshold is None``: non-spiking, the output is ``v``.
    """

    name: str
    shape: tuple[int, ...]
    kind: str = "neuron"
    du: np.ndarray = field(default_factory=lambda: np.ones(()))
    dv: np.ndarray = field(default_factory=lambda: np.ones(()))
    bias: np.ndarray = field(default_factory=lambda: np.zeros(()))
    threshold: np.ndarray | None = None
    nir_type: str = ""
    rule: NeuronRule = field(default_factory=NeuronRule)
    """How a spiking population fires and resets (:mod:`mksgn.core.semantics`; default NIR's and Lava's:
    ``v > threshold``, one spike, reset to 0)."""
    v_min: np.ndarray | None = None
    """The membrane floor per neuron (the rule's ``v_min``, scaled where per-neuron thresholds were made
    one: :func:`mksgn.core.fuse.fuse`), or None."""

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def spiking(self) -> bool:
        return self.threshold is not None


@dataclass
class Synapse:
    """One synapse from population ``source`` to population ``target`` (see the module doc)."""

    name: str
    source: str
    target: str
    kind: str
    weight: np.ndarray
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    delay: int = 0
    recurrent: bool = False
    nodes: tuple[str, ...] = ()

    def geometry(self) -> tuple:
        """What must agree for two chains to be summed into one synapse."""
        return (self.source, self.target, self.kind, tuple(self.weight.shape), self.stride, self.padding,
                self.dilation, self.groups, self.delay, self.recurrent)


@dataclass
class SynapseGraph:
    """Populations in evaluation order, synapses, and which populations are read out."""

    populations: dict[str, Population]
    synapses: list[Synapse]
    inputs: list[str]
    outputs: dict[str, str]
    """Output node name -> the population it reads (spikes, or ``v`` if non-spiking)."""
    dt: float
    metadata: dict[str, Any] = field(default_factory=dict)
    fixed: FixedPoint | None = None
    """The fixed-point records of a quantised graph (:func:`mksgn.convert.quantize.quantize`)."""
    kinds: Kinds = field(default_factory=_default_kinds)
    """The synapse and population kinds its ``kind`` fields name (:mod:`mksgn.core.kinds`)."""
    semantics: Semantics = field(default_factory=Semantics)
    """The neuron semantics it was fused under (``dt`` equals :attr:`dt`)."""

    def is_source(self, name: str) -> bool:
        """Whether population ``name`` is a source (its kind has no neurons): a graph input or a constant."""
        return self.kinds.population(self.populations[name].kind).source

    def is_graded(self, name: str) -> bool:
        """Whether population ``name`` sends graded values (an input, a relay) rather than spikes."""
        return self.kinds.population(self.populations[name].kind).graded

    def neurons(self) -> list[str]:
        """The populations that are not sources, in evaluation order."""
        return [name for name in self.populations if not self.is_source(name)]

    def incoming(self, target: str) -> list[Synapse]:
        return [s for s in self.synapses if s.target == target]

    def outgoing(self, source: str) -> list[Synapse]:
        return [s for s in self.synapses if s.source == source]

    def depth(self) -> dict[str, int]:
        """Synaptic layers from the inputs: ``depth(p) = max over forward synapses (depth(src) + 1)``."""
        depth = {name: 0 for name in self.populations if self.is_source(name)}
        for name in self.populations:
            if name in depth:
                continue
            forward = [s for s in self.incoming(name) if not s.recurrent]
            depth[name] = max((depth[s.source] + 1 for s in forward), default=1)
        return depth
