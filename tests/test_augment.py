"""Training augmentation and per-sample normalisation (mksgn.data.augment, mksgn.data.normalise).

The default configuration must give exactly the batches of the pipeline as it was before
either existed: that pipeline is written out again here (centre, resample, modalities).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mksgn.data.augment import Augmentation, affine_maps
from mksgn.data.dataset import SkeletonDataset
from mksgn.data.normalise import normalisation_of, sample_scales
from mksgn.data.pipeline import SkeletonInputs
from mksgn.data.skeletons import NTU25
from mksgn.data.synth import generate
from mksgn.data.transforms import MODALITIES, centre, missing_joints, modalities, resample, resample_masked
from mksgn.train.config import ConfigError, DataConfig, load_config

FRAMES = 16
CROP = (0.5, 1.0)
ALL_ON = Augmentation(rotate_deg=30.0, tilt_deg=10.0, scale=0.2, shear=0.2, joint_dropout=0.1)


@pytest.fixture(scope="module")
def synth() -> SkeletonDataset:
    return generate(samples=40, seed=4, frames=20, difficulty=0.8).train


def with_missing(ds: SkeletonDataset, seed: int = 0) -> SkeletonDataset:
    """``ds`` with about 5 % of its present joints undetected (all coordinates 0)."""
    data = ds.data.copy()
    rng = np.random.default_rng(seed)
    gone = rng.random(data.shape[:1] + data.shape[2:]) < 0.05
    data[np.broadcast_to(gone[:, None], data.shape)] = 0.0
    return SkeletonDataset(data=data, labels=ds.labels, lengths=ds.lengths, class_names=ds.class_names,
                           sample_ids=ds.sample_ids, layout=ds.layout, source=ds.source)


def planar(ds: SkeletonDataset) -> SkeletonDataset:
    """``ds``'s x and y only: 2-D keypoints (C = 2)."""
    return SkeletonDataset(data=np.ascontiguousarray(ds.data[:, :2]), labels=ds.labels, lengths=ds.lengths,
                           class_names=ds.class_names, sample_ids=ds.sample_ids, layout=ds.layout, source=ds.source)


def in_other_units(ds: SkeletonDataset, factor: float, shift: np.ndarray) -> SkeletonDataset:
    """``ds`` with every present joint at ``x * factor + shift`` (missing joints stay 0)."""
    present = np.any(ds.data != 0, axis=1, keepdims=True)
    data = np.where(present, ds.data * factor + shift[None, :, None, None, None], 0.0).astype(np.float32)
    return SkeletonDataset(data=data, labels=ds.labels, lengths=ds.lengths, class_names=ds.class_names,
                           sample_ids=ds.sample_ids, layout=ds.layout, source=ds.source)


def todays_batches(ds: SkeletonDataset, seed: int | None, epoch: int, batch_size: int) -> list[np.ndarray]:
    """The pipeline before augmentation and normalisation existed, written out."""
    missing = missing_joints(ds.data, ds.lengths, ds.confidence)
    data = centre(ds.data, ds.lengths, NTU25, missing)
    out = []
    for b in range(-(-len(ds) // batch_size)):
        index = np.arange(b * batch_size, min(len(ds), (b + 1) * batch_size))
        rng = np.random.default_rng([seed, epoch, b]) if seed is not None else None
        crop = CROP if rng is not None else None
        if not missing.any():
            x = resample(data[index], ds.lengths[index], FRAMES, p_interval=crop, rng=rng)
            mods = modalities(x, NTU25, MODALITIES)
        else:
            x, gone = resample_masked(data[index], missing[index], ds.lengths[index], FRAMES, p_interval=crop, rng=rng)
            mods = modalities(x, NTU25, MODALITIES, missing=gone[:, None])
        out.append(np.stack([mods[m] for m in MODALITIES], axis=1))
    return out


def batches(inputs: SkeletonInputs, seed: int | None, epoch: int = 0, batch_size: int = 8) -> list[np.ndarray]:
    return [x.numpy() for x, _ in inputs.batches(range(len(inputs)), batch_size, seed=seed, epoch=epoch)]


# ------------------------------------------------------------------------------ the default


@pytest.mark.parametrize("missing", [False, True])
def test_default_config_is_bit_identical_to_todays_pipeline(synth, missing):
    ds = with_missing(synth) if missing else synth
    cfg = DataConfig()
    assert not cfg.augmentation().active and cfg.normalise == "none"
    inputs = SkeletonInputs(ds, FRAMES, MODALITIES, CROP, augment=cfg.augmentation(), normalise=cfg.normalise)
    assert (inputs.missing is not None) == missing
    for seed, epoch in ((None, 0), (3, 0), (3, 2)):
        got, want = batches(inputs, seed, epoch), todays_batches(ds, seed, epoch, 8)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(inputs.channel_std(), SkeletonInputs(ds, FRAMES, MODALITIES).channel_std())


# ------------------------------------------------------------------------------ augmentation


def test_augmentation_is_deterministic_per_seed_and_changes_no_crop(synth):
    aug = Augmentation(rotate_deg=30.0, tilt_deg=10.0, scale=0.2, shear=0.2)
    inputs = SkeletonInputs(synth, FRAMES, MODALITIES, CROP, augment=aug)
    plain = SkeletonInputs(synth, FRAMES, MODALITIES, CROP)
    a, again, other = batches(inputs, 5, 1), batches(inputs, 5, 1), batches(inputs, 6, 1)
    for x, y, z in zip(a, again, other, strict=True):
        np.testing.assert_array_equal(x, y)
        assert not np.allclose(x, z)
    # the same crop as without augmentation: joints are exactly A x of the plain batch's joints,
    # A drawn from the augmentation's own generator (seed, epoch, batch, 1)
    for b, (x, p) in enumerate(zip(a, batches(plain, 5, 1), strict=True)):
        maps = affine_maps(aug, 3, len(x), np.random.default_rng([5, 1, b, 1]))
        np.testing.assert_allclose(x[:, 0], np.einsum("nij,njfvm->nifvm", maps, p[:, 0]), atol=2e-5)
        assert not np.allclose(x[:, 0], p[:, 0])


def test_evaluation_batches_are_never_augmented(synth):
    inputs = SkeletonInputs(synth, FRAMES, MODALITIES, CROP, augment=ALL_ON)
    plain = SkeletonInputs(synth, FRAMES, MODALITIES, CROP)
    for x, p in zip(batches(inputs, None), batches(plain, None), strict=True):
        np.testing.assert_array_equal(x, p)
    index = np.arange(6)
    np.testing.assert_array_equal(inputs.batch(index)[0].numpy(), plain.batch(index)[0].numpy())
    np.testing.assert_array_equal(inputs.channel_std(), plain.channel_std())


def _pairwise(x: np.ndarray) -> np.ndarray:
    """Distances between the joints of each (sample, frame, person): ``(n, F, M, V, V)``."""
    j = np.moveaxis(x, 1, -1)  # (n, F, V, M, C)
    j = np.moveaxis(j, 3, 2)  # (n, F, M, V, C)
    return np.linalg.norm(j[..., :, None, :] - j[..., None, :, :], axis=-1)


@pytest.mark.parametrize("coords", [2, 3])
def test_rotation_keeps_distances_and_scaling_scales_them(synth, coords):
    ds = planar(synth) if coords == 2 else synth
    plain = batches(SkeletonInputs(ds, FRAMES, ("joint",), CROP), 2)
    rotated = batches(SkeletonInputs(ds, FRAMES, ("joint",), CROP, augment=Augmentation(rotate_deg=90, tilt_deg=20)), 2)
    scaled = batches(SkeletonInputs(ds, FRAMES, ("joint",), CROP, augment=Augmentation(rotate_deg=90, scale=0.3)), 2)
    for p, r, s in zip(plain, rotated, scaled, strict=True):
        assert r.shape == p.shape  # 2-D data stay 2-D: nothing leaves the image plane
        dp, dr, ds_ = _pairwise(p[:, 0]), _pairwise(r[:, 0]), _pairwise(s[:, 0])
        np.testing.assert_allclose(dr, dp, atol=1e-4)
        assert not np.allclose(r, p)
        far = dp > 0.05
        ratio = np.where(far, ds_ / np.where(far, dp, 1), np.nan)  # one factor per sample
        spread = np.nanmax(ratio, axis=(1, 2, 3, 4)) - np.nanmin(ratio, axis=(1, 2, 3, 4))
        assert np.all(spread < 1e-3) and np.all(np.abs(np.nanmean(ratio, axis=(1, 2, 3, 4)) - 1) <= 0.3 + 1e-4)


def test_2d_rotation_is_a_proper_rotation_in_the_image_plane():
    rng = np.random.default_rng(0)
    maps = affine_maps(Augmentation(rotate_deg=45.0, tilt_deg=30.0), 2, 50, rng)
    assert maps.shape == (50, 2, 2)
    np.testing.assert_allclose(maps @ maps.transpose(0, 2, 1), np.broadcast_to(np.eye(2), maps.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(maps), 1.0)
    angles = np.degrees(np.arctan2(maps[:, 1, 0], maps[:, 0, 0]))
    assert np.abs(angles).max() <= 45.0 and np.abs(angles).max() > 30.0


def test_3d_rotation_turns_about_the_vertical_axis():
    maps = affine_maps(Augmentation(rotate_deg=60.0), 3, 50, np.random.default_rng(1))
    np.testing.assert_allclose(maps[:, 1], np.broadcast_to([0.0, 1.0, 0.0], (50, 3)), atol=1e-12)  # y is kept
    np.testing.assert_allclose(np.linalg.det(maps), 1.0)
    tilted = affine_maps(Augmentation(rotate_deg=60.0, tilt_deg=10.0), 3, 50, np.random.default_rng(1))
    up = tilted[:, :, 1]  # where the vertical axis goes: at most 10 degrees from vertical per tilt
    assert np.degrees(np.arccos(np.clip(up[:, 1], -1, 1))).max() <= 10.0 * np.sqrt(2) + 1e-9
    assert not np.allclose(tilted[:, 1, 1], 1.0)


def test_missing_joints_stay_zero_and_dropped_joints_form_no_bones_or_motion(synth):
    ds = with_missing(synth, seed=1)
    plain = SkeletonInputs(ds, FRAMES, MODALITIES, CROP)
    spatial = SkeletonInputs(ds, FRAMES, MODALITIES, CROP, augment=replace(ALL_ON, joint_dropout=0.0))
    dropping = SkeletonInputs(ds, FRAMES, MODALITIES, CROP, augment=ALL_ON)
    dropped_total = 0
    for p, s, d in zip(batches(plain, 1), batches(spatial, 1), batches(dropping, 1), strict=True):
        zero_p = ~np.any(p[:, 0] != 0, axis=1)  # (n, F, V, M)
        zero_s, zero_d = ~np.any(s[:, 0] != 0, axis=1), ~np.any(d[:, 0] != 0, axis=1)
        assert np.all(zero_s[zero_p]) and np.all(zero_d[zero_s])  # zeros stay exactly 0
        dropped = zero_d & ~zero_s
        dropped_total += int(dropped.sum())
        # the same maps drawn in both (dropout draws come after them): elsewhere the joints agree
        keep = ~dropped[:, None]
        np.testing.assert_array_equal(np.where(keep, d[:, 0], 0), np.where(keep, s[:, 0], 0))
        gone = dropped | (zero_d & ~(np.arange(25) == NTU25.centre)[None, None, :, None])
        person = np.any(d[:, 0] != 0, axis=(1, 3))[:, :, None, :]  # (n, F, 1, M)
        gone &= person
        bone_gone = gone | gone[:, :, NTU25.parents]
        assert np.all(d[:, 1].transpose(0, 2, 3, 4, 1)[bone_gone] == 0)  # no bone to a dropped joint
        moving = np.zeros_like(gone)
        moving[:, :-1] = gone[:, :-1] | gone[:, 1:]
        assert np.all(d[:, 2].transpose(0, 2, 3, 4, 1)[moving] == 0)  # no motion into or out of one
        bone_moving = np.zeros_like(gone)
        bone_moving[:, :-1] = bone_gone[:, :-1] | bone_gone[:, 1:]
        assert np.all(d[:, 3].transpose(0, 2, 3, 4, 1)[bone_moving] == 0)
    present = np.count_nonzero(np.any(np.concatenate(batches(spatial, 1))[:, 0] != 0, axis=1))
    assert 0.05 < dropped_total / present < 0.15  # about joint_dropout = 0.1 of the present joints


def test_joint_dropout_on_data_without_missing_joints_masks_the_modalities(synth):
    inputs = SkeletonInputs(synth, FRAMES, MODALITIES, CROP, augment=Augmentation(joint_dropout=0.2))
    assert inputs.missing is None
    x = batches(inputs, 0)[0]
    gone = ~np.any(x[:, 0] != 0, axis=1) & np.any(x[:, 0] != 0, axis=(1, 3))[:, :, None, :]
    gone[:, :, NTU25.centre] = False  # the centre joint sits at the origin where centring put it
    assert gone.any()
    assert np.all(x[:, 1].transpose(0, 2, 3, 4, 1)[gone | gone[:, :, NTU25.parents]] == 0)


# ------------------------------------------------------------------------------ normalisation


@pytest.mark.parametrize("coords", [2, 3])
def test_normalisation_makes_pixels_and_metres_give_the_same_inputs(synth, coords):
    metres = with_missing(planar(synth) if coords == 2 else synth, seed=2)
    shift = np.array([640.0, 360.0, 2500.0][:coords], np.float32)
    pixels = in_other_units(metres, 1000.0, shift)
    assert not np.allclose(missing_joints(pixels.data, pixels.lengths), False)
    np.testing.assert_array_equal(missing_joints(pixels.data, pixels.lengths),
                                  missing_joints(metres.data, metres.lengths))
    for aug in (None, ALL_ON):
        a = SkeletonInputs(metres, FRAMES, MODALITIES, CROP, augment=aug, normalise="sample")
        b = SkeletonInputs(pixels, FRAMES, MODALITIES, CROP, augment=aug, normalise="sample")
        np.testing.assert_allclose(b.scales / a.scales, 1000.0, rtol=1e-5)
        for seed in (None, 7):
            for x, y in zip(batches(a, seed), batches(b, seed), strict=True):
                np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-4)
                assert np.abs(x).max() > 1.0  # in bone lengths: neither metres nor pixels
    raw_a, raw_b = SkeletonInputs(metres, FRAMES, MODALITIES), SkeletonInputs(pixels, FRAMES, MODALITIES)
    assert not np.allclose(batches(raw_a, None)[0], batches(raw_b, None)[0], atol=1e-2)


def _sample(person0: bool = True, person1: bool = True) -> np.ndarray:
    """One ``(1, 3, 6, 25, 2)`` sample: a straight chain of joints 0.5 apart along each bone."""
    data = np.zeros((1, 3, 6, 25, 2), np.float32)
    depth = NTU25.hops.astype(np.float32)
    for m, on in enumerate((person0, person1)):
        if on:
            data[0, 0, :, :, m] = 10.0 + m
            data[0, 1, :, :, m] = 5.0 + (2.0 if m else 0.5) * depth[None, :]
    return data


def test_sample_scale_is_the_median_bone_of_the_first_present_person_and_never_zero():
    lengths = np.array([6])
    np.testing.assert_allclose(sample_scales(_sample(), lengths, NTU25), 0.5)
    np.testing.assert_allclose(sample_scales(_sample(person0=False), lengths, NTU25), 2.0)  # person 0 absent
    assert sample_scales(_sample(False, False), lengths, NTU25)[0] == 1.0  # empty sample: no division
    # a missing joint (at 0) forms no bone: were it counted, its bones would be ~10 long
    data = _sample(person1=False)
    data[0, :, :, 3:12, 0] = 0.0
    np.testing.assert_allclose(sample_scales(data, lengths, NTU25, missing_joints(data, lengths)), 0.5)
    np.testing.assert_allclose(sample_scales(data, lengths, NTU25), 0.5)
    # padding frames do not count; a sample with one joint only has no bone
    single = np.zeros((1, 3, 6, 25, 2), np.float32)
    single[0, :, :, 0, 0] = 3.0
    assert sample_scales(single, lengths, NTU25)[0] == 1.0
    ds = SkeletonDataset(data=np.concatenate([_sample(), single]), labels=np.array([0, 0]), lengths=np.array([6, 6]),
                         class_names=["a"], sample_ids=["a", "b"], layout="ntu25")
    inputs = SkeletonInputs(ds, 6, MODALITIES, normalise="sample")
    assert np.all(np.isfinite(inputs.data)) and inputs.scales.tolist() == [0.5, 1.0]


def test_normalisation_record_defaults_to_none_and_refuses_unknown_names():
    assert normalisation_of(None) == normalisation_of({"frames": 32}) == "none"
    assert normalisation_of({"normalise": "sample"}) == "sample"
    with pytest.raises(ValueError, match="normalisation"):
        normalisation_of({"normalise": "unit"})
    with pytest.raises(ValueError, match="normalisation"):
        SkeletonInputs(generate(samples=14, seed=0, frames=8).train, 8, MODALITIES, normalise="metres")


# ------------------------------------------------------------------------------ configuration


@pytest.mark.parametrize("override, field", [
    ("data.rotate_deg=-5", "data.rotate_deg"), ("data.rotate_deg=181", "data.rotate_deg"),
    ("data.tilt_deg=91", "data.tilt_deg"), ("data.scale=1.0", "data.scale"), ("data.shear=-0.1", "data.shear"),
    ("data.joint_dropout=1", "data.joint_dropout"), ("data.normalise='unit'", "data.normalise"),
    ("data.rotate_deg='a lot'", "data.rotate_deg"),
])
def test_config_refuses_bad_values_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("tiny", [override])


def test_config_fields_reach_the_augmentation():
    cfg = load_config("tiny", ["data.rotate_deg=15", "data.tilt_deg=5", "data.scale=0.1", "data.shear=0.1",
                               "data.joint_dropout=0.05", "data.normalise='sample'"])
    assert cfg.data.augmentation() == Augmentation(15.0, 5.0, 0.1, 0.1, 0.05) and cfg.data.augmentation().active
    assert cfg.data.normalise == "sample"


def test_a_checkpoint_written_before_the_new_fields_still_resumes(tmp_path):
    from mksgn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    cfg = load_config("tiny")
    old = cfg.to_dict()
    for key in ("rotate_deg", "tilt_deg", "scale", "shear", "joint_dropout", "normalise"):
        del old["data"][key]
    path = tmp_path / "old.pt"
    save_checkpoint(path, {"kind": "student", "config": old, "data": {}, "model": {"w": torch.zeros(1)}, "epoch": 1})
    assert load_checkpoint(path, kind="student", config=cfg.to_dict())["config"] == old
    with pytest.raises(CheckpointError, match="another configuration"):
        load_checkpoint(path, kind="student", config=load_config("tiny", ["data.rotate_deg=10"]).to_dict())
