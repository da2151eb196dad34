"""The energy report: a terminal table, Markdown, JSON-ready dicts and PNG plots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mksgn.atomic import atomic_write_text
from mksgn.figures import figure, save_png


def joules(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, f in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(value) >= f or unit == "pJ":
            return f"{value / f:.4g} {unit}"
    return f"{value:.3g} J"


def summary_rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per profile: SNN energy, ANN energy, reduction, cores, chips."""
    rows = []
    for name, p in result["profiles"].items():
        snn, ann = p.get("snn"), p.get("ann")
        res = p.get("resources") or {}
        red = p.get("reduction_vs_baseline")
        rows.append([name, p["kind"], joules(snn["total"]) if snn else "n/a", joules(ann["total"]) if ann else "n/a",
                     f"{100 * red:.2f} %" if red is not None else "n/a",
                     str(res.get("cores")) if res.get("cores") is not None else "n/a",
                     str(res.get("chips")) if res.get("chips") is not None else "n/a",
                     ", ".join(snn["unpriced"]) if snn and snn["unpriced"] else "-"])
    return rows


HEADER = ["profile", "kind", "SNN / sample", "ANN / sample", "SNN saves vs ANN on cmos45nm", "cores", "chips",
          "unpriced"]


def terminal_table(result: dict[str, Any]) -> str:
    rows = [HEADER, *summary_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(result: dict[str, Any]) -> str:
    c = result["counts"]
    t = c["totals"]
    lines = [f"# Energy estimate of {result['model']}", "",
             f"Operations measured on {c['measured_on']} ({c['backend']}; {c['person_rows']} person rows, "
             f"T = {c['time_steps']}). Per sample: {t['synaptic_ops']:.4g} synaptic ops (ACs), "
             f"{t['graded_ops']:.4g} graded-input ops (MACs), {t['neuron_updates']:.4g} neuron updates, "
             f"{t['spikes']:.4g} spikes.", ""]
    if result.get("ann"):
        a = result["ann"]
        lines += [f"ANN baseline: {a['source']}: {a['macs_per_row'] / 1e9:.4g} G MACs per person row, "
                  f"{result['rows_per_sample']:.3g} rows per sample (as measured on the same samples).", ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in summary_rows(result)]
    notes = [f"- **{name}**: {'; '.join(p['snn']['notes'])}." for name, p in result["profiles"].items()
             if p.get("snn") and p["snn"].get("notes")]
    if notes:
        lines += ["", "How each profile was charged:", "", *notes]
    lines += ["", "## Per layer (spiking network, per sample)", "",
              "| layer | neurons | synaptic ops | graded ops | neuron updates | spikes |" +
              "".join(f" {p} |" for p, v in result["profiles"].items() if v.get("snn")),
              "|---|---|---|---|---|---|" + "---|" * sum(1 for v in result["profiles"].values() if v.get("snn"))]
    for layer in c["layers"]:
        cells = [f"`{layer['name']}`", str(layer["neurons"]), f"{layer['synaptic_ops']:.4g}",
                 f"{layer['graded_ops']:.4g}", f"{layer['neuron_updates']:.4g}", f"{layer['spikes']:.4g}"]
        cells += [joules(v["snn"]["layers"].get(layer["name"], 0.0)) for v in result["profiles"].values() if v.get("snn")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Resources", ""]
    for name, p in result["profiles"].items():
        r = p.get("resources")
        if not r or r.get("cores") is None:
            continue
        split = ", ".join(f"`{x}`" for x in r["split_layers"]) or "none"
        bad = ", ".join(f"`{x['name']}` ({x['problem']})" for x in r["layers"] if x["problem"]) or "none"
        lines.append(f"- **{name}**: {r['cores']} cores, {r['chips']} chip(s) at {r['weight_bits']}-bit weights; "
                     f"layers split over several cores: {split}; not mappable: {bad}.")
    lines += ["", "## Sources", ""]
    for name, p in result["profiles"].items():
        lines.append(f"- **{name}** ({p['description']}; `{p['path']}`):")
        for section, keys in p["quantities"].items():
            for key, q in keys.items():
                note = f" Note: {q['note']}" if q.get("note") else ""
                lines.append(f"  - {section}.{key} = {q['value']:g} {q['unit']} ({q['evidence']}): {q['source']}.{note}")
    lines += ["", "How the figures are computed: `mksgn.hw_profiles.estimator` (energy), "
              "`mksgn.hw_profiles.counts` (operations), `mksgn.hw_profiles.resources` (cores).", ""]
    return "\n".join(lines)


def plot_ops(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Operations per layer (log scale): synaptic ops, graded ops, neuron updates, spikes."""
    layers = result["counts"]["layers"]
    names = [x["name"] for x in layers]
    keys = ("synaptic_ops", "graded_ops", "neuron_updates", "spikes")
    fig = figure(max(7.0, 0.3 * len(names) + 3), 4.8)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    width = 0.2
    for i, key in enumerate(keys):
        ax.bar(x + (i - 1.5) * width, [max(layer[key], 1e-1) for layer in layers], width, label=key.replace("_", " "))
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=90, fontsize=6)
    ax.set_ylabel("per sample")
    ax.legend(fontsize=7)
    ax.set_title(f"operations per layer, measured on {result['counts']['measured_on']}", fontsize=8)
    save_png(fig, path)


def plot_profiles(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Energy per sample per profile, the SNN beside the ANN baseline (log scale)."""
    profiles = list(result["profiles"])
    snn = [(result["profiles"][p].get("snn") or {}).get("total") for p in profiles]
    ann = [(result["profiles"][p].get("ann") or {}).get("total") for p in profiles]
    fig = figure(max(6.0, 0.9 * len(profiles) + 2), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(profiles))
    ax.bar(x - 0.2, [v if v else 0 for v in snn], 0.4, label="MK-SGN student (measured ops)")
    ax.bar(x + 0.2, [v if v else 0 for v in ann], 0.4, label="ANN baseline (dense MACs)")
    ax.set_yscale("log")
    ax.set_xticks(x, profiles)
    ax.set_ylabel("J per sample")
    ax.legend(fontsize=7)
    ax.set_title(f"energy per sample; SNN ops measured on {result['counts']['measured_on']}", fontsize=8)
    save_png(fig, path)


def plot_snn_vs_ann(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """The student's energy on each spiking profile against the ANN baseline on each ANN profile."""
    bars = [(f"SNN {p}", v["snn"]["total"]) for p, v in result["profiles"].items() if v.get("snn")]
    bars += [(f"ANN {p}", v["ann"]["total"]) for p, v in result["profiles"].items() if v.get("ann")]
    fig = figure(max(6.0, 0.7 * len(bars) + 2), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    colours = ["tab:blue" if name.startswith("SNN") else "tab:red" for name, _ in bars]
    ax.bar(range(len(bars)), [v for _, v in bars], color=colours)
    ax.set_yscale("log")
    ax.set_xticks(range(len(bars)), [n for n, _ in bars], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("J per sample")
    red = result["profiles"].get(result["baseline_profile"], {}).get("reduction_vs_baseline")
    extra = f"; on {result['baseline_profile']} the SNN saves {100 * red:.2f} %" if red is not None else ""
    ax.set_title(f"SNN (blue) vs ANN baseline (red){extra}\nSNN ops measured on {result['counts']['measured_on']}",
                 fontsize=8)
    save_png(fig, path)


def write_report(result: Any, out: Path) -> list[Path]:
    """``energy.json``, ``energy.md`` and the PNG plots of an estimate in ``out``; returns the paths written.

    Parameters
    ----------
    result
        An :class:`~mksgn.hw_profiles.estimate.EnergyResult` or its JSON-ready dict.
    out
        The report folder (created).
    """
    result = result.to_dict() if hasattr(result, "to_dict") else result
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "energy.json", out / "energy.md", out / "energy_ops.png", out / "energy_profiles.png"]
    atomic_write_text(paths[0], json.dumps(result, indent=1) + "\n")
    atomic_write_text(paths[1], render_markdown(result))
    plot_ops(result, paths[2])
    plot_profiles(result, paths[3])
    if result.get("ann"):
        paths.append(out / "energy_snn_vs_ann.png")
        plot_snn_vs_ann(result, paths[-1])
    return paths
