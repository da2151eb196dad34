"""``input``: a graph Input, a source of graded values (float, or ``bits``-bit integers in fixed point).

Its values enter every synapse it feeds as graded messages; in Lava a ``RingBuffer`` source.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from mksgn.core.fixed_point import FixedPoint
from mksgn.core.kinds.base import PopulationKind


class Source(PopulationKind):
    name = "input"
    nir_types = (nir.Input,)
    graded = True
    source = True

    def output_unit(self, name: str, fixed: FixedPoint) -> float:
        return fixed.inputs[name].scale

    def lava_process(self, pop: Any, ctx: Any, depth: int) -> Any:
        """A ``RingBuffer`` of the run's inputs (``ctx.inputs[name]``: ``(R*T, *shape)``, the rows back to
        back), zeros after them."""
        Source = ctx.lava("lava.proc.io.source").RingBuffer
        x = ctx.inputs[pop.name]
        data = np.zeros((ctx.total, *pop.shape))
        data[: x.shape[0]] = x
        data = np.moveaxis(ctx.to_lava(data, pop.shape), 0, -1)  # (*lava_shape, total)
        return Source(data=data.astype(np.int32) if ctx.fixed else data)
