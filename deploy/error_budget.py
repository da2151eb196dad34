"""Where float and fixed point part: the quantisation applied one element at a time.

The fixed-point model differs from the float model by rounding its graded inputs (to
``bits``-bit integers), its weights (8 bits, an exponent per synapse), its biases and decays,
and its integer state arithmetic. :func:`error_budget` runs the float emulator (float64) on
the same inputs with **one** of those elements replaced by what the fixed-point model
realises (integers times their scale), and reports how far each variant's spikes and
predictions stay from the float model. ``all`` applies every element at once in float
arithmetic; the difference between ``all`` and the fixed-point emulator is what the integer
state arithmetic (truncating decays, 24-bit wraps) adds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from mksgn.core.fixed_point import realised_weight
from mksgn.core.synapse_graph import SynapseGraph

def budget_elements(sg: SynapseGraph) -> dict[str, tuple[str, ...]]:
    """Budget entries: graded inputs, the weights of each synapse kind, neuron parameters; the
    tuple names the synapse kinds whose weights the entry quantises."""
    kinds = {f"{name} weights": (name,) for name in sg.kinds.synapses}
    return {"graded inputs": (), **kinds, "neuron parameters": ()}


def effective_inputs(sg: SynapseGraph, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The graded inputs as the fixed-point model receives them, in float units."""
    return {k: sg.fixed.inputs[k].realise(v) for k, v in inputs.items()}


def _neuron_parameters(sg: SynapseGraph) -> dict[str, Any]:
    """Populations with the fixed-point bias and decays, in float units."""
    return {name: pop if sg.is_source(name) else sg.kinds.population(pop.kind).realised(pop, sg.fixed.populations[name])
            for name, pop in sg.populations.items()}


def _variant(sg: SynapseGraph, kinds: tuple[str, ...], neurons: bool) -> SynapseGraph:
    synapses = [dataclasses.replace(s, weight=realised_weight(sg, s.name)) if s.kind in kinds else s
                for s in sg.synapses]
    return dataclasses.replace(sg, synapses=synapses, populations=_neuron_parameters(sg) if neurons else sg.populations,
                               metadata={}, fixed=None)


def error_budget(sg: SynapseGraph, inputs: dict[str, torch.Tensor], sample: torch.Tensor,
                 n: int) -> dict[str, dict[str, float]]:
    """Spike and prediction agreement with the float model of each single quantised element.

    Parameters
    ----------
    sg
        The quantised synapse graph (float parameters plus its ``fixed`` records).
    inputs
        Input name -> ``(T, R, *shape)`` person rows.
    sample, n
        Each row's sample index and the number of samples (predictions are per sample).
    """
    from mksgn.core.emulator import Emulator
    from mksgn.train.blocks import sum_per_sample

    def run(graph: SynapseGraph, x: dict[str, torch.Tensor]):
        res = Emulator(graph, "floating_pt").run(x, record_spikes=True)
        out = res.outputs[next(iter(graph.outputs))][-1]
        return res.spikes, sum_per_sample(out.reshape(out.shape[0], -1), sample, n).argmax(1)

    ref_spikes, ref_pred = run(dataclasses.replace(sg, metadata={}, fixed=None), inputs)
    quantized_inputs = effective_inputs(sg, inputs)
    elements = budget_elements(sg)
    every_kind = tuple(k for kinds in elements.values() for k in kinds)
    budget = {}
    for name, kinds in [*elements.items(), ("all", every_kind)]:  # one variant graph alive at a time
        graph = _variant(sg, kinds, name in ("neuron parameters", "all"))
        spikes, pred = run(graph, quantized_inputs if name in ("graded inputs", "all") else inputs)
        agree = [float((spikes[k] == ref_spikes[k]).double().mean()) for k in ref_spikes if k in spikes]
        budget[name] = {"spike_agreement": float(np.mean(agree)),
                        "prediction_agreement": float((pred == ref_pred).double().mean())}
    return budget
