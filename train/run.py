"""A whole training run: the teacher (unless given), then the distilled student.

Files in the run folder: ``metrics.json`` (per epoch, per model), ``teacher_last.pt`` /
``teacher_best.pt``, ``student_last.pt`` / ``student_best.pt``, and for each model trained
``eval_<kind>.json`` (top-1, top-5 and the confusion matrix of the best checkpoint on the
test split) with ``confusion_<kind>.png``; ``run.json``, the run's settings, and while it
trains ``train.lock`` (:mod:`mksgn.train.run_state`); ``<kind>_interrupted.pt`` after a
Ctrl-C mid-epoch.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mksgn.atomic import atomic_write_text
from mksgn.errors import MksgnWarning
from mksgn.data.builtin import load_dataset
from mksgn.data.dataset import DatasetSplits
from mksgn.data.pipeline import SkeletonInputs, warn_frame_mismatch
from mksgn.data.splits import ValidationSplit, validation_split
from mksgn.train.baseline import baseline_report
from mksgn.train.checkpoint import CheckpointError, load_checkpoint
from mksgn.train.config import Config, OptimConfig, load_config
from mksgn.train.distill import DistillationLoss
from mksgn.train.plots import plot_confusion, plot_training_curves
from mksgn.data.recorded import data_record, recorded_data
from mksgn.train.run_state import (RunSettings, RunStateError, check_new_run,
                                   read_run_record, resume_settings, run_lock, settings_from_flags,
                                   write_run_record)
from mksgn.train.student import MKSGN
from mksgn.train.teacher import GCNTeacher
from mksgn.train.trainer import RunContext, Trainer, close_context, init_context

TEACHER_SEED_OFFSET = 0
STUDENT_SEED_OFFSET = 1
DISTILL_SEED_OFFSET = 2
VALIDATION_SEED = 0
"""The validation split is the same for every run seed (seeds then differ in training only)."""


class TeacherObjective(nn.Module):
    """Teacher loss: the mean of the streams' cross-entropies (each stream learns alone)."""

    def __init__(self, model: GCNTeacher) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        out = self.model(x, return_features=True)
        losses = [F.cross_entropy(s, y) for s in out.stream_logits]
        loss = torch.stack(losses).mean()
        parts = {f"ce_{m}": float(l.detach()) for m, l in zip(self.model.modalities, losses, strict=True)}
        return loss, parts, out.logits


class StudentObjective(nn.Module):
    """Student loss: :class:`~mksgn.train.distill.DistillationLoss` (the teacher is frozen)."""

    def __init__(self, model: MKSGN, distill: DistillationLoss, teacher: GCNTeacher | None) -> None:
        super().__init__()
        self.model = model
        self.distill = distill
        self._teacher = [teacher]  # not a submodule: not trained, not checkpointed with the student

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        out = self.model(x, return_features=True)
        teacher_out = None
        if self.distill.needs_teacher:
            with torch.no_grad():
                teacher_out = self._teacher[0](x, return_features=True)
        loss, parts = self.distill(out, y, self.model.fusion.logits, teacher_out)
        return loss, parts, out.logits


def data_description(splits: DatasetSplits, cfg: Config, file: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a checkpoint records about its data.

    ``path`` (absolute, None for the built-in dataset) and ``sha256`` come from ``file``
    (:func:`~mksgn.data.recorded.data_record`); without it, the path from the dataset's
    source and no fingerprint. :func:`~mksgn.data.recorded.recorded_data` reads them back.
    """
    if file is None:
        path, _ = recorded_data({"source": splits.train.source})
        file = {"path": None if path is None else str(Path(path).absolute()), "sha256": None}
    return {
        "path": file["path"],
        "sha256": file["sha256"],
        "class_names": list(splits.train.class_names),
        "layout": splits.train.layout,
        "modalities": list(cfg.data.modalities),
        "frames": cfg.data.frames,
        "coords": int(splits.train.data.shape[1]),
        "normalise": cfg.data.normalise,
        "source": splits.train.source,
        "benchmark": splits.benchmark,
    }


def build_teacher(cfg: Config, data: dict[str, Any]) -> GCNTeacher:
    from mksgn.data.skeletons import get_layout

    return GCNTeacher(cfg.teacher, get_layout(data["layout"]), len(data["class_names"]), tuple(data["modalities"]),
                      int(data.get("coords", 3)))


def build_student(cfg: Config, data: dict[str, Any]) -> MKSGN:
    from mksgn.data.skeletons import get_layout

    return MKSGN(cfg.student, get_layout(data["layout"]), len(data["class_names"]), tuple(data["modalities"]),
                 int(data.get("coords", 3)))


def load_teacher(path: str | os.PathLike[str], data: dict[str, Any], for_training: bool = False) -> GCNTeacher:
    """A trained teacher from its checkpoint; refused if its data differs from this run's.

    ``for_training``: it will distil a student whose checkpoint is chosen on ``data``'s
    validation split, so it must not have trained on those samples: refused when its own
    validation split differs, warned of when it records none (trained on the whole split).
    """
    record = load_checkpoint(path, kind="teacher")
    theirs = record["data"]
    if for_training:
        _check_teacher_validation(path, theirs.get("validation"), data.get("validation"))
    for key in ("class_names", "layout", "modalities", "frames", "coords", "normalise"):
        default = {"coords": 3, "normalise": "none"}.get(key)  # records from before 2-D data / normalisation
        if theirs.get(key, default) != data.get(key, default):
            raise CheckpointError(f"{path}: teacher trained with another {key} ({theirs.get(key, default)!r} vs "
                                  f"{data.get(key, default)!r})")
    teacher = build_teacher(Config.from_dict(record["config"], str(path)), data)
    teacher.load_state_dict(record["model"])
    return teacher


class TeacherValidationWarning(MksgnWarning):
    """A given teacher records no validation split: it may have trained on the student's."""


def _check_teacher_validation(path: str | os.PathLike[str], theirs: Any, ours: Any) -> None:
    if theirs is None:
        warnings.warn(f"{path}: the teacher records no validation split (trained on the whole training split), so "
                      f"it has seen this run's validation samples: the student's chosen epoch may be optimistic "
                      f"(the test figures are not affected)", TeacherValidationWarning, stacklevel=3)
    elif theirs != ours:
        raise CheckpointError(f"{path}: the teacher held out another validation split ({theirs}) than this run "
                              f"({ours}): it trained on some of this run's validation samples")


def load_student(path: str | os.PathLike[str]) -> tuple[MKSGN, Config, dict[str, Any]]:
    """A trained student, its config and data description, from a checkpoint."""
    record = load_checkpoint(path, kind="student")
    cfg = Config.from_dict(record["config"], str(path))
    model = build_student(cfg, record["data"])
    grid = record.get("fixed_point")
    try:
        if grid is not None:  # snapped (mksgn-snap): the deployment form, its grid
            from mksgn.train.deployment import apply_grid, deployment_skeleton

            model = deployment_skeleton(model)
            model.load_state_dict(record["model"])
            apply_grid(model, grid)
        else:
            model.load_state_dict(record["model"])
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: its weights or fixed-point grid do not fit its config ({first})") from exc
    return model.eval(), cfg, record["data"]


def _final_eval(trainer: Trainer, test: SkeletonInputs, val: SkeletonInputs, classes: list[str], out: Path,
                ctx: RunContext) -> dict:
    """The test split, touched once at the end: the last epoch's checkpoint, then the one chosen on
    validation (which the model keeps). Rank 0 writes ``eval_<kind>.json`` (the chosen checkpoint's
    figures, the last epoch's beside them), ``confusion_<kind>.png`` and the ``test`` section of
    ``metrics.json``."""
    measured_on = f"test split of {test.dataset.source} ({len(test)} samples)"
    figures = {}
    for which in ("last", "best"):
        record = load_checkpoint(trainer.path(which), kind=trainer.kind)
        if which == "best" and record["epoch"] == figures["last"]["epoch"]:
            figures["best"] = figures["last"]
            continue
        trainer.model.load_state_dict(record["model"])
        figures[which] = {**trainer.evaluate(test, len(classes), trainer.model), "epoch": record["epoch"]}
    if figures["best"] is figures["last"]:
        trainer.model.load_state_dict(load_checkpoint(trainer.path("best"), kind=trainer.kind)["model"])
    best = figures["best"]
    summary = {which: {k: figures[which][k] for k in ("epoch", "top1", "top5", "loss")} for which in figures}
    result = {**best, "checkpoint": trainer.path("best").name, "measured_on": measured_on, "class_names": classes,
              "chosen_on": f"validation top-1 ({val.describe()}); the test split chose nothing",
              "val_top1": trainer.best["top1"], "last_epoch": summary["last"]}
    if ctx.is_main:
        atomic_write_text(out / f"eval_{trainer.kind}.json", json.dumps(result, indent=1) + "\n")
        plot_confusion(best["confusion"], classes, out / f"confusion_{trainer.kind}.png",
                       f"{trainer.kind} (epoch {best['epoch']}, chosen on validation): top-1 {best['top1']:.3f}, "
                       f"top-5 {best['top5']:.3f} on {measured_on}")
        path = out / "metrics.json"
        metrics = json.loads(path.read_text())
        metrics[trainer.kind]["test"] = {**summary, "measured_on": measured_on}
        atomic_write_text(path, json.dumps(metrics, indent=1) + "\n")
    return result


def _baseline(splits: DatasetSplits, held: ValidationSplit, out: Path, normalise: str) -> dict[str, Any]:
    """The linear baseline (:mod:`mksgn.train.baseline`) on this run's split, into ``metrics.json``
    (a resumed run keeps the one it recorded for the same split)."""
    path = out / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    kept = metrics.get("baseline")
    if kept and kept.get("validation") == held.to_dict() and kept.get("normalise") == normalise:
        return kept
    report = baseline_report(splits.train.subset(held.train), splits.train.subset(held.val), splits.test,
                             held.describe(), normalise)
    report["validation"] = held.to_dict()
    atomic_write_text(path, json.dumps({**metrics, "baseline": report}, indent=1) + "\n")
    return report


def _main_rank() -> bool:
    """Whether this process is rank 0 (``RANK`` as torchrun sets it; a single process is)."""
    return int(os.environ.get("RANK", "0")) == 0


def train_run(cfg: Config, out: str | os.PathLike[str], data_path: str | None = None, teacher_ckpt: str | None = None,
              seed: int = 0, device: str = "auto", resume: bool = False, progress: bool = True,
              log: Callable[[str], None] = print, stop_after: int | None = None) -> dict[str, Any]:
    """Train teacher (unless given or not needed) and student; return the final evaluations.

    Holds the folder's lock while it trains. ``resume=False`` starts a new run (refused in
    a folder that holds a run's progress); ``resume=True`` continues the folder's run, which
    must be this one (same resolved config, data file and content, teacher and seed), or
    starts it when the folder holds none. ``stop_after``: train at most this many epochs in
    this call (teacher and student together), then stop as if interrupted.
    """
    main = _main_rank()
    file = data_record(data_path, fingerprint=main)
    settings = RunSettings(config=cfg.name, data=file["path"], data_sha256=file["sha256"], seed=seed,
                           teacher=None if teacher_ckpt is None else str(Path(teacher_ckpt).absolute()))
    with run_lock(out, log, enabled=main):
        record = read_run_record(out) if main else None
        if main and resume and record is not None:
            _check_same_run(out, record, settings, cfg)
        elif main and not resume:
            check_new_run(out, settings, cfg.to_dict())
        write = main and (not resume or record is None)
        return _train(cfg, Path(out), settings, device, resume, progress, log, stop_after, write)


def _check_same_run(out: str | os.PathLike[str], record: dict[str, Any], settings: RunSettings, cfg: Config) -> None:
    """Refuse to resume a recorded run with other data, teacher, seed or resolved config."""
    theirs = RunSettings.from_dict(record["settings"])
    differ = [name for name in ("data", "data_sha256", "teacher", "seed")
              if getattr(theirs, name) != getattr(settings, name)]
    if record.get("config") != cfg.to_dict():
        differ.append("config")
    if differ:
        raise RunStateError(f"{out} holds a run of other settings (differs in {', '.join(differ)}): "
                            f"train into another --out")


def train_command(out: str | os.PathLike[str], flags: Mapping[str, Any], resume: bool = False, device: str = "auto",
                  progress: bool = True, log: Callable[[str], None] = print,
                  stop_after: int | None = None) -> dict[str, Any]:
    """What ``mksgn-train`` does: a new run from ``flags``, or with ``resume`` the folder's own run.

    ``flags`` holds the settings flags given (``config``, ``overrides`` (``--set``), ``data``,
    ``teacher``, ``kd``, ``seed``, ``epochs``; ``None`` or absent when not given). With
    ``resume`` the run's ``run.json`` supplies them; a given one must agree with it.
    """
    main = _main_rank()
    if resume:  # bad flags are refused before the folder is touched (run.json is written atomically)
        settings, config = resume_settings(out, flags, fingerprint=main)
        cfg = Config.from_dict(config, str(Path(out) / "run.json"))
    else:
        settings = settings_from_flags(flags, fingerprint=main)
        cfg = load_config(settings.config, settings.config_overrides())
    with run_lock(out, log, enabled=main):
        if main and resume:
            log(resume_summary(out, settings, cfg))
        elif main:
            check_new_run(out, settings, cfg.to_dict())
        return _train(cfg, Path(out), settings, device, resume, progress, log, stop_after, main and not resume)


def resume_summary(out: str | os.PathLike[str], settings: RunSettings, cfg: Config) -> str:
    """One line: what ``--resume`` continues (data, config, where each model stands)."""
    data = "the built-in dataset" if settings.data is None else f"{settings.data} (sha256 unchanged)"
    config = settings.config + "".join(f" --set {o}" for o in settings.overrides)
    flags = "".join(f" --{k} {v}" for k, v in (("kd", settings.kd), ("epochs", settings.epochs),
                                                ("teacher", settings.teacher)) if v is not None)
    path = Path(out) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    stages = []
    for kind, optim in (("teacher", cfg.train_teacher), ("student", cfg.train_student)):
        section = metrics.get(kind, {})
        done = len(section.get("epochs", []))
        part = f" + part of epoch {done + 1}" if (Path(out) / f"{kind}_interrupted.pt").is_file() else ""
        early = " (stopped early)" if section.get("stopped_early") else ""
        if done or part or kind == "student":
            stages.append(f"{kind} {done}/{section.get('schedule_epochs', optim.epochs)} epochs{part}{early}")
    return (f"resuming {out}: data {data}; config {config}{flags} --seed {settings.seed}; "
            f"{', '.join(stages)}")


def _run_data(cfg: Config, settings: RunSettings) -> tuple[DatasetSplits, dict[str, Any], ValidationSplit,
                                                           tuple[SkeletonInputs, SkeletonInputs, SkeletonInputs]]:
    """The run's data: the splits, the description checkpoints record, the validation split, and
    the training, validation and test inputs. A frame-count mismatch is warned of and recorded."""
    splits = load_dataset(settings.data)
    data = data_description(splits, cfg, {"path": settings.data, "sha256": settings.data_sha256})
    mismatch = warn_frame_mismatch(splits.train, cfg.data.frames)
    if mismatch:
        data["frames_note"] = mismatch
    held = validation_split(splits.train, cfg.data.val_fraction, VALIDATION_SEED)
    data["validation"] = held.to_dict()
    frames, mods, norm = cfg.data.frames, cfg.data.modalities, cfg.data.normalise
    train = SkeletonInputs(splits.train.subset(held.train), frames, mods, cfg.data.p_interval,
                           f"{len(held.train)} training samples of {splits.train.source}",
                           augment=cfg.data.augmentation(), normalise=norm)
    val = SkeletonInputs(splits.train.subset(held.val), frames, mods, None, f"{held.describe()} of {splits.train.source}",
                         normalise=norm)
    return splits, data, held, (train, val, SkeletonInputs(splits.test, frames, mods, None, normalise=norm))


def _schedule(kind: str, optim: OptimConfig, samples: int, batch_size: int, world_size: int,
              say: Callable[[str], None]) -> OptimConfig:
    """``optim`` for this training split (:meth:`OptimConfig.for_data`), said when it differs."""
    batches = -(-(-(-samples // world_size)) // batch_size)  # per process and epoch
    adapted = optim.for_data(batches)
    if adapted.epochs != optim.epochs:
        say(f"{kind}: {adapted.epochs} epochs instead of {optim.epochs}: at least {optim.min_steps} optimiser "
            f"steps at {batches} per epoch (train_{kind}.min_steps)")
    return adapted


def _train(cfg: Config, out: Path, settings: RunSettings, device: str, resume: bool, progress: bool,
           log: Callable[[str], None], stop_after: int | None, write_record: bool) -> dict[str, Any]:
    """Train (the folder is locked and checked); ``write_record``: write ``run.json`` once the data are read."""
    budget = [stop_after]
    seed = settings.seed

    def stage(kind: str, objective: nn.Module, optim) -> dict[str, Any] | None:
        """Train one model (resuming, within the epoch budget) and evaluate its best checkpoint.

        Returns its final evaluation, or None when stopped before its last epoch.
        """
        adapted = _schedule(kind, optim, len(train), cfg.data.batch_size, ctx.world_size, say)
        trainer = Trainer(kind, objective, adapted, ctx, out, payload, seed, cfg.data.batch_size, progress)
        where = trainer.resume() if resume else None
        if where:
            say(f"{kind}: {where}")
        if not trainer.finished:
            before = trainer.start_epoch
            trainer.fit(train, val, len(classes), say, max_epochs=budget[0])
            if budget[0] is not None:
                budget[0] -= trainer.start_epoch - before
            if not trainer.finished:
                say(f"{kind}: stopped after epoch {trainer.start_epoch} (--stop-after); continue with --resume")
                return None
        result = _final_eval(trainer, test, val, classes, out, ctx)
        last = result["last_epoch"]
        say(f"{kind}: test top-1 {result['top1']:.3f} top-5 {result['top5']:.3f} at epoch {result['epoch']} "
            f"(chosen on validation), last epoch {last['epoch']}: {last['top1']:.3f}; on {result['measured_on']}")
        return result

    ctx = init_context(device)
    say = log if ctx.is_main else (lambda _msg: None)
    try:
        splits, data, held, (train, val, test) = _run_data(cfg, settings)
        classes = data["class_names"]
        payload = {"config": cfg.to_dict(), "data": data}
        results: dict[str, Any] = {}
        if write_record:
            write_run_record(out, settings, cfg.to_dict())
        if ctx.is_main:
            results["baseline"] = _baseline(splits, held, out, cfg.data.normalise)
            say(f"baseline: {results['baseline']['model']}: test top-1 {results['baseline']['top1']:.3f} on "
                f"{results['baseline']['measured_on']}")
        say(f"data: {splits.train.source} ({splits.benchmark}): {len(train)} train, {len(val)} validation "
            f"(by {held.by}), {len(test)} test samples, "
            f"{len(classes)} classes; config {cfg.name}; {ctx.world_size} process(es) on {ctx.device}")

        teacher = None
        torch.manual_seed(seed + DISTILL_SEED_OFFSET)
        distill = DistillationLoss(cfg.distill, (cfg.student.branch_channels, *cfg.student.channels),
                                   cfg.teacher.channels, len(cfg.data.modalities), len(classes))
        if distill.needs_teacher and settings.teacher:
            teacher = load_teacher(settings.teacher, data, for_training=True).to(ctx.device).eval()
            say(f"teacher: loaded {settings.teacher}")
        elif distill.needs_teacher:
            torch.manual_seed(seed + TEACHER_SEED_OFFSET)
            teacher = build_teacher(cfg, data)
            results["teacher"] = stage("teacher", TeacherObjective(teacher), cfg.train_teacher)
            if results["teacher"] is None:
                return {"stopped": True}
            teacher.eval()
        else:
            say("teacher: not needed (--kd none)")

        torch.manual_seed(seed + STUDENT_SEED_OFFSET)
        student = build_student(cfg, data)
        scale = torch.as_tensor(1.0 / train.channel_std())
        for i, name in enumerate(cfg.data.modalities):
            student.input_scale[name].scale.copy_(scale[i])
        results["student"] = stage("student", StudentObjective(student, distill, teacher), cfg.train_student)
        if results["student"] is None:
            return {"stopped": True}
        if ctx.is_main:
            metrics = json.loads((out / "metrics.json").read_text())
            plot_training_curves(metrics, out / "training_curves.png", f"config {cfg.name} on {splits.train.source}",
                                 {"kd_soft": cfg.distill.alpha, "kd_feature": cfg.distill.beta,
                                  "mi_guidance": cfg.distill.mi_weight})
        return results
    finally:
        close_context(ctx)
