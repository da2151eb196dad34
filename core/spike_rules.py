"""Spike rules beyond NIR's (``mksgn.core.semantics``) in float arithmetic, on numpy arrays and torch
tensors alike: the reference executor and the emulator call them on tensors, mksgn's float
``RuleLIF`` model in Lava (whose processes cannot use torch) on arrays. This module imports no torch.

One step of a spiking neuron, after its membrane ``v`` is computed::

    v = apply_pending_reset(v, fired, rule)     # "zero", "subtract-next": the previous step's spikes act now
    s = spike_count(v, rule)                    # 0/1, or the thresholds v holds (multi-spike)
    v = reset_membrane(v, s, rule)              # "to-v-reset", "subtract"; then the floor
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _where(cond: Any, a: Any, b: Any) -> Any:
    if _is_torch(cond):
        import torch

        return torch.where(cond, torch.as_tensor(a, dtype=b.dtype, device=b.device), b)
    return np.where(cond, a, b)


def _like(x: Any, like: Any) -> Any:
    """``x`` in the dtype of ``like``."""
    return x.to(like.dtype) if _is_torch(x) else np.asarray(x).astype(np.asarray(like).dtype)


@dataclass(frozen=True)
class SpikeRule:
    """How a membrane becomes spikes and is reset (:mod:`mksgn.core.semantics` names the modes).

    Attributes
    ----------
    threshold
        The firing threshold ``theta`` (a number, or an array or tensor broadcastable to the state).
    reset
        ``"to-v-reset"``, ``"zero"``, ``"subtract"`` or ``"subtract-next"``.
    v_reset
        The membrane after a spike for ``"to-v-reset"``.
    test
        ``">"`` or ``">="``.
    multi
        Several spikes per step: as many as whole thresholds the membrane holds.
    v_min
        A floor under the membrane after the reset (None: none).
    """

    threshold: Any
    reset: str = "to-v-reset"
    v_reset: Any = 0.0
    test: str = ">"
    multi: bool = False
    v_min: Any = None

    @property
    def delayed(self) -> bool:
        """Whether the reset acts on the next step's membrane (``"zero"``, ``"subtract-next"``)."""
        return self.reset in ("zero", "subtract-next")


def spike_count(v: Any, rule: SpikeRule) -> Any:
    """Spikes of the membrane ``v``: 0 or 1 (``v > theta`` or ``v >= theta``), or with ``multi`` as many
    as the thresholds ``v`` holds (``floor(v / theta)`` for ``>=``, ``ceil(v / theta) - 1`` for ``>``, at least 0)."""
    if not rule.multi:
        return _like(v >= rule.threshold if rule.test == ">=" else v > rule.threshold, v)
    ratio = v / rule.threshold
    torch_like = _is_torch(ratio)
    if rule.test == ">=":
        count = ratio.floor() if torch_like else np.floor(ratio)
    else:
        count = (ratio.ceil() if torch_like else np.ceil(ratio)) - 1
    return _where(count > 0, count, count * 0)


def apply_pending_reset(v: Any, fired: Any, rule: SpikeRule) -> Any:
    """A delayed reset on this step's membrane ``v`` (``fired``: the previous step's spikes): ``"zero"``
    makes it 0 where the neuron fired, ``"subtract-next"`` takes ``theta`` per spike from it."""
    if rule.reset == "zero":
        return _where(fired > 0, 0.0, v)
    if rule.reset == "subtract-next":
        return v - fired * rule.threshold
    return v


def reset_membrane(v: Any, spikes: Any, rule: SpikeRule) -> Any:
    """The membrane after this step's spikes: ``v_reset`` where fired (``"to-v-reset"``), ``v - theta s``
    (``"subtract"``), or ``v`` (the delayed resets); then floored at ``v_min``."""
    if rule.reset == "to-v-reset":
        v = _where(spikes > 0, rule.v_reset, v)
    elif rule.reset == "subtract":
        v = v - spikes * rule.threshold
    if rule.v_min is not None:
        v = _where(v < rule.v_min, rule.v_min, v)
    return v
