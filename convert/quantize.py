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

The quantised graph is the float graph itself with all integers and scales in
``metadata["quantization"]`` (:func:`write_quantized` / :func:`read_quantized`): float tools
still run it as the float model, mksgn's emulator and Lava builder run its integers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from mksgn.core.nir_file import read_graph, write_graph
from mksgn.core.synapse_graph import FusionError, SynapseGraph, fuse
from mksgn.core import loihi
from mksgn.errors import MksgnError

INPUT_BITS = 8
"""Graded input payload bits (signed)."""
WEIGHT_LIMIT_MIXED = (1 << loihi.WEIGHT_BITS) - 2
"""Largest mixed-sign weight that survives Lava's truncation unchanged (254)."""
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
"""Weight exponents used (Loihi's 4-bit signed range)."""
HEADROOM_BITS = 1
"""Unused top bits of the current and voltage on the calibration data."""
STATE_UNITS_LIMIT = 1 << (loihi.STATE_BITS - 1 - loihi.ACTIVATION_SHIFT - HEADROOM_BITS)
"""Largest calibrated ``|a_in|``, ``|u|``, ``|v|`` in synaptic-input units (2**16)."""
BIAS_UNITS_LIMIT = (loihi.BIAS_MANT_MAX << loihi.BIAS_EXP_MAX) / (1 << loihi.ACTIVATION_SHIFT)
"""Largest bias in synaptic-input units (13-bit mantissa, exponent up to 7, in units of 2**-6)."""
FORMAT = "mksgn-loihi-quantization/1"
CONV_KINDS = ("conv",)


class QuantizeError(MksgnError, ValueError):
    """A graph that cannot be quantised; names the population or synapse."""


@dataclass
class LayerReport:
    """What quantisation did to one population and its incoming synapses."""

    population: str
    scale: float
    vth: int | None
    du: int
    dv: int
    weights: dict[str, dict[str, Any]] = field(default_factory=dict)
    bias_clipped: int = 0
    saturated: int = 0
    peak_fraction: float = 0.0
    """Largest calibrated state as a fraction of the 24-bit range."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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


def _uniform(values: np.ndarray, what: str, pop: str) -> float:
    flat = np.unique(np.asarray(values, dtype=np.float64))
    if flat.size != 1:
        raise QuantizeError(f"population {pop!r}: {what} differs between neurons ({flat[:4]}...); a Lava LIF "
                            f"process has one {what}")
    return float(flat[0])


def _bias(bias: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, int]:
    """``bias_mant``, ``bias_exp`` per neuron and the clipped count."""
    b = np.round(np.asarray(bias, dtype=np.float64) / scale * (1 << loihi.ACTIVATION_SHIFT))
    exp = np.zeros(b.shape, dtype=np.int64)
    mant = b.copy()
    for e in range(loihi.BIAS_EXP_MAX + 1):
        fits = np.abs(np.round(b / (1 << e))) <= loihi.BIAS_MANT_MAX
        pick = fits & (exp == 0) & (np.abs(mant) > loihi.BIAS_MANT_MAX)
        exp[pick] = e
        mant[pick] = np.round(b[pick] / (1 << e))
    clipped = int((np.abs(mant) > loihi.BIAS_MANT_MAX).sum())
    mant = np.clip(mant, loihi.BIAS_MANT_MIN, loihi.BIAS_MANT_MAX)
    return mant.astype(np.int64), exp, clipped


def _dyadic(value: float) -> float:
    """The smallest power of two ``>= value``."""
    return 2.0 ** math.ceil(math.log2(value))


def fixed_point_grid(sg: SynapseGraph) -> dict[str, Any] | None:
    """The grid a snapped graph declares (``metadata["fixed_point_grid"]``), or None."""
    from mksgn.convert.nir_export import decode_metadata

    return decode_metadata(dict(sg.metadata)).get("fixed_point_grid")


def quantize(sg: SynapseGraph, calibration: dict[str, torch.Tensor],
             input_bits: int = INPUT_BITS, dyadic: bool = False) -> tuple[SynapseGraph, list[LayerReport]]:
    """Quantise ``sg`` (in place: its ``metadata["quantization"]``) on calibration inputs.

    A graph snapped onto the grid (:mod:`mksgn.convert.snap`) declares its scales in
    ``metadata["fixed_point_grid"]``; they are used as they are, so every weight, bias and
    threshold converts to its integer exactly.

    Parameters
    ----------
    sg
        The float synapse graph.
    calibration
        Input name -> ``(T, B, *shape)`` float inputs used to size the scales.
    input_bits
        Bits of the graded input payloads (signed; at most 24, Lava's message width).
    dyadic
        Round every scale up to a power of two (and make ``threshold / scale`` an integer):
        then the float model of the integers computes exactly what the integers do.

    Returns
    -------
    The graph (with integers in its metadata) and a report per population.
    """
    from mksgn.core.emulator import Emulator

    float_run = Emulator(sg, "floating_pt").run(calibration)
    peaks = float_run.peaks
    grid = fixed_point_grid(sg)
    inputs = {}
    if not 2 <= input_bits <= loihi.GRADED_MESSAGE_BITS:
        raise QuantizeError(f"input_bits must be 2..{loihi.GRADED_MESSAGE_BITS}, got {input_bits}")
    for name in sg.inputs:
        if grid is not None:
            entry = grid["inputs"].get(name)
            if entry is None:
                raise QuantizeError(f"input {name!r}: the graph's fixed_point_grid has no entry for it")
            inputs[name] = {"scale": float(entry["scale"]), "bits": int(entry["bits"])}
            continue
        peak = peaks[name]["v"]
        scale = (peak / ((1 << (input_bits - 1)) - 1)) if peak > 0 else 1.0
        inputs[name] = {"scale": _dyadic(scale) if dyadic else scale, "bits": input_bits}
    unit = {name: inputs[name]["scale"] for name in sg.inputs}
    q_pops: dict[str, dict[str, Any]] = {}
    q_syns: dict[str, dict[str, Any]] = {}
    reports: list[LayerReport] = []
    for name, pop in sg.populations.items():
        if pop.kind == "input":
            continue
        incoming = sg.incoming(name)
        eff = {s.name: np.asarray(s.weight, dtype=np.float64) * unit.get(s.source, 1.0) for s in incoming}
        for s in incoming:
            if not sg.populations[s.source].spiking and s.source not in unit:
                raise QuantizeError(f"synapse {s.name}: its source is a non-spiking population; Lava neurons "
                                    f"send spikes only")
        conv_max = max((float(np.abs(eff[s.name]).max()) for s in incoming if s.kind in CONV_KINDS), default=0.0)
        state_peak = max(peaks[name]["a_in"], peaks[name]["v"])
        bias_max = float(np.abs(pop.bias).max())
        scale = max(conv_max / WEIGHT_LIMIT_MIXED, state_peak / STATE_UNITS_LIMIT, bias_max / BIAS_UNITS_LIMIT)
        if grid is not None:
            if name not in grid["populations"]:
                raise QuantizeError(f"population {name!r}: the graph's fixed_point_grid has no scale for it")
            scale = float(grid["populations"][name])
        elif dyadic:
            scale = _dyadic(scale) if scale > 0 else 1.0
        du_f, dv_f = _uniform(pop.du, "du", name), _uniform(pop.dv, "dv", name)
        if pop.spiking:
            thr = _uniform(pop.threshold, "threshold", name)
            if thr <= 0:
                raise QuantizeError(f"population {name!r}: threshold {thr} must be > 0 for Loihi")
            if grid is not None or dyadic:
                if grid is None:  # a finer power of two until the threshold is a whole number of units
                    for _ in range(loihi.VTH_BITS):
                        if (thr / scale).is_integer():
                            break
                        scale /= 2
                if not (thr / scale).is_integer() or not 1 <= thr / scale <= loihi.VTH_MAX:
                    raise QuantizeError(f"population {name!r}: threshold {thr} is not a whole multiple (1.."
                                        f"{loihi.VTH_MAX}) of the scale {scale}")
                vth = int(thr / scale)
            else:
                vth = int(min(loihi.VTH_MAX, max(1, math.floor(thr / scale)) if scale > 0 else loihi.VTH_MAX))
                scale = thr / vth
        else:
            vth = loihi.VTH_MAX
            if scale <= 0:
                scale = 1.0
        du = int(np.clip(round(du_f * loihi.DECAY_UNITY) - 1, 0, loihi.DECAY_MAX))
        dv = int(np.clip(round(dv_f * loihi.DECAY_UNITY), 0, loihi.DECAY_MAX))
        report = LayerReport(name, scale, vth if pop.spiking else None, du, dv)
        for s in incoming:
            w = eff[s.name]
            wmax = float(np.abs(w).max())
            if s.kind in CONV_KINDS or wmax == 0:
                exp = 0
            else:
                exp = int(np.clip(math.ceil(math.log2(wmax / (scale * WEIGHT_LIMIT_MIXED))), WEIGHT_EXP_MIN,
                                  WEIGHT_EXP_MAX))
                if (dyadic or grid is not None) and pop.spiking:
                    exp = max(exp, 0)  # a negative exponent truncates the summed input: not exact
            w_int, clipped = _quantize_weights(w, scale * 2.0**exp)
            q_syns[s.name] = {"weight": w_int.astype(np.int64), "weight_exp": exp,
                              "num_weight_bits": loihi.WEIGHT_BITS}
            report.weights[s.name] = {"kind": s.kind, "weight_exp": exp, "max_abs": int(np.abs(w_int).max()),
                                      "range_used": round(float(np.abs(w_int).max()) / WEIGHT_LIMIT_MIXED, 3),
                                      "clipped": clipped, "zeroed": int(((w_int == 0) & (w != 0)).sum())}
        mant, bexp, report.bias_clipped = _bias(np.broadcast_to(pop.bias, pop.shape), scale)
        q_pops[name] = {"scale": scale, "vth": vth, "du": du, "dv": dv, "bias_mant": mant, "bias_exp": bexp}
        report.peak_fraction = round(state_peak / scale / (STATE_UNITS_LIMIT << HEADROOM_BITS), 4)
        reports.append(report)
    sg.metadata["quantization"] = {"format": FORMAT, "inputs": inputs, "populations": q_pops, "synapses": q_syns}
    fixed = Emulator(sg, "fixed_pt").run(calibration)
    for r in reports:
        r.saturated = fixed.saturation.get(r.population, 0)
    return sg, reports


def write_quantized(graph: nir.NIRGraph, sg: SynapseGraph, reports: list[LayerReport],
                    path: str | os.PathLike[str]) -> None:
    """Write the float graph with the quantisation in its metadata (atomically)."""
    meta = dict(graph.metadata or {})
    meta["quantization"] = _to_storable(sg.metadata["quantization"])
    meta["quantization_report"] = _to_storable({r.population: r.to_dict() for r in reports})
    out = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=meta, type_check=False)
    write_graph(out, Path(path))


def _to_storable(value: Any) -> Any:
    """Nested dicts with HDF5-friendly leaves (no None)."""
    if isinstance(value, dict):
        return {str(k): _to_storable(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    return value


def _from_stored(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _from_stored(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_quantized(path: str | os.PathLike[str]) -> tuple[nir.NIRGraph, SynapseGraph]:
    """Read a quantised graph: the float graph, and its synapse graph with the integers attached.

    Raises
    ------
    QuantizeError
        If the file is not a quantised mksgn graph, or its integers do not fit its synapses.
    """
    graph = read_graph(Path(path))
    meta = graph.metadata or {}
    if "quantization" not in meta:
        raise QuantizeError(f"{path}: not a quantised graph (no metadata 'quantization'; run mksgn-quantize)")
    q = _from_stored(meta["quantization"])
    if q.get("format") != FORMAT:
        raise QuantizeError(f"{path}: quantization format {q.get('format')!r}, expected {FORMAT!r}")
    try:
        sg = fuse(graph)
    except FusionError as exc:
        raise QuantizeError(f"{path}: {exc}") from None
    for s in sg.synapses:
        entry = q["synapses"].get(s.name)
        if entry is None or np.shape(entry["weight"]) != s.weight.shape:
            raise QuantizeError(f"{path}: synapse {s.name} has no integer weights of shape {s.weight.shape}")
    missing = [p for p, pop in sg.populations.items() if pop.kind != "input" and p not in q["populations"]]
    if missing:
        raise QuantizeError(f"{path}: populations without quantised parameters: {missing[:5]}")
    sg.metadata["quantization"] = q
    return graph, sg
