"""A toy population kind, in one file: a graded relay that passes its input on as a graded spike.

``Relay`` is a NIR node of its own (no parameters): its output at each step is its input. The
population has no leak, no threshold and no bias; in fixed point it sends its integer synaptic
input ``a_in`` (units of its scale) as the payload, which the synapses after it weight as graded
input. In Lava a stock ``GradedVec`` with ``vth = 0`` (Lava has a fixed-point model of it only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch

from mksgn.core import loihi
from mksgn.core.fixed_point import FixedPoint, QuantizedPopulation, QuantizeError
from mksgn.core.kinds.base import PopulationKind
from mksgn.core.node_steps import BuildContext, NodeProgram
from mksgn.core.synapse_graph import Population


@dataclass(eq=False)
class Relay(nir.NIRNode):
    """Passes its input on unchanged, one value per element."""

    def __post_init__(self) -> None:
        self.input_type = {"input": None}
        self.output_type = {"output": None}


def _relay_step(node: Relay, ctx: BuildContext) -> NodeProgram:
    return NodeProgram(ctx.input_shape, lambda state, x: (x, None))


class GradedRelay(PopulationKind):
    name = "toyrelay"
    nir_types = (Relay,)
    node_steps = {Relay: _relay_step}
    graded = True

    def from_nir(self, name: str, node: Any, shape: tuple[int, ...], semantics: Any,
                 recurrent: bool = False) -> tuple[Population, np.ndarray]:
        ones = np.ones(shape)
        return Population(name, shape, kind=self.name, du=ones, dv=ones, bias=np.zeros(shape), nir_type="Relay"), ones

    def output_unit(self, name: str, fixed: FixedPoint) -> float:
        return fixed.populations[name].scale

    def step_float(self, pop: Population, a_in: torch.Tensor, state: dict, params: dict, bias_on: bool,
                   track: bool = False) -> tuple[torch.Tensor, float]:
        return a_in, float(a_in.abs().max()) if track else 0.0

    def step_fixed(self, pop: Population, a_in: torch.Tensor, state: dict, params: dict, bias_on: bool
                   ) -> tuple[torch.Tensor, int]:
        return a_in, int((a_in.abs() >= loihi.STATE_LIMIT).sum())

    def readout(self, value: torch.Tensor, params: dict, fixed: bool) -> torch.Tensor:
        return value.to(torch.float64)

    def quantize(self, pop: Population, scale: float, mode: str) -> tuple[QuantizedPopulation, int]:
        if np.any(pop.bias != 0):
            raise QuantizeError(f"population {pop.name!r}: a relay has no bias")
        zeros = np.zeros(pop.shape, dtype=np.int64)
        return QuantizedPopulation(scale if scale > 0 else 1.0, 0, 0, 0, zeros, zeros), 0

    def lava_process(self, pop: Population, ctx: Any, depth: int) -> Any:
        if not ctx.fixed:
            raise ctx.error(f"population {pop.name!r}: Lava's GradedVec has a fixed_pt model only")
        GradedVec = ctx.lava("lava.proc.graded.process").GradedVec
        return GradedVec(shape=ctx.lava_shape(pop.shape), vth=0)
