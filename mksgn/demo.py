"""``mksgn-demo``: the whole pipeline on the built-in data, with a report.

Each stage writes its outputs into the run folder and then, last, a JSON record
``stages/<name>.json`` of what it measured; a stage whose record exists is skipped on a
re-run unless ``--force``. The report ``report.md`` is rebuilt from the records, so every
number in it comes from this run folder.

Stages so far: ``data`` (generate the built-in dataset as CTR-GCN npz), ``inspect``
(class counts, shapes, value ranges, a PNG strip of one sample) and ``train`` (teacher and
distilled student, config ``tiny``) and ``export`` (NIR graph, validated spike for spike).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mksgn.atomic import atomic_write_text
from mksgn.cli import add_out_option, command_parser, run_cli
from mksgn.errors import MksgnError

PROG = "mksgn-demo"


@dataclass(frozen=True)
class Stage:
    """One step of the demo: ``run(out_dir) -> record`` (a JSON-ready dict).

    ``outputs`` (relative to the run folder) are removed before a forced re-run; an
    unfinished stage resumes from what it left (training continues its checkpoints).
    """

    name: str
    description: str
    run: Callable[[Path], dict]
    outputs: tuple[str, ...] = ()


def _stage_data(out: Path) -> dict:
    from mksgn.data.builtin import BuiltinSpec, write_builtin

    spec = BuiltinSpec()
    start = time.perf_counter()
    path = write_builtin(out / "data.npz", spec)
    return {"path": path.name, "spec": spec.__dict__, "seconds": round(time.perf_counter() - start, 2)}


def _stage_inspect(out: Path) -> dict:
    from mksgn.data.data_report import plot_sample_strip, summarise
    from mksgn.data.readers.ctrgcn_npz import read_ctrgcn_npz

    splits = read_ctrgcn_npz(out / "data.npz")
    summary = summarise(splits, "data.npz")
    strips = []
    for label in range(min(4, splits.train.num_classes)):
        index = int((splits.train.labels == label).nonzero()[0][0])
        png = f"inspect/train{index}.png"
        plot_sample_strip(splits.train, index, out / png)
        strips.append({"sample": index, "class": splits.train.class_names[label], "png": png})
    return {"summary": summary, "strips": strips}


def _stage_train(out: Path) -> dict:
    from mksgn.train.config import preset
    from mksgn.train.run import train_run

    cfg = preset("tiny")
    results = train_run(cfg, out / "train", data_path=str(out / "data.npz"), seed=0, device="cpu", resume=True)
    record: dict = {"config": cfg.name, "folder": "train"}
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    for kind in ("teacher", "student"):
        if kind in results:
            res = results[kind]
            record[kind] = {**{k: res[k] for k in ("top1", "top5", "epoch", "samples", "measured_on", "val_top1")},
                            "last_epoch": res["last_epoch"], "epochs_trained": len(metrics[kind]["epochs"]),
                            "stopped_early": metrics[kind].get("stopped_early")}
    record["baseline"] = {k: metrics["baseline"][k] for k in ("model", "top1", "val_top1", "measured_on")}
    record["validation"] = results["student"]["chosen_on"]
    record["epoch_seconds"] = {k: round(sum(e["train"]["seconds"] for e in v["epochs"]), 1)
                               for k, v in metrics.items() if "epochs" in v}
    record["spike_rate"] = metrics["student"]["epochs"][-1]["val"]["spike_rate"]
    return record


SNAPPED = "student_snapped.pt"
"""The student snapped onto the fixed-point grid: what the demo exports and deploys."""


def _stage_snap(out: Path) -> dict:
    from mksgn.convert.snap_service import snap_checkpoint, write_snapped

    snapped = snap_checkpoint(out / "train" / "student_best.pt", data=str(out / "data.npz"))
    record = write_snapped(snapped, out / SNAPPED)
    keep = ("calibrated_on", "input_bits", "weights_changed", "weights_zeroed", "biases_changed", "exact_steps",
            "time_steps", "measured_on", "top1_float", "top1_snapped", "predictions_changed", "seconds")
    return {"checkpoint": SNAPPED, **{k: record[k] for k in keep}}


def _stage_export(out: Path) -> dict:
    from mksgn.convert.export_service import export_checkpoint

    record = export_checkpoint(str(out / SNAPPED), out / "student.nir",
                               data=str(out / "data.npz"), log=lambda _m: None).to_dict()
    return {
        "checkpoint": SNAPPED,
        "graph": "student.nir", "nodes": record["nodes"], "edges": record["edges"], "seconds": record["seconds"],
        "validated_on": record["validated_on"],
        "parity": {k: {f: record[k][f] for f in ("rows", "steps", "mismatches", "ties", "real", "logit_max_abs_diff")}
                   for k in ("parity_float64", "parity_float32")},
    }


def _stage_quantize(out: Path) -> dict:
    from mksgn.convert.quantize_service import quantize_file

    record = quantize_file(out / "student.nir", out / "student.q.nir", data=str(out / "data.npz")).to_dict()
    record["graph"], record["report"] = "student.q.nir", "student.q.quantization.md"
    return record


def _stage_emulate(out: Path) -> dict:
    from mksgn.deploy.run import load_model, run
    from mksgn.data.builtin import load_dataset

    record: dict = {}
    runs = {"fixed_pt": ("student.q.nir", "run_fixed_pt.json"), "floating_pt": ("student.nir", "run_floating_pt.json")}
    results = {}
    test = load_dataset(str(out / "data.npz")).test
    for tag, (model, name) in runs.items():
        res = run(load_model(out / model, "emulator", tag), test, "emulator", tag, "aligned", None, 64, "cpu",
                  progress=True).to_dict()
        atomic_write_text(out / name, json.dumps(res, indent=1) + "\n")
        results[tag] = res
        record[tag] = {"file": name, **{k: res[k] for k in ("accuracy", "measured_on", "spikes_per_sample",
                                                            "synops_per_sample", "seconds")}}
    a, b = results["fixed_pt"]["predictions"], results["floating_pt"]["predictions"]
    record["prediction_agreement"] = sum(x == y for x, y in zip(a, b, strict=True)) / max(len(a), 1)
    return record


class DemoError(MksgnError):
    """A demo stage that failed; names the command."""


LAVA_SAMPLES = 3
"""Test samples run on Lava (each person row takes about 8 s per arithmetic on 2 cores)."""


def _fresh_python(module: str, *args: str) -> None:
    """Run an mksgn command in a fresh interpreter: Lava forks one OS process per Lava process,
    and forking this one (it holds the whole training run's heap) makes every fork slow."""
    proc = subprocess.run([sys.executable, "-m", module, *args], text=True)
    if proc.returncode not in (0, 1):  # 1: mksgn-parity found a mismatch, which the report shows
        raise DemoError(f"{module} {' '.join(args)} failed with exit status {proc.returncode}")


def _stage_lava(out: Path) -> dict:
    record: dict = {}
    runs = {"fixed_pt": ("student.q.nir", "run_lava_fixed_pt.json"),
            "floating_pt": ("student.nir", "run_lava_floating_pt.json")}
    for tag, (model, name) in runs.items():
        _fresh_python("mksgn.deploy.run_cli", str(out / model), "--data", str(out / "data.npz"), "--backend", "lava",
                      "--tag", tag, "--limit", str(LAVA_SAMPLES), "--batch", "1", "--device", "cpu",
                      "--out", str(out / name))
        res = json.loads((out / name).read_text())
        emulated = json.loads((out / f"run_{tag}.json").read_text())
        same = res["predictions"] == emulated["predictions"][:LAVA_SAMPLES]
        record[tag] = {"file": name, "accuracy": res["accuracy"], "measured_on": res["measured_on"],
                       "seconds": res["seconds"], "predictions": res["predictions"],
                       "predictions_equal_emulator": same}
    return record


PARITY_SAMPLES = 4
"""Test samples compared across all five backends in the demo (Lava runs dominate its time)."""


def _stage_parity(out: Path) -> dict:
    _fresh_python("mksgn.deploy.parity_cli", str(out / SNAPPED), str(out / "student.nir"),
                  str(out / "student.q.nir"), "--data", str(out / "data.npz"), "--limit", str(PARITY_SAMPLES),
                  "--out", str(out / "parity"))
    result = json.loads((out / "parity" / "parity.json").read_text())
    pairs = {name: {k: p[k] for k in ("compared_spikes", "mismatches", "ties", "propagated", "real")}
             for name, p in result["pairs"].items()}
    fvf = result["float_vs_fixed"] or {}
    return {"folder": "parity", "passed": result["passed"], "measured_on": result["measured_on"], "pairs": pairs,
            "latency": result["lava_latency_steps"], "spike_agreement": fvf.get("spike_agreement"),
            "prediction_agreement": fvf.get("prediction_agreement")}


ENERGY_SAMPLES = 64
"""Test samples whose measured operations the demo's energy estimate uses."""


def _stage_energy(out: Path) -> dict:
    from mksgn.deploy.run import load_model
    from mksgn.hw_profiles.estimate import estimate
    from mksgn.hw_profiles.report import write_report
    from mksgn.data.builtin import load_dataset

    loaded = load_model(out / "student.q.nir", "emulator", "fixed_pt")
    result = estimate(loaded, load_dataset(str(out / "data.npz")).test, ENERGY_SAMPLES, "emulator",
                      teacher=out / "train" / "teacher_best.pt").to_dict()
    write_report(result, out / "energy")
    profiles = {name: {"kind": p["kind"], "snn_joules": (p["snn"] or {}).get("total"),
                       "ann_joules": (p["ann"] or {}).get("total"),
                       "reduction_vs_baseline": p["reduction_vs_baseline"], "comparison": p.get("comparison"),
                       "cores": (p["resources"] or {}).get("cores"), "chips": (p["resources"] or {}).get("chips")}
                for name, p in result["profiles"].items()}
    return {"folder": "energy", "measured_on": result["counts"]["measured_on"], "profiles": profiles,
            "ann_macs_per_row": result["ann"]["macs_per_row"], "totals": result["counts"]["totals"]}


STAGES: tuple[Stage, ...] = (
    Stage("data", "generate the built-in dataset (CTR-GCN npz)", _stage_data, ("data.npz",)),
    Stage("inspect", "dataset summary and skeleton strips", _stage_inspect, ("inspect",)),
    Stage("train", "train the teacher and the distilled student (tiny)", _stage_train, ("train",)),
    Stage("snap", "snap the student onto Loihi's fixed-point grid (mksgn-snap)", _stage_snap,
          (SNAPPED, "student_snapped.snap.json")),
    Stage("export", "export the snapped student to NIR, validated spike for spike", _stage_export,
          ("student.nir", "student.parity.json")),
    Stage("quantize", "quantise the student to Loihi fixed point (mksgn-quantize)", _stage_quantize,
          ("student.q.nir", "student.q.quantization.json", "student.q.quantization.md")),
    Stage("emulate", "run the emulator on the whole test split, fixed and floating point (mksgn-run)",
          _stage_emulate, ("run_fixed_pt.json", "run_floating_pt.json")),
    Stage("lava", f"run Lava fixed_pt and floating_pt on {LAVA_SAMPLES} test samples", _stage_lava,
          ("run_lava_fixed_pt.json", "run_lava_floating_pt.json")),
    Stage("parity", f"spike parity of all five backends on {PARITY_SAMPLES} test samples (mksgn-parity)",
          _stage_parity, ("parity",)),
    Stage("energy", f"energy per hardware profile from the operations of {ENERGY_SAMPLES} test samples (mksgn-energy)",
          _stage_energy, ("energy",)),
)


def run_demo(out: Path, force: bool = False, log: Callable[[str], None] = print) -> dict[str, dict]:
    """Run every stage into ``out`` (skipping finished ones) and write ``report.md``."""
    records: dict[str, dict] = {}
    for stage in STAGES:
        marker = out / "stages" / f"{stage.name}.json"
        if marker.is_file() and not force:
            log(f"[{stage.name}] done already ({marker}); --force redoes it")
            records[stage.name] = json.loads(marker.read_text())
            continue
        if force:
            for rel in stage.outputs:
                target = out / rel
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        log(f"[{stage.name}] {stage.description} ...")
        start = time.perf_counter()
        record = stage.run(out)
        record["stage_seconds"] = round(time.perf_counter() - start, 2)
        atomic_write_text(marker, json.dumps(record, indent=2) + "\n")
        records[stage.name] = record
        log(f"[{stage.name}] finished in {record['stage_seconds']} s")
    atomic_write_text(out / "report.md", render_report(records))
    log(f"report: {out / 'report.md'}")
    return records


def _data_section(data: dict) -> list[str]:
    lines: list[str] = []
    spec = data["spec"]
    lines += [
        "## Data",
        "",
        f"Built-in procedural dataset, written as CTR-GCN npz (`{data['path']}`): {spec['samples']} samples, "
        f"seed {spec['seed']}, {spec['frames']} frames, difficulty {spec['difficulty']}; generated in "
        f"{data['seconds']} s.",
        "",
    ]
    return lines


def _inspect_section(inspect: dict) -> list[str]:
    from mksgn.data.data_report import format_summary

    lines: list[str] = []
    lines += ["```", format_summary(inspect["summary"]), "```", ""]
    for strip in inspect["strips"]:
        lines += [f"![{strip['class']} (train sample {strip['sample']})]({strip['png']})", ""]
    return lines


def _train_section(train: dict) -> list[str]:
    lines: list[str] = []
    lines += [
        "## Training",
        "",
        f"Config `{train['config']}`; training time (excluding evaluation): "
        + ", ".join(f"{k} {v} s" for k, v in train["epoch_seconds"].items()) + ".",
        "",
        f"Each network's checkpoint is the epoch with the best validation top-1: {train['validation']}.",
        "The test split is evaluated once, at the end, on that checkpoint and on the last epoch's.",
        "",
        "| model | test top-1 | test top-5 | chosen epoch (val top-1) | last epoch: test top-1 | measured on |",
        "|---|---|---|---|---|---|",
    ]
    base = train["baseline"]
    lines.append(f"| linear baseline | {base['top1']:.3f} | | (val {base['val_top1']:.3f}) | | {base['measured_on']} |")
    for kind in ("teacher", "student"):
        if kind in train:
            r, last = train[kind], train[kind]["last_epoch"]
            early = f", stopped early after {r['epochs_trained']}" if r.get("stopped_early") else ""
            lines.append(f"| {kind} | {r['top1']:.3f} | {r['top5']:.3f} | {r['epoch']} ({r['val_top1']:.3f}) | "
                         f"{last['epoch']}{early}: {last['top1']:.3f} | {r['measured_on']} |")
    lines += ["", f"Linear baseline: {base['model']}.",
              "", "![training curves](train/training_curves.png)", "",
              "![student confusion matrix](train/confusion_student.png)", "",
              "Student spike rate per LIF population (last epoch, validation split):", "",
              "| layer | spike rate |", "|---|---|"]
    lines += [f"| `{k}` | {v:.3f} |" for k, v in train["spike_rate"].items()]
    lines.append("")
    return lines


def _snap_section(snapped: dict) -> list[str]:
    lines: list[str] = []
    lines += [
        "## Snapping onto the fixed-point grid",
        "",
        f"`{snapped['checkpoint']}` (`mksgn-snap`): the student in deployment form (one module per Loihi "
        f"synapse) with every weight, bias and input rounded onto dyadic fixed-point scales calibrated on "
        f"{snapped['calibrated_on']} ({snapped['weights_changed']} weights rounded, {snapped['weights_zeroed']} "
        f"of them to zero; {snapped['input_bits']}-bit graded inputs). Its float and fixed-point models compute "
        f"the same integers (state arithmetic exact for {min(snapped['exact_steps'], 10**6)} steps, T = "
        f"{snapped['time_steps']}); everything below deploys it.",
        "",
    ]
    if "top1_float" in snapped:
        lines += [f"Top-1 {snapped['top1_float']:.4f} trained -> {snapped['top1_snapped']:.4f} snapped; snapping "
                  f"changed {snapped['predictions_changed']} predictions ({snapped['measured_on']}).", ""]
    return lines


def _export_section(export: dict) -> list[str]:
    lines: list[str] = []
    lines += [
        "## Export to NIR",
        "",
        f"`{export['graph']}` (from `{export.get('checkpoint', 'train/student_best.pt')}`): {export['nodes']} "
        f"nodes, {export['edges']} edges, exported and validated in "
        f"{export['seconds']} s. The reference NIR executor against the snnTorch student on "
        f"{export['validated_on']}, every LIF node at every step:",
        "",
        "| dtype | person rows | steps | mismatching spikes | rounding ties | real | max logit difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, p in export["parity"].items():
        lines.append(f"| {key.split('_')[1]} | {p['rows']} | {p['steps']} | {p['mismatches']} | {p['ties']} | "
                     f"{p['real']} | {p['logit_max_abs_diff']:.2e} |")
    lines.append("")
    return lines


def _quantize_section(quant: dict) -> list[str]:
    lines: list[str] = []
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(quant["synapse_kinds"].items()))
    lines += [
        "## Loihi quantisation",
        "",
        f"`{quant['graph']}`: {quant['populations']} populations and {quant['synapses']} synapses ({kinds}); "
        f"8-bit weights, {quant['input_bits']}-bit graded inputs, calibrated on {quant['calibrated_on']}; "
        f"{quant['clipped_weights']} clipped weights, {quant['saturated_states']} saturated states on the "
        f"calibration data ({quant['seconds']} s). Per layer: [{quant['report']}]({quant['report']}).",
        "",
    ]
    return lines


def _emulate_section(emu: dict) -> list[str]:
    lines: list[str] = []
    lines += ["## Emulator", "", "| arithmetic | top-1 | spikes per sample | synaptic ops per sample | seconds "
              "| measured on |", "|---|---|---|---|---|---|"]
    for tag in ("floating_pt", "fixed_pt"):
        r = emu[tag]
        lines.append(f"| {tag} | {r['accuracy']:.4f} | {r['spikes_per_sample']:.0f} | "
                     f"{r['synops_per_sample']:.4g} | {r['seconds']:.1f} | {r['measured_on']} |")
    lines += ["", f"Fixed-point and floating-point predictions agree on {emu['prediction_agreement']:.1%} of the "
              "samples.", ""]
    return lines


def _lava_section(lava: dict) -> list[str]:
    lines: list[str] = []
    lines += ["## Lava", "", "| tag | predictions | equal to the emulator's | seconds | measured on |",
              "|---|---|---|---|---|"]
    for tag in ("fixed_pt", "floating_pt"):
        r = lava[tag]
        lines.append(f"| {tag} | {r['predictions']} | {'yes' if r['predictions_equal_emulator'] else 'NO'} | "
                     f"{r['seconds']:.1f} | {r['measured_on']} |")
    lines.append("")
    return lines


def _parity_section(parity: dict) -> list[str]:
    lines: list[str] = []
    lines += ["## Spike parity", "", f"{'PASS' if parity['passed'] else 'FAIL'} on {parity['measured_on']} "
              f"(Lava latency {parity['latency']} steps, aligned away). Details: "
              "[parity/parity.md](parity/parity.md).", "",
              "| pair | compared spikes | mismatches | rounding ties | propagated | real |", "|---|---|---|---|---|---|"]
    for name, p in parity["pairs"].items():
        lines.append(f"| {name} | {p['compared_spikes']} | {p['mismatches']} | {p['ties']} | {p['propagated']} | "
                     f"{p['real']} |")
    if parity.get("prediction_agreement") is not None:
        lines += ["", f"Float vs fixed point: spike agreement {parity['spike_agreement']:.4f}, prediction agreement "
                  f"{parity['prediction_agreement']:.4f}."]
    lines += ["", "![parity heatmap](parity/parity_heatmap.png)", ""]
    return lines


def _energy_section(energy: dict) -> list[str]:
    lines: list[str] = []
    from mksgn.hw_profiles.report import joules, saving

    t = energy["totals"]
    lines += ["## Energy", "", f"Operations of the fixed-point student measured on {energy['measured_on']}: per "
              f"sample {t['synaptic_ops']:.4g} synaptic ops, {t['graded_ops']:.4g} graded-input ops, "
              f"{t['spikes']:.4g} spikes. ANN baseline: the trained teacher, "
              f"{energy['ann_macs_per_row'] / 1e9:.4g} G MACs per person row. Sources and per-layer figures: "
              "[energy/energy.md](energy/energy.md).", "",
              "| profile | SNN per sample | ANN per sample | compared | SNN saves | cores | chips |",
              "|---|---|---|---|---|---|---|"]
    for name, p in energy["profiles"].items():
        c = p.get("comparison")
        lines.append(f"| {name} | {joules(p['snn_joules'])} | {joules(p['ann_joules'])} | {c['label'] if c else '-'} | "
                     f"{saving(c)} | {p['cores'] or 'n/a'} | {p['chips'] or 'n/a'} |")
    lines += ["", "\"SNN saves\" is 1 - SNN / ANN per sample, the student on the row's profile against the ANN baseline "
              "on cmos45nm (45 nm CMOS arithmetic): only the cmos45nm row compares both on the same hardware model. "
              "\"incomplete\": the profile gives no cost for an operation the student performed, so its total is too "
              "low and no saving is stated."]
    lines += ["", "![operations per layer](energy/energy_ops.png)", "",
              "![energy per profile](energy/energy_profiles.png)", "",
              "![SNN vs ANN](energy/energy_snn_vs_ann.png)", ""]
    return lines

SECTIONS = {
    "data": _data_section,
    "inspect": _inspect_section,
    "train": _train_section,
    "snap": _snap_section,
    "export": _export_section,
    "quantize": _quantize_section,
    "emulate": _emulate_section,
    "lava": _lava_section,
    "parity": _parity_section,
    "energy": _energy_section,
}
"""Report section per stage, in report order."""


def render_report(records: dict[str, dict]) -> str:
    """The Markdown report from the stage records: one section per finished stage."""
    lines = ["# mksgn demo report", ""]
    for stage, section in SECTIONS.items():
        if records.get(stage):
            lines += section(records[stage])
    return "\n".join(lines)


def _main(argv: Sequence[str] | None) -> int:
    parser = command_parser(PROG, "Run the mksgn pipeline on the built-in data and write a report.")
    add_out_option(parser, "run folder (default %(default)s)", "folder", default=Path("runs/demo"))
    parser.add_argument("--force", action="store_true", help="redo finished stages")
    args = parser.parse_args(argv)
    run_demo(args.out, args.force)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mksgn-demo``."""
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
