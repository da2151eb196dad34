"""Configurations: presets, TOML files, overrides, validation naming the field."""

from __future__ import annotations

import pytest

from mksgn.train.config import Config, ConfigError, load_config, preset


def test_presets_follow_the_spec():
    ntu = preset("ntu")
    assert (ntu.student.branch_channels, *ntu.student.channels) == (64, 64, 128, 128, 256, 256)
    assert ntu.student.num_blocks == 6 and ntu.student.time_steps == 4 and ntu.data.frames == 64
    assert ntu.teacher.channels == (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
    assert [i + 1 for i, s in enumerate(ntu.teacher.strides) if s == 2] == [5, 8]
    assert ntu.student.beta == 0.5 and ntu.student.threshold == 1.0
    assert preset("tiny").student.time_steps == 4


def test_round_trip_through_a_plain_dict():
    cfg = preset("tiny")
    plain = cfg.to_dict()
    assert isinstance(plain["student"]["channels"], list)
    assert Config.from_dict(plain) == cfg


def test_toml_file_with_a_base_and_overrides(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "tiny"\n[student]\nchannels = [8, 16]\nstrides = [1, 2]\n[distill]\nfeature_layers = 1\n')
    cfg = load_config(path, ["train_student.epochs=3", 'distill.mode="soft"', "data.p_interval=[0.75, 1.0]"])
    assert cfg.name == "mine" and cfg.student.channels == (8, 16)
    assert cfg.train_student.epochs == 3 and cfg.distill.mode == "soft" and cfg.data.p_interval == (0.75, 1.0)
    assert cfg.teacher == preset("tiny").teacher


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["student.kernel=4"], "student.kernel must be odd"),
        (["student.nope=1"], "unknown config key 'student.nope'"),
        (["student.channels=3"], "student.channels must be a list"),
        (["student.strides=[1]"], "student.strides must be 1 or 2, one per trunk block"),
        (["train_teacher.schedule=\"linear\""], "train_teacher.schedule must be one of"),
        (["distill.mode=\"all\""], "distill.mode must be one of"),
        (["data.modalities=[\"depth\"]"], "data.modalities"),
        (["student.beta=2"], "student.beta must be in"),
        (["student.attention=1"], "student.attention must be true or false"),
        (["data.frames"], "must be key=value"),
    ],
)
def test_invalid_values_name_the_field(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("tiny", overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[student\nchannels = 3")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[optimizer]\nlr = 1")
    with pytest.raises(ConfigError, match="unknown config key 'optimizer'"):
        load_config(unknown)
