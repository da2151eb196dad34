"""``constant``: a source that sends one spike per neuron every step, the carrier of a current bias.

NIR adds the bias of an Affine (or Conv) node in front of a current-based neuron (CubaLIF,
CubaLI) to its synaptic current ``I``, whose decay shapes it over time::

    i_t = a_syn i_{t-1} + b_syn (W x_t + bias)

A Lava LIF's bias enters its voltage, not its current, so such a bias cannot be folded into
the population. The fuser (:mod:`mksgn.core.fuse`) gives it a source of its own instead: a
``constant`` population of the target's shape, named ``<target>:current-bias``, and an
``elementwise`` synapse whose weights are the bias (times the target's input gain). Then the
current receives ``W x_t + bias`` every step, in every backend, with the synapse's own
quantisation (the bias is quantised as a weight, at the target's scale). A bias before the
back edge of a cycle arrives one step late where back edges start at zero (the semantics'
``recurrent_initial = "zero"``): its synapse is recurrent, as the executor's back edge; with
``"bias"`` (snnTorch's recurrent layers) it is there from ``t = 0``. A bias held back by a Delay
waits as long.

In Lava a ``RingBuffer`` of ones (binary spikes) for the whole run; every event it sends is a
synaptic operation, counted as such.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mksgn.core.kinds.base import PopulationKind

SUFFIX = ":current-bias"
"""The name of a current bias's source is its target's name with this suffix."""


class ConstantSource(PopulationKind):
    name = "constant"
    source = True
    always_on: ClassVar[bool] = True

    def lava_process(self, pop: Any, ctx: Any, depth: int) -> Any:
        """A ``RingBuffer`` of ones for all ``ctx.total`` steps of the run."""
        Source = ctx.lava("lava.proc.io.source").RingBuffer
        data = np.ones((*ctx.lava_shape(pop.shape), ctx.total))
        return Source(data=data.astype(np.int32) if ctx.fixed else data)
