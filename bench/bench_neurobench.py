"""Cross-check of mksgn's synaptic-op counts with NeuroBench's ``SynapticOperations``.

The same random ``tiny`` student (random BatchNorm statistics, activity calibrated on
built-in training samples) runs on the person rows of ``SAMPLES`` built-in test samples:
in PyTorch (float64) under NeuroBench 2.3's connection hooks, and exported to NIR in mksgn's
emulator (floating point, float64: the same spikes). NeuroBench counts per ``Conv2d`` /
``Linear`` call the effective operations (non-zero input x non-zero weight; ACs when every
input is in {-1, 0, 1}, else MACs); mksgn counts per synapse the presynaptic spikes times
their non-zero fan-out.

Where both count the same thing the counts must be equal: the temporal convolutions
(coincidence spikes -> ``tcn.conv``), the fusion projections (branch spikes ->
``fusion.proj.*``) and the residual down-sampling conv (spikes -> ``down.conv``). Where they
do not, the JSON says why (``differences``). NeuroBench is an optional dependency: without
it the benchmark reports that and does nothing else.
"""

from __future__ import annotations

import re

import numpy as np
import torch

SAMPLES = 8
DIFFERENCES = {
    "graph convolution": "mksgn counts one fused synapse per graph convolution (spikes x non-zero (joint, channel) "
                         "fan-out of the adjacency times the 1x1 convs, BN folded); NeuroBench cannot see the "
                         "adjacency product (x @ A is not a module) and counts the 1x1 convs on the real-valued "
                         "mixed input as MACs, without the adjacency's fan-out",
    "attention squeeze": "the gate's squeeze conv sees pooled spike statistics (real values): MACs for NeuroBench; "
                         "mksgn folds the pooling into a synapse from the spikes (ACs, pooling fan-out included)",
    "readout": "NeuroBench counts fc on the pooled (real) features as MACs; mksgn folds the pooling into a dense "
               "synapse from the last spikes (ACs over the whole frames x joints fan-in)",
    "residual identity and coincidence": "identity residuals and the coincidence neurons' inputs are not modules: "
                                         "NeuroBench does not count them; mksgn counts their elementwise synapses",
    "encoding layer": "the first graph convolution's input is real-valued in both: MACs",
}


def _exact_pairs(sg) -> dict[str, str]:
    """NeuroBench module name -> mksgn synapse name, where both count spikes x non-zero weights."""
    pairs = {}
    for syn in sg.synapses:
        if syn.kind != "conv":
            continue
        m = re.fullmatch(r"(branches_\w+?|blocks_\d+)_attention_coincidence", syn.source)
        if m and syn.target.endswith("_lif_t"):
            prefix = m.group(1)
            name = prefix.replace("branches_", "branches.").replace("blocks_", "blocks.")
            pairs[f"{name}.tcn.conv"] = syn.name
        elif syn.target == "fusion_lif":
            pairs[f"fusion.proj.{_fusion_index(syn.source)}.conv"] = syn.name
        m = re.fullmatch(r"blocks_(\d+)_lif_t", syn.target)
        if m and syn.source.endswith("_lif_t") and syn.source != syn.target:
            pairs[f"blocks.{m.group(1)}.down.conv"] = syn.name
    return pairs


_MODALITIES = ("joint", "bone", "joint_motion", "bone_motion")


def _fusion_index(source: str) -> int:
    name = source.removeprefix("branches_").removesuffix("_lif_t")
    return _MODALITIES.index(name)


def run() -> dict:
    try:
        from neurobench.metrics.utils.layers import single_layer_MACs
        from neurobench.models import TorchModel
    except ImportError as exc:
        return {"skipped": f"NeuroBench is not installed ({exc}); pip install neurobench==2.3.0 torch==2.13.0"}
    from bench.bench_emulator import _model_and_graph
    from mksgn.core.fuse import fuse
    from mksgn.core.emulator import Emulator
    from mksgn.convert.graph_inputs import InputSpec, batches
    from mksgn.data.builtin import load_dataset

    splits = load_dataset(None)
    model, graph = _model_and_graph("tiny", splits, len(splits.train.class_names))
    sg = fuse(graph)
    batch = next(batches(InputSpec.of(graph), splits.test, np.arange(SAMPLES), SAMPLES))
    ours = Emulator(sg, "floating_pt").run(batch.inputs)
    rows = torch.stack([batch.inputs[name][0] for name in sg.inputs], dim=1)  # (R, Mod, 3, F, V)

    class Rows(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.run_rows(x)[0]

    net = Rows(model.double().eval())
    nb = TorchModel(net)
    nb.register_hooks()
    with torch.no_grad():
        nb(rows.double())
    names = {m: n.removeprefix("net.") for n, m in net.named_modules()}
    theirs: dict[str, dict[str, int]] = {}
    for hook in nb.connection_hooks:
        ac = mac = 0
        for inputs in hook.inputs:
            if len(inputs) == 1:  # the hook records the call's argument tuple (as SynapticOperations unpacks it)
                inputs = inputs[0]
            ops, spiking = single_layer_MACs(inputs, hook.layer)
            ac, mac = (ac + ops, mac) if spiking else (ac, mac + ops)
        theirs[names[hook.layer]] = {"ACs": ac, "MACs": mac}
    nb.cleanup_hooks()
    pairs = _exact_pairs(sg)
    compared = {module: {"neurobench_ACs": theirs[module]["ACs"], "mksgn_synaptic_ops": ours.synops[syn],
                         "equal": theirs[module]["ACs"] == ours.synops[syn] and theirs[module]["MACs"] == 0}
                for module, syn in pairs.items()}
    total_ac = sum(v["ACs"] for v in theirs.values())
    total_mac = sum(v["MACs"] for v in theirs.values())
    return {
        "measured_on": f"{SAMPLES} built-in test samples ({rows.shape[0]} person rows, T = "
                       f"{batch.inputs[sg.inputs[0]].shape[0]}), random calibrated tiny student, float64",
        "exact_layers": compared, "all_exact_layers_equal": all(v["equal"] for v in compared.values()),
        "totals": {"neurobench_ACs": total_ac, "neurobench_MACs": total_mac,
                   "mksgn_synaptic_ops": sum(ours.synops[s.name] for s in sg.synapses if s.source not in sg.inputs),
                   "mksgn_graded_ops": sum(ours.synops[s.name] for s in sg.synapses if s.source in sg.inputs)},
        "neurobench_layers": theirs, "differences": DIFFERENCES,
    }
