"""``relay``: a graded relay population, which passes its synaptic input on as a graded spike.

No leak, no threshold, no state: its output at every step is its input of that step::

    y[t] = a_in[t]

In NIR it is a plain ``LI`` with ``tau = dt`` and ``v_leak = 0``: forward Euler gives
``v <- (1 - dt/tau) v + (dt/tau) (r I + v_leak) = r I`` (``r`` is an input gain, folded into the
synapses). Every NIR tool runs it as written; mksgn claims such an ``LI`` as a relay
(:meth:`GradedRelay.claims`), any other ``LI`` stays a ``neuron``.

Fixed point: the relay's scale is the float value of one unit of its input sum; it sends that
integer as the payload of a graded spike, which the synapses after it weight in those units
(:meth:`GradedRelay.output_unit`). The payload must fit Loihi 2's 24-bit graded spike: a value
of ``2**23`` units or more is counted as an overflow (and quantisation keeps headroom below
it, :attr:`GradedRelay.state_bits`). It has no bias (a graded-spike process adds none).

In Lava a stock ``GradedVec`` with ``vth = 0`` (``|v| > 0`` sends ``v``, then ``v = 0``): the
identity on integers, stateless. Lava 0.10.0 ships a fixed-point model of it only; mksgn adds
a floating-point model of the same process with the same ``run_spk``
(:func:`mksgn.deploy.lava_procs.models.float_graded_models`, proven equal on integers).
"""

from __future__ import annotations

import math
from typing import Any

import nir
import numpy as np
import torch

from mksgn.core import loihi
from mksgn.core.fixed_point import FixedPoint, QuantizedPopulation, QuantizeError
from mksgn.core.kinds.base import PopulationKind
from mksgn.core.semantics import Semantics
from mksgn.core.synapse_graph import Population

RELAY_VTH = 0
"""``GradedVec`` threshold of a relay: every non-zero value passes."""


def memoryless_li(node: Any, dt: float) -> bool:
    """Whether ``node`` is an ``LI`` with ``tau == dt`` and no leak potential (``v = r I`` each step)."""
    if not isinstance(node, nir.LI):
        return False
    tau = np.asarray(node.tau, dtype=np.float64)
    v_leak = np.asarray(node.v_leak, dtype=np.float64)
    return bool(np.all(tau == dt)) and bool(np.all(v_leak == 0))


class GradedRelay(PopulationKind):
    name = "relay"
    nir_types = (nir.LI,)
    graded = True
    state_bits = loihi.GRADED_MESSAGE_BITS

    def claims(self, node: Any, semantics: Semantics) -> bool:
        return semantics.discretisation == "forward-euler" and memoryless_li(node, semantics.dt)

    def from_nir(self, name: str, node: Any, shape: tuple[int, ...], semantics: Semantics,
                 recurrent: bool = False) -> tuple[Population, np.ndarray]:
        ones = np.ones(shape)
        gain = np.broadcast_to(np.asarray(node.r, dtype=np.float64), shape).copy()
        return Population(name, shape, kind=self.name, du=ones, dv=ones, bias=np.zeros(shape), nir_type="LI"), gain

    def output_unit(self, name: str, fixed: FixedPoint) -> float:
        return fixed.populations[name].scale

    # ------------------------------------------------------------------ emulator

    def params(self, pop: Population, q: QuantizedPopulation | None, dtype: torch.dtype,
               device: torch.device) -> dict[str, Any]:
        if q is not None:
            return {"scale": float(q.scale)}
        bias = np.broadcast_to(np.asarray(pop.bias, dtype=np.float64), pop.shape)
        return {"bias": torch.as_tensor(bias.copy(), dtype=dtype, device=device) if np.any(bias != 0) else None}

    def initial_state(self, pop: Population, batch: int, dtype: torch.dtype, device: torch.device) -> dict:
        return {"u": torch.zeros((batch, *pop.shape), dtype=dtype, device=device)}

    def step_float(self, pop: Population, a_in: torch.Tensor, state: dict, params: dict, bias_on: bool,
                   track: bool = False) -> tuple[torch.Tensor, float]:
        y = a_in + params["bias"] if params.get("bias") is not None and bias_on else a_in
        return y, float(y.abs().max()) if track and y.numel() else 0.0

    def step_fixed(self, pop: Population, a_in: torch.Tensor, state: dict, params: dict, bias_on: bool
                   ) -> tuple[torch.Tensor, int]:
        if params.get("input_bound", math.inf) < loihi.STATE_LIMIT:  # the emulator's bound: no overflow possible
            return a_in, 0
        return a_in, int((a_in.abs() >= loihi.STATE_LIMIT).sum())

    def readout(self, value: torch.Tensor, params: dict, fixed: bool) -> torch.Tensor:
        return value.to(torch.float64) * params["scale"] if fixed else value.to(torch.float64)

    # ------------------------------------------------------------------ quantisation

    def quantize(self, pop: Population, scale: float, mode: str) -> tuple[QuantizedPopulation, int]:
        if np.any(np.asarray(pop.bias) != 0):
            raise QuantizeError(f"population {pop.name!r}: a graded relay has no bias (the chains into it "
                                f"carry one); Lava's GradedVec adds none")
        zeros = np.zeros(pop.shape, dtype=np.int64)
        return QuantizedPopulation(scale if scale > 0 else 1.0, 0, 0, 0, zeros, zeros), 0

    # ------------------------------------------------------------------ Lava

    def lava_process(self, pop: Population, ctx: Any, depth: int) -> Any:
        """A stock ``GradedVec`` with ``vth = 0`` (stateless: nothing to reset between rows)."""
        if np.any(np.asarray(pop.bias) != 0):
            raise ctx.error(f"population {pop.name!r}: a graded relay with a bias has no Lava process "
                            f"(GradedVec adds none)")
        GradedVec = ctx.lava("lava.proc.graded.process").GradedVec
        return GradedVec(shape=ctx.lava_shape(pop.shape), vth=RELAY_VTH)

    def lava_readout(self, pop: Population, ctx: Any, values: np.ndarray) -> np.ndarray:
        """The relay's float values from the graded payloads it sent (NIR layout)."""
        if ctx.fixed:
            return values * float(ctx.graph.fixed.populations[pop.name].scale)
        return values
