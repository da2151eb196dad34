"""The training loop shared by teacher and student: SGD, schedule, DDP, metrics, checkpoints.

One :class:`Trainer` trains one model (an *objective* module that returns its loss) for
the epochs of an :class:`~mksgn.train.config.OptimConfig`. Per epoch it evaluates the
*validation* split (never the test split: :meth:`Trainer.fit` is not given it) and writes
``metrics.json`` and ``<kind>_last.pt`` (plus ``<kind>_best.pt`` on a new best validation
top-1, ties to the lower validation loss), all atomically; it stops early once ``patience``
epochs passed without a new best. ``resume`` continues from ``<kind>_last.pt``. Ctrl-C (SIGINT), or SIGTERM
under ``mksgn-train`` (a cluster's pre-emption), during an epoch takes effect at the end of the current batch: the state then (model, optimiser,
training-only modules, RNG, the position in the epoch and its partial metrics) goes to
``<kind>_interrupted.pt`` and ``resume`` continues from that batch (a second Ctrl-C stops at
once, as does any KeyboardInterrupt raised in the loop: that saves the position and RNG of the last
batch boundary, with the model as it is, so a step cut in half may leave part of its update). Under
``torchrun`` it runs DistributedDataParallel (gloo on CPU, nccl on GPU) with a
distributed sampler; rank 0 alone writes files (an interrupt there keeps only the last
completed epoch: mid-epoch states differ between processes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from mksgn.atomic import atomic_write_text
from mksgn.cli import Terminated, raise_terminated
from mksgn.data.pipeline import SkeletonInputs
from mksgn.train.averaging import WeightAverage
from mksgn.train.checkpoint import load_checkpoint, save_checkpoint
from mksgn.train.config import OptimConfig
from mksgn.train.neuron import LIF

LOSS_CURVE_POINTS = 4
"""The training loss of an epoch is also reported as this many consecutive chunk means."""


@dataclass(frozen=True)
class RunContext:
    """Where this process runs: rank, world size and device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if available), ``cpu`` or ``cuda``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from mksgn.errors import MksgnError

        raise MksgnError("--device cuda: no CUDA device is available")
    return torch.device(name)


def init_context(device: str = "auto") -> RunContext:
    """Start the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        return RunContext(0, 1, dev)
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return RunContext(rank, world, dev)


def close_context(ctx: RunContext) -> None:
    """Tear down the process group, if any."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def learning_rate(cfg: OptimConfig, progress: float) -> float:
    """LR at ``progress`` epochs: linear warm-up, then cosine to 0 or steps by ``gamma``."""
    if cfg.warmup_epochs and progress < cfg.warmup_epochs:
        return cfg.lr * (progress + 1e-3) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, (progress - cfg.warmup_epochs) / span)))
    return cfg.lr * cfg.gamma ** sum(progress >= m for m in cfg.milestones)


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or AdamW; weight decay on weight matrices and kernels only."""
    decay, plain = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else plain).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def rng_state() -> dict[str, Any]:
    """Torch's random number generator states (CPU, and every CUDA device when present)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": list(cuda)}


def set_rng_state(state: dict[str, Any] | None) -> None:
    """Restore :func:`rng_state` (CUDA states only onto as many devices)."""
    if not state:
        return
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def interruption(signum: int) -> BaseException:
    """The exception a signal stands for: ``KeyboardInterrupt`` (SIGINT) or :class:`~mksgn.cli.Terminated`."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], int | None]]:
    """Within the block, a first SIGINT (or SIGTERM under :func:`mksgn.cli.run_cli`) only records
    the signal (the caller stops at a safe point, raising :func:`interruption`); a second one
    interrupts at once. Yields the reader of the recorded signal (``None``: none yet). Outside
    the main thread, or where a signal has a handler other than the expected one, it is left alone."""
    flag: list[int] = []
    expected = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: raise_terminated}
    taken = {}
    if threading.current_thread() is threading.main_thread():
        taken = {s: h for s, h in expected.items() if signal.getsignal(s) is h}

    def handler(signum: int, frame: object) -> None:
        if flag:
            raise interruption(signum)
        flag.append(signum)

    for signum in taken:
        signal.signal(signum, handler)
    try:
        yield lambda: flag[0] if flag else None
    finally:
        for signum, previous in taken.items():
            signal.signal(signum, previous)


def parameter_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (to check that ranks agree)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class SpikeRates:
    """Mean spike rate per LIF population, accumulated through forward hooks."""

    def __init__(self, model: nn.Module) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.handles = [
            m.register_forward_hook(self._hook(name)) for name, m in model.named_modules() if isinstance(m, LIF)
        ]

    def _hook(self, name: str) -> Callable:
        def hook(module, args, out) -> None:
            spikes = out[0]
            self.sums[name] = self.sums.get(name, 0.0) + float(spikes.sum())
            self.counts[name] = self.counts.get(name, 0) + spikes.numel()
        return hook

    def close(self) -> dict[str, float]:
        for h in self.handles:
            h.remove()
        return {k: self.sums[k] / max(self.counts[k], 1) for k in self.sums}


class Trainer:
    """Train one objective; see the module docstring.

    Parameters
    ----------
    kind
        ``"teacher"`` or ``"student"``: names the files.
    objective
        ``objective(x, y) -> (loss, parts: dict[str, float], logits)``; its ``model``
        attribute is the network evaluated and checkpointed.
    optim
        Epochs, learning rate and schedule.
    ctx
        Rank, world size, device.
    out
        Run folder.
    checkpoint_payload
        Plain data stored in every checkpoint (config, data description, seed).
    """

    def __init__(self, kind: str, objective: nn.Module, optim: OptimConfig, ctx: RunContext, out: Path,
                 checkpoint_payload: dict[str, Any], seed: int, batch_size: int, progress: bool = True) -> None:
        self.kind = kind
        self.objective = objective.to(ctx.device)
        self.optim_cfg = optim
        self.ctx = ctx
        self.out = Path(out)
        self.payload = checkpoint_payload
        self.seed = seed
        self.batch_size = batch_size
        self.progress = progress and ctx.is_main
        self.optimizer = make_optimizer(self.objective, optim)
        self.average = WeightAverage(self.model, optim.ema_decay) if optim.ema_decay > 0 else None
        self.wrapped: nn.Module = self.objective
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(self.objective, device_ids=ids)
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"top1": -1.0, "loss": None, "epoch": -1}  # loss None: none yet
        self.stopped_early: int | None = None  # the epoch after which patience ran out
        self.position: dict[str, Any] | None = None  # the epoch in progress (plain data), or None
        self.resume_position: dict[str, Any] | None = None  # where a resumed epoch continues
        self.batch_rng: dict[str, Any] | None = None  # the RNG at the last batch boundary

    @property
    def model(self) -> nn.Module:
        return self.objective.model

    @property
    def evaluated(self) -> nn.Module:
        """The weights validated and checkpointed as ``model``: the weight average where there is one."""
        return self.model if self.average is None else self.average.model

    def path(self, which: str) -> Path:
        return self.out / f"{self.kind}_{which}.pt"

    # -- checkpoints ---------------------------------------------------------------------
    def state(self, epoch: int, history: list[dict[str, Any]] | None = None,
              best: dict[str, Any] | None = None) -> dict[str, Any]:
        extra = {k: v for k, v in self.objective.state_dict().items() if not k.startswith("model.")}
        return {
            **self.payload,
            "kind": self.kind,
            "epoch": epoch,
            "seed": self.seed,
            "world_size": self.ctx.world_size,
            "model": self.evaluated.state_dict(),
            **({} if self.average is None else {"trained": self.model.state_dict(),
                                                "average": self.average.state_dict()}),
            "extra": extra,
            "optimizer": self.optimizer.state_dict(),
            "best": dict(self.best if best is None else best),
            "stopped_early": self.stopped_early,
            "epochs": self.optim_cfg.epochs,
            "history": self.history if history is None else history,
            "rng": rng_state(),
        }

    def resume(self) -> str | None:
        """Continue from ``<kind>_interrupted.pt`` (the epoch after ``<kind>_last.pt``, mid-way)
        or ``<kind>_last.pt``; returns where it continues, or None when there is neither."""
        record = None
        if self.path("last").is_file():
            record = load_checkpoint(self.path("last"), kind=self.kind, config=self.payload["config"])
        done = int(record["epoch"]) if record else 0
        if self.path("interrupted").is_file():
            inter = load_checkpoint(self.path("interrupted"), kind=self.kind, config=self.payload["config"])
            if int(inter["epoch"]) == done and not self.ctx.distributed:
                record = inter
            elif self.ctx.is_main:  # older than the last completed epoch: spent
                self.path("interrupted").unlink(missing_ok=True)
        if record is None:
            return None
        self._check_resumable(record)
        trained = record.get("trained", record["model"])
        self.objective.load_state_dict({**{f"model.{k}": v for k, v in trained.items()}, **record["extra"]})
        if self.average is not None:
            self.average.load(record["model"], record.get("average", {"steps": 0}))
        self.optimizer.load_state_dict(record["optimizer"])
        self.start_epoch = int(record["epoch"])
        self.history = list(record["history"])
        self.best = dict(record["best"])
        self.stopped_early = record.get("stopped_early")
        set_rng_state(record.get("rng"))
        self.resume_position = record.get("position")
        if self.resume_position is None:
            return f"resumed after epoch {self.start_epoch}"
        pos = self.resume_position
        return f"resumed in epoch {pos['epoch'] + 1} at batch {pos['batch']} of {pos['batches']}"

    def _check_resumable(self, record: dict[str, Any]) -> None:
        """Refuse a checkpoint of another schedule, or from before validation splits (its best was
        chosen on the test split and it trained on the whole training split)."""
        from mksgn.errors import MksgnError

        where = self.path("last")
        if "stopped_early" not in record:
            raise MksgnError(f"{where}: written before mksgn chose checkpoints on a validation split (its best "
                             f"epoch was chosen on the test split); start a new run in another --out")
        epochs = record.get("epochs", self.optim_cfg.epochs)
        if epochs != self.optim_cfg.epochs:
            raise MksgnError(f"{where}: the run's schedule has {epochs} epochs, now {self.optim_cfg.epochs} (the "
                             f"epochs follow the data and the number of processes: resume with as many processes)")

    @property
    def finished(self) -> bool:
        """All epochs trained, or stopped early (no new best validation top-1 for ``patience`` epochs)."""
        return self.start_epoch >= self.optim_cfg.epochs or self.stopped_early is not None

    def improves(self, val: dict[str, Any]) -> bool:
        """Whether validation metrics beat the best so far: higher top-1, or equal top-1 and lower loss."""
        best_loss = math.inf if self.best.get("loss") is None else self.best["loss"]
        return (val["top1"], -val["loss"]) > (self.best["top1"], -best_loss)

    def patience_ran_out(self, epoch: int) -> bool:
        """Whether ``patience`` epochs (0: never) have passed since the best, after ``epoch`` epochs."""
        patience = self.optim_cfg.patience
        return bool(patience) and epoch < self.optim_cfg.epochs and epoch - self.best["epoch"] >= patience

    # -- loops ---------------------------------------------------------------------------
    def _all_reduce(self, values: list[float]) -> list[float]:
        if not self.ctx.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def _step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, b: int,
              n_batches: int) -> tuple[float, dict, int, float]:
        """One optimiser step; returns (loss, loss parts, correct predictions, learning rate)."""
        lr = learning_rate(self.optim_cfg, epoch + b / n_batches)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = x.to(self.ctx.device), y.to(self.ctx.device)
        loss, parts, logits = self.wrapped(x, y)
        if not torch.isfinite(loss):
            from mksgn.errors import MksgnError

            raise MksgnError(f"{self.kind} training diverged at epoch {epoch + 1}, batch {b}: loss {float(loss)}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.model)
        return float(loss.detach()), parts, int((logits.argmax(1) == y).sum()), lr

    def train_epoch(self, data: SkeletonInputs, epoch: int, resume_at: dict[str, Any] | None = None) -> dict[str, Any]:
        """Train one epoch (from ``resume_at``, an interrupted epoch's position, if given).

        ``self.position`` follows the epoch batch by batch (what an interrupt saves).
        """
        self.wrapped.train()
        sampler = DistributedSampler(range(len(data)), num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                     shuffle=True, seed=self.seed)
        sampler.set_epoch(epoch)
        indices = list(sampler)
        n_batches = math.ceil(len(indices) / self.batch_size)
        pos = self.position = {"epoch": epoch, "batch": 0, "batches": n_batches, "sums": {}, "seen": 0,
                               "correct": 0, "curve": [], "seconds": 0.0, **(resume_at or {})}
        self.batch_rng = rng_state()
        bar = tqdm(total=len(indices), initial=min(pos["batch"] * self.batch_size, len(indices)),
                   desc=f"{self.kind} epoch {epoch + 1}/{self.optim_cfg.epochs}",
                   disable=not self.progress, leave=False, unit="sample")
        start, before = time.perf_counter(), pos["seconds"]
        batches = data.batches(indices, self.batch_size, seed=self.seed * 1000 + self.ctx.rank, epoch=epoch,
                               first=pos["batch"])
        with deferred_interrupt() as interrupted:
            for b, (x, y) in enumerate(batches, start=pos["batch"]):
                loss, parts, correct, lr = self._step(x, y, epoch, b, n_batches)
                n = len(y)
                sums = dict(pos["sums"])
                for k, v in {"loss": loss, **parts}.items():
                    sums[k] = sums.get(k, 0.0) + v * n
                pos.update(batch=b + 1, sums=sums, seen=pos["seen"] + n, correct=pos["correct"] + correct,
                           curve=[*pos["curve"], loss], seconds=before + time.perf_counter() - start)
                self.batch_rng = rng_state()
                bar.update(n)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.4f}")
                if interrupted() is not None:
                    raise interruption(interrupted())
        bar.close()
        return self._epoch_metrics(epoch, pos)

    def _epoch_metrics(self, epoch: int, pos: dict[str, Any]) -> dict[str, Any]:
        """The training metrics of a finished epoch (reduced over ranks)."""
        if self.ctx.distributed:
            # DDP broadcasts buffers (BN statistics) before each forward, so the last step's
            # update is still rank-local: make every rank hold rank 0's buffers.
            averaged = [] if self.average is None else list(self.average.model.buffers())
            for buf in [*self.objective.buffers(), *averaged]:
                dist.broadcast(buf, 0)
        elapsed = max(pos["seconds"], 1e-9)
        sums, curve = pos["sums"], pos["curve"]
        keys = sorted(sums)
        reduced = self._all_reduce([sums[k] for k in keys] + [pos["seen"], pos["correct"]])
        total = reduced[-2]
        chunks = np.array_split(np.array(curve), min(LOSS_CURVE_POINTS, len(curve)))
        return {
            **{k: reduced[i] / total for i, k in enumerate(keys)},
            "top1": reduced[-1] / total,
            "samples": int(total),
            "seconds": round(elapsed, 3),
            "samples_per_s": round(total / elapsed, 2),
            "loss_curve": [float(c.mean()) for c in chunks],
            "lr_end": learning_rate(self.optim_cfg, epoch + 1.0),
        }

    @torch.no_grad()
    def evaluate(self, data: SkeletonInputs, num_classes: int, model: nn.Module | None = None) -> dict[str, Any]:
        """Top-1, top-5, loss, confusion matrix and spike rates of ``model`` (default: :attr:`evaluated`)
        on ``data`` (all ranks share)."""
        model = self.evaluated if model is None else model
        model.eval()
        rates = SpikeRates(model)
        indices = np.arange(self.ctx.rank, len(data), self.ctx.world_size)
        confusion = torch.zeros(num_classes * num_classes, dtype=torch.float64)
        top5 = loss_sum = 0.0
        for x, y in data.batches(indices, self.batch_size):
            logits = model(x.to(self.ctx.device)).cpu()
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            pred = logits.argmax(1)
            confusion += torch.bincount(y * num_classes + pred, minlength=num_classes**2).double()
            k = min(5, num_classes)
            top5 += float((logits.topk(k, dim=1).indices == y[:, None]).any(1).sum())
        spike = rates.close()
        names = sorted(spike)
        if self.ctx.distributed:
            dist.all_reduce(confusion)
            top5, loss_sum = self._all_reduce([top5, loss_sum])
            if names:
                t = torch.tensor([spike[k] * len(indices) for k in names], dtype=torch.float64)
                dist.all_reduce(t)
                spike = dict(zip(names, (t / len(data)).tolist(), strict=True))
        cm = confusion.view(num_classes, num_classes)
        n = float(cm.sum())
        return {
            "top1": float(cm.diag().sum()) / n,
            "top5": top5 / n,
            "loss": loss_sum / n,
            "samples": int(n),
            "confusion": cm.long().tolist(),
            "spike_rate": spike,
        }

    def fit(self, train: SkeletonInputs, val: SkeletonInputs, num_classes: int,
            log: Callable[[str], None] = print, max_epochs: int | None = None) -> dict[str, Any]:
        """Train the remaining epochs (at most ``max_epochs`` now), choosing the best checkpoint on
        ``val`` and stopping early on it; return the last record.

        On a KeyboardInterrupt the epoch in progress is saved (see :meth:`save_interrupted`)
        and the interrupt goes on.
        """
        record: dict[str, Any] = self.history[-1] if self.history else {}
        end = self.optim_cfg.epochs if max_epochs is None else min(self.optim_cfg.epochs, self.start_epoch + max_epochs)
        for epoch in range(self.start_epoch, end):
            if self.finished:
                break
            resume_at, self.resume_position = self.resume_position, None
            try:
                train_metrics = self.train_epoch(train, epoch, resume_at)
                val_metrics = self.evaluate(val, num_classes)
            except (KeyboardInterrupt, Terminated):
                self.save_interrupted(log)
                raise
            val_metrics.pop("confusion")
            record = {"epoch": epoch + 1, "train": train_metrics, "val": val_metrics,
                      "measured_on": {"train": train.describe(), "val": val.describe()}}
            history = [*self.history, record]
            improved = self.improves(val_metrics)
            best = ({"top1": val_metrics["top1"], "loss": val_metrics["loss"], "epoch": epoch + 1}
                    if improved else self.best)
            self.history, self.best = history, best
            self.stopped_early = epoch + 1 if self.patience_ran_out(epoch + 1) else None
            if self.ctx.is_main:
                state = self.state(epoch + 1, history, best)
                save_checkpoint(self.path("last"), state)
                if improved:
                    save_checkpoint(self.path("best"), state)
            self.position, self.start_epoch = None, epoch + 1
            if self.ctx.is_main:
                self.path("interrupted").unlink(missing_ok=True)
                self.write_metrics()
                log(f"{self.kind} epoch {epoch + 1}/{self.optim_cfg.epochs}: train loss {train_metrics['loss']:.3f} "
                    f"top-1 {train_metrics['top1']:.3f} | val top-1 {val_metrics['top1']:.3f} "
                    f"top-5 {val_metrics['top5']:.3f} ({val.describe()}) | {train_metrics['samples_per_s']:.0f} "
                    f"samples/s" + (" | new best" if improved else ""))
            if self.stopped_early is not None:
                log(f"{self.kind}: stopped early after epoch {epoch + 1}: no better validation top-1 for "
                    f"{self.optim_cfg.patience} epochs (best: epoch {best['epoch']})")
        if self.ctx.distributed:
            digests: list[str] = [""] * self.ctx.world_size
            dist.all_gather_object(digests, parameter_digest(self.model))
            record = {**record, "ranks_identical": len(set(digests)) == 1, "world_size": self.ctx.world_size}
            if self.history:
                self.history[-1] = record
            if self.ctx.is_main:
                self.write_metrics()
        return record

    def save_interrupted(self, log: Callable[[str], None] = print) -> Path | None:
        """Write the epoch in progress to ``<kind>_interrupted.pt`` (atomically; rank 0 of one process)."""
        pos = self.position
        if pos is None or not self.ctx.is_main or self.ctx.distributed:
            kept = f"{self.path('last')} holds epoch {self.start_epoch}" if self.start_epoch else "no epoch finished"
            if self.ctx.is_main:
                log(f"{self.kind}: interrupted; {kept}")
            return None
        state = {**self.state(self.start_epoch), "rng": self.batch_rng, "position": dict(pos)}
        save_checkpoint(self.path("interrupted"), state)
        log(f"{self.kind}: interrupted in epoch {pos['epoch'] + 1} after batch {pos['batch']} of {pos['batches']}; "
            f"saved {self.path('interrupted')}; continue with --resume")
        return self.path("interrupted")

    def write_metrics(self) -> None:
        """Update this trainer's section of ``metrics.json`` (atomically)."""
        path = self.out / "metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        section = metrics.get(self.kind, {})
        keep = {k: v for k, v in section.items() if k not in ("best", "epochs", "stopped_early", "schedule_epochs")}
        metrics[self.kind] = {**keep, "best": self.best, "stopped_early": self.stopped_early,
                              "schedule_epochs": self.optim_cfg.epochs, "epochs": self.history}
        atomic_write_text(path, json.dumps(metrics, indent=1, allow_nan=False) + "\n")
