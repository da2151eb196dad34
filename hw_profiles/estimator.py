"""Energy per sample = the counted operations x the profile's costs, by layer.

Spiking network on profile ``P`` (per sample, for each layer)::

    E = synaptic_ops x P.energy.synaptic_op + graded_ops x P.energy.graded_op
        + neuron_updates x P.energy.neuron_update + spikes x P.energy.spike
    (+ P.power.static x P.time.step x T x person rows, when the profile gives both)

On an ``all_in`` profile (TrueNorth) the synaptic-op figure already holds neuron updates,
routing and leakage, and an ``arithmetic`` profile (``cmos45nm``, the paper's convention)
prices arithmetic alone: only the synaptic and graded terms are charged. A term whose count is
non-zero but whose cost the profile does not give is left out and **named** in
``unpriced``; ``graded_op`` falls back to ``mac`` (then the term is named too).

Dense ANN baseline on ``P`` (per sample): ``MACs per person row x person rows per sample x
P.energy.mac``, for profiles that give a MAC cost (``cmos45nm``, ``cpu``, ``gpu``).

:func:`compare` sets the SNN on a profile against the ANN on the baseline profile and names
both; a side with an unpriced term makes the comparison incomplete (no saving stated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mksgn.hw_profiles.counts import ANNCounts, SNNCounts
from mksgn.hw_profiles.profile import Profile

TERMS = ("synaptic", "graded", "neuron", "spike", "static")
_COST = {"synaptic": "synaptic_op", "graded": "graded_op", "neuron": "neuron_update", "spike": "spike"}
_COUNT = {"synaptic": "synaptic_ops", "graded": "graded_ops", "neuron": "neuron_updates", "spike": "spikes"}


@dataclass
class Energy:
    """Joules per sample on one profile: by term, by layer, and what was not priced."""

    profile: str
    total: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    layers: dict[str, float] = field(default_factory=dict)
    unpriced: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def snn_energy(counts: SNNCounts, profile: Profile) -> Energy | None:
    """The spiking run's energy per sample on ``profile`` (``None`` for ANN-only profiles)."""
    if profile.kind == "ann":
        return None
    out = Energy(profile.name, terms=dict.fromkeys(TERMS, 0.0))
    charged = ("synaptic", "graded") if profile.scope != "per_term" else ("synaptic", "graded", "neuron", "spike")
    if profile.scope == "all_in":
        out.notes.append("all-in synaptic-op figure: neuron updates, spikes and leakage are inside it")
    elif profile.scope == "arithmetic":
        out.notes.append("arithmetic only (the convention of the profile): neuron updates and spikes not charged")
    costs: dict[str, float | None] = {}
    for term in charged:
        cost = profile.si("energy", _COST[term])
        if cost is None and term == "graded" and profile.si("energy", "mac") is not None:
            cost = profile.si("energy", "mac")
            out.notes.append("graded inputs charged at the MAC cost (no energy.graded_op)")
        costs[term] = cost
        if cost is None and counts.total(_COUNT[term]) > 0:
            out.unpriced.append(_COST[term])
    for layer in counts.layers:
        e = 0.0
        for term in charged:
            if costs[term] is not None:
                part = getattr(layer, _COUNT[term]) * costs[term]
                out.terms[term] += part
                e += part
        out.layers[layer.name] = e
    if profile.get("energy", "spike_hop") is not None and profile.scope == "per_term":
        out.notes.append("energy.spike_hop not charged: tile hops depend on the placement (a lower bound)")
    static, step = profile.si("power", "static"), profile.si("time", "step")
    if static is not None and step is not None:
        rows_per_sample = counts.person_rows / max(counts.samples, 1)
        out.terms["static"] = static * step * counts.time_steps * rows_per_sample
    out.total = float(sum(out.terms.values()))
    return out


def ann_energy(counts: ANNCounts, rows_per_sample: float, profile: Profile) -> Energy | None:
    """The dense baseline's energy per sample on ``profile`` (``None`` without a MAC cost)."""
    mac = profile.si("energy", "mac")
    if mac is None:
        return None
    layers = {name: macs * rows_per_sample * mac for name, macs in counts.macs.items()}
    total = float(sum(layers.values()))
    return Energy(profile.name, total, {"mac": total}, layers)


def compare(snn_profile: str, snn: dict[str, Any] | None, ann_profile: str,
            ann: dict[str, Any] | None) -> dict[str, Any] | None:
    """The SNN on ``snn_profile`` against the ANN baseline on ``ann_profile``, saying what is compared.

    Parameters
    ----------
    snn_profile, ann_profile
        Profile names of the two sides (the ANN side is the baseline profile, ``cmos45nm``).
    snn, ann
        The two :class:`Energy` records as dicts (``Energy.to_dict``); ``None`` where a side has
        no energy (an ANN-only profile, no ANN baseline).

    Returns
    -------
    dict or None
        ``label`` ("SNN on P vs ANN on B"), both sides, ``same_profile``, ``complete``,
        ``reason``, ``unpriced`` (side -> the cost names missing) and ``reduction``
        (``1 - SNN / ANN``): ``None`` when the comparison is incomplete (a side leaves out an
        operation it performed because its profile gives no cost for it), then
        ``reduction_priced_terms_only`` holds the figure over what was priced.
        ``None`` when a side is missing.
    """
    if snn is None or ann is None:
        return None
    unpriced = {side: list(record.get("unpriced", [])) for side, record in (("snn", snn), ("ann", ann))
                if record.get("unpriced")}
    sides = (("snn", snn_profile), ("ann", ann_profile))
    missing = [f"{side.upper()} on {name}: energy.{term}" for side, name in sides for term in unpriced.get(side, [])]
    ratio = 1.0 - snn["total"] / ann["total"] if ann["total"] > 0 else None
    complete = not missing and ratio is not None
    reason = None
    if missing:
        reason = ("incomplete: " + ", ".join(missing) + " not priced (the profile gives no cost for operations the "
                  "run performed), so that side's total is too low")
    elif ratio is None:
        reason = "incomplete: the ANN baseline costs 0 J"
    out = {"label": f"SNN on {snn_profile} vs ANN on {ann_profile}", "snn_profile": snn_profile,
           "ann_profile": ann_profile, "same_profile": snn_profile == ann_profile, "complete": complete,
           "reason": reason, "unpriced": unpriced, "reduction": ratio if complete else None}
    if not complete:
        out["reduction_priced_terms_only"] = ratio
    return out
