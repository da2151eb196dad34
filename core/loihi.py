"""Loihi fixed-point arithmetic exactly as Lava 0.10's bit-accurate process models compute it.

Every bit width is a named constant. The functions accept numpy arrays (Lava's forked
processes cannot use torch) and torch integer tensors (the batched emulator) alike.

Synapses (``PyDenseModelBitAcc``, ``PySparseModelBitAcc``)::

    w   = clip(w, [-256, 255] mixed sign | [0, 255] excitatory | [-255, 0] inhibitory)
    w   = (w >> k) << k,   k = 8 - num_weight_bits + (1 if mixed sign else 0)
    a   = sum_j w_ij s_j,  then a << weight_exp (or >> -weight_exp, arithmetic)

``PyConvModelFixed`` uses the weights as given (no clipping, no exponent) and wraps its
output into signed 24 bits (``signed_clamp`` in Lava is a modulo, not a saturation).

Neuron (``PyLifModelBitAcc``), one step::

    u = sgn(u (4096 - (du + 1))) (|u (4096 - (du + 1))| >> 12) + (a_in << 6)     wrap once into 24 bits
    v = clip(sgn(v (4096 - dv)) (|v (4096 - dv)| >> 12) + u + (bias_mant << bias_exp), +-(2^23 - 1))
    s = v > (vth << 6);  v[s] = 0

Float (``PyLifModelFloat``): ``u = u (1 - du) + a_in;  v = v (1 - dv) + u + bias_mant``, which is
:func:`mksgn.core.neuron.current_step` then :func:`mksgn.core.neuron.lif_step` (``a = 1 - dv``, ``c = bias``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

WEIGHT_BITS = 8
"""Synaptic weight mantissa bits."""
WEIGHT_MIN_MIXED = -(1 << WEIGHT_BITS)
"""Lowest mixed-sign weight before truncation (-256)."""
WEIGHT_MAX = (1 << WEIGHT_BITS) - 1
"""Highest weight (255)."""
DECAY_BITS = 12
"""Decay constants ``du``, ``dv`` are fractions of ``2**DECAY_BITS``."""
DECAY_UNITY = 1 << DECAY_BITS
DECAY_MAX = DECAY_UNITY - 1
"""Largest ``du`` / ``dv`` (12 bits unsigned)."""
ACTIVATION_SHIFT = 6
"""Synaptic input is left-shifted by this before it is added to the current."""
THRESHOLD_SHIFT = 6
"""The threshold mantissa is left-shifted by this."""
STATE_BITS = 24
"""Current and voltage are signed 24-bit."""
STATE_LIMIT = 1 << (STATE_BITS - 1)
VTH_BITS = 17
VTH_MAX = (1 << VTH_BITS) - 1
"""Largest threshold mantissa (17 bits unsigned)."""
BIAS_MANT_BITS = 13
BIAS_MANT_MIN = -(1 << (BIAS_MANT_BITS - 1))
BIAS_MANT_MAX = (1 << (BIAS_MANT_BITS - 1)) - 1
BIAS_EXP_BITS = 3
BIAS_EXP_MAX = (1 << BIAS_EXP_BITS) - 1
"""Bias exponents 0..7 (3 bits unsigned)."""
CONV_OUTPUT_BITS = 24
"""The fixed-point Conv wraps its output into this many signed bits."""
GRADED_MESSAGE_BITS = 24
"""Payload bits of a graded spike (Lava's message width; graded inputs are at most this wide)."""
DELAY_BITS = 6
DELAY_MAX = (1 << DELAY_BITS) - 1
"""Largest synaptic delay of Loihi 2 (6 bits: Lava's fixed-point ``DelayDense``/``DelaySparse`` refuse more)."""

SIGN_MIXED, SIGN_EXCITATORY, SIGN_INHIBITORY = "mixed", "excitatory", "inhibitory"


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _where(cond, a, b):
    if _is_torch(cond):
        import torch

        return torch.where(cond, a, b)
    return np.where(cond, a, b)


def _sign(x):
    if _is_torch(x):
        return x.sign()
    return np.sign(x)


def _reset(v, spikes):
    """``v`` with zeros where a spike was sent."""
    if _is_torch(v):
        return v.masked_fill(spikes, 0)
    return np.where(spikes, 0, v).astype(v.dtype, copy=False)


def sign_mode(weights) -> str:
    """Lava's ``determine_sign_mode``: excitatory if all >= 0, inhibitory if all <= 0, else mixed."""
    lo, hi = float(weights.min()), float(weights.max())
    if lo >= 0:
        return SIGN_EXCITATORY
    if hi <= 0:
        return SIGN_INHIBITORY
    return SIGN_MIXED


def truncated_bits(mode: str, num_weight_bits: int = WEIGHT_BITS) -> int:
    """Low bits Lava's Dense drops from every weight: ``8 - num_weight_bits + mixed``."""
    return WEIGHT_BITS - num_weight_bits + (1 if mode == SIGN_MIXED else 0)


def dense_weights(weights: np.ndarray, num_weight_bits: int = WEIGHT_BITS, mode: str | None = None) -> np.ndarray:
    """The weights Lava's fixed-point Dense/Sparse really use: clipped, then truncated."""
    mode = mode or sign_mode(weights)
    w = np.asarray(weights).astype(np.int64)
    if mode == SIGN_INHIBITORY:
        w = -w
    low = WEIGHT_MIN_MIXED if mode == SIGN_MIXED else 0
    w = np.clip(w, low, WEIGHT_MAX)
    k = truncated_bits(mode, num_weight_bits)
    w = (w >> k) << k
    return -w if mode == SIGN_INHIBITORY else w


def shift(x, exponent: int):
    """``x << exponent`` for positive exponents, arithmetic ``x >> -exponent`` otherwise."""
    return x << exponent if exponent > 0 else x >> -exponent


def decay(x, d):
    """``sgn(x d) (|x d| >> 12)``: multiply by ``d / 4096``, rounding toward zero."""
    if _is_torch(x):
        if isinstance(d, int) or (not _is_torch(d) or d.dim() == 0):
            factor = int(d)
            if factor == 0:
                return x * 0
            if factor == DECAY_UNITY:
                return x
        return torch_trunc_div(x * d, DECAY_UNITY)
    prod = x * d
    return _sign(prod) * (abs(prod) >> DECAY_BITS)


def torch_trunc_div(x, divisor: int):
    """Integer division rounding toward zero (one torch kernel; equals ``sgn(x) (|x| // divisor)``)."""
    import torch

    return torch.div(x, divisor, rounding_mode="trunc")


def wrap_once(x):
    """Lava's single wrap of the current into 24 bits (not a full modulo)."""
    if _is_torch(x) and not bool(x.gt(STATE_LIMIT).any()) and not bool(x.le(-STATE_LIMIT).any()):
        return x  # nothing to wrap (the common case): skip the two selections
    y = _where(x > STATE_LIMIT, x - 2 * STATE_LIMIT, x)
    return _where(y <= -STATE_LIMIT, x + 2 * STATE_LIMIT, y)


def wrap_signed(x, bits: int):
    """``(x + 2**(bits-1)) mod 2**bits - 2**(bits-1)``: Lava Conv's ``signed_clamp`` (a wrap)."""
    base = 1 << bits
    return (x + base // 2) % base - base // 2


def lif_fixed_step(a_in, u, v, du, dv, vth, bias, count_events: bool = False):
    """One bit-accurate LIF step; returns ``(spikes, u, v)`` (``v`` after reset).

    ``bias`` is the effective bias ``bias_mant << bias_exp``; ``a_in`` the synaptic input.
    All integer arrays/tensors (int64), broadcastable. With ``count_events`` a fourth value
    is returned: how many currents wrapped and voltages saturated in this step.
    """
    raw_u = decay(u, DECAY_UNITY - (du + 1)) + (a_in << ACTIVATION_SHIFT)
    u = wrap_once(raw_u)
    raw_v = decay(v, DECAY_UNITY - dv) + u + bias
    v = raw_v.clip(-STATE_LIMIT + 1, STATE_LIMIT - 1)
    spikes = v > (vth << THRESHOLD_SHIFT)
    v = _reset(v, spikes)
    if not count_events:
        return spikes, u, v
    events = (raw_u != u).sum() + (abs(raw_v) >= STATE_LIMIT).sum()
    return spikes, u, v, int(events)


def lif_fixed_step_torch(a_in, u, v, du: int, dv: int, vth: int, bias=None):
    """:func:`lif_fixed_step` with ``count_events=True`` for torch tensors, in fewer passes over memory.

    Returns ``(spikes, u, v, events)``, the same integers (a test proves it). ``du``, ``dv``,
    ``vth`` are Python ints; ``bias`` the effective bias tensor, or ``None`` for none; ``a_in``
    whole numbers (int64, or an exact float32 sum). ``u`` and ``v`` are not modified (new
    tensors are returned). The wrap and the clip are skipped when the extremes of the step
    (one pass) show nothing to wrap or clip.
    """
    raw_u, raw_v, events = lif_fixed_membrane_torch(a_in, u, v, du, dv, bias)
    spikes = raw_v > (vth << THRESHOLD_SHIFT)
    raw_v.masked_fill_(spikes, 0)
    return spikes, raw_u, raw_v, events


def lif_fixed_membrane_torch(a_in, u, v, du, dv, bias=None):
    """The current and voltage of one bit-accurate LIF step before the spike decision: ``(u, v, events)``
    (the first half of :func:`lif_fixed_step_torch`; ``events``: wrapped currents and clipped voltages).
    ``du``, ``dv``: ints, or int64 tensors of one decay per neuron."""
    import torch

    raw_u = a_in.to(torch.int64) if a_in.is_floating_point() else a_in.clone()
    raw_u <<= ACTIVATION_SHIFT
    factor_u = DECAY_UNITY - (du + 1)
    if torch.is_tensor(factor_u):  # one decay per neuron
        raw_u += torch_trunc_div(u * factor_u, DECAY_UNITY)
    elif factor_u == DECAY_UNITY:
        raw_u += u
    elif factor_u != 0:
        raw_u += torch_trunc_div(u * factor_u, DECAY_UNITY)
    events = 0
    lo, hi = torch.aminmax(raw_u)
    if int(hi) > STATE_LIMIT or int(lo) <= -STATE_LIMIT:
        new_u = wrap_once(raw_u)
        events += int((raw_u != new_u).sum())
        raw_u = new_u
    factor_v = DECAY_UNITY - dv
    if torch.is_tensor(factor_v):  # one decay per neuron
        raw_v = torch_trunc_div(v * factor_v, DECAY_UNITY) + raw_u
    elif factor_v == 0:
        raw_v = raw_u.clone()
    elif factor_v == DECAY_UNITY:
        raw_v = v + raw_u
    else:
        raw_v = torch.mul(v, factor_v).div_(DECAY_UNITY, rounding_mode="trunc")
        raw_v += raw_u
    if bias is not None:
        raw_v += bias
    lo, hi = torch.aminmax(raw_v)
    if int(hi) >= STATE_LIMIT or int(lo) <= -STATE_LIMIT:
        events += int((raw_v.abs() >= STATE_LIMIT).sum())
        raw_v.clamp_(-STATE_LIMIT + 1, STATE_LIMIT - 1)
    return raw_u, raw_v, events


# --------------------------------------------------------------------------- spike rules beyond Lava's LIF
# (mksgn.core.semantics): whole numbers in units of 2**-6 of a synaptic unit; numpy arrays or torch tensors


def clip_voltage(v):
    """``v`` clipped into the voltage's signed 24 bits (``+-(2**23 - 1)``), as the LIF clips it."""
    return v.clip(-STATE_LIMIT + 1, STATE_LIMIT - 1)


def pending_reset_fixed(v, fired, vth_eff: int, reset: str):
    """A reset that acts on the step after the spikes ``fired``: ``"zero"`` zeroes the membrane,
    ``"subtract-next"`` takes ``vth_eff`` per spike from it (then clipped); other resets: ``v``."""
    if reset == "zero":
        return _where(fired > 0, v * 0, v)
    if reset == "subtract-next":
        return clip_voltage(v - fired * vth_eff)
    return v


def spike_count_fixed(v, vth_eff: int, test: str, multi: bool):
    """Spikes of the membrane ``v`` against ``vth_eff = vth << 6``: ``v > vth_eff`` or ``v >= vth_eff`` (0/1,
    in ``v``'s type), or with ``multi`` the thresholds it holds (``v // vth_eff``; ``(v - 1) // vth_eff``
    for ``>``), at least 0."""
    if not multi:
        return ((v >= vth_eff) if test == ">=" else (v > vth_eff)) * 1
    count = (v // vth_eff) if test == ">=" else ((v - 1) // vth_eff)
    return count.clip(0, None) if not _is_torch(count) else count.clamp(min=0)


def reset_fixed(v, spikes, vth_eff: int, reset: str, v_min=None):
    """The membrane after this step's ``spikes``: 0 where fired (``"to-v-reset"``), ``v - vth_eff s``
    (``"subtract"``) or ``v`` (the resets of the next step); then at least ``v_min`` (an integer or one
    per neuron; ``None``: no floor)."""
    if reset == "to-v-reset":
        v = _where(spikes > 0, v * 0, v)
    elif reset == "subtract":
        v = v - spikes * vth_eff
    if v_min is None:
        return v
    if _is_torch(v):
        import torch

        return torch.maximum(v, torch.as_tensor(v_min, dtype=v.dtype, device=v.device))
    return np.maximum(v, np.asarray(v_min, dtype=v.dtype))


def voltage_floor(v_min, scale: float):
    """A membrane floor in float units (a number or one per neuron) as the integers of a population at
    ``scale`` (units of ``scale / 2**6``); ``None`` stays ``None``."""
    if v_min is None:
        return None
    ints = np.clip(np.round(np.asarray(v_min, dtype=np.float64) / scale * (1 << ACTIVATION_SHIFT)),
                   -STATE_LIMIT + 1, STATE_LIMIT - 1).astype(np.int64)
    return int(ints) if ints.ndim == 0 else ints


def effective_bias(bias_mant, bias_exp):
    """``bias_mant << bias_exp`` (``>>`` for a negative exponent), as Lava scales it."""
    return _where(bias_exp >= 0, bias_mant << abs(bias_exp), bias_mant >> abs(bias_exp))
