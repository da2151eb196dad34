"""``elementwise``: a weight per neuron (an edge, possibly scaled): ``y = w x``.

Fused from a chain of Scale nodes (or none) that keeps the shape; in Lava a diagonal ``Sparse``
(``DelaySparse`` when it waits more steps than one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mksgn.core.kinds.base import ChainView, SynapseKind
from mksgn.core.synapse_graph import FusionError, Synapse


class Elementwise(SynapseKind):
    name = "elementwise"

    def match(self, chain: ChainView) -> dict[str, Any] | None:
        import nir

        if any(not isinstance(chain.nodes[o], nir.Scale) for o in chain.ops):
            return None
        weight = np.ones(chain.target_shape)
        for o in chain.ops:
            weight = weight * chain.scale_vector(o)
        if weight.shape != chain.target_shape or chain.source_shape != chain.target_shape:
            raise FusionError(f"{chain.where}: an elementwise chain must keep the shape {chain.target_shape}")
        return {"weight": weight}

    def fold_gain(self, weight: np.ndarray, gain: np.ndarray) -> np.ndarray:
        return weight * gain

    def forward(self, syn: Synapse, x: torch.Tensor, w: torch.Tensor, target_shape: tuple[int, ...]) -> torch.Tensor:
        return x * w

    def fanout(self, syn: Synapse, source_shape: tuple[int, ...], target_shape: tuple[int, ...],
               nonzero: torch.Tensor) -> torch.Tensor:
        return torch.broadcast_to(nonzero, source_shape).contiguous()

    def row_bound(self, w_abs: np.ndarray) -> float:
        return float(w_abs.max())

    lava_delays = True

    def lava_process(self, syn: Synapse, ctx: Any, delay: int = 0) -> tuple[Any, Any, Any]:
        from scipy.sparse import diags

        sparse = ctx.lava("lava.proc.sparse.process")
        pop = ctx.graph.populations[syn.target]
        diag = ctx.to_lava(ctx.weights(syn).reshape(pop.shape), pop.shape).reshape(-1)
        weights = diags(diag, dtype=np.float64).tocsr()
        kwargs = dict(weight_exp=ctx.weight_exp(syn), num_message_bits=ctx.message_bits(syn))
        if delay:  # the same delay on every weight: a csr of the weights' sparsity
            delays = weights.copy().astype(int)
            delays.data[:] = delay
            proc = sparse.DelaySparse(weights=weights, delays=delays, max_delay=delay, **kwargs)
        else:
            proc = sparse.Sparse(weights=weights, **kwargs)
        return proc, proc.s_in, proc.a_out
