"""Typed fixed-point records: what quantisation decides for each input, population and synapse.

:func:`mksgn.convert.quantize.quantize` returns a :class:`FixedPoint` attached to the synapse
graph (``SynapseGraph.fixed``); the emulator, the Lava builder, the error budget, snapping and
the energy counts read these records. In a file they live in the graph's metadata under
:data:`METADATA_KEY`, written and read only by :meth:`FixedPoint.to_metadata` and
:meth:`FixedPoint.from_metadata` (nested dicts of arrays and numbers, HDF5-friendly).

Units: a population's ``scale`` is the float value of one unit of its synaptic input
``a_in``; an input's ``scale`` is the float value of one unit of its graded payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mksgn.core import loihi
from mksgn.errors import MksgnError

if TYPE_CHECKING:
    from mksgn.core.synapse_graph import SynapseGraph

FORMAT = "mksgn-loihi-quantization/1"
METADATA_KEY = "quantization"
"""The graph metadata entry holding the records."""


class QuantizeError(MksgnError, ValueError):
    """A graph that cannot be quantised, or whose stored integers do not fit it; names the population,
    synapse or file."""


class FixedPointError(QuantizeError):
    """Stored fixed-point records that are malformed; names the entry."""


@dataclass(frozen=True)
class QuantizedInput:
    """A graded input: ``bits``-bit signed integers of ``scale`` each."""

    scale: float
    bits: int

    @property
    def limit(self) -> int:
        """The largest payload magnitude."""
        return (1 << (self.bits - 1)) - 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Float values as the integer payloads the host sends (rounded, clamped; float64)."""
        return torch.round(torch.as_tensor(x, dtype=torch.float64) / self.scale).clamp(-self.limit, self.limit)

    def realise(self, x: torch.Tensor) -> torch.Tensor:
        """Float values as the fixed-point model receives them (payload times scale)."""
        return self.encode(x) * self.scale


@dataclass
class QuantizedPopulation:
    """A population's Lava LIF integers and the float value of its unit.

    ``du``, ``dv`` are Lava's 12-bit decays (``du`` without Lava's hidden +1), ``vth`` the
    17-bit threshold mantissa (shifted by 6 in the neuron), ``bias_mant << bias_exp`` the
    bias per neuron in units of ``scale / 2**6``.
    """

    scale: float
    vth: int
    du: int | np.ndarray
    """One decay, or one per neuron (then a stock Lava deployment needs one LIF process per distinct pair)."""
    dv: int | np.ndarray
    bias_mant: np.ndarray
    bias_exp: np.ndarray

    def effective_bias(self, shape: tuple[int, ...]) -> np.ndarray:
        """``bias_mant << bias_exp`` per neuron (int64, broadcast to ``shape``)."""
        mant = np.broadcast_to(np.asarray(self.bias_mant, dtype=np.int64), shape)
        exp = np.broadcast_to(np.asarray(self.bias_exp, dtype=np.int64), shape)
        return np.asarray(loihi.effective_bias(mant, exp), dtype=np.int64)

    @property
    def decay_u(self) -> float | np.ndarray:
        """The fraction of ``u`` lost per step that the integers realise (Lava adds 1 to ``du``)."""
        return (np.asarray(self.du) + 1) / loihi.DECAY_UNITY

    @property
    def decay_v(self) -> float | np.ndarray:
        """The fraction of ``v`` lost per step that the integers realise."""
        return np.asarray(self.dv) / loihi.DECAY_UNITY


@dataclass
class QuantizedSynapse:
    """A synapse's integer weights (its kind's layout), weight exponent and weight bits."""

    weight: np.ndarray
    weight_exp: int = 0
    num_weight_bits: int = loihi.WEIGHT_BITS


@dataclass
class FixedPoint:
    """The fixed-point form of a synapse graph, by input, population and synapse name."""

    inputs: dict[str, QuantizedInput] = field(default_factory=dict)
    populations: dict[str, QuantizedPopulation] = field(default_factory=dict)
    synapses: dict[str, QuantizedSynapse] = field(default_factory=dict)
    format: str = FORMAT

    def to_metadata(self) -> dict[str, Any]:
        """Nested dicts of numbers and arrays (no None), for ``graph.metadata[METADATA_KEY]``."""
        return {
            "format": self.format,
            "inputs": {k: {"scale": v.scale, "bits": v.bits} for k, v in self.inputs.items()},
            "populations": {k: {"scale": p.scale, "vth": p.vth, "du": _stored_decay(p.du), "dv": _stored_decay(p.dv),
                                "bias_mant": np.asarray(p.bias_mant), "bias_exp": np.asarray(p.bias_exp)}
                            for k, p in self.populations.items()},
            "synapses": {k: {"weight": np.asarray(s.weight), "weight_exp": s.weight_exp,
                             "num_weight_bits": s.num_weight_bits} for k, s in self.synapses.items()},
        }

    @classmethod
    def from_metadata(cls, stored: Any, where: str = "graph") -> FixedPoint:
        """The records from :meth:`to_metadata`'s dicts (as written, or read back from HDF5)."""
        q = _plain(stored)
        try:
            return cls(
                inputs={k: QuantizedInput(float(v["scale"]), int(v["bits"])) for k, v in q["inputs"].items()},
                populations={k: QuantizedPopulation(float(p["scale"]), int(p["vth"]), _decay(p["du"]), _decay(p["dv"]),
                                                    np.asarray(p["bias_mant"], dtype=np.int64),
                                                    np.asarray(p["bias_exp"], dtype=np.int64))
                             for k, p in q["populations"].items()},
                synapses={k: QuantizedSynapse(np.asarray(s["weight"], dtype=np.int64), int(s.get("weight_exp", 0)),
                                              int(s.get("num_weight_bits", loihi.WEIGHT_BITS)))
                          for k, s in q["synapses"].items()},
                format=str(q.get("format", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FixedPointError(f"{where}: malformed {METADATA_KEY} metadata ({exc!r})") from exc


def _stored_decay(value: int | np.ndarray) -> int | np.ndarray:
    """A decay as stored: an int, or an array of one per neuron (HDF5 keeps no 0-d arrays)."""
    return int(value) if np.ndim(value) == 0 else np.asarray(value, dtype=np.int64)


def _decay(value: Any) -> int | np.ndarray:
    """A stored decay: one int, or one per neuron."""
    array = np.asarray(value, dtype=np.int64)
    return int(array) if array.ndim == 0 else array


def _plain(value: Any) -> Any:
    """HDF5 leaves as Python values: bytes decoded, NumPy scalars as numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def realised_weight(graph: SynapseGraph, name: str) -> np.ndarray:
    """The float weights the fixed-point synapse ``name`` of ``graph`` realises (integers x exponent x scales)."""
    syn = next(s for s in graph.synapses if s.name == name)
    q = graph.fixed.synapses[name]
    w = graph.kinds.synapse(syn.kind).fixed_weights(q)
    source = graph.kinds.population(graph.populations[syn.source].kind)
    unit = source.output_unit(syn.source, graph.fixed) if source.graded else 1.0  # a spike: 1
    return w.astype(np.float64) * 2.0 ** int(q.weight_exp) * graph.fixed.populations[syn.target].scale / unit


def is_quantized(metadata: Any) -> bool:
    """Whether graph metadata holds fixed-point records."""
    return isinstance(metadata, dict) and METADATA_KEY in metadata
