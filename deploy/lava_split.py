"""A population whose neurons differ in their decays, as one stock Lava LIF per decay group.

A stock ``LIF`` holds one ``du`` and one ``dv`` (Loihi: one compartment profile per group of
neurons). A spiking population with per-neuron decays (snnTorch's learned ``beta``, norse's
per-neuron ``tau``) and a LIF's own spike rule is split into groups of neurons that share
their decays: the quantised integers in ``fixed_pt``, the exact float values in ``floating_pt``.
Each group is a stock ``LIFReset`` (or gated ``LIF``) of shape ``(n,)``; every synapse into or out
of the population is cut into one stock ``Sparse`` (``DelaySparse`` where it waits) per group it
touches, with the rows and columns of its matrix that belong there, so no step is added and the
arithmetic is the same: the integers the emulator uses (``SynapseKind.fixed_weights``), the
weight exponent of the whole synapse. Lava sums what several pieces send into one ``a_in``.

Only synapses with Lava's Dense/Sparse fixed-point semantics can be cut (``elementwise``,
``dense``: :attr:`~mksgn.core.kinds.base.SynapseKind.exponent`), and in fixed point only where
no weight is -256 (a mixed-sign synapse allows it; a piece without positive weights is
inhibitory to Lava, which clips it to -255). A population that other synapses touch, or whose
groups exceed :data:`MAX_GROUPS`, stays one ``RuleLIF`` (mksgn's own process, which holds a
decay per neuron).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mksgn.core import loihi
from mksgn.core.synapse_graph import Synapse, SynapseGraph

MAX_GROUPS = 64
"""The most stock LIF processes one population is split into."""


def _decays(graph: SynapseGraph, name: str, tag: str) -> tuple[np.ndarray, np.ndarray]:
    pop = graph.populations[name]
    if tag == "fixed_pt":
        q = graph.fixed.populations[name]
        du, dv = q.du, q.dv
    else:
        du, dv = pop.du, pop.dv
    return (np.broadcast_to(np.asarray(d, dtype=np.float64), pop.shape).reshape(-1) for d in (du, dv))


def split_groups(graph: SynapseGraph, name: str, tag: str) -> list[np.ndarray] | None:
    """The NIR-flat indices of each group of neurons of ``name`` that share their decays, if the
    population is split into stock LIFs (else ``None``: one process, see the module docstring)."""
    pop = graph.populations[name]
    if graph.kinds.population(pop.kind).name != "neuron" or not pop.spiking or not pop.rule.spike_rule_is_lavas:
        return None
    du, dv = _decays(graph, name, tag)
    pairs, inverse = np.unique(np.stack([du, dv], axis=1), axis=0, return_inverse=True)
    if len(pairs) < 2 or len(pairs) > MAX_GROUPS:
        return None
    touching = graph.incoming(name) + graph.outgoing(name)
    if not all(graph.kinds.synapse(s.kind).exponent for s in touching):
        return None
    if tag == "fixed_pt" and any(np.any(_used(graph, s) == loihi.WEIGHT_MIN_MIXED) for s in touching):
        return None  # a piece without positive weights is inhibitory to Lava, which clips -256 to -255
    return [np.flatnonzero(inverse.reshape(-1) == g) for g in range(len(pairs))]


def _used(graph: SynapseGraph, syn: Synapse) -> np.ndarray:
    """The integers Lava's model of the whole synapse uses (the emulator's)."""
    return graph.kinds.synapse(syn.kind).fixed_weights(graph.fixed.synapses[syn.name])


def _matrix(graph: SynapseGraph, syn: Synapse, tag: str) -> np.ndarray:
    """The synapse's ``(N_target, N_source)`` matrix (NIR-flat), of the integers Lava uses in fixed point."""
    kind = graph.kinds.synapse(syn.kind)
    w = kind.fixed_weights(graph.fixed.synapses[syn.name]) if tag == "fixed_pt" else np.asarray(syn.weight)
    return kind.dense(syn, np.asarray(w, dtype=np.float64), graph.populations[syn.source].shape,
                      graph.populations[syn.target].shape)


def connect_pieces(syn: Synapse, ctx: Any, groups: dict[str, list[np.ndarray]], split: dict[str, list[Any]],
                   extra: int) -> list[Any]:
    """Cut ``syn`` into one stock ``Sparse`` per (target group, source group) it joins and connect them;
    ``extra``: the steps it waits beyond Lava's one. Returns the pieces."""
    from scipy.sparse import csr_matrix

    graph = ctx.graph
    if extra > loihi.DELAY_MAX:
        raise ctx.error(f"synapse {syn.name!r} must wait {extra} steps beyond Lava's one; Loihi 2 delays a synapse "
                        f"by at most {loihi.DELAY_MAX} steps")
    sparse = ctx.lava("lava.proc.sparse.process")
    matrix = _matrix(graph, syn, ctx.tag)
    sources = _sides(graph, syn.source, groups, split, ctx, "s_out")
    targets = _sides(graph, syn.target, groups, split, ctx, "a_in")
    kwargs = dict(weight_exp=ctx.weight_exp(syn), num_message_bits=ctx.message_bits(syn))
    pieces = []
    for rows, a_in in targets:
        for cols, s_out in sources:
            block = matrix[np.ix_(rows, cols)]
            if not np.any(block):
                continue
            weights = csr_matrix(block)
            if extra:
                delays = weights.copy().astype(int)
                delays.data[:] = extra
                piece = sparse.DelaySparse(weights=weights, delays=delays, max_delay=extra, **kwargs)
            else:
                piece = sparse.Sparse(weights=weights, **kwargs)
            s_out.reshape(piece.s_in.shape).connect(piece.s_in)
            piece.a_out.reshape(a_in.shape).connect(a_in)
            pieces.append(piece)
    return pieces


def _sides(graph: SynapseGraph, name: str, groups: dict[str, list[np.ndarray]], split: dict[str, list[Any]],
           ctx: Any, port: str) -> list[tuple[np.ndarray, Any]]:
    """``(NIR-flat indices, port)`` of each process of population ``name``: its groups, or the whole
    population in Lava's order."""
    if name in groups:
        return [(index, getattr(proc, port)) for index, proc in zip(groups[name], split[name], strict=True)]
    return [(ctx.lava_order(graph.populations[name].shape), getattr(ctx.procs[name], port))]


def reassemble(parts: list[np.ndarray], index: list[np.ndarray], shape: tuple[int, ...], to_lava) -> np.ndarray:
    """Per-group records ``(steps, n_g)`` as one ``(steps, *lava shape)`` record of the whole population."""
    steps = parts[0].shape[0]
    flat = np.zeros((steps, math.prod(shape)), dtype=parts[0].dtype)
    for part, where in zip(parts, index, strict=True):
        flat[:, where] = part
    return to_lava(flat.reshape(steps, *shape), shape)
