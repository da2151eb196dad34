"""Typed, validated configurations: ``tiny`` and ``ntu``, TOML files and ``--set`` overrides.

A :class:`Config` is plain data (numbers, strings, tuples); ``Config.to_dict()`` is what
checkpoints store, ``Config.from_dict()`` reads it back and validates it. Overrides use
dotted keys with TOML values: ``student.channels = [32, 64]``, ``train.epochs = 5``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from mksgn.data.augment import Augmentation, check_augmentation
from mksgn.data.normalise import NORMALISATIONS
from mksgn.data.transforms import MODALITIES
from mksgn.errors import MksgnError

KD_MODES = ("none", "soft", "feature", "both")
SCHEDULES = ("cosine", "step")
OPTIMIZERS = ("sgd", "adamw")


class ConfigError(MksgnError, ValueError):
    """A configuration value, file or override is invalid; the message names the field."""


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


@dataclass(frozen=True)
class DataConfig:
    """Input pipeline: frame count after resampling, the training crop, batch size, and the share
    of the training split held out for validation (by performer or recording where the sample
    ids name them, :func:`mksgn.data.splits.validation_split`).

    Training augmentation (:mod:`mksgn.data.augment`, all 0 = off): ``rotate_deg`` (about the
    vertical axis for 3-D, in the image plane for 2-D), ``tilt_deg`` (3-D only), ``scale``,
    ``shear``, ``joint_dropout``. ``normalise``: ``"none"`` or ``"sample"`` (each sample divided
    by its median bone length, :mod:`mksgn.data.normalise`), for every split.
    """

    frames: int = 64
    p_interval: tuple[float, float] = (0.5, 1.0)
    batch_size: int = 16
    modalities: tuple[str, ...] = MODALITIES
    val_fraction: float = 0.1
    rotate_deg: float = 0.0
    tilt_deg: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    joint_dropout: float = 0.0
    normalise: str = "none"

    def augmentation(self) -> Augmentation:
        """The training batches' random transforms (inactive when every magnitude is 0)."""
        return Augmentation(self.rotate_deg, self.tilt_deg, self.scale, self.shear, self.joint_dropout)

    def validate(self) -> None:
        if self.frames < 4:
            raise ConfigError(f"data.frames must be >= 4, got {self.frames}")
        lo, hi = self.p_interval
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"data.p_interval must satisfy 0 < lo <= hi <= 1, got {self.p_interval}")
        _positive("data.batch_size", self.batch_size)
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad or not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"data.modalities must be distinct names from {MODALITIES}, got {self.modalities}")
        try:
            check_augmentation(rotate_deg=self.rotate_deg, tilt_deg=self.tilt_deg, scale=self.scale,
                               shear=self.shear, joint_dropout=self.joint_dropout)
        except ValueError as exc:
            raise ConfigError(f"data.{exc}") from None
        if self.normalise not in NORMALISATIONS:
            raise ConfigError(f"data.normalise must be one of {NORMALISATIONS}, got {self.normalise!r}")


@dataclass(frozen=True)
class StudentConfig:
    """The spiking student: one branch block per modality, fusion, then the trunk blocks."""

    branch_channels: int = 64
    channels: tuple[int, ...] = (64, 128, 128, 256, 256)
    strides: tuple[int, ...] = (1, 2, 1, 2, 1)
    kernel: int = 9
    time_steps: int = 4
    beta: float = 0.5
    threshold: float = 1.0
    attention: bool = True
    surrogate_alpha: float = 2.0

    @property
    def num_blocks(self) -> int:
        """Depth: the branch block plus the trunk blocks."""
        return 1 + len(self.channels)

    def validate(self) -> None:
        _positive("student.branch_channels", self.branch_channels)
        if not self.channels or any(c <= 0 for c in self.channels):
            raise ConfigError(f"student.channels must be positive integers, got {self.channels}")
        if len(self.strides) != len(self.channels) or any(s not in (1, 2) for s in self.strides):
            raise ConfigError(f"student.strides must be 1 or 2, one per trunk block, got {self.strides}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ConfigError(f"student.kernel must be odd and >= 1, got {self.kernel}")
        _positive("student.time_steps", self.time_steps)
        if not 0 <= self.beta <= 1:
            raise ConfigError(f"student.beta must be in [0, 1], got {self.beta}")
        _positive("student.threshold", self.threshold)
        _positive("student.surrogate_alpha", self.surrogate_alpha)


@dataclass(frozen=True)
class TeacherConfig:
    """The floating-point 4-modality GCN teacher, CTR-GCN layout (10 blocks)."""

    channels: tuple[int, ...] = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
    strides: tuple[int, ...] = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
    kernel: int = 9
    dropout: float = 0.0

    def validate(self) -> None:
        if not self.channels or any(c <= 0 for c in self.channels):
            raise ConfigError(f"teacher.channels must be positive integers, got {self.channels}")
        if len(self.strides) != len(self.channels) or any(s not in (1, 2) for s in self.strides):
            raise ConfigError(f"teacher.strides must be 1 or 2, one per block, got {self.strides}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ConfigError(f"teacher.kernel must be odd and >= 1, got {self.kernel}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"teacher.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class OptimConfig:
    """SGD with Nesterov momentum (or AdamW), linear warm-up, then a cosine or step schedule;
    training stops early after ``patience`` epochs without a better validation top-1 (0: never).

    The schedule adapts to the data: it runs ``epochs`` epochs, or more where that gives fewer
    than ``min_steps`` optimiser steps (a small dataset gets as many steps as a large one,
    :meth:`for_data`); the validation curve then stops it. ``ema_decay`` > 0 keeps an exponential
    moving average of the weights (:mod:`mksgn.train.averaging`): the average is what is
    validated, checkpointed and deployed (0: the trained weights themselves).
    """

    epochs: int = 65
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 4e-4
    warmup_epochs: int = 5
    schedule: str = "cosine"
    milestones: tuple[int, ...] = (35, 55)
    gamma: float = 0.1
    patience: int = 15
    optimizer: str = "sgd"
    min_steps: int = 0
    ema_decay: float = 0.0

    def for_data(self, batches_per_epoch: int) -> "OptimConfig":
        """This schedule for a dataset of ``batches_per_epoch`` batches: ``epochs`` raised to reach
        ``min_steps`` optimiser steps (the milestones of a step schedule and ``patience`` scaled alike)."""
        need = -(-self.min_steps // max(batches_per_epoch, 1))
        if need <= self.epochs:
            return self
        factor = need / self.epochs
        return replace(self, epochs=need, milestones=tuple(int(round(m * factor)) for m in self.milestones),
                       patience=int(round(self.patience * factor)))

    def validate(self, prefix: str) -> None:
        if self.epochs < 1:
            raise ConfigError(f"{prefix}.epochs must be >= 1, got {self.epochs}")
        _positive(f"{prefix}.lr", self.lr)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"{prefix}.momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"{prefix}.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"{prefix}.warmup_epochs must be in 0..epochs, got {self.warmup_epochs}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{prefix}.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.min_steps < 0:
            raise ConfigError(f"{prefix}.min_steps must be >= 0, got {self.min_steps}")
        if self.patience < 0:
            raise ConfigError(f"{prefix}.patience must be >= 0, got {self.patience}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"{prefix}.ema_decay must be in [0, 1) (0: no weight average), got {self.ema_decay}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"{prefix}.schedule must be one of {SCHEDULES}, got {self.schedule!r}")


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation and the mutual-information guidance of the fusion.

    loss = CE + alpha * KL(softmax(t / tau) || softmax(s / tau)) * tau^2
           + beta * sum of feature losses + mi_weight * fusion guidance

    With ``tet`` (temporal efficient training, Deng et al., ICLR 2022), CE and the KL term
    are taken on each time step's read-out and averaged over the T steps, instead of on
    the mean read-out; the deployed model is the same.
    """

    mode: str = "both"
    alpha: float = 1.0
    tau: float = 4.0
    beta: float = 1.0
    feature_layers: int = 2
    mi_weight: float = 0.1
    mi_temperature: float = 0.5
    tet: bool = False

    def validate(self) -> None:
        if self.mode not in KD_MODES:
            raise ConfigError(f"distill.mode must be one of {KD_MODES}, got {self.mode!r}")
        for name in ("alpha", "beta", "mi_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"distill.{name} must be >= 0, got {getattr(self, name)}")
        _positive("distill.tau", self.tau)
        _positive("distill.mi_temperature", self.mi_temperature)
        if self.feature_layers < 1:
            raise ConfigError(f"distill.feature_layers must be >= 1, got {self.feature_layers}")


@dataclass(frozen=True)
class Config:
    """A whole training configuration."""

    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train_teacher: OptimConfig = field(default_factory=OptimConfig)
    train_student: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        self.data.validate()
        self.student.validate()
        self.teacher.validate()
        self.train_teacher.validate("train_teacher")
        self.train_student.validate("train_student")
        self.distill.validate()
        if self.distill.feature_layers > len(self.student.channels):
            raise ConfigError(
                f"distill.feature_layers ({self.distill.feature_layers}) exceeds the student's "
                f"{len(self.student.channels)} trunk blocks"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), as stored in checkpoints."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "Config":
        """Build and validate a config from a nested dict; unknown keys are errors."""
        try:
            return _build(cls, data, "")
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc


PRESETS: dict[str, Config] = {}


def _presets() -> dict[str, Config]:
    if not PRESETS:
        PRESETS["ntu"] = Config(name="ntu")
        PRESETS["tiny"] = Config(
            name="tiny",
            data=DataConfig(frames=32, batch_size=32, p_interval=(0.8, 1.0)),
            student=StudentConfig(branch_channels=16, channels=(16, 32, 32), strides=(1, 2, 1)),
            teacher=TeacherConfig(channels=(16, 16, 16, 16, 32, 32, 32, 64, 64, 64)),
            train_teacher=OptimConfig(epochs=6, lr=0.05, warmup_epochs=1, weight_decay=4e-4, patience=3,
                                      min_steps=390),
            train_student=OptimConfig(epochs=15, lr=0.1, warmup_epochs=1, weight_decay=1e-4, patience=8,
                                      min_steps=640),
            distill=DistillConfig(feature_layers=2),
        )
    return PRESETS


def preset(name: str) -> Config:
    """The named preset (``tiny`` or ``ntu``)."""
    presets = _presets()
    if name not in presets:
        raise ConfigError(f"unknown config preset {name!r}; choose from {sorted(presets)} or give a TOML file")
    return presets[name]


def load_config(spec: str | os.PathLike[str], overrides: list[str] | None = None) -> Config:
    """A preset name or a TOML file, then ``key=value`` overrides (TOML values).

    A TOML file may name a base preset with ``base = "tiny"``; its tables override it.
    """
    base: dict[str, Any]
    if str(spec) in ("tiny", "ntu"):
        base = preset(str(spec)).to_dict()
    else:
        path = Path(spec)
        try:
            table = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file (or preset: tiny, ntu)") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        base = preset(str(table.pop("base", "ntu"))).to_dict()
        base["name"] = path.stem
        _merge(base, table, str(path))
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must be key=value")
        try:
            parsed = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value.strip()  # a bare word: a string
        _set_dotted(base, key.strip(), parsed, f"override {item!r}")
    return Config.from_dict(base, str(spec))


def _merge(base: dict[str, Any], update: dict[str, Any], source: str, prefix: str = "") -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{source}: unknown config key {dotted!r}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {dotted!r} must be a table")
            _merge(base[key], value, source, dotted + ".")
        else:
            base[key] = value


def _set_dotted(base: dict[str, Any], key: str, value: Any, source: str) -> None:
    *parents, last = key.split(".")
    node = base
    for p in parents:
        if not isinstance(node.get(p), dict):
            raise ConfigError(f"{source}: unknown config key {key!r}")
        node = node[p]
    if last not in node or isinstance(node[last], dict):
        raise ConfigError(f"{source}: unknown config key {key!r}")
    node[last] = value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a table, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {[f'{where}.{u}' if where else u for u in unknown]}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    obj = cls(**kwargs)
    if cls is not Config and hasattr(obj, "validate") and not isinstance(obj, OptimConfig):
        obj.validate()
    return obj


def _coerce(hint: Any, value: Any, label: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, label)
    origin = get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{label} must be a list, got {value!r}")
        args = get_args(hint)
        item = args[0]
        if len(args) == 2 and args[1] is not Ellipsis:
            if len(value) != 2:
                raise ConfigError(f"{label} must have 2 items, got {value!r}")
        return tuple(_coerce(item, v, label) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{label} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{label} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{label} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{label} must be a string, got {value!r}")
        return value
    return value


def with_overrides(config: Config, **sections: Any) -> Config:
    """A copy of ``config`` with whole sections or fields replaced (validated)."""
    return replace(config, **sections)
