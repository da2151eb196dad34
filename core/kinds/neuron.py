"""``neuron``: Lava's two-state LIF, which every NIR neuron node becomes.

Float (``PyLifModelFloat``) and bit-accurate (``PyLifModelBitAcc``)::

    u = (1 - du) u + a_in;   v = (1 - dv) v + u + bias;   spike if v > vth, then v = 0

NIR LIF and LI give ``du = 1`` (``u`` is this step's input), ``dv = dt/tau``; IF and I
``dv = 0``; CubaLIF and CubaLI ``du = dt/tau_syn``, ``dv = dt/tau_mem``; Threshold ``du = dv =
1`` (``dt/tau`` is ``1 - exp(-dt/tau)`` under the exponential discretisation). The node's input
gain (``r dt/tau``...) is returned to be folded into its synapses, ``v_leak`` goes into the bias.
A population without a threshold (LI, I, CubaLI, a read-out) never spikes and outputs ``v``.
How a spiking one fires and resets is its ``rule`` (:mod:`mksgn.core.semantics`); with NIR's
reset to ``v_reset``, ``v_reset`` must be 0 (Lava resets to zero).

Quantisation: ``vth = threshold / scale`` (a whole number, at most 17 bits), ``du`` and ``dv``
as 12-bit fractions (Lava adds 1 to ``du``; one per neuron where neurons differ), the bias as a
13-bit mantissa and a 3-bit exponent in units of ``scale / 2**6``. In Lava a stock ``LIFReset``
zeroed at each person row's start (rows run back to back), or, where rows cannot share a build,
a stock ``LIF`` (mksgn's model of it switches the bias on at the population's depth); one per
decay group where decays differ (:mod:`mksgn.deploy.lava_split`); mksgn's ``RuleLIF`` where the
rule is not a LIF's or the decays cannot be split.
"""

from __future__ import annotations

import math
from typing import Any

import nir
import numpy as np
import torch

from mksgn.core import loihi, timestep
from mksgn.core.fixed_point import QuantizedPopulation, QuantizeError
from mksgn.core.kinds.base import PopulationKind
from mksgn.core.neuron import CurrentParams, LeakyParams, current_step, lif_membrane
from mksgn.core.spike_rules import SpikeRule, apply_pending_reset, reset_membrane, spike_count
from mksgn.core.semantics import Semantics
from mksgn.core.synapse_graph import FusionError, Population

FLOAT_NEVER = 1e300
"""Float threshold of a non-spiking population in Lava."""


def uniform(values: np.ndarray, what: str, pop: str) -> float:
    """The one value of a per-neuron parameter a Lava LIF holds once per process."""
    flat = np.unique(np.asarray(values, dtype=np.float64))
    if flat.size != 1:
        raise QuantizeError(f"population {pop!r}: {what} differs between neurons ({flat[:4]}...); a Lava LIF "
                            f"process has one {what}")
    return float(flat[0])


def decay_integers(decay: np.ndarray, offset: int) -> int | np.ndarray:
    """Lava's 12-bit decays of per-neuron fractions (``offset``: Lava's hidden +1 on ``du``): one int
    where every neuron has the same, else one per neuron (a stock LIF holds one: the population
    becomes one process per group, :func:`decay_groups`, :mod:`mksgn.deploy.lava_split`)."""
    ints = np.clip(np.round(np.asarray(decay, dtype=np.float64) * loihi.DECAY_UNITY) - offset, 0,
                   loihi.DECAY_MAX).astype(np.int64)
    return int(ints.flat[0]) if np.all(ints == ints.flat[0]) else ints


def decay_groups(q: QuantizedPopulation, shape: tuple[int, ...]) -> int:
    """How many distinct ``(du, dv)`` pairs the population's neurons have (stock Lava LIF processes needed)."""
    du = np.broadcast_to(np.asarray(q.du), shape).reshape(-1)
    dv = np.broadcast_to(np.asarray(q.dv), shape).reshape(-1)
    return int(np.unique(np.stack([du, dv]), axis=1).shape[1])


def quantize_bias(bias: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, int]:
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


class Neuron(PopulationKind):
    name = "neuron"
    nir_types = (nir.LIF, nir.IF, nir.LI, nir.I, nir.CubaLIF, nir.CubaLI, nir.Threshold)

    # ------------------------------------------------------------------ fusion

    def from_nir(self, name: str, node: Any, shape: tuple[int, ...], semantics: Semantics,
                 recurrent: bool = False) -> tuple[Population, np.ndarray]:
        kind = type(node).__name__

        def arr(field_name: str) -> np.ndarray:
            return np.broadcast_to(np.asarray(getattr(node, field_name), dtype=np.float64), shape).copy()

        def leak(field_name: str) -> np.ndarray:  # 1 - a: dt/tau, or 1 - exp(-dt/tau)
            return timestep.decay_step(arr(field_name), semantics.dt, semantics.discretisation)

        zeros, ones = np.zeros(shape), np.ones(shape)
        if isinstance(node, nir.Threshold):
            return Population(name, shape, du=ones, dv=ones, bias=zeros, threshold=arr("threshold"),
                              nir_type=kind), ones
        rule = semantics.for_type(kind, recurrent)
        if isinstance(node, (nir.LIF, nir.LI)):
            k = leak("tau")
            pop, gain = Population(name, shape, du=ones, dv=k, bias=arr("v_leak") * k, nir_type=kind), arr("r") * k
        elif isinstance(node, (nir.IF, nir.I)):
            pop, gain = Population(name, shape, du=ones, dv=zeros, bias=zeros, nir_type=kind), arr("r") * semantics.dt
        else:  # CubaLIF, CubaLI
            k_syn, k_mem = leak("tau_syn"), leak("tau_mem")
            pop = Population(name, shape, du=k_syn, dv=k_mem, bias=arr("v_leak") * k_mem, nir_type=kind)
            gain = arr("w_in") * (1.0 if rule.current_input == "jump" else k_syn) * arr("r") * k_mem
        if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
            if rule.reset == "to-v-reset" and np.any(arr("v_reset") != 0):
                raise FusionError(f"node {name!r} ({kind}): v_reset must be 0 (Lava resets to zero), "
                                  f"got {np.unique(arr('v_reset'))[:5]}")
            pop.threshold = arr("v_threshold")
            pop.rule = rule
        return pop, gain

    # ------------------------------------------------------------------ emulator

    def params(self, pop: Population, q: QuantizedPopulation | None, dtype: torch.dtype,
               device: torch.device) -> dict[str, Any]:
        def t(x: Any, dt: torch.dtype | None = None) -> torch.Tensor:
            return torch.as_tensor(np.broadcast_to(np.asarray(x), pop.shape).copy(), dtype=dt or dtype, device=device)

        if q is not None:
            i64 = torch.int64
            bias = loihi.effective_bias(t(q.bias_mant, i64), t(q.bias_exp, i64))
            du = int(q.du) if np.ndim(q.du) == 0 else t(q.du, i64)
            dv = int(q.dv) if np.ndim(q.dv) == 0 else t(q.dv, i64)
            return {"du": torch.as_tensor(du, dtype=i64), "dv": torch.as_tensor(dv, dtype=i64),
                    "vth": torch.tensor(int(q.vth), dtype=i64), "bias": bias,
                    "du_int": du, "dv_int": dv, "vth_int": int(q.vth), "has_bias": bool(bias.any()),
                    "scale": torch.tensor(float(q.scale), dtype=torch.float64),
                    "v_min_int": None if pop.v_min is None else t(loihi.voltage_floor(pop.v_min, float(q.scale)), i64)}
        return {"du": t(pop.du), "dv": t(pop.dv), "bias": t(pop.bias), "vth": t(pop.threshold) if pop.spiking else None,
                "v_min": None if pop.v_min is None else t(pop.v_min)}

    def step_float(self, pop: Population, a_in: torch.Tensor, state: dict, params: dict, bias_on: bool,
                   track: bool = False) -> tuple[torch.Tensor, float]:
        bias = params["bias"] if bias_on else params["bias"] * 0
        u = current_step(a_in, state["u"], CurrentParams(a=1 - params["du"]))
        v = lif_membrane(u, state["v"], LeakyParams(a=1 - params["dv"], c=bias))
        if not pop.spiking:
            state["u"], state["v"] = u, v
            return v, max(float(v.abs().max()), float(u.abs().max())) if track else 0.0
        rule = SpikeRule(params["vth"], pop.rule.reset, 0.0, pop.rule.threshold, pop.rule.spikes == "multi",
                         params["v_min"])
        if rule.delayed:
            v = apply_pending_reset(v, state["fired"], rule)
        peak = max(float(v.abs().max()), float(u.abs().max())) if track else 0.0
        s = spike_count(v, rule)
        state["u"], state["v"] = u, reset_membrane(v, s, rule)
        if rule.delayed:
            state["fired"] = s
        return s, peak

    def initial_state(self, pop: Population, batch: int, dtype: torch.dtype, device: torch.device) -> dict:
        """``u``, ``v`` and, where the reset acts on the next step, the last spikes ``fired``."""
        state = super().initial_state(pop, batch, dtype, device)
        if pop.spiking and pop.rule.reset in ("zero", "subtract-next"):
            state["fired"] = torch.zeros_like(state["v"])
        return state

    def step_fixed(self, pop: Population, a_in: torch.Tensor, state: dict, params: dict, bias_on: bool
                   ) -> tuple[torch.Tensor, int]:
        bias = params["bias"] if bias_on and params["has_bias"] else None
        if (pop.spiking and not pop.rule.spike_rule_is_lavas) or torch.is_tensor(params["du_int"]) \
                or torch.is_tensor(params["dv_int"]):
            return self._step_rule_fixed(pop, a_in, state, params, bias)
        s, u, v, events = loihi.lif_fixed_step_torch(a_in, state["u"], state["v"], params["du_int"], params["dv_int"],
                                                     params["vth_int"], bias)
        if not pop.spiking:  # a read-out crossing the largest threshold resets: an overflow
            events += int(torch.count_nonzero(s))
        state["u"], state["v"] = u, v
        return (s if pop.spiking else v), events

    @staticmethod
    def _step_rule_fixed(pop: Population, a_in: torch.Tensor, state: dict, params: dict, bias: torch.Tensor | None
                         ) -> tuple[torch.Tensor, int]:
        """A step of a population whose spike rule is not a Lava LIF's (:mod:`mksgn.core.semantics`) or
        whose decays differ between neurons: the bit-accurate current and voltage, then the rule in
        integers (what mksgn's ``RuleLIF`` computes)."""
        rule, vth_eff = pop.rule, params["vth_int"] << loihi.THRESHOLD_SHIFT
        u, v, events = loihi.lif_fixed_membrane_torch(a_in, state["u"], state["v"], params["du_int"],
                                                      params["dv_int"], bias)
        if not pop.spiking:  # a read-out: its v, a crossing of the largest threshold resets (an overflow)
            crossed = v > vth_eff
            state["u"], state["v"] = u, v.masked_fill(crossed, 0)
            return state["v"], events + int(torch.count_nonzero(crossed))
        if "fired" in state:
            v = loihi.pending_reset_fixed(v, state["fired"], vth_eff, rule.reset)
        s = loihi.spike_count_fixed(v, vth_eff, rule.threshold, rule.spikes == "multi")
        state["u"], state["v"] = u, loihi.reset_fixed(v, s, vth_eff, rule.reset, params["v_min_int"])
        if "fired" in state:
            state["fired"] = s
        return s, events

    def readout(self, value: torch.Tensor, params: dict, fixed: bool) -> torch.Tensor:
        if fixed:  # v is in units of 2**-6 of one synaptic unit
            return value.to(torch.float64) * (float(params["scale"]) / (1 << loihi.ACTIVATION_SHIFT))
        return value.to(torch.float64)

    # ------------------------------------------------------------------ quantisation

    def quantize(self, pop: Population, scale: float, mode: str) -> tuple[QuantizedPopulation, int]:
        """Integers at ``scale`` (``mode``: ``calibrated``, ``dyadic`` or ``grid``); returns them and the
        count of clipped biases. Calibrated mode moves the scale so that the threshold is whole."""
        name = pop.name
        if pop.spiking:
            thr = uniform(pop.threshold, "threshold", name)
            if thr <= 0:
                raise QuantizeError(f"population {name!r}: threshold {thr} must be > 0 for Loihi")
            if mode == "calibrated":
                vth = int(min(loihi.VTH_MAX, max(1, math.floor(thr / scale)) if scale > 0 else loihi.VTH_MAX))
                scale = thr / vth
            else:
                if mode == "dyadic":  # a finer power of two until the threshold is a whole number of units
                    for _ in range(loihi.VTH_BITS):
                        if (thr / scale).is_integer():
                            break
                        scale /= 2
                if not (thr / scale).is_integer() or not 1 <= thr / scale <= loihi.VTH_MAX:
                    raise QuantizeError(f"population {name!r}: threshold {thr} is not a whole multiple (1.."
                                        f"{loihi.VTH_MAX}) of the scale {scale}")
                vth = int(thr / scale)
        else:
            vth = loihi.VTH_MAX
            if scale <= 0:
                scale = 1.0
        du = decay_integers(np.broadcast_to(pop.du, pop.shape), 1)
        dv = decay_integers(np.broadcast_to(pop.dv, pop.shape), 0)
        mant, bexp, clipped = quantize_bias(np.broadcast_to(pop.bias, pop.shape), scale)
        return QuantizedPopulation(scale, vth, du, dv, mant, bexp), clipped

    def realised(self, pop: Population, q: QuantizedPopulation) -> Population:
        """``pop`` with the bias and decays its integers realise, in float units (the error budget)."""
        import dataclasses

        bias = q.effective_bias(pop.shape).astype(np.float64) * q.scale / (1 << loihi.ACTIVATION_SHIFT)
        return dataclasses.replace(pop, bias=bias, du=np.asarray(q.decay_u), dv=np.asarray(q.decay_v))

    # ------------------------------------------------------------------ Lava

    def lava_process(self, pop: Population, ctx: Any, depth: int) -> Any:
        """A stock ``LIFReset`` zeroed when each row's first input reaches ``depth`` (``ctx.period``
        steps per row), or, for one row of a graph whose rows cannot share a build, a stock ``LIF``
        whose bias counts from Lava step ``depth`` on (mksgn's gated model). A population whose spike
        rule is not a LIF's (:mod:`mksgn.core.semantics`), or whose decays differ between neurons, is
        mksgn's ``RuleLIF`` instead (not stock), with the same row reset or bias gate."""
        proc, when = self._stock_lif(ctx, depth)
        if ctx.fixed:
            q = ctx.graph.fixed.populations[pop.name]
            du, dv = q.du, q.dv
        else:
            du, dv = (float(np.unique(d)[0]) if np.unique(d).size == 1 else np.asarray(d) for d in (pop.du, pop.dv))
        if (pop.spiking and not pop.rule.spike_rule_is_lavas) or np.ndim(du) or np.ndim(dv):
            proc, when = ctx.mksgn_process("RuleLIF"), self._rule_params(pop, ctx, when, du, dv)
        shape = ctx.lava_shape(pop.shape)
        if ctx.fixed:
            mant = ctx.to_lava(np.broadcast_to(np.asarray(q.bias_mant), pop.shape).astype(np.int64), pop.shape)
            exp = ctx.to_lava(np.broadcast_to(np.asarray(q.bias_exp), pop.shape).astype(np.int64), pop.shape)
            return proc(shape=shape, vth=int(q.vth), bias_mant=mant, bias_exp=exp, **{"du": du, "dv": dv, **when})
        if pop.spiking and np.unique(np.asarray(pop.threshold)).size != 1:
            raise ctx.error(f"population {pop.name!r}: threshold differs between neurons; a Lava LIF has one")
        vth = float(np.unique(pop.threshold)[0]) if pop.spiking else FLOAT_NEVER
        bias = ctx.to_lava(np.broadcast_to(pop.bias, pop.shape).astype(np.float64), pop.shape)
        return proc(shape=shape, vth=vth, bias_mant=bias, **{"du": du, "dv": dv, **when})

    @staticmethod
    def _stock_lif(ctx: Any, depth: int) -> tuple[type, dict]:
        """The stock process and how it starts each row: ``LIFReset`` zeroed when a row's first input
        reaches ``depth`` (rows back to back), else ``LIF`` whose bias counts from step ``depth``."""
        lif = ctx.lava("lava.proc.lif.process")
        if ctx.period:
            return lif.LIFReset, {"reset_interval": ctx.period, "reset_offset": (depth + 1) % ctx.period}
        return lif.LIF, {"bias_start": depth}

    @staticmethod
    def _rule_params(pop: Population, ctx: Any, when: dict, du: Any, dv: Any) -> dict:
        """``RuleLIF``'s parameters: the row reset or bias gate of ``when``, the rule, decays and floor per
        neuron in Lava's layout."""
        params = {"reset_interval": 0, "reset_offset": 0, "bias_start": 0, **when}
        v_min = pop.v_min if pop.spiking else None
        if v_min is not None:
            v_min = np.broadcast_to(np.asarray(v_min, dtype=np.float64), pop.shape)
            if ctx.fixed:
                v_min = loihi.voltage_floor(v_min, float(ctx.graph.fixed.populations[pop.name].scale))
            v_min = ctx.to_lava(v_min, pop.shape)
        rule = pop.rule if pop.spiking else type(pop.rule)()
        params.update(reset=rule.reset, threshold_test=rule.threshold, multi=rule.spikes == "multi", v_min=v_min)
        for name, decay in (("du", du), ("dv", dv)):
            params[name] = ctx.to_lava(np.broadcast_to(np.asarray(decay), pop.shape).copy(), pop.shape)
        return params

    def lava_group_processes(self, pop: Population, ctx: Any, depth: int, groups: list[np.ndarray]) -> list[Any]:
        """One stock ``LIFReset`` (or gated ``LIF``) of shape ``(n,)`` per group of neurons sharing their
        decays (``groups``: NIR-flat indices), in the group's order: a population whose decays differ
        between neurons on stock processes (:mod:`mksgn.deploy.lava_split` connects them)."""
        proc, when = self._stock_lif(ctx, depth)
        def flat(x: Any) -> np.ndarray:
            return np.broadcast_to(np.asarray(x), pop.shape).reshape(-1)

        q = ctx.graph.fixed.populations[pop.name] if ctx.fixed else None
        procs = []
        for index in groups:
            if q is not None:
                procs.append(proc(shape=(len(index),), du=int(flat(q.du)[index[0]]), dv=int(flat(q.dv)[index[0]]),
                                  vth=int(q.vth), bias_mant=flat(q.bias_mant)[index].astype(np.int64),
                                  bias_exp=flat(q.bias_exp)[index].astype(np.int64), **when))
            else:
                procs.append(proc(shape=(len(index),), du=float(flat(pop.du)[index[0]]),
                                  dv=float(flat(pop.dv)[index[0]]), vth=float(np.unique(pop.threshold)[0]),
                                  bias_mant=flat(pop.bias)[index].astype(np.float64), **when))
        return procs

    def lava_readout(self, pop: Population, ctx: Any, v: np.ndarray) -> np.ndarray:
        """A non-spiking population's float value from its Lava ``v`` (NIR layout)."""
        if ctx.fixed:
            return v * float(ctx.graph.fixed.populations[pop.name].scale) / (1 << loihi.ACTIVATION_SHIFT)
        return v
