"""A model's input normalisation travels from its checkpoint into its graph and back into the inputs
every later command feeds it (export, ONNX, mksgn-run / parity / energy through the graph's inputs).

Graphs and checkpoints from before the normalisation existed read as ``"none"``.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from helpers import lively_tiny_student, synth_small_npz

from mksgn.convert.graph_inputs import GraphInputError, InputSpec, batches
from mksgn.convert.nir_export import export_student
from mksgn.core.nir_file import decode_metadata, encode_metadata, read_graph
from mksgn.data.builtin import load_dataset
from mksgn.data.pipeline import SkeletonInputs
from mksgn.data.transforms import MODALITIES
from mksgn.train.blocks import present_persons

CLASSES = [f"class {k}" for k in range(14)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synth_small_npz(tmp_path_factory)


def _record(normalise: str | None) -> dict:
    record = {"path": None, "sha256": None, "source": "test", "benchmark": "xsub", "class_names": CLASSES,
              "layout": "ntu25", "modalities": list(MODALITIES), "frames": 32}
    return record if normalise is None else {**record, "normalise": normalise}


def _with_input_meta(graph, **changes):
    meta = decode_metadata(dict(graph.metadata))
    meta["input"] = {k: v for k, v in {**meta["input"], **changes}.items() if v is not None}
    graph.metadata = encode_metadata(meta)
    return graph


def test_graph_metadata_records_the_normalisation_and_old_graphs_read_none():
    model, _ = lively_tiny_student(seed=1)
    graph = export_student(model, 32, 25, CLASSES, "ntu25", data=_record("sample"))
    assert decode_metadata(graph.metadata)["input"]["normalise"] == "sample"
    assert InputSpec.of(graph).normalise == "sample"
    assert InputSpec.of(export_student(model, 32, 25, CLASSES, "ntu25", data=_record(None))).normalise == "none"
    assert InputSpec.of(export_student(model, 32, 25, CLASSES, "ntu25")).normalise == "none"
    old = _with_input_meta(export_student(model, 32, 25, CLASSES, "ntu25"), normalise=None)
    assert "normalise" not in decode_metadata(old.metadata)["input"]  # a graph written before the key
    assert InputSpec.of(old) == InputSpec.of(export_student(model, 32, 25, CLASSES, "ntu25"))
    with pytest.raises(GraphInputError, match="normalisation"):
        InputSpec.of(_with_input_meta(graph, normalise="metres"))


def test_graph_inputs_are_normalised_as_the_graph_says(data):
    model, _ = lively_tiny_student(seed=1)
    splits = load_dataset(data)
    index = np.arange(6)
    fed = {}
    for norm in ("none", "sample"):
        spec = InputSpec.of(export_student(model, 32, 25, CLASSES, "ntu25", data=_record(norm)))
        with pytest.warns(UserWarning, match="interpolated"):  # 20-frame clips for a 32-frame model
            batch = next(batches(spec, splits.test, index, len(index)))
        x, _ = SkeletonInputs(splits.test, 32, MODALITIES, normalise=norm).batch(index)
        rows, _ = present_persons(x)
        for i, name in enumerate(spec.inputs):
            np.testing.assert_array_equal(batch.inputs[name][0].numpy(), rows[:, i].double().numpy())
        fed[norm] = batch.inputs[spec.inputs[0]][0].numpy()
    assert not np.allclose(fed["none"], fed["sample"])


def test_export_writes_the_checkpoints_normalisation_into_the_graph_and_onnx(data, tmp_path):
    from mksgn.convert.export_service import export_checkpoint, export_onnx_files
    from mksgn.train.checkpoint import save_checkpoint
    from mksgn.train.config import preset

    model, _ = lively_tiny_student(seed=2)
    cfg = preset("tiny")
    ckpt = tmp_path / "student.pt"
    save_checkpoint(ckpt, {"kind": "student", "config": cfg.to_dict(), "data": _record("sample"),
                           "model": model.state_dict(), "epoch": 1})
    out = tmp_path / "student.nir"
    result = export_checkpoint(str(ckpt), out, data=str(data), samples=4, log=lambda *_: None)
    assert result.validated_on is not None
    assert InputSpec.of(read_graph(out)).normalise == "sample"
    assert json.loads(out.with_suffix(".parity.json").read_text())["parity_float64"]["mismatches"] == 0
    onnx_out = tmp_path / "student.onnx"
    export_onnx_files(str(ckpt), student_out=onnx_out, data=str(data), samples=2, log=lambda *_: None)
    props = {p.key: p.value for p in onnx.load(str(onnx_out)).metadata_props}
    assert props["normalise"] == "sample"


def test_parity_refuses_a_graph_normalised_otherwise_than_its_student(tmp_path):
    from mksgn.deploy.parity_run import ParityError, Student, run_parity
    from mksgn.core.nir_file import write_graph
    from mksgn.deploy.run import load_model

    model, _ = lively_tiny_student(seed=1)
    path = tmp_path / "g.nir"
    write_graph(export_student(model, 32, 25, CLASSES, "ntu25", data=_record("sample")), path)
    student = Student(tmp_path / "student.pt", model, _record(None))
    with pytest.raises(ParityError, match="normalised 'sample', the student's 'none'"):
        run_parity(student, load_model(path), None, None, 2, lava=False, progress=False)
