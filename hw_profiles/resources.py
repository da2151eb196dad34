"""Resource map: cores and chips a synapse graph needs on a profile.

Per population (layer): its neurons, its synapses (non-zero incoming weights; in fixed
point the quantised ones) and its largest fan-in (non-zero synapses arriving at one
neuron). On a profile with per-core limits a layer takes::

    cores = max(ceil(neurons / core_neurons), ceil(synapses / synapses_per_core))
    synapses_per_core = min(core_synapses, core_synapse_memory / weight_bits)

(synaptic memory counted at the weight width alone: no index or format overhead, so an
upper bound on what a core holds). A layer needing more than one core "does not fit a
core" and is split; a neuron whose fan-in exceeds ``core_fan_in`` cannot be placed without
splitting its dendrite, which mksgn does not do: the layer is named as not mappable. Cores
are not shared between layers. Chips = ``ceil(cores / chip_cores)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mksgn.hw_profiles.profile import Profile


@dataclass
class LayerResources:
    name: str
    neurons: int
    synapses: int
    max_fan_in: int
    cores: int | None = None
    problem: str = ""


@dataclass
class ResourceMap:
    profile: str
    layers: list[LayerResources] = field(default_factory=list)
    cores: int | None = None
    chips: int | None = None
    weight_bits: int = 8
    limits: dict[str, float] = field(default_factory=dict)

    @property
    def split_layers(self) -> list[str]:
        """Layers that need more than one core."""
        return [x.name for x in self.layers if x.cores is not None and x.cores > 1]

    @property
    def unmappable(self) -> list[str]:
        return [x.name for x in self.layers if x.problem]

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "cores": self.cores, "chips": self.chips, "weight_bits": self.weight_bits,
                "limits": self.limits, "split_layers": self.split_layers, "unmappable": self.unmappable,
                "layers": [dict(x.__dict__) for x in self.layers]}


def graph_resources(sg, tag: str = "floating_pt", emulator=None) -> list[LayerResources]:
    """Neurons, synapses and largest fan-in per population of ``sg`` (quantised weights if ``fixed_pt``).

    ``emulator``: an :class:`~mksgn.core.emulator.Emulator` of ``sg`` in ``tag`` already built (else one is).
    """
    import torch

    from mksgn.core.emulator import Emulator, fan_in

    emulator = emulator or Emulator(sg, tag)
    layers = []
    for name, pop in sg.populations.items():
        if sg.is_source(name):
            continue
        fan = torch.zeros(pop.shape, dtype=torch.float64)
        synapses = 0
        for syn in sg.incoming(name):
            weights = emulator.weight(syn.name).cpu().numpy() if tag == "fixed_pt" else None
            fan = fan + fan_in(sg, syn, weights)
            synapses += int(emulator.fanout(syn.name).sum())
        layers.append(LayerResources(name, pop.size, synapses, int(fan.max()) if fan.numel() else 0))
    return layers


def resource_map(layers: list[LayerResources], profile: Profile, weight_bits: int = 8) -> ResourceMap:
    """Cores per layer and chips on ``profile`` (``None`` where the profile gives no per-core limit)."""
    neurons = profile.si("limits", "core_neurons")
    fan_limit = profile.si("limits", "core_fan_in")
    syn_limits = [x for x in (profile.si("limits", "core_synapses"),
                              (profile.si("limits", "core_synapse_memory") or 0) / weight_bits or None) if x]
    per_core = min(syn_limits) if syn_limits else None
    chip = profile.si("limits", "chip_cores")
    out = ResourceMap(profile.name, weight_bits=weight_bits,
                      limits={k: v for k, v in (("core_neurons", neurons), ("core_fan_in", fan_limit),
                                                ("synapses_per_core", per_core), ("chip_cores", chip)) if v})
    if neurons is None and per_core is None:
        out.layers = [LayerResources(x.name, x.neurons, x.synapses, x.max_fan_in) for x in layers]
        return out
    total = 0
    for x in layers:
        need = max(math.ceil(x.neurons / neurons) if neurons else 1, math.ceil(x.synapses / per_core) if per_core else 1)
        problem = ""
        if fan_limit and x.max_fan_in > fan_limit:
            problem = f"fan-in {x.max_fan_in} > {int(fan_limit)} per core"
        out.layers.append(LayerResources(x.name, x.neurons, x.synapses, x.max_fan_in, need, problem))
        total += need
    out.cores = total
    out.chips = math.ceil(total / chip) if chip else None
    return out
