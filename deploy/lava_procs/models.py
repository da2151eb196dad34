"""Float and fixed-point models of :mod:`.process` (numpy only: Lava's processes cannot use torch)."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from mksgn.core import loihi
from mksgn.core.spike_rules import SpikeRule, apply_pending_reset, reset_membrane, spike_count
from mksgn.deploy.lava_compat import lava_import
from mksgn.deploy.lava_procs.process import FileSink, RuleLIF

_decorator = lava_import("lava.magma.core.decorator")
implements, requires, tag = _decorator.implements, _decorator.requires, _decorator.tag
LoihiProtocol = lava_import("lava.magma.core.sync.protocols.loihi_protocol").LoihiProtocol
CPU = lava_import("lava.magma.core.resources").CPU
PyLoihiProcessModel = lava_import("lava.magma.core.model.py.model").PyLoihiProcessModel
_ports = lava_import("lava.magma.core.model.py.ports")
PyInPort, PyOutPort = _ports.PyInPort, _ports.PyOutPort
LavaPyType = lava_import("lava.magma.core.model.py.type").LavaPyType


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


# --------------------------------------------------------------------------- a fast model for stock Conv


def _conv_hwc(x: np.ndarray, weight: np.ndarray, stride, padding, dilation, groups: int) -> np.ndarray:
    """Lava's convolution (a true convolution) of ``x`` ``(H, W, C)`` with ``weight`` ``(Co, kH, kW, Ci/g)``.

    Matrix products on sliding windows in float64 (integers stay exact: far below 2**53).
    """
    kernel = weight[:, ::-1, ::-1, :].astype(np.float64)  # Lava convolves: flip to correlate
    co, kh, kw, ci = kernel.shape
    x = np.pad(x.astype(np.float64), ((padding[0], padding[0]), (padding[1], padding[1]), (0, 0)))
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(0, 1))
    windows = windows[::stride[0], ::stride[1], :, ::dilation[0], ::dilation[1]]  # (Ho, Wo, C, kh, kw)
    per_out = co // groups
    out = np.empty(windows.shape[:2] + (co,))
    for g in range(groups):
        part = windows[:, :, g * ci:(g + 1) * ci]  # (Ho, Wo, ci, kh, kw)
        k = kernel[g * per_out:(g + 1) * per_out].transpose(0, 3, 1, 2)  # (per_out, ci, kh, kw)
        out[:, :, g * per_out:(g + 1) * per_out] = np.tensordot(part, k, axes=([2, 3, 4], [1, 2, 3]))
    return out


class _FastConvModel(PyLoihiProcessModel):
    """Stock ``Conv`` semantics, computed with matrix products instead of one 2-D convolution per channel pair."""

    def run_spk(self) -> None:
        if self.a_buf is None:
            self.a_buf = np.zeros(self.a_out.shape)
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = s_in.astype(bool)
        out = _conv_hwc(s_in, self.weight, tuple(self.stride), tuple(self.padding), tuple(self.dilation),
                        int(self.groups[0]))
        self.a_buf = self._finish(out)


def fast_conv_models() -> dict:
    """``{Conv: model}`` per tag, for ``Loihi2SimCfg(exception_proc_model_map=...)``."""
    Conv = lava_import("lava.proc.conv.process").Conv
    stock = lava_import("lava.proc.conv.models")

    class PyFastConvFloat(_FastConvModel, stock.PyConvModelFloat):
        def _finish(self, out: np.ndarray) -> np.ndarray:
            return out

    class PyFastConvFixed(_FastConvModel, stock.PyConvModelFixed):
        def _finish(self, out: np.ndarray) -> np.ndarray:
            return loihi.wrap_signed(np.rint(out).astype(np.int64), loihi.CONV_OUTPUT_BITS)

    return {"floating_pt": {Conv: PyFastConvFloat}, "fixed_pt": {Conv: PyFastConvFixed}}


# --------------------------------------------------------------------------- a fast model for stock Sparse


def fast_sparse_models() -> dict:
    """``{Sparse: model}`` per tag: stock semantics, binary spikes summed by a sparse mat-vec product.

    The stock models select the spiking columns (``weights[:, s].sum(axis=1)``), slow on large
    matrices; a product with the 0/1 vector adds the same integers (and the same floats, in
    the same order per row).
    """
    Sparse = lava_import("lava.proc.sparse.process").Sparse
    stock = lava_import("lava.proc.sparse.models")

    class PyFastSparseFloat(stock.PySparseModelFloat):
        def run_spk(self) -> None:
            self.a_out.send(self.a_buff)
            s_in = self.s_in.recv()
            if self.num_message_bits.item() == 0:
                s_in = s_in.astype(bool).astype(np.float64)
            self.a_buff = self.weights.dot(s_in)

    class PyFastSparseFixed(stock.PySparseModelBitAcc):
        def run_spk(self) -> None:
            if self.num_message_bits.item() > 0:
                return super().run_spk()
            if not self.weights_set:
                bits = self.proc_params.get("num_weight_bits", loihi.WEIGHT_BITS)
                dense_like = self.weights.tocsr().astype(np.int64)
                dense_like.data = loihi.dense_weights(dense_like.data, bits, loihi.sign_mode(dense_like.data))
                self.weights = dense_like
                self.weights_set = True
            self.a_out.send(self.a_buff)
            s_in = self.s_in.recv().astype(bool).astype(np.int64)
            self.a_buff = loihi.shift(self.weights.dot(s_in), int(self.proc_params.get("weight_exp", 0)))

    return {"floating_pt": {Sparse: PyFastSparseFloat}, "fixed_pt": {Sparse: PyFastSparseFixed}}


# --------------------------------------------------------------------------- fast DelaySparse and DelayDense


def fast_delay_models() -> dict:
    """``{DelaySparse: model, DelayDense: model}`` per tag: stock semantics, the per-delay weights built once.

    The stock models stack one weight matrix per delay at every step (``get_delay_wgts_mat``)
    and sum ``(stack * s_in)`` over its rows (DelayDense: ``(max_delay + 1)`` dense copies).
    The weights are static (fixed point: conditioned at the first step), so the fast models
    build the stack once. DelaySparse then runs the stock sparse product on it: the same
    operations. DelayDense keeps only the delays that hold a weight: in fixed point one integer
    matrix-vector product (exact sums), in float the stock row sums of ``w * s_in`` (numpy's
    summation order, which a BLAS product would not keep).
    """
    dense, sparse = lava_import("lava.proc.dense.models"), lava_import("lava.proc.sparse.models")
    DelayDense = lava_import("lava.proc.dense.process").DelayDense
    DelaySparse = lava_import("lava.proc.sparse.process").DelaySparse

    class _StackOnce:
        _stack = None

        def calc_act(self, s_in: np.ndarray) -> np.ndarray:
            if self._stack is None:
                self._stack = self.get_delay_wgts_mat(self.weights, self.delays, self.a_buff.shape[-1] - 1)
            return np.reshape(self._stack.dot(s_in), (self.a_buff.shape[-1], self.weights.shape[0])).T

    class _BlocksOnce:
        _blocks = None
        _dtype: type = np.float64

        def calc_act(self, s_in: np.ndarray) -> np.ndarray:
            if self._blocks is None:  # (k, the weights whose delay is k) for each delay that holds a weight
                present = np.unique(self.delays[self.weights != 0])
                self._blocks = [(int(k), np.where(self.delays == k, self.weights, 0).astype(self._dtype))
                                for k in present]
            out = np.zeros((self.weights.shape[0], self.a_buff.shape[-1]), dtype=self._dtype)
            for k, block in self._blocks:
                out[:, k] = self._product(block, s_in)
            return out

    class PyFastDelaySparseFloat(_StackOnce, sparse.PyDelaySparseModelFloat):
        pass

    class PyFastDelaySparseFixed(_StackOnce, sparse.PyDelaySparseModelBitAcc):
        pass

    class PyFastDelayDenseFloat(_BlocksOnce, dense.PyDelayDenseModelFloat):
        @staticmethod
        def _product(block: np.ndarray, s_in: np.ndarray) -> np.ndarray:
            return np.sum(block * s_in, axis=1)  # the stock model's sums, in numpy's order

    class PyFastDelayDenseFixed(_BlocksOnce, dense.PyDelayDenseModelBitAcc):
        _dtype = np.int64

        @staticmethod
        def _product(block: np.ndarray, s_in: np.ndarray) -> np.ndarray:
            return block @ s_in.astype(np.int64)  # integers: exact in any order

    return {"floating_pt": {DelaySparse: PyFastDelaySparseFloat, DelayDense: PyFastDelayDenseFloat},
            "fixed_pt": {DelaySparse: PyFastDelaySparseFixed, DelayDense: PyFastDelayDenseFixed}}


# --------------------------------------------------------------------------- LIF with its bias switched on late


def gated_lif_models() -> dict:
    """``{LIF: model}`` per tag: the stock LIF whose bias counts from step ``bias_start`` on.

    ``LIF(..., bias_start=D)`` behaves as the stock model whose ``bias_mant`` is zero for
    the first ``D`` steps and set with ``Var.set`` at step ``D`` (a test proves it); it
    saves pausing a run for every depth, and ``Var.set`` is slow on large populations.
    """
    LIF = lava_import("lava.proc.lif.process").LIF
    stock = lava_import("lava.proc.lif.models")

    def gated(base: type) -> type:
        class Gated(base):
            def run_spk(self) -> None:
                if self.time_step - 1 >= int(self.proc_params.get("bias_start", 0)):
                    return super().run_spk()
                bias = self.bias_mant
                self.bias_mant = np.zeros_like(bias)
                try:
                    super().run_spk()
                finally:
                    self.bias_mant = bias

        Gated.__name__ = f"Gated{base.__name__}"
        return Gated

    return {"floating_pt": {LIF: gated(stock.PyLifModelFloat)}, "fixed_pt": {LIF: gated(stock.PyLifModelBitAcc)}}


# --------------------------------------------------------------------------- a float model for stock GradedVec


def float_graded_models() -> dict:
    """``{GradedVec: model}`` for ``floating_pt``: Lava 0.10.0 ships a fixed-point model only.

    The model is Lava's own ``AbstractGradedVecModel`` (the same ``run_spk``: ``v += a_in``,
    send ``v`` where ``|v| > vth``, then ``v = 0``) with float ports and variables in place of
    24-bit integers; on integer values it sends what the stock fixed model sends (a test
    proves it).
    """
    graded = lava_import("lava.proc.graded.process")
    stock = lava_import("lava.proc.graded.models")

    @implements(proc=graded.GradedVec, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("floating_pt")
    class PyGradedVecModelFloat(stock.AbstractGradedVecModel):
        a_in = LavaPyType(PyInPort.VEC_DENSE, float)
        s_out = LavaPyType(PyOutPort.VEC_DENSE, float)
        vth: np.ndarray = LavaPyType(np.ndarray, float)
        v: np.ndarray = LavaPyType(np.ndarray, float)
        exp: np.ndarray = LavaPyType(np.ndarray, float)

    return {"floating_pt": {graded.GradedVec: PyGradedVecModelFloat}, "fixed_pt": {}}


# --------------------------------------------------------------------------- mksgn's LIF with other spike rules

_lif_models = lava_import("lava.proc.lif.models")


class _RuleLifRun:
    """``run_spk`` of :class:`RuleLIF`, shared by both tags: the row reset of ``LIFReset``, the bias gate
    of mksgn's ``LIF``, Lava's own current and voltage update, then the spike rule."""

    def _row_start(self) -> None:
        interval = int(self.proc_params["reset_interval"])
        if interval and self.time_step % interval == int(self.proc_params["reset_offset"]) % interval:
            self.u *= 0
            self.v *= 0
            self.fired *= 0

    def _gated(self) -> bool:
        return self.time_step - 1 < int(self.proc_params["bias_start"])


@implements(proc=RuleLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyRuleLifModelFloat(_RuleLifRun, _lif_models.AbstractPyLifModelFloat):
    """Float :class:`RuleLIF`: ``PyLifModelFloat``'s update, then the rule (:mod:`mksgn.core.spike_rules`,
    the functions the executor and the emulator call)."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)
    du: np.ndarray = LavaPyType(np.ndarray, float)
    dv: np.ndarray = LavaPyType(np.ndarray, float)
    fired: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        self._row_start()
        bias = self.bias_mant
        if self._gated():
            self.bias_mant = np.zeros_like(bias)
        try:
            self.subthr_dynamics(activation_in=a_in)
        finally:
            self.bias_mant = bias
        p = self.proc_params
        rule = SpikeRule(float(self.vth), p["reset"], 0.0, p["threshold_test"], bool(p["multi"]),
                         None if p["v_min"] is None else np.asarray(p["v_min"], dtype=float))
        v = apply_pending_reset(self.v, self.fired, rule)
        s = spike_count(v, rule)
        self.v[:] = reset_membrane(v, s, rule)
        self.fired[:] = s
        self.s_out.send(s)


@implements(proc=RuleLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyRuleLifModelFixed(_RuleLifRun, _lif_models.AbstractPyLifModelFixed):
    """Bit-accurate :class:`RuleLIF`: ``PyLifModelBitAcc``'s update, then the rule in integers
    (:func:`mksgn.core.loihi.spike_count_fixed` and its neighbours, which the emulator uses too)."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    du: np.ndarray = LavaPyType(np.ndarray, np.uint16, precision=12)
    dv: np.ndarray = LavaPyType(np.ndarray, np.uint16, precision=12)
    fired: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        self._row_start()
        self.scale_bias()
        if self._gated():
            self.effective_bias = np.zeros_like(self.effective_bias)
        self.subthr_dynamics(activation_in=a_in)
        p = self.proc_params
        vth_eff = int(self.vth) << loihi.THRESHOLD_SHIFT
        v = self.v.astype(np.int64)
        v = loihi.pending_reset_fixed(v, self.fired.astype(np.int64), vth_eff, p["reset"])
        s = loihi.spike_count_fixed(v, vth_eff, p["threshold_test"], bool(p["multi"]))
        self.v[:] = loihi.reset_fixed(v, s, vth_eff, p["reset"], p["v_min"])
        self.fired[:] = s
        self.s_out.send(s.astype(np.int32))


# --------------------------------------------------------------------------- what the builder uses, and the proofs


def fast_models(tag: str, gated: bool = False) -> dict:
    """The ``exception_proc_model_map`` of a run: the fast models of stock processes, the float model
    of ``GradedVec`` (``gated``: and the bias-gated ``LIF`` of one build per row). Every key is in
    :data:`PROVEN`."""
    fast = {**fast_conv_models()[tag], **fast_sparse_models()[tag], **fast_delay_models()[tag],
            **float_graded_models()[tag]}
    if gated:
        fast.update(gated_lif_models()[tag])
    return fast


PROVEN = MappingProxyType({
    lava_import("lava.proc.conv.process").Conv: "test_fast_conv_model_equals_the_stock_conv_model",
    lava_import("lava.proc.sparse.process").Sparse: "test_fast_sparse_model_equals_the_stock_sparse_model",
    lava_import("lava.proc.sparse.process").DelaySparse: "test_fast_delay_models_equal_the_stock_models",
    lava_import("lava.proc.dense.process").DelayDense: "test_fast_delay_models_equal_the_stock_models",
    lava_import("lava.proc.lif.process").LIF: "test_bias_start_equals_setting_the_bias_during_a_paused_run",
    lava_import("lava.proc.graded.process").GradedVec: "test_float_graded_vec_model_equals_the_stock_fixed_model",
})
"""Stock process -> the test (in ``tests/``) proving mksgn's model of it equal to Lava's own, in both tags."""
