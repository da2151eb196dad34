"""Graphs written by snnTorch, sinabs and norse, through every backend against their own outputs.

For every fixture of ``tests/fixtures/frameworks`` (each framework's own NIR export, its input
and its own output): quantise it on its own inputs under its preset (``mksgn_preset`` in the
manifest), then ``mksgn-parity MODEL.nir MODEL.q.nir --input --expected`` with Lava in both tags
(:func:`mksgn.deploy.graph_parity.run_graph_parity`). Recorded per fixture: every exact pair's
mismatches of its compared spikes (executor in float32 = framework, float emulator = executor,
Lava float = executor, Lava fixed = fixed-point emulator), each backend's agreement with the
framework's outputs, float-vs-fixed spike and output agreement, the error budget, the decay
groups a stock deployment would need, the Lava processes that are not stock, and the seconds.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "frameworks"


def _fixture(name: str, entry: dict, folder: Path) -> dict:
    from mksgn.convert.graph_inputs import ArrayInputs
    from mksgn.convert.quantize_service import quantize_file
    from mksgn.core.nir_file import read_graph
    from mksgn.core.semantics import preset
    from mksgn.deploy.graph_parity import run_graph_parity
    from mksgn.deploy.run import load_model

    model, data = FIXTURES / f"{name}.nir", FIXTURES / f"{name}.npz"
    semantics = preset(entry["mksgn_preset"])
    start = time.perf_counter()
    q = folder / f"{name}.q.nir"
    summary = quantize_file(model, q, samples=1 << 30, semantics=semantics, arrays=data, graph=read_graph(model))
    reports = json.loads(Path(summary.report).read_text())["layers"]
    float_model = load_model(model, "reference", "floating_pt", semantics)
    fixed_model = load_model(q, "emulator", "fixed_pt", semantics)
    arrays = ArrayInputs.read(data, {n: float_model.sg.populations[n].shape for n in float_model.sg.inputs})
    result = run_graph_parity(float_model, fixed_model, arrays, str(data), progress=False)
    fvf = result.float_vs_fixed
    return {
        "framework": entry["framework"], "preset": entry["mksgn_preset"], "network": entry["network"],
        "measured_on": result.measured_on, "passed": result.passed,
        "pairs": {k: {"mismatches": p["mismatches"], "ties": p["ties"], "real": p["real"],
                      "compared_spikes": p["compared_spikes"]} for k, p in result.pairs.items()},
        "agreement_with_framework": {b: {o: v["agreement"] for o, v in per.items()}
                                     for b, per in result.framework_outputs.items()},
        "float_vs_fixed": {"spike_agreement": fvf["spike_agreement"], "output_agreement": fvf["output_agreement"],
                           "error_budget": fvf["error_budget"]},
        "decay_groups": {r["population"]: r["decay_groups"] for r in reports},
        "lava_non_stock": result.non_stock,
        "seconds": round(time.perf_counter() - start, 2),
    }


def run() -> dict:
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    with tempfile.TemporaryDirectory(prefix="mksgn-bench-frameworks-") as folder:
        fixtures = {name: _fixture(name, entry, Path(folder)) for name, entry in sorted(manifest.items())}
    exact = [p for f in fixtures.values() for p in f["pairs"].values()]
    return {
        "fixtures": fixtures,
        "all_passed": all(f["passed"] for f in fixtures.values()),
        "exact_pairs": len(exact), "exact_pair_mismatches": sum(p["mismatches"] for p in exact),
        "lava_fixed_agreement_with_framework_min": min(
            min(f["agreement_with_framework"]["lava_fixed_pt"].values()) for f in fixtures.values()),
    }
