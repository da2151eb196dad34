"""The energy report: a terminal table, Markdown, JSON-ready dicts and PNG plots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mksgn.atomic import atomic_write_text
from mksgn.figures import MIN_FONT, figure, save_png


def joules(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, f in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(value) >= f or unit == "pJ":
            return f"{value / f:.4g} {unit}"
    return f"{value:.3g} J"


def comparison(result: dict[str, Any], name: str) -> dict[str, Any] | None:
    """What profile ``name``'s row compares: the SNN on it vs the ANN on the baseline profile.

    Reads the ``comparison`` record of the estimate; an older ``energy.json`` without one gets it
    derived from the energies it holds (:func:`~mksgn.hw_profiles.estimator.compare`).
    """
    from mksgn.hw_profiles.estimator import compare

    p = result["profiles"][name]
    if "comparison" in p:
        return p["comparison"]
    base = result.get("baseline_profile")
    ann = (result["profiles"].get(base) or {}).get("ann")
    return compare(name, p.get("snn"), base, ann) if base else None


def saving(c: dict[str, Any] | None, short: bool = True) -> str:
    """A comparison's saving as a table cell: ``93.31 %``, ``incomplete (...)`` or ``n/a``."""
    if c is None:
        return "n/a"
    if not c["complete"]:
        if not short:
            return c["reason"]
        terms = "; ".join(f"{side.upper()} {', '.join(t)}" for side, t in c.get("unpriced", {}).items())
        return f"incomplete: {terms} unpriced" if terms else "incomplete"
    return f"{100 * c['reduction']:.2f} %"


def feature_cell(p: dict[str, Any], key: str) -> str:
    """``yes``, ``no`` or ``n/a`` (not applicable, or not stated: an older ``energy.json`` or a profile without it)."""
    f = (p.get("features") or {}).get(key)
    if not f or f["evidence"] == "not_applicable":
        return "n/a"
    return "yes" if f["value"] else "no"


def summary_rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per profile: SNN energy, ANN energy, what is compared and the saving, cores, chips, weight
    sharing and graded spikes."""
    rows = []
    for name, p in result["profiles"].items():
        snn, ann = p.get("snn"), p.get("ann")
        res = p.get("resources") or {}
        c = comparison(result, name)
        rows.append([name, p["kind"], joules(snn["total"]) if snn else "n/a", joules(ann["total"]) if ann else "n/a",
                     c["label"] if c else "-", saving(c),
                     str(res.get("cores")) if res.get("cores") is not None else "n/a",
                     str(res.get("chips")) if res.get("chips") is not None else "n/a",
                     f"{feature_cell(p, 'weight_sharing')} / {feature_cell(p, 'graded_spikes')}",
                     ", ".join(snn["unpriced"]) if snn and snn["unpriced"] else "-"])
    return rows


HEADER = ["profile", "kind", "SNN / sample", "ANN / sample", "compared", "SNN saves", "cores", "chips",
          "shared w / graded", "unpriced"]


def comparison_notes(result: dict[str, Any]) -> list[str]:
    """Sentences under the table: what the comparisons set against each other, which are incomplete."""
    base = result.get("baseline_profile")
    if not result.get("ann") or not base:
        return []
    what = (result["profiles"].get(base) or {}).get("description")
    out = [f"\"SNN saves\" is 1 - SNN / ANN per sample, with the student (SNN) on the row's profile and the ANN "
           f"baseline on {base}: only the {base} row compares both on the same hardware model; every other row sets a "
           f"chip's SNN energy against the ANN's energy on {base}" + (f" ({what})." if what else ".")]
    for name in result["profiles"]:
        c = comparison(result, name)
        if c and not c["complete"]:
            out.append(f"{c['label']} is {saving(c, short=False)}; no saving is stated for it.")
    return out


def terminal_table(result: dict[str, Any]) -> str:
    rows = [HEADER, *summary_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


RESOURCES_NOTE = ("Cores count synaptic memory: on a profile with weight sharing a convolution's kernel (or a joint "
                  "mix's map) is stored once in each core holding part of its layer, elsewhere once per synapse "
                  "instance. The energy above counts operations per event, one per spike and synapse instance, "
                  "shared weights or not: sharing saves memory, not operations. A graded population (a relay) is "
                  "not mappable on a profile without graded spikes.")


def _resources_line(name: str, p: dict[str, Any]) -> str:
    """The Resources line of one profile ("" for a profile without a resource map)."""
    r = p.get("resources")
    if not r or (r.get("cores") is None and not r.get("unmappable")):
        return ""
    split = ", ".join(f"`{x}`" for x in r["split_layers"]) or "none"
    bad = ", ".join(f"`{x['name']}` ({x['problem']})" for x in r["layers"] if x["problem"]) or "none"
    size = (f"{r['cores']} cores, {r['chips']} chip(s) at {r['weight_bits']}-bit weights"
            if r.get("cores") is not None else "no per-core limits")
    return (f"- **{name}** (weight sharing: {feature_cell(p, 'weight_sharing')}, graded spikes: "
            f"{feature_cell(p, 'graded_spikes')}): {size}; layers split over several cores: {split}; "
            f"not mappable: {bad}.")


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
    for note in comparison_notes(result):
        lines += ["", note]
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
    lines += ["", "## Resources", "", RESOURCES_NOTE, ""]
    lines += [line for name, p in result["profiles"].items() if (line := _resources_line(name, p))]
    lines += ["", "## Sources", ""]
    for name, p in result["profiles"].items():
        lines.append(f"- **{name}** ({p['description']}; `{p['path']}`):")
        for section, keys in p["quantities"].items():
            for key, q in keys.items():
                note = f" Note: {q['note']}" if q.get("note") else ""
                lines.append(f"  - {section}.{key} = {q['value']:g} {q['unit']} ({q['evidence']}): {q['source']}.{note}")
        for key, f in (p.get("features") or {}).items():
            note = f" Note: {f['note']}" if f.get("note") else ""
            lines.append(f"  - features.{key} = {str(f['value']).lower()} ({f['evidence']}): {f['source']}.{note}")
    lines += ["", "How the figures are computed: `mksgn.hw_profiles.estimator` (energy), "
              "`mksgn.hw_profiles.counts` (operations), `mksgn.hw_profiles.resources` (cores).", ""]
    return "\n".join(lines)


OP_KEYS = ("synaptic_ops", "graded_ops", "neuron_updates", "spikes")


def ops_figure(result: dict[str, Any]) -> Any:
    """Operations per layer and sample: one panel per kind, layers on the y-axis, log scale, zeros written as 0."""
    layers = result["counts"]["layers"]
    names = [x["name"] for x in layers]
    fig = figure(15.0, 0.27 * len(names) + 1.9, layout="constrained")
    axes = fig.subplots(1, len(OP_KEYS), sharey=True)
    y = np.arange(len(names))
    for i, (ax, key) in enumerate(zip(axes, OP_KEYS, strict=True)):
        values = np.array([float(layer[key]) for layer in layers])
        positive = values[values > 0]
        low = 10 ** np.floor(np.log10(positive.min())) / 2 if positive.size else 0.5
        high = 10 ** np.ceil(np.log10(positive.max())) * 2 if positive.size else 10.0
        ax.barh(y[values > 0], values[values > 0], color=f"C{i}", height=0.7)
        ax.set_xscale("log")
        ax.set_xlim(low, high)
        for row in y[values == 0]:
            ax.text(low * 1.15, row, "0", va="center", ha="left", fontsize=MIN_FONT, color="0.3")
        zeros = int((values == 0).sum())
        ax.set_title(key.replace("_", " ") + (f" (0 in {zeros} of {len(names)} layers)" if zeros else ""), fontsize=9)
        ax.set_xlabel("per sample (log scale)", fontsize=MIN_FONT)
        ax.tick_params(axis="x", labelsize=MIN_FONT)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, names, fontsize=MIN_FONT)
    axes[0].invert_yaxis()
    fig.suptitle(f"operations per layer and sample, measured on {result['counts']['measured_on']}; "
                 "a count of 0 is written as 0 (no bar on a log axis)", fontsize=9)
    return fig


def plot_ops(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write :func:`ops_figure` as PNG."""
    save_png(ops_figure(result), path)


def _mark_missing(ax: Any, x: float, text: str) -> None:
    """Write ``text`` at the foot of bar position ``x`` (a bar with no value on a log axis)."""
    ax.text(x, 0.01, text, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=MIN_FONT,
            rotation=90, color="0.35")


def profiles_figure(result: dict[str, Any]) -> Any:
    """Energy per sample per profile, the SNN beside the ANN baseline (log scale); incomplete SNN totals hatched."""
    from matplotlib.patches import Patch

    profiles = list(result["profiles"])
    fig = figure(max(7.0, 1.0 * len(profiles) + 2), 4.6)
    ax = fig.add_subplot(1, 1, 1)
    incomplete = False
    for i, name in enumerate(profiles):
        p = result["profiles"][name]
        snn, ann = p.get("snn"), p.get("ann")
        if snn:
            bad = bool(snn["unpriced"])
            incomplete |= bad
            ax.bar(i - 0.2, snn["total"], 0.4, color="tab:blue", hatch="//" if bad else None,
                   edgecolor="white" if bad else None)
        else:
            _mark_missing(ax, i - 0.2, "no SNN")
        if ann:
            ax.bar(i + 0.2, ann["total"], 0.4, color="tab:orange")
        else:
            _mark_missing(ax, i + 0.2, "no MAC cost")
    handles = [Patch(color="tab:blue", label="MK-SGN student, SNN (measured ops)"),
               Patch(color="tab:orange", label="ANN baseline (dense MACs)")]
    if incomplete:
        handles.append(Patch(facecolor="tab:blue", hatch="//", edgecolor="white",
                             label="SNN incomplete: a term unpriced (total too low)"))
    ax.set_yscale("log")
    ax.set_xticks(range(len(profiles)), profiles, fontsize=9)
    ax.set_ylabel("J per sample")
    ax.legend(handles=handles, fontsize=MIN_FONT)
    ax.set_title(f"energy per sample on each profile; SNN ops measured on {result['counts']['measured_on']}", fontsize=9)
    return fig


def plot_profiles(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write :func:`profiles_figure` as PNG."""
    save_png(profiles_figure(result), path)


def _comparison_text(c: dict[str, Any] | None) -> str:
    if c is None:
        return ""
    if not c["complete"]:
        return f"{saving(c)}:\ntotal too low, no comparison"
    red = c["reduction"]
    verb = f"saves {100 * red:.1f} % vs" if red >= 0 else f"costs {100 * -red:.1f} % more than"
    return f"{verb} ANN on {c['ann_profile']}"


def snn_vs_ann_figure(result: dict[str, Any]) -> Any:
    """The student's energy on each spiking profile against the ANN baseline on each ANN profile.

    Each SNN bar says what it is compared with (the ANN on the baseline profile) and by how much,
    or that the comparison is incomplete; incomplete totals are hatched.
    """
    base = result["baseline_profile"]
    bars = [(f"SNN on {p}", v["snn"]["total"], comparison(result, p)) for p, v in result["profiles"].items()
            if v.get("snn")]
    bars += [(f"ANN on {p}", v["ann"]["total"], None) for p, v in result["profiles"].items() if v.get("ann")]
    fig = figure(11.0, 0.45 * len(bars) + 2.0)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(bars))
    for row, (name, value, c) in zip(y, bars, strict=True):
        bad = c is not None and not c["complete"]
        ax.barh(row, value, 0.7, color="tab:blue" if name.startswith("SNN") else "tab:red",
                hatch="//" if bad else None, edgecolor="white" if bad else None)
        ax.text(1.02, row, _comparison_text(c), transform=ax.get_yaxis_transform(), va="center", ha="left",
                fontsize=MIN_FONT, color="darkred" if bad else "black")
    baseline = (result["profiles"].get(base) or {}).get("ann")
    if baseline:
        ax.axvline(baseline["total"], color="tab:red", linestyle="--", linewidth=1,
                   label=f"ANN on {base}: what every SNN is compared with")
        ax.legend(fontsize=MIN_FONT, loc="upper right")
    ax.set_xscale("log")
    ax.set_yticks(y, [n for n, _, _ in bars], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("J per sample (log scale)")
    ax.set_title(f"energy per sample: the student as SNN (blue) on each profile, the ANN baseline (red); hatched: "
                 f"incomplete (a term unpriced)\nSNN ops measured on {result['counts']['measured_on']}", fontsize=9)
    return fig


def plot_snn_vs_ann(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write :func:`snn_vs_ann_figure` as PNG."""
    save_png(snn_vs_ann_figure(result), path)


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
