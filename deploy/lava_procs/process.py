"""Two Lava processes Lava lacks: a delay line, and a per-frame dense synapse."""

from __future__ import annotations

import numpy as np

from mksgn.deploy.lava_compat import lava_import

_process = lava_import("lava.magma.core.process.process")
_variable = lava_import("lava.magma.core.process.variable")
_ports = lava_import("lava.magma.core.process.ports.ports")
AbstractProcess, Var = _process.AbstractProcess, _variable.Var
InPort, OutPort = _ports.InPort, _ports.OutPort


class FileSink(AbstractProcess):
    """Writes what it receives at each step into a ``.npy`` memory map made by the caller.

    ``Var.get`` on a large ring buffer takes minutes in Lava 0.10 (tens of seconds for a few
    hundred thousand values); this sink's data is read from the file after the run instead.

    Parameters
    ----------
    shape
        Shape of the signal.
    path
        An existing ``.npy`` file of shape ``(steps, *shape)`` (``numpy.lib.format.open_memmap``).
    """

    def __init__(self, *, shape: tuple[int, ...], path: str, **kwargs) -> None:
        super().__init__(shape=shape, path=path, **kwargs)
        self.a_in = InPort(shape=shape)


class FrameDense(AbstractProcess):
    """A dense synapse applied at every position of the first axis (a graph convolution per frame).

    Input ``(F, W_in, C_in)``, output ``(F, W_out, C_out)``;
    ``a[f, wo, co] = sum_{wi, ci} weights[wo * C_out + co, wi * C_in + ci] s[f, wi, ci]``, with
    Lava Dense semantics: one step of latency; in fixed point the weights are clipped and
    truncated like ``Dense``'s and the sum is shifted by ``weight_exp``. Equal to a stock
    ``Sparse`` with the block-diagonal matrix ``kron(I_F, weights)`` (a test proves it).
    ``exact_in_float32``: the caller guarantees every sum stays below 2**24, so the fixed-point
    model may multiply in float32 (half the memory, twice the speed, still exact).
    """

    def __init__(self, *, weights: np.ndarray, in_shape: tuple[int, int, int], out_shape: tuple[int, int, int],
                 weight_exp: int = 0, num_weight_bits: int = 8, num_message_bits: int = 0,
                 exact_in_float32: bool = False, **kwargs) -> None:
        # the weights live in their Var only (not also in the process parameters)
        super().__init__(in_shape=in_shape, out_shape=out_shape, weight_exp=weight_exp, num_weight_bits=num_weight_bits,
                         num_message_bits=num_message_bits, exact_in_float32=exact_in_float32, **kwargs)
        f, wi, ci = in_shape
        f2, wo, co = out_shape
        if f != f2 or weights.shape != (wo * co, wi * ci):
            raise ValueError(f"FrameDense: weights {weights.shape} do not map {in_shape} to {out_shape}")
        self.s_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)
        self.weights = Var(shape=weights.shape, init=weights)
        self.a_buff = Var(shape=out_shape, init=np.zeros(out_shape))
        self.num_message_bits = Var(shape=(1,), init=num_message_bits)
