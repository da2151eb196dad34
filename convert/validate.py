"""Spike-for-spike validation of an exported graph against the snnTorch student.

The same person rows go through the student (module hooks record every LIF population's
spikes and membranes) and through the reference NIR executor; every LIF node is compared
at every step. A mismatch is

- a **rounding tie** when the student's membrane lies within ``TIE_TOLERANCE[dtype]``
  (relative to the threshold) of the threshold: the two computations round differently
  (folded BatchNorm, another summation order);
- **propagated** when an earlier mismatch (an earlier step, or an upstream node at the
  same step) already occurred in the same sample;
- **real** otherwise.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import nir
import torch

from mksgn.core.nir_file import decode_metadata
from mksgn.core.executor import NIRExecutor
from mksgn.train.blocks import present_persons
from mksgn.train.student import MKSGN, record_spikes

TIE_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}
"""Membrane distance to threshold (relative) under which a mismatch counts as a rounding tie."""


@dataclass
class NodeParity:
    """Comparison at one LIF node."""

    node: str
    module: str
    spikes: int = 0
    elements: int = 0
    mismatches: int = 0
    ties: int = 0
    propagated: int = 0
    first: dict | None = None
    per_step: list[int] = field(default_factory=list)

    @property
    def real(self) -> int:
        return self.mismatches - self.ties - self.propagated


@dataclass
class ParityReport:
    """All LIF nodes compared in one dtype."""

    dtype: str
    rows: int
    steps: int
    nodes: list[NodeParity] = field(default_factory=list)
    logit_max_abs_diff: float = 0.0

    @property
    def mismatches(self) -> int:
        return sum(n.mismatches for n in self.nodes)

    @property
    def real(self) -> int:
        return sum(n.real for n in self.nodes)

    @property
    def ties(self) -> int:
        return sum(n.ties for n in self.nodes)

    def first_failure(self) -> NodeParity | None:
        bad = [n for n in self.nodes if n.real]
        return min(bad, key=lambda n: (n.first["step"], self.order(n))) if bad else None

    def order(self, node: NodeParity) -> int:
        return [n.node for n in self.nodes].index(node.node)

    def to_dict(self) -> dict:
        return {
            "dtype": self.dtype, "rows": self.rows, "steps": self.steps,
            "mismatches": self.mismatches, "ties": self.ties, "real": self.real,
            "logit_max_abs_diff": self.logit_max_abs_diff,
            "nodes": [{**n.__dict__, "real": n.real} for n in self.nodes],
        }


SPIKING_NODES = (nir.LIF, nir.IF)
"""Node types the exporter writes for the student's LIF populations."""
MEMORY_BUDGET_BYTES = 2 * 2**30
"""Recorded spikes and membranes kept at once: rows are compared in chunks that fit."""
RECORDED_COPIES = 4
"""Per LIF element and step: executor spikes, executor membrane, model spikes, model membrane."""


def compare(model: MKSGN, graph: nir.NIRGraph, x: torch.Tensor, dtype: torch.dtype,
            chunk_rows: int | None = None) -> ParityReport:
    """Run the student and the executor on ``x`` ``(N, Mod, C, F, V, M)`` and compare spikes.

    The present persons' rows go through both in chunks of ``chunk_rows`` (by default as
    many as keep the recordings within :data:`MEMORY_BUDGET_BYTES`); the counts are summed
    and each node keeps its earliest mismatch (row indices count over all chunks).
    """
    meta = decode_metadata(graph.metadata)
    rows, _ = present_persons(x)
    # a snapped student rounds its inputs to the graded grid; the graph gets them rounded
    rows = torch.stack([model.input_scale[m].quantize(rows[:, i].double()).to(rows.dtype)
                        for i, m in enumerate(model.modalities)], dim=1)
    net = copy.deepcopy(model).to(dtype).eval()
    executor = NIRExecutor(graph, dtype=dtype)
    lif_nodes = [n for n in meta["module_map"] if isinstance(graph.nodes.get(n), SPIKING_NODES)]
    if chunk_rows is None:
        steps = int(meta["time_steps"])
        per_row = sum(math.prod(executor.output_shapes[n]) for n in lif_nodes) * steps
        per_row *= RECORDED_COPIES * torch.empty((), dtype=dtype).element_size()
        chunk_rows = max(1, MEMORY_BUDGET_BYTES // max(per_row, 1))
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    report = ParityReport(str(dtype).replace("torch.", ""), rows.shape[0], int(meta["time_steps"]))
    for start in range(0, rows.shape[0], chunk_rows):
        part = _compare_rows(net, executor, meta, rows[start:start + chunk_rows].to(dtype), dtype, lif_nodes)
        report.logit_max_abs_diff = max(report.logit_max_abs_diff, part.logit_max_abs_diff)
        if not report.nodes:
            report.nodes = [NodeParity(n.node, n.module) for n in part.nodes]
        for mine, theirs in zip(report.nodes, part.nodes, strict=True):
            mine.spikes += theirs.spikes
            mine.elements += theirs.elements
            mine.mismatches += theirs.mismatches
            mine.ties += theirs.ties
            mine.propagated += theirs.propagated
            mine.per_step = [a + b for a, b in zip(mine.per_step or [0] * len(theirs.per_step), theirs.per_step,
                                                   strict=True)]
            if theirs.first is not None:
                theirs.first["row"] += start
                if mine.first is None or theirs.first["step"] < mine.first["step"]:
                    mine.first = theirs.first
    return report


def _compare_rows(net: MKSGN, executor: NIRExecutor, meta: dict, rows: torch.Tensor, dtype: torch.dtype,
                  lif_nodes: list[str]) -> ParityReport:
    """Compare on person rows ``(R, Mod, C, F, V)`` already in ``dtype``."""
    module_map: dict[str, str] = meta["module_map"]
    steps = int(meta["time_steps"])
    membranes: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad(), record_spikes(net, membranes) as spikes:
        logits = net(rows.unsqueeze(-1))
    inputs = {name: rows[:, i].unsqueeze(0).expand(steps, *rows[:, i].shape)
              for i, name in enumerate(meta["input"]["inputs"])}
    result = executor.run(inputs, record=lif_nodes)
    out = result.outputs["output"][-1]
    report = ParityReport(str(dtype).replace("torch.", ""), rows.shape[0], steps)
    report.logit_max_abs_diff = float((out - logits).abs().max())
    tol = TIE_TOLERANCE.get(dtype, 1e-4)
    order = [n for n in result.records if module_map.get(n) in spikes]
    compared = {}
    for name in order:
        ref = torch.stack(spikes[module_map[name]])  # (T, R, ...)
        lif = net.get_submodule(module_map[name])
        compared[name] = (ref, result.records[name].to(ref.dtype), torch.stack(membranes[module_map[name]]),
                          lif.params.threshold)
    report.nodes = classify(compared, tol, {n: module_map[n] for n in order})
    return report


def classify(compared: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float]], tol: float,
             modules: dict[str, str] | None = None, labels: tuple[str, str] = ("snntorch", "nir")) -> list[NodeParity]:
    """Compare two recordings node by node (in the given, causal order) and classify mismatches.

    Parameters
    ----------
    compared
        Node -> ``(reference spikes, other spikes, reference membrane or None, threshold)``,
        spikes ``(T, R, ...)``, the threshold a number or per neuron; a mismatch with
        ``|membrane - threshold| / max(1, |threshold|) < tol`` is a rounding tie (no membrane: never).
    tol
        The tie tolerance.
    modules
        Node -> what to call it in the report (default: the node name).
    labels
        Names of the two recordings in each node's first mismatch.
    """
    order = list(compared)
    if not order:
        return []
    steps, rows = next(iter(compared.values()))[0].shape[:2]
    first_seen: dict[int, tuple[int, int]] = {}  # row -> (step, node rank) of its first mismatch
    for rank, name in enumerate(order):
        ref, got = compared[name][:2]
        diff = (ref != got).flatten(2).any(dim=2)  # (T, R)
        for t, r in diff.nonzero().tolist():
            if r not in first_seen or (t, rank) < first_seen[r]:
                first_seen[r] = (t, rank)
    nodes = []
    for rank, name in enumerate(order):
        ref, got, mem, threshold = compared[name]
        node = NodeParity(name, (modules or {}).get(name, name), spikes=int(ref.sum()), elements=ref.numel())
        diff = ref != got
        node.mismatches = int(diff.sum())
        node.per_step = diff.flatten(1).sum(dim=1).tolist()
        if node.mismatches:
            if mem is not None:
                thr = torch.as_tensor(threshold, dtype=mem.dtype)  # a number, or per neuron
                margin = (mem - thr).abs() / thr.abs().clamp(min=1.0)
                tie = diff & (margin < tol)
            else:
                tie = torch.zeros_like(diff)
            r_idx = torch.arange(ref.shape[1]).view(1, -1, *([1] * (ref.dim() - 2))).expand_as(ref)
            t_idx = torch.arange(ref.shape[0]).view(-1, *([1] * (ref.dim() - 1))).expand_as(ref)
            start = torch.tensor([first_seen.get(r, (steps, 0))[0] for r in range(rows)])
            first_rank = torch.tensor([first_seen.get(r, (steps, len(order)))[1] for r in range(rows)])
            later = (t_idx > start[r_idx]) | ((t_idx == start[r_idx]) & (rank > first_rank[r_idx]))
            node.ties = int((tie & ~later).sum())
            node.propagated = int((diff & later).sum())
            where = diff.nonzero()[0].tolist()
            node.first = {
                "step": where[0], "row": where[1], "neuron": where[2:],
                "membrane": float(mem[tuple(where)]) if mem is not None else None,
                "threshold": float(torch.as_tensor(threshold).expand(ref.shape[2:])[tuple(where[2:])]),
                f"{labels[0]}_spike": float(ref[tuple(where)]), f"{labels[1]}_spike": float(got[tuple(where)]),
            }
        nodes.append(node)
    return nodes

