"""Resource map: cores and chips a synapse graph needs on a profile.

Per population (layer): its neurons, its synapses (non-zero incoming weights per instance,
the emulator's fan-out; in fixed point the quantised ones), the part of them whose kind shares
its weights (:attr:`~mksgn.core.kinds.base.SynapseKind.shared`: a convolution's kernel at every
position, a joint mix at every frame) with the unique non-zero weights behind it, and its
largest fan-in (non-zero synapses arriving at one neuron). On a profile with per-core limits a
layer takes the fewest cores ``c`` (at least ``ceil(neurons / core_neurons)``) whose synaptic
memory fits::

    per_core(c) = unshared / c + stored_shared(c) <= synapses_per_core
    stored_shared(c) = min(unique, shared / c)   on a profile with weight sharing
                     = shared / c                otherwise (one weight per instance)
    synapses_per_core = min(core_synapses, core_synapse_memory / weight_bits)

that is, a shared synapse's unique weights are stored once in every core holding part of the
layer (as Loihi 2 does), or its instances split like any others when that is smaller. Synaptic
memory is counted at the weight width alone: no index or format overhead, so an upper bound
on what a core holds. A layer needing more than one core "does not fit a core" and is split.
A layer is not mappable when a neuron's fan-in exceeds ``core_fan_in`` (its dendrite would
have to be split, which mksgn does not do) or when its population sends graded values
(:attr:`~mksgn.core.kinds.base.PopulationKind.graded`, a relay) on a profile without graded
spikes. Cores are not shared between layers. Chips = ``ceil(cores / chip_cores)``.

Energy is another matter: :mod:`mksgn.hw_profiles.counts` charges operations per event, one per
spike and non-zero synapse instance, whether or not the weight is shared. Sharing saves
synaptic memory (cores), not operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mksgn.hw_profiles.profile import Profile


@dataclass
class LayerResources:
    """One population (layer): what it holds, and on a profile the cores it takes."""

    name: str
    neurons: int
    synapses: int
    """Non-zero synapse instances into the layer (the emulator's fan-out; what energy counts)."""
    max_fan_in: int
    cores: int | None = None
    problem: str = ""
    shared_synapses: int = 0
    """The part of :attr:`synapses` whose kind shares its weights."""
    unique_weights: int = 0
    """Unique non-zero weights behind :attr:`shared_synapses` (stored once per core with weight sharing)."""
    graded: bool = False
    """Whether the population sends graded values (needs graded spikes)."""
    kind: str = ""
    stored_synapses: int | None = None
    """Weights the layer stores over all its cores on a profile (``None`` without per-core limits)."""


@dataclass
class ResourceMap:
    profile: str
    layers: list[LayerResources] = field(default_factory=list)
    cores: int | None = None
    chips: int | None = None
    weight_bits: int = 8
    limits: dict[str, float] = field(default_factory=dict)
    features: dict[str, bool | None] = field(default_factory=dict)
    """``weight_sharing``, ``graded_spikes``: ``True``, ``False`` or ``None`` (not stated, or not applicable)."""

    @property
    def split_layers(self) -> list[str]:
        """Layers that need more than one core."""
        return [x.name for x in self.layers if x.cores is not None and x.cores > 1]

    @property
    def unmappable(self) -> list[str]:
        return [x.name for x in self.layers if x.problem]

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "cores": self.cores, "chips": self.chips, "weight_bits": self.weight_bits,
                "limits": self.limits, "features": self.features, "split_layers": self.split_layers,
                "unmappable": self.unmappable, "layers": [dict(x.__dict__) for x in self.layers]}


def graph_resources(sg, tag: str = "floating_pt", emulator=None) -> list[LayerResources]:
    """Neurons, synapses (shared ones and their unique weights) and largest fan-in per population of ``sg``.

    Quantised weights if ``tag`` is ``fixed_pt``. ``emulator``: an
    :class:`~mksgn.core.emulator.Emulator` of ``sg`` in ``tag`` already built (else one is).
    """
    import torch

    from mksgn.core.emulator import Emulator, fan_in

    emulator = emulator or Emulator(sg, tag)
    layers = []
    for name, pop in sg.populations.items():
        kind = sg.kinds.population(pop.kind)
        if kind.source:
            continue
        fan = torch.zeros(pop.shape, dtype=torch.float64)
        synapses = shared = unique = 0
        for syn in sg.incoming(name):
            fixed = tag == "fixed_pt"  # the weights that count: Lava's integers, else the float weights
            w = emulator.weight(syn.name).cpu().numpy() if fixed else np.asarray(syn.weight, dtype=np.float64)
            fan = fan + fan_in(sg, syn, w if fixed else None)
            instances = int(emulator.fanout(syn.name).sum())
            synapses += instances
            syn_kind = sg.kinds.synapse(syn.kind)
            if syn_kind.shared:
                shared += instances
                unique += syn_kind.unique_weights(syn, w, sg.populations[syn.source].shape, pop.shape)
        layers.append(LayerResources(name, pop.size, synapses, int(fan.max()) if fan.numel() else 0,
                                     shared_synapses=shared, unique_weights=unique, graded=kind.graded,
                                     kind=pop.kind))
    return layers


GRADED_PROBLEM = ("graded population (kind {kind!r}): {profile} sends binary spikes only, so it does not exist "
                  "there; the same function maps only fused into the synapses around it, where dendrite fan-in "
                  "limits apply")


def layer_cores(x: LayerResources, core_neurons: float | None, per_core: float | None,
                sharing: bool) -> tuple[int, int | None]:
    """The cores a layer takes and the weights it stores over them (see the module docstring)."""
    least = max(math.ceil(x.neurons / core_neurons) if core_neurons else 1, 1)
    if not per_core:
        return least, None
    unshared = x.synapses - x.shared_synapses
    by_instance = math.ceil(x.synapses / per_core)
    by_sharing = math.ceil(unshared / (per_core - x.unique_weights)) if sharing and x.unique_weights < per_core \
        else by_instance
    cores = max(least, min(by_instance, by_sharing), 1)
    stored = unshared + (min(x.unique_weights * cores, x.shared_synapses) if sharing else x.shared_synapses)
    return cores, stored


def _problems(x: LayerResources, profile: Profile, fan_limit: float | None) -> str:
    problems = []
    if fan_limit and x.max_fan_in > fan_limit:
        problems.append(f"fan-in {x.max_fan_in} > {int(fan_limit)} per core")
    if x.graded and profile.supports("graded_spikes") is False:
        problems.append(GRADED_PROBLEM.format(kind=x.kind, profile=profile.name))
    return "; ".join(problems)


def resource_map(layers: list[LayerResources], profile: Profile, weight_bits: int = 8) -> ResourceMap:
    """Cores per layer and chips on ``profile`` (``None`` where the profile gives no per-core limit)."""
    neurons = profile.si("limits", "core_neurons")
    fan_limit = profile.si("limits", "core_fan_in")
    syn_limits = [x for x in (profile.si("limits", "core_synapses"),
                              (profile.si("limits", "core_synapse_memory") or 0) / weight_bits or None) if x]
    per_core = min(syn_limits) if syn_limits else None
    chip = profile.si("limits", "chip_cores")
    sharing = bool(profile.supports("weight_sharing"))
    out = ResourceMap(profile.name, weight_bits=weight_bits,
                      limits={k: v for k, v in (("core_neurons", neurons), ("core_fan_in", fan_limit),
                                                ("synapses_per_core", per_core), ("chip_cores", chip)) if v},
                      features={f: profile.supports(f) for f in ("weight_sharing", "graded_spikes")})
    if neurons is None and per_core is None:
        out.layers = [replace(x, cores=None, stored_synapses=None, problem=_problems(x, profile, fan_limit))
                      for x in layers]
        return out
    total = 0
    for x in layers:
        need, stored = layer_cores(x, neurons, per_core, sharing)
        out.layers.append(replace(x, cores=need, stored_synapses=stored, problem=_problems(x, profile, fan_limit)))
        total += need
    out.cores = total
    out.chips = math.ceil(total / chip) if chip else None
    return out
