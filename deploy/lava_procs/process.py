"""The one process of mksgn's own that a Lava network holds: an I/O sink writing to a file."""

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
