"""mksgn's own Lava processes: an I/O sink writing to a file, and a LIF with the spike rules Lava's lacks.

Every network holds :class:`FileSink`\ s; a network holds :class:`RuleLIF` only where a graph's
neuron semantics (:mod:`mksgn.core.semantics`) are not a stock LIF's, and the reports name it
as not stock.
"""

from __future__ import annotations


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


class RuleLIF(AbstractProcess):
    """A LIF with what a stock Lava LIF lacks: the spike rules of :mod:`mksgn.core.semantics` and
    decays per neuron (not a stock process: none exists in Lava 0.10). Lava's own current and
    voltage update (``PyLifModelFloat``, ``PyLifModelBitAcc``), then the rule.

    Parameters
    ----------
    shape
        The population's Lava shape.
    du, dv
        Decays: one value, or one per neuron (of ``shape``).
    vth, bias_mant, bias_exp
        As ``LIF``'s.
    reset
        ``"to-v-reset"`` (to 0), ``"zero"`` (the next step's membrane zeroed), ``"subtract"``
        (``v - vth`` per spike) or ``"subtract-next"`` (``vth`` taken from the next step's membrane).
    threshold_test
        ``">"`` or ``">="``.
    multi
        Send the number of thresholds the voltage holds (a graded spike) instead of 0/1.
    v_min
        A floor under the voltage after the reset, one value or one per neuron (``None``: none);
        in the voltage's units.
    reset_interval, reset_offset
        As ``LIFReset``: ``u``, ``v`` and the pending reset are zeroed at the steps where
        ``time_step % reset_interval == reset_offset`` (0: never).
    bias_start
        The first step (0-based) whose bias counts (mksgn's gated ``LIF``).
    """

    def __init__(self, *, shape: tuple[int, ...], du=0, dv=0, vth=10, bias_mant=0, bias_exp=0,
                 reset: str = "to-v-reset", threshold_test: str = ">", multi: bool = False, v_min=None,
                 reset_interval: int = 0, reset_offset: int = 0, bias_start: int = 0, **kwargs) -> None:
        super().__init__(shape=shape, reset=reset, threshold_test=threshold_test, multi=multi, v_min=v_min,
                         reset_interval=reset_interval, reset_offset=reset_offset, bias_start=bias_start, **kwargs)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.du = Var(shape=shape, init=du)
        self.dv = Var(shape=shape, init=dv)
        self.vth = Var(shape=(1,), init=vth)
        self.bias_mant = Var(shape=shape, init=bias_mant)
        self.bias_exp = Var(shape=shape, init=bias_exp)
        self.fired = Var(shape=shape, init=0)
