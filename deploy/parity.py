"""Spike-level parity across the snnTorch student, the reference NIR executor, Lava float,
the fixed-point emulator and Lava fixed point.

The same person rows go through every backend; spikes are compared per LIF node (NIR node
name; the snnTorch module through the graph's ``module_map``), time step and neuron, after
Lava's latency has been aligned away (the builder returns aligned records).

Pairs that must be exact (float64 arithmetic on both sides of the float pairs):

- ``snntorch`` = ``executor``: a mismatch within :data:`FLOAT_TIE_TOLERANCE` of the threshold
  (relative, on snnTorch's membrane) is a rounding tie (folded BatchNorm, another summation
  order);
- ``executor`` = ``lava_floating_pt``: ties measured on the executor's membrane;
- ``emulator_fixed_pt`` = ``lava_fixed_pt``: integers, no ties.

Every mismatch is a rounding tie, propagated (an earlier step or an upstream node of the
same row already differed), or real (:func:`mksgn.convert.validate.classify`). The
float-versus-fixed pair (``executor`` vs ``emulator_fixed_pt``) reports spike agreement,
prediction agreement and the per-layer spike-rate difference.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mksgn.atomic import atomic_write_text
from mksgn.convert.validate import NodeParity, classify

FLOAT_TIE_TOLERANCE = 1e-9
"""Relative membrane distance to the threshold under which a float64 mismatch is a rounding tie."""
FLOAT32_TIE_TOLERANCE = 1e-5
"""The same for a float32 pair (the reference executor in float32 against a framework's own run)."""
TIE_TOLERANCE = {"float": FLOAT_TIE_TOLERANCE, "float32": FLOAT32_TIE_TOLERANCE, "fixed": 0.0}
MAX_TIE_FRACTION = 1e-5
"""Rounding ties allowed per exact pair (fraction of the compared spikes) unless ``--strict``."""
EXACT_PAIRS = (("executor_float32", "framework", "float32"), ("snntorch", "executor", "float"),
               ("executor", "emulator_floating_pt", "float"), ("executor", "lava_floating_pt", "float"),
               ("emulator_fixed_pt", "lava_fixed_pt", "fixed"))
"""``(a, b, arithmetic)``: pairs compared where both recordings exist (a's membranes triage ties);
``framework`` and ``executor_float32`` come from a foreign graph's parity (:mod:`mksgn.deploy.graph_parity`)."""
FLOAT_VS_FIXED = ("executor", "emulator_fixed_pt")


@dataclass
class Recording:
    """One backend's spikes ``(T, R, *shape)`` per node, membranes where known, logits per sample."""

    spikes: dict[str, torch.Tensor] = field(default_factory=dict)
    membranes: dict[str, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None
    seconds: float = 0.0


def record_snntorch(model, rows: torch.Tensor, module_map: dict[str, str], sample: torch.Tensor, n: int) -> Recording:
    """The snnTorch student in float64 on person rows ``(R, Mod, C, F, V)``."""
    from mksgn.train.blocks import sum_per_sample
    from mksgn.train.student import record_spikes

    net = copy.deepcopy(model).double().eval()
    membranes: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad(), record_spikes(net, membranes) as spikes:
        row_logits, _, _ = net.run_rows(rows.double())
    rec = Recording(logits=sum_per_sample(row_logits, sample, n))
    for node, module in module_map.items():
        if module in spikes and spikes[module]:
            rec.spikes[node] = torch.stack(spikes[module]).double()
            rec.membranes[node] = torch.stack(membranes[module])
    return rec


def per_sample(out: torch.Tensor, sample: torch.Tensor, n: int) -> torch.Tensor:
    """A backend's row outputs ``(R, ...)`` summed into logits per sample ``(n, K)``, in float64."""
    from mksgn.train.blocks import sum_per_sample

    return sum_per_sample(out.reshape(out.shape[0], -1).double(), sample, n)


@dataclass
class ParityResult:
    """Everything the report shows."""

    measured_on: str
    samples: int
    rows: int
    steps: int
    nodes: list[str]
    pairs: dict[str, dict[str, Any]]
    float_vs_fixed: dict[str, Any] | None
    accuracy: dict[str, float]
    latency: int | None
    seconds: dict[str, float]
    strict: bool = False
    framework_outputs: dict[str, Any] = field(default_factory=dict)
    """Per backend and Output node, agreement with a framework's recorded outputs (``--expected``)."""
    non_stock: dict[str, str] = field(default_factory=dict)
    """Population -> mksgn's own Lava process realising it (not stock Lava; empty: all stock)."""

    def exact_ok(self, name: str) -> bool:
        pair = self.pairs[name]
        if self.strict:
            return pair["mismatches"] == 0
        return pair["real"] == 0 and pair["ties"] <= pair["tie_bound"]

    @property
    def passed(self) -> bool:
        return all(self.exact_ok(name) for name in self.pairs)

    def to_dict(self) -> dict[str, Any]:
        return {"measured_on": self.measured_on, "samples": self.samples, "person_rows": self.rows,
                "steps": self.steps, "strict": self.strict, "passed": self.passed,
                "float_tie_tolerance": FLOAT_TIE_TOLERANCE, "max_tie_fraction": MAX_TIE_FRACTION,
                "lava_latency_steps": self.latency, "accuracy": self.accuracy, "seconds": self.seconds,
                "pairs": self.pairs, "float_vs_fixed": self.float_vs_fixed,
                "lava_non_stock_processes": self.non_stock,
                **({"framework_outputs": self.framework_outputs} if self.framework_outputs else {})}


def _pair_summary(nodes: list[NodeParity], a: str, b: str, kind: str, steps: int) -> dict[str, Any]:
    elements = sum(n.elements for n in nodes)
    real = [n for n in nodes if n.real]
    first = min(real, key=lambda n: (n.first["step"], nodes.index(n))) if real else None
    return {
        "a": a, "b": b, "arithmetic": kind, "compared_spikes": elements,
        "mismatches": sum(n.mismatches for n in nodes), "ties": sum(n.ties for n in nodes),
        "propagated": sum(n.propagated for n in nodes), "real": sum(n.real for n in nodes),
        "tie_bound": math.floor(MAX_TIE_FRACTION * elements),
        "first_failure": None if first is None else {"node": first.node, "module": first.module, **first.first},
        "mismatch_rate": {n.node: [m / max(1, n.elements // steps) for m in n.per_step] for n in nodes},
        "nodes": [{**n.__dict__, "real": n.real} for n in nodes],
    }


def layer_agreement(ra: Recording, rb: Recording) -> dict[str, dict[str, Any]]:
    """Per layer both record: spike agreement, spike rates (float ``ra``, fixed ``rb``), their difference and
    the mismatch rate per step."""
    layers = {}
    for n in ra.spikes:
        if n in rb.spikes:
            x, y = ra.spikes[n].double(), rb.spikes[n].double()
            layers[n] = {"agreement": float((x == y).double().mean()), "rate_float": float(x.mean()),
                         "rate_fixed": float(y.mean()), "rate_difference": float(y.mean() - x.mean()),
                         "mismatch_rate_per_step": (x != y).flatten(1).double().mean(dim=1).tolist()}
    return layers


def compare_recordings(recs: dict[str, Recording], module_map: dict[str, str],
                       thresholds: dict[str, float | torch.Tensor], labels: np.ndarray | None,
                       steps: int) -> tuple[dict, dict | None, dict[str, float]]:
    """The exact pairs, the float-vs-fixed pair and each backend's accuracy (``labels`` ``None``:
    unlabelled rows, no accuracy). A threshold may be per neuron (a tensor of the layer's shape)."""
    pairs = {}
    for a, b, kind in EXACT_PAIRS:
        if a not in recs or b not in recs:
            continue
        ra, rb = recs[a], recs[b]
        order = [n for n in ra.spikes if n in rb.spikes]
        compared = {n: (ra.spikes[n].double(), rb.spikes[n].double(),
                        ra.membranes.get(n) if kind != "fixed" else None, thresholds[n]) for n in order}
        nodes = classify(compared, TIE_TOLERANCE[kind], module_map, (a, b))
        pairs[f"{a} = {b}"] = _pair_summary(nodes, a, b, kind, steps)
    fvf = None
    if labels is None:
        return pairs, fvf, {}
    if all(k in recs for k in FLOAT_VS_FIXED):
        ra, rb = recs[FLOAT_VS_FIXED[0]], recs[FLOAT_VS_FIXED[1]]
        layers = layer_agreement(ra, rb)
        pa, pb = ra.logits.argmax(1), rb.logits.argmax(1)
        fvf = {"a": FLOAT_VS_FIXED[0], "b": FLOAT_VS_FIXED[1],
               "spike_agreement": float(np.mean([v["agreement"] for v in layers.values()])),
               "prediction_agreement": float((pa == pb).double().mean()), "layers": layers}
    accuracy = {name: float((rec.logits.argmax(1).numpy() == labels).mean()) for name, rec in recs.items()}
    return pairs, fvf, accuracy


def _heatmap_panels(result: ParityResult) -> list[tuple[str, dict[str, list[float]], int | None]]:
    """``(title, mismatch rate per node and step, compared spikes or None)`` per pair."""
    panels = [(name if not p["mismatches"] else f"{name}\n{p['mismatches']:,} of {p['compared_spikes']:,} spikes differ",
               p["mismatch_rate"], p["compared_spikes"]) for name, p in result.pairs.items()]
    if result.float_vs_fixed:
        panels.append((f"{FLOAT_VS_FIXED[0]} vs {FLOAT_VS_FIXED[1]}\n(float vs fixed)",
                       {n: v["mismatch_rate_per_step"] for n, v in result.float_vs_fixed["layers"].items()}, None))
    return panels


def heatmap_figure(result: ParityResult) -> Any:
    """Mismatch rate per layer x step, one panel per pair (exact pairs and float vs fixed).

    A pair without a single mismatch is a blank panel that says so (``0 mismatches`` and on
    what); the others are heatmaps with a labelled colour bar of their own.
    """
    from matplotlib.ticker import FuncFormatter

    from mksgn.figures import MIN_FONT, figure

    panels = _heatmap_panels(result)
    fig = figure(3.6 + 2.6 * len(panels), max(4.5, 0.27 * len(result.nodes) + 2.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    on = f"{result.samples} samples, {result.rows} person rows,\n{len(result.nodes)} layers x {result.steps} steps"
    for ax, (title, rates, compared) in zip(axes, panels, strict=True):
        data = np.array([rates.get(n, [0.0] * result.steps) for n in result.nodes], dtype=np.float64)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("time step", fontsize=MIN_FONT)
        ax.set_xticks(range(result.steps))
        ax.tick_params(labelsize=MIN_FONT)
        if not data.any():
            ax.imshow(np.zeros_like(data), aspect="auto", cmap="Greys", vmin=0.0, vmax=1.0)
            what = f"{compared:,} compared spikes\n" if compared is not None else ""
            ax.text(0.5, 0.5, f"0 mismatches\n{what}({on})", transform=ax.transAxes, ha="center", va="center",
                    fontsize=MIN_FONT + 1, bbox={"boxstyle": "round", "facecolor": "honeydew", "edgecolor": "green"})
            continue
        im = ax.imshow(data, aspect="auto", cmap="magma_r", vmin=0.0, vmax=float(data.max()))
        fig.colorbar(im, ax=ax, shrink=0.8, format=FuncFormatter(lambda v, _: f"{100 * v:.2g} %"),
                     label="mismatch rate (share of the layer's neurons)").ax.tick_params(labelsize=MIN_FONT)
    axes[0].set_yticks(range(len(result.nodes)), result.nodes, fontsize=MIN_FONT)
    fig.suptitle(f"spike mismatches per layer and time step ({result.measured_on})", fontsize=10)
    return fig


def plot_heatmap(result: ParityResult, path: Path) -> None:
    """Write :func:`heatmap_figure` as PNG."""
    from mksgn.figures import save_png

    save_png(heatmap_figure(result), path)


def render_markdown(result: ParityResult) -> str:
    """The Markdown report."""
    lines = ["# Spike parity", "", f"Measured on {result.measured_on} ({result.rows} person rows x {result.steps} "
             f"steps, {len(result.nodes)} LIF layers); Lava outputs aligned (latency {result.latency} steps).", "",
             *([f"Lava processes that are not stock Lava (mksgn's own, proven against the emulator): "
                + ", ".join(f"`{cls}` for `{pop}`" for pop, cls in result.non_stock.items()) + ".", ""]
               if result.non_stock else []),
             f"Status: **{'PASS' if result.passed else 'FAIL'}**"
             + (" (strict: no mismatch allowed)" if result.strict else
                f" (rounding ties allowed up to {MAX_TIE_FRACTION:g} of the compared spikes)"), "",
             "| pair | arithmetic | compared spikes | mismatches | rounding ties | propagated | real | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for name, p in result.pairs.items():
        lines.append(f"| {name} | {p['arithmetic']} | {p['compared_spikes']} | {p['mismatches']} | {p['ties']} | "
                     f"{p['propagated']} | {p['real']} | {'ok' if result.exact_ok(name) else 'FAIL'} |")
    lines.append("")
    for name, p in result.pairs.items():
        f = p["first_failure"]
        if f is not None:
            margin = "" if f.get("membrane") is None else (f", membrane {f['membrane']:.6g} vs threshold "
                                                          f"{f['threshold']:g}")
            lines += [f"First real mismatch of `{name}`: layer `{f['node']}` (module `{f['module']}`), step "
                      f"{f['step']}, row {f['row']}, neuron {tuple(f['neuron'])}{margin}.", ""]
    if result.float_vs_fixed:
        fv = result.float_vs_fixed
        snapped = fv.get("snapped")
        note = ("" if snapped is None else
                " The student is snapped onto the fixed-point grid (`mksgn-snap`): both compute the same integers, "
                "so any difference is a fault." if snapped else
                " The student is not snapped onto the fixed-point grid: the two differ by rounding (see the error "
                "budget); `mksgn-snap` makes them compute the same integers.")
        what = ("output agreement" if "output_agreement" in fv else "prediction agreement")
        lines += [f"Float vs fixed point (`{fv['a']}` vs `{fv['b']}`): spike agreement {fv['spike_agreement']:.4f}, "
                  f"{what} {fv['prediction_agreement']:.4f}.{note}", "",
                  "| layer | agreement | spike rate float | spike rate fixed | difference |", "|---|---|---|---|---|"]
        for n, v in fv["layers"].items():
            lines.append(f"| `{n}` | {v['agreement']:.4f} | {v['rate_float']:.4f} | {v['rate_fixed']:.4f} | "
                         f"{v['rate_difference']:+.4f} |")
        lines.append("")
        if fv.get("error_budget"):
            lines += ["Error budget (`mksgn.deploy.error_budget`): the float model with one element quantised as the "
                      "fixed-point model realises it, against the float model; `all` quantises every element in "
                      "float arithmetic (what remains to the fixed-point emulator is the integer state arithmetic).",
                      "", "| quantised element | spike agreement | prediction agreement |", "|---|---|---|"]
            for name, v in fv["error_budget"].items():
                lines.append(f"| {name} | {v['spike_agreement']:.4f} | {v['prediction_agreement']:.4f} |")
            lines.append("")
    if result.framework_outputs:
        lines += ["The framework's own outputs (`--expected`) against each backend, per Output node:", "",
                  "| backend | output | values compared | equal | agreement | max abs difference |",
                  "|---|---|---|---|---|---|"]
        for backend, per_output in result.framework_outputs.items():
            for out, v in per_output.items():
                lines.append(f"| {backend} | `{out}` | {v['values']} | {v['equal']} | {v['agreement']:.4f} | "
                             f"{v['max_abs_diff']:.4g} |")
        lines.append("")
    if result.accuracy:
        lines += ["| backend | top-1 | seconds |", "|---|---|---|"]
        for name, acc in result.accuracy.items():
            lines.append(f"| {name} | {acc:.4f} | {result.seconds.get(name, 0.0):.1f} |")
    lines += ["", "![mismatch rate per layer and step](parity_heatmap.png)", ""]
    return "\n".join(lines)


def write_report(result: ParityResult, out: Path) -> None:
    """``parity.json``, ``parity.md`` and ``parity_heatmap.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "parity.json", json.dumps(result.to_dict(), indent=1) + "\n")
    plot_heatmap(result, out / "parity_heatmap.png")
    atomic_write_text(out / "parity.md", render_markdown(result))
