"""What a synapse kind and a population kind are: one object each, carrying everything about it.

A **synapse kind** knows how the fuser recognises it in a chain of linear NIR nodes
(:meth:`SynapseKind.match`), how it folds its target's input gain, its forward map on a batch
(float arithmetic; exact on integers), its fan-out and fan-in, its dense form, how Lava's
fixed-point model treats its integers (:meth:`SynapseKind.fixed_weights`,
:meth:`SynapseKind.fixed_output`), how quantisation chooses its exponent, and which Lava
process realises it (:meth:`SynapseKind.lava_process`).

A **population kind** knows which NIR nodes become its populations (:meth:`PopulationKind.from_nir`,
with any executor step they need), how the emulator steps it in float and in Loihi
integers, how quantisation turns it into integers, and which Lava process realises it.

Kinds are collected in a :class:`~mksgn.core.kinds.Kinds` registry; adding one is a module
with its class and one registration line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from mksgn.core import loihi

if TYPE_CHECKING:
    from mksgn.core.fixed_point import FixedPoint, QuantizedPopulation, QuantizedSynapse
    from mksgn.core.semantics import Semantics
    from mksgn.core.synapse_graph import Population, Synapse

WEIGHT_LIMIT_MIXED = (1 << loihi.WEIGHT_BITS) - 2
"""Largest mixed-sign weight that survives Lava's truncation unchanged (254)."""
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
"""Weight exponents used (Loihi's 4-bit signed range)."""


@dataclass(frozen=True)
class ChainView:
    """What a synapse kind sees of a chain of linear NIR nodes between two populations.

    Attributes
    ----------
    ops
        The chain's node names in order (Delay, Input and Output nodes removed).
    nodes
        Node name -> NIR node.
    input_shapes
        Node name -> the per-sample shape it receives.
    source_shape, target_shape
        Shapes of the source and target populations.
    program
        ``program(name)(x)``: the node's map on a float64 batch ``(B, *shape)``.
    """

    ops: tuple[str, ...]
    nodes: Mapping[str, Any]
    input_shapes: Mapping[str, tuple[int, ...]]
    source_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    program: Callable[[str], Callable[[torch.Tensor], torch.Tensor]]
    where: str = ""

    def node(self, i: int) -> Any:
        return self.nodes[self.ops[i]]

    def scale_vector(self, name: str) -> np.ndarray:
        """A Scale node's factor broadcast to its input shape."""
        ones = torch.ones((1, *self.input_shapes[name]), dtype=torch.float64)
        return self.program(name)(ones)[0].numpy()


def per_channel(values: np.ndarray) -> np.ndarray | None:
    """``values`` ``(C, ...)`` as one factor per channel, or None if it varies within a channel."""
    flat = values.reshape(values.shape[0], -1)
    return flat[:, 0].copy() if np.all(flat == flat[:, :1]) else None


class SynapseKind:
    """Base of every synapse kind; subclasses set :attr:`name` and override what differs."""

    name: ClassVar[str] = ""

    # ------------------------------------------------------------------ fusion

    def match(self, chain: ChainView) -> dict[str, Any] | None:
        """The synapse fields (``weight`` and geometry) if ``chain`` is of this kind, else None."""
        return None

    def fold_gain(self, weight: np.ndarray, gain: np.ndarray) -> np.ndarray | None:
        """``weight`` times the target's per-neuron input gain, or None if this kind cannot hold it."""
        return None

    # ------------------------------------------------------------------ running

    def forward(self, syn: Synapse, x: torch.Tensor, w: torch.Tensor, target_shape: tuple[int, ...]) -> torch.Tensor:
        """The linear map on a batch ``x`` ``(B, *source shape)`` with weights ``w``."""
        raise NotImplementedError

    def fanout(self, syn: Synapse, source_shape: tuple[int, ...], target_shape: tuple[int, ...],
               nonzero: torch.Tensor) -> torch.Tensor:
        """Non-zero synapses each source neuron drives (shape of the source); ``nonzero`` the 0/1 weights."""
        x = torch.zeros((1, *source_shape), dtype=torch.float64, requires_grad=True)
        self.forward(syn, x, nonzero, target_shape).sum().backward()
        return x.grad[0].detach()

    def fan_in(self, syn: Synapse, source_shape: tuple[int, ...], target_shape: tuple[int, ...],
               nonzero: torch.Tensor) -> torch.Tensor:
        """Non-zero synapses arriving at each target neuron (shape of the target)."""
        ones = torch.ones((1, *source_shape), dtype=torch.float64)
        return self.forward(syn, ones, nonzero, target_shape)[0]

    def dense(self, syn: Synapse, w: np.ndarray, source_shape: tuple[int, ...],
              target_shape: tuple[int, ...]) -> np.ndarray:
        """The ``(N_target, N_source)`` matrix of the map with weights ``w`` (flattened populations)."""
        n = math.prod(source_shape)
        eye = torch.eye(n, dtype=torch.float64).reshape(n, *source_shape)
        y = self.forward(syn, eye, torch.as_tensor(w, dtype=torch.float64), target_shape)
        return y.reshape(n, -1).T.numpy()

    shared: ClassVar[bool] = False
    """Whether one weight serves many synapses (a kernel applied at many positions): hardware with
    weight sharing stores such weights once per core, not once per synapse instance."""

    def unique_weights(self, syn: Synapse, weights: np.ndarray, source_shape: tuple[int, ...],
                       target_shape: tuple[int, ...]) -> int:
        """The non-zero weights stored when each is stored once (``weights``: the weights that count,
        quantised in fixed point); a kind without sharing stores one per instance (the fan-out sum)."""
        if not self.shared:
            nonzero = torch.as_tensor(weights != 0, dtype=torch.float64)
            return int(self.fanout(syn, source_shape, target_shape, nonzero).sum())
        return int(np.count_nonzero(weights))

    def row_bound(self, w_abs: np.ndarray) -> float:
        """The largest sum of ``|w|`` into one target neuron (sizes float32 exactness)."""
        return float(w_abs.reshape(w_abs.shape[0], -1).sum(axis=1).max())

    # ------------------------------------------------------------------ fixed point (Lava's models)

    exponent: ClassVar[bool] = True
    """Whether Lava's fixed-point model applies a weight exponent (Dense, Sparse: yes; Conv: no)."""

    def fixed_weights(self, q: QuantizedSynapse) -> np.ndarray:
        """The integer weights Lava's fixed-point model really uses (Dense/Sparse: clipped, truncated)."""
        return loihi.dense_weights(np.asarray(q.weight, dtype=np.int64), q.num_weight_bits)

    def fixed_output(self, y: torch.Tensor, q: QuantizedSynapse) -> torch.Tensor:
        """What the model delivers from the integer sum ``y`` (Dense/Sparse: shifted by ``weight_exp``)."""
        return loihi.shift(y, int(q.weight_exp))

    def passes_sum(self, q: QuantizedSynapse, bound: float) -> bool:
        """Whether :meth:`fixed_output` returns every integer sum of magnitude at most ``bound``
        unchanged (then the emulator may skip it). A kind that overrides :meth:`fixed_output`
        and not this method is never skipped."""
        return type(self).fixed_output is SynapseKind.fixed_output and int(q.weight_exp) == 0

    def scale_floor(self, w_eff: np.ndarray) -> float:
        """The smallest target scale the weights allow (a kind without exponent must fit 8 bits)."""
        return 0.0 if self.exponent else float(np.abs(w_eff).max()) / WEIGHT_LIMIT_MIXED

    def weight_exponent(self, w_eff: np.ndarray, scale: float, exact: bool) -> int:
        """The exponent that uses the 8 bits best (``exact``: never negative, which truncates sums)."""
        wmax = float(np.abs(w_eff).max())
        if not self.exponent or wmax == 0:
            return 0
        exp = int(np.clip(math.ceil(math.log2(wmax / (scale * WEIGHT_LIMIT_MIXED))), WEIGHT_EXP_MIN, WEIGHT_EXP_MAX))
        return max(exp, 0) if exact else exp

    # ------------------------------------------------------------------ Lava

    lava_delays: ClassVar[bool] = False
    """Whether :meth:`lava_process` delays the synapse itself (a stock ``DelayDense``/``DelaySparse``);
    the builder puts a delay line in front of a lagged synapse of any other kind."""

    def lava_process(self, syn: Synapse, ctx: Any, delay: int = 0) -> tuple[Any, ...]:
        """``(process, s_in, a_out)`` realising ``syn`` (``ctx``: :class:`mksgn.deploy.lava_builder.BuildContext`),
        optionally with a fourth item ``adapt(port) -> port`` applied to the source's ``s_out``
        before it is connected (a transpose of the layout); ``a_out`` may be a transposed port.

        ``delay``: steps the synapse waits beyond Lava's one, on every weight (``1..loihi.DELAY_MAX``;
        asked only of kinds with :attr:`lava_delays`).
        """
        raise NotImplementedError(f"synapse kind {self.name!r} has no Lava process")


class ConvSemantics(SynapseKind):
    """A synapse kind Lava realises as a stock ``Conv``: its fixed-point model uses the integer
    weights as given (no exponent, no truncation) and wraps the sum to 24 signed bits."""

    exponent: ClassVar[bool] = False

    def fixed_weights(self, q: QuantizedSynapse) -> np.ndarray:
        return np.asarray(q.weight, dtype=np.int64)

    def fixed_output(self, y: torch.Tensor, q: QuantizedSynapse) -> torch.Tensor:
        return loihi.wrap_signed(y, loihi.CONV_OUTPUT_BITS)

    def passes_sum(self, q: QuantizedSynapse, bound: float) -> bool:
        return type(self).fixed_output is ConvSemantics.fixed_output and bound < (1 << (loihi.CONV_OUTPUT_BITS - 1))


class PopulationKind:
    """Base of every population kind; subclasses set :attr:`name` and override what differs."""

    name: ClassVar[str] = ""
    nir_types: ClassVar[tuple[type, ...]] = ()
    """NIR node classes whose nodes become populations of this kind."""
    node_steps: ClassVar[Mapping[type, Callable]] = {}
    """Reference-executor builders for NIR node classes the executor does not know."""
    graded: ClassVar[bool] = False
    """Whether its output is a graded value (sent as a graded spike) rather than a binary spike."""
    source: ClassVar[bool] = False
    """Whether it is a source (no neurons, no incoming synapses): a graph input, or a constant."""
    always_on: ClassVar[bool] = False
    """Whether it is a source that sends one spike per neuron every step, whatever the inputs
    (a current bias's carrier, :mod:`mksgn.core.kinds.constant`)."""
    state_bits: ClassVar[int] = loihi.STATE_BITS - loihi.ACTIVATION_SHIFT
    """Signed bits its state holds in units of its scale (a LIF's current wraps at 24 bits after
    ``a_in << 6``; a graded relay's payload is 24 bits): quantisation keeps headroom below it."""

    def claims(self, node: Any, semantics: Semantics) -> bool:
        """Whether this kind takes ``node`` (one of :attr:`nir_types`) under ``semantics`` (its ``dt``,
        discretisation...)."""
        return True

    def from_nir(self, name: str, node: Any, shape: tuple[int, ...], semantics: Semantics,
                 recurrent: bool = False) -> tuple[Population, np.ndarray]:
        """The population of a NIR node and its input gain (folded into incoming weights), under
        ``semantics`` (``recurrent``: the node lies on a cycle, see
        :meth:`~mksgn.core.semantics.Semantics.for_type`)."""
        raise NotImplementedError

    def output_unit(self, name: str, fixed: FixedPoint) -> float:
        """The float value of one unit of what the population sends in fixed point (a spike: 1)."""
        return 1.0

    # emulator: state is a dict of tensors; params what params() returned
    def params(self, pop: Population, q: QuantizedPopulation | None, dtype: torch.dtype,
               device: torch.device) -> dict[str, Any]:
        """The emulator's parameters of ``pop`` (``q``: its integers in fixed point, else None)."""
        return {}

    def initial_state(self, pop: Population, batch: int, dtype: torch.dtype, device: torch.device) -> dict:
        """The zero state of a batch (``u`` and ``v``)."""
        zero = torch.zeros((batch, *pop.shape), dtype=dtype, device=device)
        return {"u": zero, "v": zero.clone()}

    def step_float(self, pop: Population, a_in: torch.Tensor, state: dict, params: dict, bias_on: bool,
                   track: bool = False) -> tuple[torch.Tensor, float]:
        """One float step; updates ``state``; returns the output (bool spikes, or values) and, with
        ``track``, the largest ``|state|`` before any reset (calibration)."""
        raise NotImplementedError

    def step_fixed(self, pop: Population, a_in: torch.Tensor, state: dict, params: dict, bias_on: bool
                   ) -> tuple[torch.Tensor, int]:
        """One integer step; updates ``state``; returns the output and the overflow events.

        ``a_in`` holds whole numbers: int64, or float32 where the emulator proved the sum exact
        (:meth:`mksgn.core.emulator.Emulator.float_input`). ``params`` are :meth:`params`'s, plus
        ``input_bound``: the largest ``|a_in|`` possible (``inf`` where unknown).
        """
        raise NotImplementedError

    def readout(self, value: torch.Tensor, params: dict, fixed: bool) -> torch.Tensor:
        """An output population's value in float units."""
        return value.to(torch.float64)

    def quantize(self, pop: Population, scale: float, mode: str) -> tuple[QuantizedPopulation, int]:
        """The integers of ``pop`` at ``scale`` (``mode``: ``calibrated``, ``dyadic`` or ``grid``, which
        says whether the kind may refine the scale); returns them (with the scale used) and the count
        of clipped values."""
        raise NotImplementedError

    def realised(self, pop: Population, q: QuantizedPopulation) -> Population:
        """``pop`` with the parameters its integers realise, in float units (the error budget);
        a kind without rounded parameters returns ``pop``."""
        return pop

    def lava_process(self, pop: Population, ctx: Any, depth: int) -> Any:
        """The Lava process of ``pop`` (``depth``: the Lava step at which a row's first input reaches it;
        ``ctx.period``: the steps per row when rows run back to back, see
        :mod:`mksgn.deploy.lava_builder`)."""
        raise NotImplementedError(f"population kind {self.name!r} has no Lava process")
