"""``dense``: any other linear chain, as a ``(N_target, N_source)`` matrix over the flattened populations.

The fallback kind: its weights are the chain's Jacobian, refused above
:data:`DENSE_MAX_ENTRIES`; in Lava a ``Dense`` (weights permuted to Lava's flattening; ``DelayDense`` when
it waits more steps than one).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mksgn.core.kinds.base import ChainView, SynapseKind
from mksgn.core.synapse_graph import FusionError, Synapse

DENSE_MAX_ENTRIES = 1 << 26
"""Largest dense synapse (target x source entries) fused from a chain that is no conv or mix."""


class Dense(SynapseKind):
    name = "dense"

    def match(self, chain: ChainView) -> dict[str, Any] | None:
        src_shape, dst_shape = chain.source_shape, chain.target_shape
        n_in, n_out = math.prod(src_shape), math.prod(dst_shape)
        if n_in * n_out > DENSE_MAX_ENTRIES:
            raise FusionError(f"{chain.where}: the chain {list(chain.ops)} is neither a convolution nor a joint/"
                              f"channel mix, and as a dense synapse it would need {n_in} x {n_out} weights (limit "
                              f"{DENSE_MAX_ENTRIES})")
        programs = [chain.program(o) for o in chain.ops]

        def f(x: torch.Tensor) -> torch.Tensor:
            y = x.reshape(1, *src_shape)
            for p in programs:
                y = p(y)
            return y.reshape(-1)

        zero = torch.zeros(n_in, dtype=torch.float64)
        jac = torch.func.jacrev(f)(zero) if n_out <= n_in else torch.func.jacfwd(f)(zero)
        return {"weight": jac.detach().numpy().reshape(n_out, n_in)}

    def fold_gain(self, weight: np.ndarray, gain: np.ndarray) -> np.ndarray:
        return weight * gain.reshape(-1, 1)

    def forward(self, syn: Synapse, x: torch.Tensor, w: torch.Tensor, target_shape: tuple[int, ...]) -> torch.Tensor:
        return (x.reshape(x.shape[0], -1) @ w.T).reshape(x.shape[0], *target_shape)

    def fanout(self, syn: Synapse, source_shape: tuple[int, ...], target_shape: tuple[int, ...],
               nonzero: torch.Tensor) -> torch.Tensor:
        return nonzero.sum(dim=0).reshape(source_shape)

    lava_delays = True

    def lava_process(self, syn: Synapse, ctx: Any, delay: int = 0) -> tuple[Any, Any, Any]:
        dense = ctx.lava("lava.proc.dense.process")
        src, dst = ctx.graph.populations[syn.source], ctx.graph.populations[syn.target]
        w = ctx.weights(syn)[ctx.lava_order(dst.shape)][:, ctx.lava_order(src.shape)]
        kwargs = dict(weight_exp=ctx.weight_exp(syn), num_message_bits=ctx.message_bits(syn))
        if delay:
            proc = dense.DelayDense(weights=w, delays=np.full(w.shape, delay, dtype=int), max_delay=delay, **kwargs)
        else:
            proc = dense.Dense(weights=w, **kwargs)
        return proc, proc.s_in, proc.a_out
