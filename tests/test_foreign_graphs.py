"""Every command on graphs other frameworks wrote, fed arrays (``--input``), under their semantics.

The graphs and their frameworks' own outputs are the committed fixtures of
``tests/fixtures/frameworks`` (see ``test_frameworks.py``). The commands run in-process
through their ``main`` (the same code as the console scripts).
"""

from __future__ import annotations

import json
from pathlib import Path

import nir
import numpy as np
import pytest

from mksgn.convert import graph_options
from mksgn.core import semantics, timestep
from mksgn.core.nir_file import read_graph
from mksgn.core.semantics import from_metadata

FIXTURES = Path(__file__).parent / "fixtures" / "frameworks"


def fixture(name: str) -> tuple[str, str]:
    return str(FIXTURES / f"{name}.nir"), str(FIXTURES / f"{name}.npz")


def run_main(module, argv: list[str], capsys) -> tuple[int, str, str]:
    code = module.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_line_choices_are_the_cores():
    assert set(graph_options.PRESET_NAMES) == set(semantics.PRESETS)
    assert graph_options.FIELD_CHOICES == {"reset": semantics.RESETS, "threshold": semantics.THRESHOLDS,
                                           "spikes": semantics.SPIKES, "recurrent_initial": semantics.RECURRENT_INITIAL,
                                           "current_input": semantics.CURRENT_INPUTS,
                                           "discretisation": timestep.DISCRETISATIONS}


@pytest.mark.parametrize("backend", ["reference", "emulator", pytest.param("lava", marks=pytest.mark.lava)])
def test_run_on_arrays_gives_the_frameworks_outputs(tmp_path, capsys, backend):
    """``mksgn-run`` on a framework's graph and arrays, to the end, on every backend (Lava: ``floating_pt``)."""
    from mksgn.deploy import run_cli

    model, data = fixture("sinabs_mlp")
    saved, record = tmp_path / "y.npz", tmp_path / "run.json"
    code, out, err = run_main(run_cli, [model, "--input", data, "--semantics", "sinabs-from-model", "--backend", backend,
                                        "--save-outputs", str(saved), "-o", str(record), "--quiet"], capsys)
    assert code == 0, err
    assert err == ""  # the preset states dt: no warning
    np.testing.assert_array_equal(np.load(saved)["output"], np.load(data)["output"])
    rec = json.loads(record.read_text())
    assert rec["backend"] == backend and rec["tag"] == ("float64" if backend == "reference" else "floating_pt")
    assert rec["accuracy"] is None and rec["measured_on"].startswith(f"3 rows of {data} (16 steps)")
    assert rec["semantics"].startswith("sinabs-from-model: dt=1 (exponential), reset subtract, spike if v >= ")
    assert rec["binary_inputs"] == {"input": False}
    assert "outputs on 3 rows" in out


def test_a_graph_without_dt_runs_with_a_one_line_warning_naming_the_default(capsys):
    from mksgn.deploy import run_cli

    model, data = fixture("snntorch_mlp_zero")
    code, _, err = run_main(run_cli, [model, "--input", data, "--backend", "reference", "--quiet"], capsys)
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mksgn-run: warning: ") and "states no dt" in lines[0]
    assert "dt=0.0001" in lines[0] and "--semantics" in lines[0]


def test_quantize_calibrates_on_the_arrays_and_stores_the_semantics(tmp_path, capsys):
    from mksgn.convert import quantize_cli
    from mksgn.deploy import run_cli

    model, data = fixture("snntorch_mlp_zero")
    q = tmp_path / "m.q.nir"
    code, out, err = run_main(quantize_cli, [model, "-o", str(q), "--input", data, "--semantics", "snntorch-zero"],
                              capsys)
    assert code == 0, err
    assert f"calibrated on 3 rows of {data} (16 steps)" in out
    stored = from_metadata(read_graph(q).metadata)
    assert stored.preset == "snntorch-zero" and stored.dt == 1e-4 and stored.recurrent_initial == "bias"
    saved = tmp_path / "y.npz"
    code, _, err = run_main(run_cli, [str(q), "--input", data, "--save-outputs", str(saved), "--quiet"], capsys)
    assert code == 0 and err == ""  # the quantised graph states its semantics: later commands agree, silently
    fixed, framework = np.load(saved)["output"], np.load(data)["output"]
    assert fixed.shape == framework.shape and (fixed == framework).mean() > 0.9  # quantisation's own error
    code, _, err = run_main(run_cli, [str(q), "--input", data, "--semantics", "nir", "--quiet"], capsys)
    assert code == 2 and "quantised under snntorch-zero" in err and "quantise the float graph again" in err


def test_a_wrong_dt_that_zeroes_every_weight_is_refused_not_written(tmp_path, capsys):
    from mksgn.convert import quantize_cli

    model, data = fixture("sinabs_conv")
    q = tmp_path / "c.q.nir"
    code, _, err = run_main(quantize_cli, [model, "-o", str(q), "--input", data], capsys)  # NIR's reading, dt 1e-4
    assert code == 2 and not q.exists()
    error = [line for line in err.splitlines() if "error" in line]
    assert len(error) == 1 and "synapse 'input->1'" in error[0] and "round to 0" in error[0] and "dt" in error[0]
    code, _, err = run_main(quantize_cli, [model, "-o", str(q), "--input", data, "--semantics", "sinabs-from-model"],
                            capsys)
    assert code == 0 and q.is_file(), err  # at sinabs' dt the weights hold


def test_energy_counts_binary_inputs_as_synaptic_events(tmp_path, capsys):
    from mksgn.hw_profiles import energy_cli

    model, data = fixture("sinabs_conv")  # its input is binary spikes
    code, out, err = run_main(energy_cli, [model, "--input", data, "--semantics", "sinabs-from-model", "--tag",
                                           "floating_pt", "--profile", "loihi2", "-o", str(tmp_path), "--quiet"],
                              capsys)
    assert code == 0, err
    counts = json.loads((tmp_path / "energy.json").read_text())["counts"]
    assert counts["measured_on"] == f"3 rows of {data} (16 steps)"
    first = next(layer for layer in counts["layers"] if layer["name"] == "1")
    assert first["graded_ops"] == 0 and first["synaptic_ops"] > 0
    code, _, err = run_main(energy_cli, [model, "--input", data, "--semantics", "sinabs-from-model", "--tag",
                                         "floating_pt", "--teacher-config", "tiny", "--quiet"], capsys)
    assert code == 2 and "--onnx" in err


def test_parity_against_the_frameworks_own_outputs_through_lava(tmp_path, capsys):
    from mksgn.convert import quantize_cli
    from mksgn.deploy import parity_cli

    model, data = fixture("snntorch_mlp_zero")
    q = tmp_path / "m.q.nir"
    assert run_main(quantize_cli, [model, "-o", str(q), "--input", data, "--semantics", "snntorch-zero"], capsys)[0] == 0
    code, out, err = run_main(parity_cli, [model, str(q), "--input", data, "--expected", data, "--semantics",
                                           "snntorch-zero", "-o", str(tmp_path / "parity"), "--quiet"], capsys)
    assert code == 0, out + err
    record = json.loads((tmp_path / "parity" / "parity.json").read_text())
    pairs = record["pairs"]
    assert set(pairs) == {"executor_float32 = framework", "executor = emulator_floating_pt",
                          "executor = lava_floating_pt", "emulator_fixed_pt = lava_fixed_pt"}
    assert all(p["mismatches"] == 0 and p["compared_spikes"] > 0 for p in pairs.values())
    framework = record["framework_outputs"]
    assert framework["executor"]["output"]["agreement"] == 1.0
    assert framework["lava_fixed_pt"]["output"] == framework["emulator_fixed_pt"]["output"]
    assert 0.9 < framework["emulator_fixed_pt"]["output"]["agreement"] <= 1.0
    assert set(record["float_vs_fixed"]["error_budget"]) >= {"graded inputs", "neuron parameters", "all"}
    assert (tmp_path / "parity" / "parity_heatmap.png").is_file()
    assert "framework's own outputs" in (tmp_path / "parity" / "parity.md").read_text()


def test_bad_arrays_are_one_line_naming_the_file_and_array(tmp_path, capsys):
    from mksgn.deploy import parity_cli, run_cli

    model, data = fixture("snntorch_mlp_zero")
    x = np.load(data)["input"]
    cases = {"nan.npz": {"input": np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x)},
             "shape.npz": {"input": x[:, :, :3]}, "two.npz": {"a": x, "b": x}}
    expected = {"nan.npz": "array 'input' has 1 non-finite values", "shape.npz": "needs (T, B, 8)",
                "two.npz": "no array for the graph's Input nodes ['input']"}
    for name, arrays in cases.items():
        np.savez(tmp_path / name, **arrays)
        code, _, err = run_main(run_cli, [model, "--input", str(tmp_path / name), "--semantics", "snntorch-zero",
                                          "--quiet"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert str(tmp_path / name) in err and expected[name] in err, err
    (tmp_path / "graph.npz").write_bytes(Path(model).read_bytes())
    code, _, err = run_main(run_cli, [model, "--input", str(tmp_path / "graph.npz"), "--quiet"], capsys)
    assert code == 2 and "not an .npz archive" in err
    for argv, needle in (([model, "--expected", data], "--expected needs --input"),
                         ([model, "a.nir", "b.nir", "--input", data], "with --input: expected MODEL.nir")):
        with pytest.raises(SystemExit):
            parity_cli.build_parser().parse_args(argv)
        assert needle in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli.build_parser().parse_args([model, "--save-outputs", str(tmp_path / "y.npz")])
    assert "--save-outputs needs --input" in capsys.readouterr().err


def test_the_norse_conv_net_runs_in_lava_fixed_point_equal_to_the_emulator(tmp_path, capsys):
    """A conv net from norse (CubaLIF, the input jumping into the current), quantised on its own inputs."""
    from mksgn.convert import quantize_cli
    from mksgn.deploy import parity_cli

    model, data = fixture("norse_conv")
    q = tmp_path / "n.q.nir"
    code, _, err = run_main(quantize_cli, [model, "-o", str(q), "--input", data, "--semantics", "norse"], capsys)
    assert code == 0, err
    code, out, err = run_main(parity_cli, [model, str(q), "--input", data, "--expected", data, "--semantics", "norse",
                                           "--limit", "1", "-o", str(tmp_path / "p"), "--quiet"], capsys)
    record = json.loads((tmp_path / "p" / "parity.json").read_text())
    assert code == 0, out + err
    assert record["pairs"]["emulator_fixed_pt = lava_fixed_pt"]["mismatches"] == 0
    assert record["pairs"]["executor_float32 = framework"]["mismatches"] == 0


def test_graphs_are_never_modified_by_the_commands():
    model, _ = fixture("sinabs_mlp")
    assert "neuron_semantics" not in (read_graph(model).metadata or {})
    assert isinstance(read_graph(model), nir.NIRGraph)


def test_a_file_of_an_older_nir_with_scalar_fields_is_quantised_and_written(tmp_path, capsys):
    """norse's default parameters are 0-d fields (and nir 1.0.8 reads the v_reset a nir 1.0.4 file lacks as
    a 0-d array), which nir's own compressed write refuses."""
    from mksgn.convert import quantize_cli

    model, data = fixture("norse_mlp_scalar")
    q = tmp_path / "s.q.nir"
    code, _, err = run_main(quantize_cli, [model, "-o", str(q), "--input", data, "--semantics", "norse"], capsys)
    assert code == 0, err
    assert from_metadata(read_graph(q).metadata).preset == "norse"


def test_ties_are_measured_against_each_neurons_own_threshold():
    """The fused population's thresholds are made one (scaled); the executor's membranes are in the file's units."""
    from mksgn.core.fuse import fuse
    from mksgn.core.semantics import preset
    from mksgn.deploy.graph_parity import _thresholds

    model, _ = fixture("snntorch_per_neuron")
    graph = read_graph(model)
    sg = fuse(graph, semantics=preset("snntorch"))
    thresholds = _thresholds(graph, sg, ["1"])["1"].numpy()
    np.testing.assert_array_equal(thresholds, np.asarray(graph.nodes["1"].v_threshold, dtype=np.float64))
    assert np.unique(sg.populations["1"].threshold).size == 1 and np.unique(thresholds).size > 1


def test_a_quantised_file_without_stored_semantics_refuses_others(tmp_path):
    """Files quantised before semantics were stored ran under NIR's reading: another preset is refused."""
    from mksgn.convert.quantize import QuantizeError, quantized_synapse_graph
    from mksgn.core.nir_file import write_graph
    from mksgn.core.semantics import preset
    from mksgn.deploy import run_cli

    model, data = fixture("snntorch_mlp_zero")
    q = tmp_path / "m.q.nir"
    assert run_cli.main([model, "--input", data, "--quiet"]) == 0  # smoke: the float graph runs
    from mksgn.convert import quantize_cli

    assert quantize_cli.main([model, "-o", str(q), "--input", data, "--dt", "1e-4"]) == 0
    graph = read_graph(q)
    meta = {k: v for k, v in graph.metadata.items() if k != "neuron_semantics"}
    old = nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=meta, type_check=False)
    write_graph(old, tmp_path / "old.q.nir")
    assert quantized_synapse_graph(old, "old.q.nir").semantics.preset == "nir"
    with pytest.raises(QuantizeError, match="quantised under nir"):
        quantized_synapse_graph(old, "old.q.nir", preset("sinabs"))


def test_semantics_flags_without_input_are_a_usage_error(capsys):
    from mksgn.deploy import parity_cli

    for extra in (["--semantics", "sinabs"], ["--dt", "1"], ["--reset", "subtract"]):
        with pytest.raises(SystemExit):
            parity_cli.build_parser().parse_args(["a.pt", "b.nir", *extra])
        assert "with --input only" in capsys.readouterr().err
