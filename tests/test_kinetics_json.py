"""Real 2-D pose formats: ST-GCN's Kinetics-skeleton json and a pyskl COCO-17 pickle.

The fixtures under ``tests/fixtures/pose2d`` are written in the exact formats by its
``make_fixtures.py``; the expected values here are read from the raw files independently.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mksgn.data.data_cli import main
from mksgn.data.pipeline import SkeletonInputs
from mksgn.data.readers.ctrgcn_npz import read_ctrgcn_npz
from mksgn.data.readers.kinetics_json import read_kinetics_clip, read_kinetics_dir
from mksgn.data.readers.pyskl import read_pyskl
from mksgn.data.readers.safe_pickle import safe_load
from mksgn.data.transforms import MODALITIES
from mksgn.errors import DatasetError

FIXTURES = Path(__file__).parent / "fixtures" / "pose2d"
KINETICS = FIXTURES / "kinetics"


def raw_frame(clip: str, index: int) -> list[dict]:
    content = json.loads((KINETICS / "kinetics_train" / f"{clip}.json").read_text())
    return next(f["skeleton"] for f in content["data"] if f["frame_index"] == index)


def test_fixtures_are_what_the_script_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_pose2d_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    committed = sorted(p.relative_to(KINETICS) for p in KINETICS.rglob("*.json"))
    assert committed == sorted(p.relative_to(tmp_path / "kinetics") for p in (tmp_path / "kinetics").rglob("*.json"))
    for rel in committed:
        assert (KINETICS / rel).read_bytes() == (tmp_path / "kinetics" / rel).read_bytes(), rel
    with open(FIXTURES / "pyskl_coco17.pkl", "rb") as a, open(tmp_path / "pyskl_coco17.pkl", "rb") as b:
        old, new = safe_load(a, "a"), safe_load(b, "b")
    for x, y in zip(old["annotations"], new["annotations"], strict=True):
        np.testing.assert_array_equal(x["keypoint"], y["keypoint"])
        np.testing.assert_array_equal(x["keypoint_score"], y["keypoint_score"])
    assert sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file()) < 20_000


def test_read_kinetics_dir():
    splits = read_kinetics_dir(KINETICS, progress=False)
    train, test = splits.train, splits.test
    assert splits.benchmark == "kinetics" and train.layout == "kinetics18"
    assert train.sample_ids == ["clip_a", "clip_b"] and test.sample_ids == ["clip_v"]  # clip_empty skipped
    assert train.class_names == ["waving", "class_1", "dancing"] == test.class_names
    assert train.labels.tolist() == [2, 0] and test.labels.tolist() == [2]
    assert train.data.shape == (2, 2, 4, 18, 2) and train.confidence.shape == (2, 4, 18, 2)
    assert train.lengths.tolist() == [4, 3]  # clip_a: frames 1..4 (frame 5 has nobody)
    # frame 1 of clip_a lists low, high, mid: high (person 0) and mid (person 1) are kept
    low, high, mid = raw_frame("clip_a", 1)
    for m, skel in enumerate((high, mid)):
        np.testing.assert_array_equal(train.data[0, :, 0, :, m], np.array(skel["pose"], np.float32).reshape(18, 2).T)
        np.testing.assert_array_equal(train.confidence[0, 0, :, m], np.array(skel["score"], np.float32))
    # frame 2 lists mid, high: sorted by total score
    np.testing.assert_array_equal(train.confidence[0, 1, :, 0], np.array(raw_frame("clip_a", 2)[1]["score"], np.float32))
    assert not train.data[0, :, 2].any() and not train.confidence[0, 2].any()  # frame 3: nobody
    assert not train.data[0, :, 3, :, 1].any()  # frame 4: one person
    # the undetected joint of the high skeleton: 0, 0 with score 0, a missing joint
    assert not train.data[0, :, 0, 4, 0].any() and train.confidence[0, 0, 4, 0] == 0


def test_kinetics_pipeline_has_no_fake_bones():
    splits = read_kinetics_dir(KINETICS, progress=False)
    inputs = SkeletonInputs(splits.train, 4, MODALITIES)
    assert inputs.missing is not None and inputs.missing[0, 0, 4, 0] and inputs.missing[1, :3, 10, 0].all()
    x = inputs.batch(np.arange(2))[0].numpy()  # (N, Mod, C, F, V, M)
    assert x.shape == (2, 4, 2, 4, 18, 2)
    # real offsets stay below 0.33 here; the undetected joints un-masked would give 0.5 to 0.75
    assert np.abs(x).max() < 0.33
    wrist = 4  # missing in frame 0 of clip_a, person 0
    assert np.all(x[0, :, :, 0, wrist, 0] == 0)
    assert np.all(x[0, 3, :, 0, wrist, 0] == 0)  # bone motion


def test_convert_kinetics_and_inspect(tmp_path, capsys):
    out = tmp_path / "k.npz"
    assert main(["convert", "--from", "kinetics-json", str(KINETICS), "--out", str(out)]) == 0
    back = read_ctrgcn_npz(out)
    direct = read_kinetics_dir(KINETICS, progress=False)
    np.testing.assert_array_equal(back.train.data, direct.train.data)
    np.testing.assert_array_equal(back.train.confidence, direct.train.confidence)
    assert back.train.layout == "kinetics18" and back.train.data.shape[1] == 2
    capsys.readouterr()
    assert main(["inspect", str(out), "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "a confidence per joint" in text and "missing joints:" in text
    summary = json.loads((tmp_path / "k_summary.json").read_text())
    gone = summary["splits"]["train"]["missing_joints"]
    assert gone["joint_frames"] == 1 + 2 * 3 and gone["samples"] == 2 and gone["samples_fraction"] == 1.0
    assert set(summary["splits"]["train"]["value_range"]) == {"x", "y"}


def test_pyskl_coco17_fixture():
    with open(FIXTURES / "pyskl_coco17.pkl", "rb") as fh:
        raw = safe_load(fh, "raw")
    splits = read_pyskl(FIXTURES / "pyskl_coco17.pkl")
    assert splits.train.layout == "coco17" and splits.train.data.shape == (2, 2, 6, 17, 2)
    first = raw["annotations"][0]
    np.testing.assert_array_equal(splits.train.data[0, :, :5, :, 0].transpose(1, 2, 0), first["keypoint"][0].astype(np.float32))
    np.testing.assert_array_equal(splits.train.confidence[0, :5, :, 0], first["keypoint_score"][0].astype(np.float32))
    assert SkeletonInputs(splits.train, 5, MODALITIES).missing[0, 1, 9, 0]


def test_convert_refuses_layout_outside_pyskl(tmp_path, capsys):
    assert main(["convert", "--from", "kinetics-json", str(KINETICS), "--out", str(tmp_path / "x.npz"),
                 "--layout", "coco17"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("mksgn-data: error: --layout applies to --from pyskl only")


# --------------------------------------------------------------------------- bad input


def broken_copy(tmp_path: Path, edit) -> tuple[Path, Path]:
    root = tmp_path / "kinetics"
    shutil.copytree(KINETICS, root)
    clip = root / "kinetics_train" / "clip_a.json"
    content = json.loads(clip.read_text())
    edit(content)
    clip.write_text(json.dumps(content))  # allow_nan: NaN is written as the token NaN
    return root, clip


def _skel(content: dict, t: int = 1, m: int = 0) -> dict:
    return content["data"][t]["skeleton"][m]


BAD_CLIPS = {
    "17 joints": (lambda c: _skel(c).update(pose=_skel(c)["pose"][:34]), "'pose' must hold 36 numbers", "data[1].skeleton[0].pose"),
    "19 scores": (lambda c: _skel(c).update(score=_skel(c)["score"] + [0.5]), "'score' must hold 18 numbers", "data[1].skeleton[0].score"),
    "missing score": (lambda c: _skel(c).pop("score"), "missing key 'score'", "data[1].skeleton[0]"),
    "NaN pose": (lambda c: _skel(c)["pose"].__setitem__(3, float("nan")), "NaN or infinite", "data[1].skeleton[0].pose"),
    "NaN score": (lambda c: _skel(c)["score"].__setitem__(0, float("nan")), "NaN or infinite", "data[1].skeleton[0].score"),
    "score far above 1": (lambda c: _skel(c)["score"].__setitem__(0, 2.0), "outside [0, 1.5]",
                          "data[1].skeleton[0].score"),
    "string in pose": (lambda c: _skel(c)["pose"].__setitem__(0, "1"), "numbers only", "data[1].skeleton[0].pose"),
    "duplicate frame": (lambda c: c["data"][2].update(frame_index=1), "duplicate frame_index 1", "data[2].frame_index"),
    "no data": (lambda c: c.update(data=[]), "non-empty list", "key 'data'"),
    "frame without skeleton key": (lambda c: c["data"][0].pop("skeleton"), "'frame_index' and 'skeleton'", "data[0]"),
    "other label": (lambda c: c.update(label_index=0), "label_index 0 but the label file says 2", "key 'label_index'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CLIPS))
def test_bad_clip_is_one_line_naming_file_and_field(tmp_path, case):
    edit, message, position = BAD_CLIPS[case]
    root, clip = broken_copy(tmp_path, edit)
    with pytest.raises(DatasetError) as err:
        read_kinetics_dir(root, progress=False)
    assert message in err.value.reason and err.value.position == position
    assert err.value.path == str(clip) and "\n" not in str(err.value)


def test_bad_folders_and_label_files(tmp_path):
    root, _ = broken_copy(tmp_path, lambda c: None)
    (root / "kinetics_val" / "clip_v.json").unlink()
    with pytest.raises(DatasetError, match="clip 'clip_v' has a skeleton but no file clip_v.json") as err:
        read_kinetics_dir(root, progress=False)
    assert err.value.path == str(root / "kinetics_val_label.json")
    (root / "kinetics_val_label.json").write_text('{"clip_v": {"has_skeleton": true, "label": "x"}}')
    with pytest.raises(DatasetError, match="'has_skeleton', 'label' and 'label_index'"):
        read_kinetics_dir(root, progress=False)
    (root / "kinetics_val_label.json").write_text('{"clip_v": {"has_skeleton": true, "label": "x", "label_index": 2}}')
    with pytest.raises(DatasetError, match="label_index 2 is 'x' here but 'dancing' elsewhere"):
        read_kinetics_dir(root, progress=False)
    (root / "kinetics_val_label.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_kinetics_dir(root, progress=False)
    (root / "kinetics_val_label.json").unlink()
    with pytest.raises(DatasetError, match="cannot read the label file"):
        read_kinetics_dir(root, progress=False)
    with pytest.raises(DatasetError, match="not a directory"):
        read_kinetics_dir(tmp_path / "nowhere", progress=False)


def test_clip_without_any_skeleton(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data": [{"frame_index": 0, "skeleton": []}]}))
    with pytest.raises(DatasetError, match="no skeleton in any frame"):
        read_kinetics_clip(path)


def test_scores_slightly_above_one_are_clipped_with_a_warning(tmp_path):
    import numpy as np
    import pytest

    from mksgn.data.readers.scores import ScoreClippedWarning, confidence_from_scores

    with pytest.warns(ScoreClippedWarning, match="x.json: 2 scores of s above 1"):
        got = confidence_from_scores(np.array([0.2, 1.02, 1.3], np.float32), tmp_path / "x.json", "s")
    assert got.tolist() == pytest.approx([0.2, 1.0, 1.0])
