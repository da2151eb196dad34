"""Float and fixed-point models of :mod:`.process` (numpy only: Lava's processes cannot use torch)."""

from __future__ import annotations

import numpy as np

from mksgn.deploy import loihi
from mksgn.deploy.lava_compat import lava_import
from mksgn.deploy.lava_procs.process import DelayLine, FileSink, FrameDense

_decorator = lava_import("lava.magma.core.decorator")
implements, requires, tag = _decorator.implements, _decorator.requires, _decorator.tag
LoihiProtocol = lava_import("lava.magma.core.sync.protocols.loihi_protocol").LoihiProtocol
CPU = lava_import("lava.magma.core.resources").CPU
PyLoihiProcessModel = lava_import("lava.magma.core.model.py.model").PyLoihiProcessModel
_ports = lava_import("lava.magma.core.model.py.ports")
PyInPort, PyOutPort = _ports.PyInPort, _ports.PyOutPort
LavaPyType = lava_import("lava.magma.core.model.py.type").LavaPyType


class _DelayLineModel(PyLoihiProcessModel):
    def run_spk(self) -> None:
        x = self.s_in.recv()
        out = self.buffer[0].copy()
        self.buffer[:-1] = self.buffer[1:]
        self.buffer[-1] = x
        self.s_out.send(out)


@implements(proc=DelayLine, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDelayLineFloat(_DelayLineModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    buffer: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=DelayLine, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDelayLineFixed(_DelayLineModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    buffer: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)


class _FileSinkModel(PyLoihiProcessModel):
    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._data = None

    def run_spk(self) -> None:
        x = self.a_in.recv()
        if self._data is None:
            self._data = np.load(self.proc_params["path"], mmap_mode="r+")
        t = self.time_step - 1
        if t < self._data.shape[0]:
            self._data[t] = x


@implements(proc=FileSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyFileSinkFloat(_FileSinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)


@implements(proc=FileSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFileSinkFixed(_FileSinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)


class _FrameDenseModel(PyLoihiProcessModel):
    def _accumulate(self, s_in: np.ndarray) -> np.ndarray:
        f = s_in.shape[0]
        x = s_in.reshape(f, -1).astype(np.float64)
        return (x @ self._matrix().T).reshape(self.a_buff.shape)

    def run_spk(self) -> None:
        self.a_out.send(self.a_buff)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = s_in.astype(bool)
        self.a_buff = self._finish(self._accumulate(s_in))


@implements(proc=FrameDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyFrameDenseFloat(_FrameDenseModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_buff: np.ndarray = LavaPyType(np.ndarray, float)
    weights: np.ndarray = LavaPyType(np.ndarray, float)
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, int, precision=5)

    def _matrix(self) -> np.ndarray:
        return self.weights

    def _finish(self, a: np.ndarray) -> np.ndarray:
        return a


@implements(proc=FrameDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFrameDenseFixed(_FrameDenseModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buff: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weights: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, int, precision=5)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._conditioned = None

    def _matrix(self) -> np.ndarray:
        if self._conditioned is None:  # Dense's clipping and truncation, once (the weights are static)
            bits = self.proc_params.get("num_weight_bits", loihi.WEIGHT_BITS)
            self._conditioned = loihi.dense_weights(self.weights, bits).astype(np.float64)
        return self._conditioned

    def _finish(self, a: np.ndarray) -> np.ndarray:
        return loihi.shift(np.rint(a).astype(np.int64), int(self.proc_params.get("weight_exp", 0)))
