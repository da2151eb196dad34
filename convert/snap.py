"""Snap the student onto Loihi's fixed-point grid, so that float and fixed point agree exactly.

The 8-bit model of a float student differs from it by rounding, and a spiking network
amplifies any difference: on the trained ``tiny`` student a relative weight noise of 1e-3
already changes 2.5 % of the predictions. :func:`snap` instead makes the float model itself
lie on the grid the hardware uses:

1. the student is rewritten in deployment form (:mod:`mksgn.train.deployment`), one module
   per Loihi synapse;
2. that form is exported and quantised with **dyadic** scales (:func:`~mksgn.convert.quantize.quantize`
   with ``dyadic=True``): every population's scale, and the graded input's unit, is a power of
   two, every threshold a whole number of scale units, and the exponent of every synapse into a
   spiking population is ``>= 0`` (a negative one truncates the summed input);
3. every weight and bias of the deployment form is replaced by what its integer represents
   (integer x 2**exponent x scale; biases whole multiples of the scale), and the inputs are
   rounded to the graded grid by the model itself (``InputScale.unit``).

All of these are dyadic numbers of few bits, so float64 arithmetic on them is exact (a relay's
payload, up to 24 bits, times an 8-bit weight, summed over up to ``3 C`` terms, can pass
float32's 24-bit significand but stays far below float64's 53), and the state arithmetic of the bit-accurate LIF is exact too while no decay
truncates: ``v`` starts as a multiple of ``2**6`` units and ``beta = 1 - dv/4096`` divides it by
``2**j`` per step (``beta = 0.5``: ``j = 1``), so the first ``6 / j + 1`` steps are exact
(:func:`exact_steps`). The readout's sum is truncated by its negative exponent (within one unit
of its scale; it has no threshold). The snapped student's spikes then equal Loihi's integers',
which the parity report checks.

The grid (population scales, input units) is stored in the checkpoint and the exported
graph's metadata (``fixed_point_grid``), and ``mksgn-quantize`` uses it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from mksgn.core import loihi
from mksgn.convert.nir_export import export_student
from mksgn.convert.quantize import quantize
from mksgn.core.fixed_point import QuantizeError, realised_weight
from mksgn.core.fuse import fuse
from mksgn.core.nir_file import decode_metadata
from mksgn.core.synapse_graph import FusionError, Synapse, SynapseGraph
from mksgn.errors import MksgnError
from mksgn.train.blocks import FactorisedGate, FactorisedGraphConv
from mksgn.train.deployment import GRID_FORMAT, apply_grid, deployment_form
from mksgn.train.student import MKSGN

FORMAT = GRID_FORMAT


class SnapError(MksgnError, ValueError):
    """The student cannot be snapped; names the synapse or population."""


@dataclass
class SnapReport:
    """What snapping changed."""

    populations: int
    synapses: int
    weights_changed: int
    weights_zeroed: int
    max_weight_change: float
    """Largest change of a weight relative to the largest weight of its synapse."""
    biases_changed: int
    exact_steps: int
    time_steps: int
    input_units: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


ALWAYS = 1 << 30
"""``exact_steps`` of a state that never decays by a fraction."""


def exact_steps(factor: int) -> int:
    """Steps for which a state decayed by ``factor / 4096`` each step truncates nothing.

    The state starts on multiples of ``2**6`` (``a_in << 6``, biases whole scale units);
    ``factor / 4096 = odd / 2**j`` divides it by ``2**j`` per step.
    """
    if factor in (0, loihi.DECAY_UNITY):
        return ALWAYS  # memoryless, or no leak
    j = loihi.DECAY_BITS - ((factor & -factor).bit_length() - 1)  # factor / 4096 = odd / 2**j
    return loihi.ACTIVATION_SHIFT // j + 1


def snap_bias(bias: np.ndarray, scale: float) -> np.ndarray:
    """``bias`` on the grid Loihi holds exactly: whole multiples of ``scale`` that a 13-bit
    mantissa and a 3-bit exponent represent in the LIF's ``2**-6`` units (coarser above
    ``4095 / 64`` scale units). Values beyond the representable range are left to the
    quantiser, which clips them and reports it."""
    shape = np.shape(bias)
    out = np.round(np.asarray(bias, dtype=np.float64) / scale).reshape(-1)
    for i, k in np.ndenumerate(out):
        units = abs(k) * (1 << loihi.ACTIVATION_SHIFT)
        exp = 0
        while units / (1 << exp) > loihi.BIAS_MANT_MAX and exp < loihi.BIAS_EXP_MAX:
            exp += 1
        step = 1 << max(0, exp - loihi.ACTIVATION_SHIFT)
        out[i] = np.round(k / step) * step
    return out.reshape(shape) * scale


def _owner(model: MKSGN, paths: set[str]) -> tuple[str, nn.Module] | None:
    """The module holding a synapse's weights among the modules its chain came from."""
    for path in sorted(paths):
        mod = model.get_submodule(path)
        if isinstance(mod, (FactorisedGraphConv, FactorisedGate, nn.Conv2d, nn.Linear)):
            return path, mod
    return None


def _set(param: torch.Tensor, value: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.as_tensor(value, dtype=param.dtype).reshape(param.shape))


def _quantized_deployment(model: MKSGN, calibration: torch.Tensor, frames: int, class_names: list[str],
                          layout: str, input_bits: int) -> tuple[MKSGN, SynapseGraph, dict[str, str], dict[str, str]]:
    """The deployment form, its dyadic quantisation, node -> module paths and node -> part of a
    factorised module (``a.k``, ``weight.k``, ``squeeze``, ``a``)."""
    dep = deployment_form(model)
    dep.fixed_point = None
    for m in dep.input_scale.values():
        m.unit.zero_()
    graph = export_student(dep, frames, calibration.shape[-1], class_names, layout)
    try:
        sg = fuse(graph)
        t_steps = dep.cfg.time_steps
        inputs = {node: calibration[:, i].double().unsqueeze(0).expand(t_steps, *calibration[:, i].shape)
                  for i, node in enumerate(sg.inputs)}
        sg, _ = quantize(sg, inputs, input_bits, dyadic=True)
    except (FusionError, QuantizeError) as exc:
        raise SnapError(f"cannot snap the student: {exc}") from exc
    parts = {name: node.metadata["part"] for name, node in graph.nodes.items() if "part" in (node.metadata or {})}
    return dep, sg, decode_metadata(graph.metadata)["module_map"], parts


def _factorised_param(mod: nn.Module, part: str) -> tuple[torch.Tensor, Any, Any]:
    """The parameter tensor a part names, how a synapse's weights map onto it and back."""
    name, _, k = part.partition(".")
    param = getattr(mod, name)
    if name == "a":  # a joint mix: the synapse holds a^T
        view = param[int(k)] if k else param
        return view, lambda w: w.T, lambda w: w.T
    if name == "weight":  # a 1x1 conv (C_out, C_in, 1, 1)
        return param[int(k)], lambda w: w[:, :, 0, 0], lambda p: p[:, :, None, None]
    return param, lambda w: w[0, :, 0, 0], lambda p: p[None, :, None, None]  # squeeze: (1, C, 1, 1)


def _snap_bias(mod: nn.Module, grid: float, report: SnapReport) -> None:
    b = mod.bias.detach().double().numpy()
    snapped = snap_bias(b, grid)
    report.biases_changed += int((snapped != b).sum())
    _set(mod.bias, snapped)


def _readout_positions(sg: SynapseGraph, syn: Synapse) -> int:
    """Frames x joints the pooled relay before the readout sums (1 when it does not pool)."""
    pools = [s for s in sg.incoming(syn.source) if s.kind == "sumpool"]
    return int(np.prod(np.asarray(pools[0].weight).shape[1:])) if pools else 1


def _snap_synapse(dep: MKSGN, sg: SynapseGraph, syn: Synapse, maps: tuple[dict[str, str], dict[str, str]],
                  report: SnapReport) -> None:
    """Put the weights (and bias) of the module behind ``syn`` on its integers' values; count in ``report``."""
    module_map, parts = maps
    scale = sg.fixed.populations[syn.target].scale
    w_eff = realised_weight(sg, syn.name)
    owner = _owner(dep, {module_map[n] for n in syn.nodes if n in module_map})
    report.weights_changed += int((w_eff != syn.weight).sum())
    report.weights_zeroed += int(((w_eff == 0) & (syn.weight != 0)).sum())
    peak = float(np.abs(syn.weight).max()) or 1.0
    report.max_weight_change = max(report.max_weight_change, float(np.abs(w_eff - syn.weight).max()) / peak)
    if owner is None:  # identity, Broadcast, the pool, the coincidence input: weights exact already
        if not np.array_equal(w_eff, syn.weight):
            raise SnapError(f"synapse {syn.name}: its fixed weights {np.unique(syn.weight)[:4]} are not on the "
                            f"grid of {syn.target!r} (scale {scale})")
        return
    path, mod = owner
    if isinstance(mod, (FactorisedGraphConv, FactorisedGate)):
        part = next(parts[n] for n in syn.nodes if n in parts)
        param, to_param, from_param = _factorised_param(mod, part)
        if not np.allclose(syn.weight, from_param(param.detach().double().numpy()), rtol=1e-12, atol=0):
            raise SnapError(f"synapse {syn.name}: its weights are not {path}'s {part} (a neuron gain other than 1)")
        _set(param, to_param(w_eff))
        if part in ("weight.0", "a"):  # the part whose synapse carries the bias into its target
            _snap_bias(mod, scale, report)
        return
    if isinstance(mod, nn.Linear):  # the readout: pool mean (1 / positions) and Affine (1 / T)
        _set(mod.weight, w_eff * (_readout_positions(sg, syn) * report.time_steps))
        bias_grid = scale * report.time_steps
    else:
        if not np.allclose(syn.weight, mod.weight.detach().double().numpy(), rtol=1e-12, atol=0):
            raise SnapError(f"synapse {syn.name}: its weights are not {path}'s (a neuron gain other than 1)")
        _set(mod.weight, w_eff)
        bias_grid = scale
    if getattr(mod, "bias", None) is not None:
        _snap_bias(mod, bias_grid, report)


def _graph_exact_steps(sg: SynapseGraph) -> int:
    """Steps for which no spiking population's decay truncates (:func:`exact_steps`).

    A decay of 1 is exact for u (Lava adds 1 to du) but 4095/4096 for v (the coincidence
    neurons, beta 0), which leaves v/4096 behind; it is not counted here, and the parity report
    measures whether that residue ever changes a spike.
    """
    factors = [loihi.DECAY_UNITY - (q.du + 1 if k == "du" else q.dv)
               for name, q in sg.fixed.populations.items() if sg.populations[name].spiking for k in ("du", "dv")
               if float(np.unique(getattr(sg.populations[name], k))[0]) < 1.0]
    return min((exact_steps(f) for f in factors), default=ALWAYS)


def snap(model: MKSGN, calibration: torch.Tensor, frames: int, class_names: list[str], layout: str,
         input_bits: int = 8, calibrated_on: str = "") -> tuple[MKSGN, SnapReport]:
    """The student on the fixed-point grid (deployment form, float64) and a report.

    Parameters
    ----------
    model
        The trained student.
    calibration
        Person rows ``(R, Mod, C, F, V)`` sizing the scales (training data, not test data).
    frames, class_names, layout
        As the student was trained (they go into the exported graph).
    input_bits
        Graded input payload bits.
    """
    dep, sg, module_map, parts = _quantized_deployment(model, calibration, frames, class_names, layout, input_bits)
    fixed = sg.fixed
    report = SnapReport(len(fixed.populations), len(sg.synapses), 0, 0, 0.0, 0, 0, dep.cfg.time_steps,
                        {n: float(v.scale) for n, v in fixed.inputs.items()})
    for syn in sg.synapses:
        _snap_synapse(dep, sg, syn, (module_map, parts), report)
    report.exact_steps = int(_graph_exact_steps(sg))
    grid = {
        "format": FORMAT,
        "populations": {name: float(p.scale) for name, p in fixed.populations.items()},
        "inputs": {name: {"scale": float(v.scale), "bits": int(v.bits)} for name, v in fixed.inputs.items()},
        "calibrated_on": calibrated_on,
        "exact_steps": report.exact_steps,
    }
    apply_grid(dep, grid)
    return dep, report
