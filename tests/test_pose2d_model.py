"""A 2-D dataset (C = 2, the Kinetics-skeleton fixture) through the models, NIR export,
quantisation and ONNX: the input channels are the data's coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mksgn.convert.graph_inputs import GraphInputError, InputSpec, batches
from mksgn.convert.nir_export import export_student
from mksgn.convert.quantize import quantize
from mksgn.core.emulator import Emulator
from mksgn.core.executor import NIRExecutor
from mksgn.core.fuse import fuse
from mksgn.core.nir_file import decode_metadata
from mksgn.data.pipeline import SkeletonInputs
from mksgn.data.readers.kinetics_json import read_kinetics_dir
from mksgn.data.skeletons import KINETICS18
from mksgn.train.blocks import present_persons
from mksgn.train.calibrate import calibrate_activity, randomise_batchnorm
from mksgn.train.config import preset
from mksgn.train.student import MKSGN
from mksgn.train.teacher import GCNTeacher

KINETICS = Path(__file__).parent / "fixtures" / "pose2d" / "kinetics"


@pytest.fixture(scope="module")
def setup():
    splits = read_kinetics_dir(KINETICS, progress=False)
    cfg = preset("tiny")
    torch.manual_seed(0)
    model = MKSGN(cfg.student, KINETICS18, splits.train.num_classes, cfg.data.modalities, in_channels=2).eval()
    randomise_batchnorm(model, 0)
    x, _ = SkeletonInputs(splits.train, cfg.data.frames, cfg.data.modalities).batch(np.arange(len(splits.train)))
    rows, _ = present_persons(x)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(8, *rows.shape[1:], generator=g).cumsum(dim=3) / cfg.data.frames**0.5
    lively = torch.cat([rows * 5, noise])
    calibrate_activity(model, lively)
    return splits, cfg, model, lively


def test_models_take_the_data_coordinates(setup):
    splits, cfg, model, lively = setup
    assert model.in_channels == 2
    x, _ = SkeletonInputs(splits.train, cfg.data.frames, cfg.data.modalities).batch(np.arange(2))
    assert x.shape[2] == 2
    assert model(x).shape == (2, splits.train.num_classes)
    teacher = GCNTeacher(cfg.teacher, KINETICS18, splits.train.num_classes, cfg.data.modalities, in_channels=2).eval()
    assert teacher(x).shape == (2, splits.train.num_classes)
    with pytest.raises(RuntimeError):  # a 3-channel model refuses 2-D rows
        GCNTeacher(cfg.teacher, KINETICS18, 3, cfg.data.modalities).eval()(x)


def test_export_and_quantise_a_2d_student(setup):
    splits, cfg, model, lively = setup
    graph = export_student(model, cfg.data.frames, 18, splits.train.class_names, "kinetics18")
    meta = decode_metadata(graph.metadata)
    assert meta["input"]["shape"] == [2, cfg.data.frames, 18]
    assert meta["input"]["layout"] == "(C, F, V): coordinates x y, frames, joints"
    spec = InputSpec.of(graph)
    assert spec.coords == 2
    batch = next(batches(spec, splits.train, np.arange(len(splits.train)), 8))
    assert all(v.shape[2] == 2 for v in batch.inputs.values())
    # the graph computes the model's logits on the same rows
    ref = NIRExecutor(graph).run(batch.inputs)
    rows, _ = present_persons(SkeletonInputs(splits.train, cfg.data.frames, cfg.data.modalities)
                              .batch(np.arange(len(splits.train)))[0])
    with torch.no_grad():
        want = model.double().run_rows(rows.double())[0]
    model.float()
    torch.testing.assert_close(ref.outputs["output"][-1], want, rtol=1e-6, atol=1e-6)
    # quantised on lively rows (the fixture's few frames barely move), run on the data
    steps = int(meta["time_steps"])
    calibration = {name: lively[:, i].double().unsqueeze(0).expand(steps, *lively[:, i].shape)
                   for i, name in enumerate(spec.inputs)}
    sg, reports = quantize(fuse(graph), calibration)
    assert sum(r.saturated for r in reports) == 0
    assert Emulator(sg, "fixed_pt").run(calibration).outputs["output"].abs().sum() > 0
    fixed = Emulator(sg, "fixed_pt").run(batch.inputs)
    assert fixed.outputs["output"].shape[-2:] == want.shape
    # 3-D data is refused by a 2-D graph before any run
    three = splits.train.subset([0])
    three = type(three)(np.concatenate([three.data, three.data[:, :1]], axis=1), three.labels, three.lengths,
                        three.class_names, three.sample_ids, three.layout)
    with pytest.raises(GraphInputError, match="3 coordinates per joint, the graph expects 2"):
        next(batches(spec, three, np.arange(1), 1))


def test_onnx_export_of_a_2d_teacher(setup, tmp_path):
    pytest.importorskip("onnxruntime")
    from mksgn.convert.onnx_export import export_teacher_onnx
    from mksgn.hw_profiles.counts import teacher_counts

    splits, cfg, _, _ = setup
    teacher = GCNTeacher(cfg.teacher, KINETICS18, splits.train.num_classes, cfg.data.modalities, in_channels=2).eval()
    record = export_teacher_onnx(teacher, cfg.data.frames, 18, tmp_path / "t.onnx")
    assert record["inputs"][0]["shape"][1:] == [len(cfg.data.modalities), 2, cfg.data.frames, 18]
    assert teacher_counts(teacher, cfg.data.frames, 18).total == record["dense_macs_per_row"] > 0
