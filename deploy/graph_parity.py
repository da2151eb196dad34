"""Parity of any NIR graph on arrays, against the outputs of the framework that wrote it.

:func:`run_graph_parity` is ``mksgn-parity MODEL.nir [MODEL.q.nir] --input X.npz [--expected Y.npz]``:
the same rows (``X.npz``: one ``(T, B, *shape)`` array per Input node) go through the reference
executor, the float emulator, the fixed-point emulator (with ``MODEL.q.nir``) and Lava (both
tags), and the framework's recorded outputs (``Y.npz``: one array per Output node, e.g. snnTorch's
own run) are compared with them per output value and step.

Exact pairs (with the triage of :mod:`mksgn.deploy.parity`: rounding ties, propagated, real):

- ``executor_float32`` = ``framework``: the reference executor in float32, the frameworks'
  arithmetic, on the populations the Output nodes read; a mismatch within
  :data:`~mksgn.deploy.parity.FLOAT32_TIE_TOLERANCE` of the threshold is a rounding tie (another summation order);
- ``executor`` = ``emulator_floating_pt`` and ``executor`` = ``lava_floating_pt`` (float64),
  ``emulator_fixed_pt`` = ``lava_fixed_pt`` (integers), on every spiking population.

The float-versus-fixed pair reports spike and output agreement and the error budget of
quantisation (:mod:`mksgn.deploy.error_budget`); ``outputs`` says how far each backend's
outputs are from the framework's own.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mksgn.convert.graph_inputs import ArrayInputs, read_arrays
from mksgn.deploy.parity import ParityResult, Recording, compare_recordings, layer_agreement
from mksgn.deploy.run import LoadedModel
from mksgn.errors import MksgnError

class GraphParityError(MksgnError, ValueError):
    """Files that do not belong together; names them."""


def _thresholds(graph, sg, spiking: list[str]) -> dict[str, torch.Tensor]:
    """Each spiking node's threshold per neuron as the NIR file states it (the executor's membranes are
    in its units; the fused population's may be scaled to one threshold: mksgn.core.fuse)."""
    out = {}
    for name in spiking:
        node = _nested(graph, name)
        value = None if node is None else getattr(node, "v_threshold", getattr(node, "threshold", None))
        value = sg.populations[name].threshold if value is None else value
        out[name] = torch.as_tensor(np.broadcast_to(np.asarray(value, dtype=np.float64),
                                                    sg.populations[name].shape).copy())
    return out


def _nested(graph, dotted: str):
    """The node a dotted name (``"sub.node"``) names in ``graph``, or None."""
    import nir

    if dotted in graph.nodes:
        return graph.nodes[dotted]
    for i, char in enumerate(dotted):
        sub = graph.nodes.get(dotted[:i]) if char == "." else None
        if isinstance(sub, nir.NIRGraph):
            found = _nested(sub, dotted[i + 1:])
            if found is not None:
                return found
    return None


def _executor(model: LoadedModel, inputs: dict[str, torch.Tensor], spiking: list[str], dtype: torch.dtype
              ) -> tuple[Recording, dict[str, torch.Tensor]]:
    from mksgn.core.executor import NIRExecutor

    res = NIRExecutor(model.graph, dtype=dtype, semantics=model.sg.semantics).run(inputs, record=spiking)
    rec = Recording({k: res.records[k].double() for k in spiking}, {k: res.membranes[k].double() for k in spiking})
    return rec, {k: v.double() for k, v in res.outputs.items()}


def _emulator(sg, tag: str, inputs: dict[str, torch.Tensor]) -> tuple[Recording, dict[str, torch.Tensor]]:
    from mksgn.core.emulator import Emulator

    res = Emulator(sg, tag).run(inputs, record_spikes=True)
    return Recording({k: v.double() for k, v in res.spikes.items()}), dict(res.outputs)


def _lava(sg, tag: str, inputs: dict[str, torch.Tensor], spiking: list[str], bar, non_stock: dict[str, str]
          ) -> tuple[Recording, dict[str, torch.Tensor], int]:
    from mksgn.deploy.lava_builder import run_lava_rows

    res = run_lava_rows(sg, tag, {k: v.numpy() for k, v in inputs.items()}, record=spiking, done=bar.update)
    rec = Recording({n: torch.as_tensor(res.spikes[n]).double() for n in spiking})
    non_stock.update(res.non_stock)
    return rec, {k: torch.as_tensor(v) for k, v in res.outputs.items()}, res.latency


def _output_agreement(outputs: dict[str, dict[str, torch.Tensor]], expected: dict[str, np.ndarray]
                      ) -> dict[str, dict[str, Any]]:
    """Per backend and Output node: how many values equal the framework's, the largest difference."""
    out: dict[str, dict[str, Any]] = {}
    for backend, values in outputs.items():
        for name, want in expected.items():
            got = values[name].double().numpy()
            ref = want[-got.shape[0]:]  # Lava's non-spiking read-outs: the last step only
            diff = np.abs(got - ref)
            out.setdefault(backend, {})[name] = {
                "values": int(ref.size), "equal": int((diff == 0).sum()), "agreement": float((diff == 0).mean()),
                "max_abs_diff": float(diff.max()), "steps": int(got.shape[0])}
    return out


def _float_vs_fixed(recs: dict[str, Recording], outputs: dict[str, dict[str, torch.Tensor]], quantized: LoadedModel,
                    inputs: dict[str, torch.Tensor], rows: int) -> dict[str, Any] | None:
    """Spike and output agreement of the executor and the fixed-point emulator, and the error budget."""
    from mksgn.deploy.error_budget import error_budget

    layers = layer_agreement(recs["executor"], recs["emulator_fixed_pt"])
    agree = [float((outputs["executor"][k] == outputs["emulator_fixed_pt"][k].double()).double().mean())
             for k in outputs["executor"]]
    sample = torch.arange(rows)
    return {"a": "executor", "b": "emulator_fixed_pt",
            "spike_agreement": float(np.mean([v["agreement"] for v in layers.values()])) if layers else 1.0,
            "prediction_agreement": float(np.mean(agree)), "output_agreement": float(np.mean(agree)),
            "layers": layers, "error_budget": error_budget(quantized.sg, inputs, sample, rows)}


def _check_together(model: LoadedModel, quantized: LoadedModel | None) -> None:
    if quantized is not None and set(quantized.graph.nodes) != set(model.graph.nodes):
        raise GraphParityError(f"{quantized.path} is not the quantised {model.path} (its nodes differ)")


def run_graph_parity(model: LoadedModel, quantized: LoadedModel | None, arrays: ArrayInputs,
                     expected_path: str | None = None, limit: int | None = None, lava: bool = True,
                     strict: bool = False, progress: bool = True) -> ParityResult:
    """Every backend on the same rows, compared with each other and with the framework's outputs.

    Parameters
    ----------
    model
        The float graph, loaded (:func:`~mksgn.deploy.run.load_model`) under its semantics.
    quantized
        Its quantised graph loaded for ``fixed_pt`` (``None``: no fixed-point pairs).
    arrays
        The input rows (``--input``).
    expected_path
        An ``.npz`` of the framework's outputs, one ``(T, B, *shape)`` array per Output node.
    limit
        Compare the first ``limit`` rows (``None``: all).
    lava, strict, progress
        Run Lava (both tags); fail on rounding ties too; show progress.

    Returns
    -------
    ParityResult
        The pairs, float vs fixed, and (``framework_outputs``) per backend and Output node the
        agreement with the framework's outputs.
    """
    _check_together(model, quantized)
    sg = model.sg
    n = len(arrays) if limit is None else min(limit, len(arrays))
    inputs = {k: v[:, :n] for k, v in arrays.arrays.items()}
    expected = None
    if expected_path is not None:
        shapes = {out: sg.populations[pop].shape for out, pop in sg.outputs.items()}
        expected = {k: v[:, :n] for k, v in read_arrays(expected_path, shapes, "Output").items()}
        steps = {v.shape[0] for v in expected.values()}
        if steps != {arrays.time_steps} or any(v.shape[1] != n for v in expected.values()):
            raise GraphParityError(f"{expected_path}: its arrays are {[v.shape[:2] for v in expected.values()]} "
                                   f"(T, B); the inputs give ({arrays.time_steps}, >= {n})")
    spiking = [name for name, p in sg.populations.items() if p.spiking]
    recs: dict[str, Recording] = {}
    outputs: dict[str, dict[str, torch.Tensor]] = {}
    seconds: dict[str, float] = {}
    latency = None
    non_stock: dict[str, str] = {}

    def timed(name: str, work) -> Any:
        start = time.perf_counter()
        value = work()
        seconds[name] = round(time.perf_counter() - start, 2)
        return value

    if lava:
        runs = [("lava_floating_pt", sg, "floating_pt")] + ([("lava_fixed_pt", quantized.sg, "fixed_pt")]
                                                           if quantized is not None else [])
        with tqdm(total=n * len(runs), desc="lava", unit="row", disable=not progress) as bar:
            for name, graph, tag in runs:
                recs[name], outputs[name], latency = timed(
                    name, lambda: _lava(graph, tag, inputs, spiking, bar, non_stock))
    recs["executor"], outputs["executor"] = timed("executor", lambda: _executor(model, inputs, spiking, torch.float64))
    recs["emulator_floating_pt"], outputs["emulator_floating_pt"] = timed(
        "emulator_floating_pt", lambda: _emulator(sg, "floating_pt", inputs))
    if quantized is not None:
        recs["emulator_fixed_pt"], outputs["emulator_fixed_pt"] = timed(
            "emulator_fixed_pt", lambda: _emulator(quantized.sg, "fixed_pt", inputs))
    if expected is not None:
        read_out = {sg.outputs[k]: torch.as_tensor(v) for k, v in expected.items()
                    if sg.populations[sg.outputs[k]].spiking}
        recs["framework"] = Recording(read_out)
        rec32, outputs["executor_float32"] = timed("executor_float32",
                                                   lambda: _executor(model, inputs, spiking, torch.float32))
        recs["executor_float32"] = Recording({k: rec32.spikes[k] for k in read_out},
                                             {k: rec32.membranes[k] for k in read_out})
    identity = {name: name for name in spiking}
    pairs, _, _ = compare_recordings(recs, identity, _thresholds(model.graph, sg, spiking), None, arrays.time_steps)
    fvf = _float_vs_fixed(recs, outputs, quantized, inputs, n) if quantized is not None else None
    agreement = _output_agreement(outputs, expected) if expected is not None else {}
    return ParityResult(arrays.describe(n), n, n, arrays.time_steps, spiking, pairs, fvf, {}, latency, seconds,
                        strict, agreement, non_stock)
