"""Loihi fixed-point quantisation of a NIR graph's synapse graph, calibrated on data.

The graph is fused into populations and synapses (:mod:`mksgn.core.synapse_graph`).
Each population ``p`` gets one **scale** ``s_p``: the float value of one unit of synaptic
input ``a_in``. Everything arriving at ``p`` is expressed in that unit::

    weight_int = w * unit(source) / (s_p * 2**weight_exp)      unit: 1 for spikes, the input scale for graded inputs
    vth        = threshold / s_p                                (exact: s_p is chosen so that it is an integer)
    bias       = round(bias / s_p * 2**6) = bias_mant << bias_exp
    du         = round(du * 4096) - 1,  dv = round(dv * 4096)   (Lava's hidden +1 on du; 12 bits)

Choosing ``s_p`` (threshold-aware, calibrated): the smallest scale that

1. keeps every ``conv`` weight within 8 bits (Lava's fixed-point Conv has no exponent) and
   every bias within its 13-bit mantissa and 3-bit exponent,
2. leaves :data:`HEADROOM_BITS` of headroom on the calibration data: the largest ``|a_in|``,
   ``|u|`` and ``|v|`` seen in a float run stay below ``2**(23 - 6 - HEADROOM_BITS)`` units
   (the current wraps at 24 bits after ``a_in << 6``, the voltage saturates),
3. makes ``threshold / s_p`` an integer of at most 17 bits;

then ``elementwise``, ``mix`` and ``dense`` synapses (Lava Dense semantics) take the weight
exponent that uses their 8 bits best. Mixed-sign weights are even (Lava's Dense drops
their lowest bit), within ``[-256, 254]``; single-sign ones within ``[0, 255]`` or
``[-255, 0]``. Graded inputs are rounded to :data:`INPUT_BITS`-bit integers.

With ``dyadic=True`` every scale is rounded up to a power of two (thresholds a whole
number of units, exponents of synapses into spiking populations ``>= 0``): then the float
model of the integers computes exactly what the integers do, which :mod:`mksgn.convert.snap`
uses. A snapped graph declares its scales (``metadata["fixed_point_grid"]``) and they are
used as they are.

:func:`quantize` returns the graph with typed records (:class:`~mksgn.core.fixed_point.FixedPoint`);
each synapse kind says whether it has an exponent and how Lava treats its integers
(:mod:`mksgn.core.kinds`), each population kind how its parameters become integers. The
quantised file is the float graph itself with the records in ``metadata["quantization"]``
(:func:`write_quantized` / :func:`read_quantized`): float tools still run it as the float
model, mksgn's emulator and Lava builder run its integers.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from mksgn.convert.defaults import INPUT_BITS
from mksgn.convert.relay_scale import relay_scale
from mksgn.core import loihi
from mksgn.core.emulator import Emulator
from mksgn.core.fixed_point import (
    FORMAT, METADATA_KEY, FixedPoint, QuantizedInput, QuantizedSynapse, QuantizeError, is_quantized,
)
from mksgn.core.fuse import fuse
from mksgn.core.kinds.base import WEIGHT_LIMIT_MIXED, PopulationKind
from mksgn.core.kinds.neuron import decay_groups
from mksgn.core.nir_file import decode_metadata, read_graph, write_graph
from mksgn.core.semantics import Semantics, from_metadata, same_semantics
from mksgn.core.semantics import resolve as resolve_semantics
from mksgn.core.synapse_graph import FusionError, SynapseGraph

HEADROOM_BITS = 1
"""Unused top bits of the current and voltage on the calibration data."""
STATE_UNITS_LIMIT = 1 << (loihi.STATE_BITS - 1 - loihi.ACTIVATION_SHIFT - HEADROOM_BITS)
"""Largest calibrated ``|a_in|``, ``|u|``, ``|v|`` in synaptic-input units (2**16)."""
BIAS_UNITS_LIMIT = (loihi.BIAS_MANT_MAX << loihi.BIAS_EXP_MAX) / (1 << loihi.ACTIVATION_SHIFT)
"""Largest bias in synaptic-input units (13-bit mantissa, exponent up to 7, in units of 2**-6)."""
REPORT_KEY = "quantization_report"


@dataclass
class LayerReport:
    """What quantisation did to one population and its incoming synapses."""

    population: str
    scale: float
    vth: int | None
    du: int | list[int]
    """Lava's ``du``, or its distinct values where neurons differ."""
    dv: int | list[int]
    weights: dict[str, dict[str, Any]] = field(default_factory=dict)
    bias_clipped: int = 0
    saturated: int = 0
    peak_fraction: float = 0.0
    """Largest calibrated state as a fraction of the 24-bit range."""
    decay_groups: int = 1
    """Distinct ``(du, dv)`` pairs among its neurons: the stock Lava LIF processes it is split into
    (:mod:`mksgn.deploy.lava_split`; mksgn's emulator and its ``RuleLIF`` hold one per neuron)."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _distinct(decay: int | np.ndarray) -> int | list[int]:
    return decay if np.ndim(decay) == 0 else sorted(int(d) for d in np.unique(decay))


def _quantize_weights(w: np.ndarray, step: float) -> tuple[np.ndarray, int]:
    """Integer weights ``w / step`` in Lava's representable set; returns them and the clipped count."""
    x = w / step
    mode = loihi.sign_mode(w)
    if mode == loihi.SIGN_MIXED:
        q = 2.0 * np.round(x / 2.0)
        lo, hi = float(loihi.WEIGHT_MIN_MIXED), float(WEIGHT_LIMIT_MIXED)
    elif mode == loihi.SIGN_EXCITATORY:
        q, lo, hi = np.round(x), 0.0, float(loihi.WEIGHT_MAX)
    else:
        q, lo, hi = np.round(x), -float(loihi.WEIGHT_MAX), 0.0
    clipped = int(((q < lo) | (q > hi)).sum())
    return np.clip(q, lo, hi), clipped


def _dyadic(value: float) -> float:
    """The smallest power of two ``>= value``."""
    return 2.0 ** math.ceil(math.log2(value))


def fixed_point_grid(sg: SynapseGraph) -> dict[str, Any] | None:
    """The grid a snapped graph declares (``metadata["fixed_point_grid"]``), or None."""
    return decode_metadata(dict(sg.metadata)).get("fixed_point_grid")


def _input_records(sg: SynapseGraph, peaks: dict, grid: dict | None, input_bits: int, dyadic: bool
                   ) -> dict[str, QuantizedInput]:
    if not 2 <= input_bits <= loihi.GRADED_MESSAGE_BITS:
        raise QuantizeError(f"input_bits must be 2..{loihi.GRADED_MESSAGE_BITS}, got {input_bits}")
    inputs = {}
    for name in sg.inputs:
        if grid is not None:
            entry = grid["inputs"].get(name)
            if entry is None:
                raise QuantizeError(f"input {name!r}: the graph's fixed_point_grid has no entry for it")
            inputs[name] = QuantizedInput(float(entry["scale"]), int(entry["bits"]))
            continue
        peak = peaks[name]["v"]
        scale = (peak / ((1 << (input_bits - 1)) - 1)) if peak > 0 else 1.0
        inputs[name] = QuantizedInput(_dyadic(scale) if dyadic else scale, input_bits)
    return inputs


def state_units_limit(kind: PopulationKind) -> int:
    """The largest calibrated state, in units of the scale, that keeps :data:`HEADROOM_BITS` below
    what the kind's state holds (:data:`STATE_UNITS_LIMIT` for a LIF)."""
    return 1 << (kind.state_bits - 1 - HEADROOM_BITS)


def _population_scale(sg: SynapseGraph, name: str, eff: dict[str, np.ndarray], state_peak: float,
                      grid: dict | None, dyadic: bool, only: set[str] | None = None) -> float:
    """The scale before the population kind's threshold rule: the smallest the weights (those in
    ``only``, default all), the calibrated state and the bias allow (or the grid's)."""
    pop = sg.populations[name]
    floors = [sg.kinds.synapse(s.kind).scale_floor(eff[s.name]) for s in sg.incoming(name)
              if only is None or s.name in only]
    scale = max(max(floors, default=0.0), state_peak / state_units_limit(sg.kinds.population(pop.kind)),
                float(np.abs(pop.bias).max()) / BIAS_UNITS_LIMIT)
    if grid is not None:
        if name not in grid["populations"]:
            raise QuantizeError(f"population {name!r}: the graph's fixed_point_grid has no scale for it")
        return float(grid["populations"][name])
    if dyadic:
        return _dyadic(scale) if scale > 0 else 1.0
    return scale


def _outgoing(sg: SynapseGraph, name: str, fixed: FixedPoint, peaks: dict, dyadic: bool
              ) -> list[tuple[np.ndarray, float]]:
    """The weights out of graded population ``name`` into non-graded targets, each with the scale its
    target takes from everything but ``name``'s graded sources (their units are not chosen yet)."""
    out = []
    for syn in sg.outgoing(name):
        target = sg.populations[syn.target]
        kind = sg.kinds.population(target.kind)
        if kind.graded or syn.recurrent:
            continue
        known = {s.name: np.asarray(s.weight, dtype=np.float64) * (
                     fixed.inputs[s.source].scale if s.source in fixed.inputs else 1.0)
                 for s in sg.incoming(syn.target) if not sg.is_graded(s.source) or s.source in fixed.inputs}
        peak = max(peaks[syn.target]["a_in"], peaks[syn.target]["v"])
        mode = "dyadic" if dyadic else "calibrated"
        scale = _population_scale(sg, syn.target, known, peak, None, dyadic, only=set(known))
        out.append((np.asarray(syn.weight, dtype=np.float64), kind.quantize(target, scale, mode)[0].scale))
    return out


def _quantize_population(sg: SynapseGraph, name: str, fixed: FixedPoint, peaks: dict, grid: dict | None,
                         dyadic: bool) -> LayerReport:
    """Quantise one population and its incoming synapses into ``fixed``; returns its report."""
    pop = sg.populations[name]
    kind = sg.kinds.population(pop.kind)
    incoming = sg.incoming(name)
    units = {s.name: sg.kinds.population(sg.populations[s.source].kind).output_unit(s.source, fixed)
             if sg.is_graded(s.source) else 1.0 for s in incoming}
    eff = {s.name: np.asarray(s.weight, dtype=np.float64) * units[s.name] for s in incoming}
    for s in incoming:
        source = sg.populations[s.source]
        if not (source.spiking or sg.is_graded(s.source) or sg.kinds.population(source.kind).always_on):
            raise QuantizeError(f"synapse {s.name}: its source is a non-spiking population; Lava neurons "
                                f"send spikes only")
    state_peak = max(peaks[name]["a_in"], peaks[name]["v"])
    mode = "grid" if grid is not None else ("dyadic" if dyadic else "calibrated")
    scale = _population_scale(sg, name, eff, state_peak, grid, dyadic)
    if kind.graded and grid is None:
        scale = relay_scale(scale, list(eff.values()), _outgoing(sg, name, fixed, peaks, dyadic), dyadic)
    qp, bias_clipped = kind.quantize(pop, scale, mode)
    fixed.populations[name] = qp
    report = LayerReport(name, qp.scale, qp.vth if pop.spiking else None, _distinct(qp.du), _distinct(qp.dv),
                         bias_clipped=bias_clipped, decay_groups=decay_groups(qp, pop.shape))
    for s in incoming:
        w = eff[s.name]
        exact = mode != "calibrated" and (pop.spiking or kind.graded)  # a truncated sum would not be exact
        exp = sg.kinds.synapse(s.kind).weight_exponent(w, qp.scale, exact)
        w_int, clipped = _quantize_weights(w, qp.scale * 2.0**exp)
        fixed.synapses[s.name] = QuantizedSynapse(w_int.astype(np.int64), exp, loihi.WEIGHT_BITS)
        report.weights[s.name] = {"kind": s.kind, "weight_exp": exp, "max_abs": int(np.abs(w_int).max()),
                                  "range_used": round(float(np.abs(w_int).max()) / WEIGHT_LIMIT_MIXED, 3),
                                  "clipped": clipped, "zeroed": int(((w_int == 0) & (w != 0)).sum())}
    report.peak_fraction = round(state_peak / qp.scale / (state_units_limit(kind) << HEADROOM_BITS), 4)
    return report


def quantize(sg: SynapseGraph, calibration: dict[str, torch.Tensor],
             input_bits: int = INPUT_BITS, dyadic: bool = False) -> tuple[SynapseGraph, list[LayerReport]]:
    """Quantise ``sg`` on calibration inputs; returns the graph with its :class:`FixedPoint` records.

    A graph snapped onto the grid (:mod:`mksgn.convert.snap`) declares its scales in
    ``metadata["fixed_point_grid"]``; they are used as they are, so every weight, bias and
    threshold converts to its integer exactly.

    Parameters
    ----------
    sg
        The float synapse graph (not modified).
    calibration
        Input name -> ``(T, B, *shape)`` float inputs used to size the scales.
    input_bits
        Bits of the graded input payloads (signed; at most 24, Lava's message width).
    dyadic
        Round every scale up to a power of two (and make ``threshold / scale`` an integer):
        then the float model of the integers computes exactly what the integers do.

    Returns
    -------
    A copy of ``sg`` whose ``fixed`` holds the integers, and a report per population.
    """
    peaks = Emulator(sg, "floating_pt").run(calibration).peaks
    grid = fixed_point_grid(sg)
    fixed = FixedPoint(inputs=_input_records(sg, peaks, grid, input_bits, dyadic))
    reports = [_quantize_population(sg, name, fixed, peaks, grid, dyadic)
               for name in sg.neurons()]
    out = dataclasses.replace(sg, fixed=fixed)
    _refuse_vanished_synapses(out)
    saturation = Emulator(out, "fixed_pt").run(calibration).saturation
    for r in reports:
        r.saturated = saturation.get(r.population, 0)
    return out, reports


def _refuse_vanished_synapses(sg: SynapseGraph) -> None:
    """A synapse whose every non-zero float weight became a zero integer computes nothing: refused,
    naming it, rather than a graph that silently outputs zeros (a wrong ``dt`` does this: it shrinks
    the input gains folded into the weights)."""
    for syn in sg.synapses:
        q = sg.fixed.synapses[syn.name]
        used = sg.kinds.synapse(syn.kind).fixed_weights(q)
        if np.any(np.asarray(syn.weight) != 0) and not np.any(used != 0):
            biggest = float(np.abs(syn.weight).max())
            raise QuantizeError(
                f"synapse {syn.name!r}: all {int(np.count_nonzero(syn.weight))} non-zero weights (largest |w| "
                f"{biggest:.3g}) round to 0 at its target's scale {sg.fixed.populations[syn.target].scale:.3g}; the "
                f"quantised graph would compute nothing there. Check the graph's dt ({sg.dt:g}) and neuron semantics "
                f"({sg.semantics.preset}): they set the input gains folded into these weights")


def write_quantized(graph: nir.NIRGraph, sg: SynapseGraph, reports: list[LayerReport],
                    path: str | os.PathLike[str]) -> None:
    """Write the float graph with the fixed-point records and the semantics it was quantised under
    (``dt``, ``neuron_semantics``) in its metadata (atomically)."""
    meta = dict(graph.metadata or {})
    meta.update(sg.semantics.to_metadata())  # later commands run it as it was quantised
    meta[METADATA_KEY] = _to_storable(sg.fixed.to_metadata())
    meta[REPORT_KEY] = _to_storable({r.population: r.to_dict() for r in reports})
    out = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=meta, type_check=False)
    write_graph(out, Path(path))


def _to_storable(value: Any) -> Any:
    """Nested dicts with HDF5-friendly leaves (no None)."""
    if isinstance(value, dict):
        return {str(k): _to_storable(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    return value


def read_quantized(path: str | os.PathLike[str]) -> tuple[nir.NIRGraph, SynapseGraph]:
    """Read a quantised graph: the float graph, and its synapse graph with its :class:`FixedPoint` records.

    Raises
    ------
    QuantizeError
        If the file is not a quantised mksgn graph, or its integers do not fit its synapses.
    """
    graph = read_graph(Path(path))
    return graph, quantized_synapse_graph(graph, path)


def quantized_synapse_graph(graph: nir.NIRGraph, path: str | os.PathLike[str],
                            semantics: Semantics | None = None) -> SynapseGraph:
    """The synapse graph of a quantised graph already read from ``path``, with its :class:`FixedPoint` records.

    Parameters
    ----------
    graph
        The graph as read from its file (fused here, once).
    path
        Its file, for messages.
    semantics
        The neuron semantics to fuse it under (default: those it was quantised under, which its
        metadata states); other semantics than those are refused (its integers would not fit them).

    Raises
    ------
    QuantizeError
        If the graph is not a quantised mksgn graph, its integers do not fit its synapses, or
        ``semantics`` differ from those it was quantised under.
    """
    meta = graph.metadata or {}
    if not is_quantized(meta):
        raise QuantizeError(f"{path}: not a quantised graph (no metadata {METADATA_KEY!r}; run mksgn-quantize)")
    fixed = FixedPoint.from_metadata(meta[METADATA_KEY], str(path))
    if fixed.format != FORMAT:
        raise QuantizeError(f"{path}: quantization format {fixed.format!r}, expected {FORMAT!r}")
    stored = from_metadata(meta, str(path))
    if stored is None:  # quantised before semantics were stored: under NIR's reading, at its dt
        stored = resolve_semantics(meta, where=str(path), warn=False)
    if semantics is not None and not same_semantics(semantics, stored):
        raise QuantizeError(f"{path}: quantised under {stored.describe()}; it cannot run under "
                            f"{semantics.describe()}: quantise the float graph again under these")
    try:
        sg = fuse(graph, semantics=stored if semantics is None else semantics)
    except FusionError as exc:
        raise QuantizeError(f"{path}: {exc}") from exc
    for s in sg.synapses:
        entry = fixed.synapses.get(s.name)
        if entry is None or np.shape(entry.weight) != s.weight.shape:
            raise QuantizeError(f"{path}: synapse {s.name} has no integer weights of shape {s.weight.shape}")
    missing = [p for p in sg.neurons() if p not in fixed.populations]
    if missing:
        raise QuantizeError(f"{path}: populations without quantised parameters: {missing[:5]}")
    return dataclasses.replace(sg, fixed=fixed)
