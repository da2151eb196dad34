"""What a run folder knows about its own run: the settings record ``run.json`` and the lock.

``run.json`` (written atomically when a training starts) records the run's settings: the
config (preset name or absolute TOML path) with its ``--set`` overrides and the resolved
config, the data file (absolute path and SHA-256; the built-in dataset as such), the given
teacher, ``--kd``, ``--seed`` and ``--epochs``. ``mksgn-train --out DIR --resume`` restores
them from there (:func:`resume_settings`); a flag given again must agree with the record,
and a data file whose fingerprint changed is refused.

``train.lock`` marks a folder where a training is running (pid, host, boot id, process
start time). A second training into it is refused; a lock whose process is gone (or from
another host or boot) is reported and taken over (:class:`RunLock`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mksgn
from mksgn.atomic import atomic_write_text
from mksgn.data.recorded import data_record, file_sha256, recorded_data
from mksgn.errors import MksgnError

RUN_FILE = "run.json"
LOCK_FILE = "train.lock"
RUN_FORMAT = "mksgn-run"
RUN_FORMAT_VERSION = 1
PROGRESS_FILES = ("metrics.json",) + tuple(
    f"{kind}_{which}.pt" for kind in ("teacher", "student") for which in ("last", "best", "interrupted"))
"""Files that show a folder holds a run's progress (a run with none of them lost nothing)."""


class RunStateError(MksgnError, ValueError):
    """A run folder is busy, holds another run, has nothing to resume, or its data changed."""


# -- settings ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSettings:
    """The settings of a training run, as ``mksgn-train`` takes them (see the module docstring)."""

    config: str = "tiny"
    overrides: tuple[str, ...] = ()
    data: str | None = None
    data_sha256: str | None = None
    teacher: str | None = None
    kd: str | None = None
    seed: int = 0
    epochs: int | None = None

    def config_overrides(self) -> list[str]:
        """``--set`` values, then what ``--epochs`` (exactly that many: no ``min_steps``) and ``--kd`` set."""
        out = list(self.overrides)
        if self.epochs is not None:
            warm = min(self.epochs, 1)
            out += [f"train_teacher.epochs={self.epochs}", f"train_student.epochs={self.epochs}",
                    f"train_teacher.warmup_epochs={warm}", f"train_student.warmup_epochs={warm}",
                    "train_teacher.min_steps=0", "train_student.min_steps=0"]
        if self.kd is not None:
            out.append(f'distill.mode="{self.kd}"')
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "overrides": list(self.overrides)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSettings:
        names = set(cls.__dataclass_fields__)
        return cls(**{**{k: v for k, v in data.items() if k in names}, "overrides": tuple(data.get("overrides", ()))})


FLAGS = {"config": "--config", "overrides": "--set", "data": "--data", "teacher": "--teacher", "kd": "--kd",
         "seed": "--seed", "epochs": "--epochs"}
"""Settings field -> the ``mksgn-train`` flag that sets it."""


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().absolute())


def settings_from_flags(flags: Mapping[str, Any], fingerprint: bool = True) -> RunSettings:
    """Settings of a new run from the flags given (absent flags: their defaults)."""
    config = flags.get("config") or "tiny"
    if config not in ("tiny", "ntu"):
        config = _absolute(config)
    data = data_record(flags.get("data"), fingerprint)
    seed = flags.get("seed")
    return RunSettings(config=config, overrides=tuple(flags.get("overrides") or ()), data=data["path"],
                       data_sha256=data["sha256"], teacher=_absolute(flags.get("teacher")), kd=flags.get("kd"),
                       seed=0 if seed is None else int(seed), epochs=flags.get("epochs"))


def flag_conflicts(recorded: RunSettings, flags: Mapping[str, Any]) -> list[str]:
    """``"--flag: recorded X, given Y"`` for each flag given that disagrees with the record."""
    given = settings_from_flags({**recorded.to_dict(), **{k: v for k, v in flags.items() if v is not None}},
                                fingerprint=False)
    out = []
    for name, flag in FLAGS.items():
        if flags.get(name) is None:
            continue
        ours, theirs = getattr(recorded, name), getattr(given, name)
        if ours != theirs:
            show = (lambda v: " ".join(v) if v else "(none)") if name == "overrides" else repr
            out.append(f"{flag}: the run has {show(ours)}, given {show(theirs)}")
    return out


# -- run.json ------------------------------------------------------------------------------
def write_run_record(out: str | os.PathLike[str], settings: RunSettings, config: dict[str, Any]) -> Path:
    """Write ``out/run.json`` atomically: the settings and the resolved config."""
    path = Path(out) / RUN_FILE
    record = {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "mksgn_version": mksgn.__version__,
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "settings": settings.to_dict(), "config": config}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def read_run_record(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``out/run.json``, or ``None`` when there is none; refused when unreadable or foreign."""
    path = Path(out) / RUN_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunStateError(f"{path}: unreadable run record ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT \
            or not isinstance(record.get("settings"), dict):
        raise RunStateError(f"{path}: not an mksgn run record")
    if record.get("format_version") != RUN_FORMAT_VERSION:
        raise RunStateError(f"{path}: run record version {record.get('format_version')}, "
                            f"this mksgn reads {RUN_FORMAT_VERSION}")
    return record


def holds_progress(out: str | os.PathLike[str]) -> list[str]:
    """The progress files (metrics, checkpoints) in ``out``."""
    return [name for name in PROGRESS_FILES if (Path(out) / name).is_file()]


def check_data_unchanged(settings: RunSettings) -> None:
    """Refuse when the run's data file is gone or its SHA-256 differs from the record."""
    if settings.data is None:
        return
    if not Path(settings.data).is_file():
        raise RunStateError(f"{settings.data}: the run's data file is gone (recorded in {RUN_FILE})")
    now = file_sha256(settings.data)
    if settings.data_sha256 is not None and now != settings.data_sha256:
        raise RunStateError(f"{settings.data}: the run's data file changed since the run started "
                            f"(sha256 {settings.data_sha256[:12]}... then, {now[:12]}... now); "
                            f"restore it or train into another --out")


def resume_settings(out: str | os.PathLike[str], flags: Mapping[str, Any],
                    fingerprint: bool = True) -> tuple[RunSettings, dict[str, Any]]:
    """The recorded settings and resolved config of the run in ``out``, for ``--resume``.

    Refused when there is no run to resume, when a given flag disagrees with the record
    (naming the flag and both values), or when the data file changed.
    """
    record = read_run_record(out)
    if record is None:
        found = holds_progress(out)
        why = (f"it holds {', '.join(found)} but no {RUN_FILE} (a run from an older mksgn)" if found
               else "no training was started there")
        raise RunStateError(f"--resume: nothing to resume in {out}: {why}; start a new training without --resume")
    settings = RunSettings.from_dict(record["settings"])
    conflicts = flag_conflicts(settings, flags)
    if conflicts:
        raise RunStateError(f"--resume: {out} is a run with other settings: {'; '.join(conflicts)} "
                            f"(leave the flag out to keep the run's own, or train into another --out)")
    if fingerprint:
        check_data_unchanged(settings)
    return settings, record["config"]


def check_new_run(out: str | os.PathLike[str], settings: RunSettings, config: dict[str, Any]) -> None:
    """Refuse to start a new training in a folder that holds a run's progress."""
    found = holds_progress(out)
    if not found:
        return
    record = read_run_record(out)
    if record is None:
        what = f"training files ({', '.join(found)})"
    else:
        theirs = RunSettings.from_dict(record["settings"])
        differ = [FLAGS[k] for k in FLAGS if getattr(theirs, k) != getattr(settings, k)]
        if record.get("config") != config and not differ:
            differ.append("the config file's content")
        what = "a run of other settings (" + ", ".join(differ) + ")" if differ else "a run of these settings"
    raise RunStateError(f"{out} already holds {what}: continue it with --resume, or train into another --out")


# -- the lock ------------------------------------------------------------------------------
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_reason(lock: Mapping[str, Any]) -> str | None:
    """Why a lock's holder is surely not running (None: it may be)."""
    if lock.get("host") != socket.gethostname():
        return f"from host {lock.get('host')}"
    boot = _boot_id()
    if lock.get("boot_id") and boot and lock["boot_id"] != boot:
        return "from before a reboot"
    pid = lock.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return "unreadable"
    if not _alive(pid):
        return f"pid {pid} is not running"
    start = _process_start(pid)
    if lock.get("pid_start") and start and start != lock["pid_start"]:
        return f"pid {pid} is another process now"
    return None


class RunLock:
    """``out/train.lock``: held by one training at a time (see the module docstring).

    Use as a context manager; it is released on every exit (normal, error, Ctrl-C).
    """

    def __init__(self, out: str | os.PathLike[str], log: Callable[[str], None] = print) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self.log = log
        self.held = False

    def _content(self) -> str:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(),
                           "pid_start": _process_start(os.getpid()), "command": " ".join(sys.argv),
                           "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def _try_create(self) -> bool:
        """Create the lock with its content in one step (a hard link fails if it exists)."""
        fd, tmp = tempfile.mkstemp(prefix=f".{LOCK_FILE}.", dir=self.out)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(self._content())
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; refuse when a training holds it."""
        self.out.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._try_create():
                self.held = True
                return
            lock = self._read(self.path)
            if not self.path.is_file():  # released meanwhile
                continue
            reason = stale_reason(lock) if lock else "unreadable"  # a lock is created whole: garbage is stale
            if reason is None:
                raise RunStateError(f"{self.out}: a training is running there (pid {lock.get('pid')} on "
                                    f"{lock.get('host')}, since {lock.get('started')}); wait for it or train "
                                    f"into another --out")
            self._take_over(lock, reason)
        raise RunStateError(f"{self.out}: could not take the lock {self.path} (others keep taking it)")

    def _take_over(self, lock: Mapping[str, Any], reason: str) -> None:
        """Move a stale lock aside, checking it is still the one judged stale."""
        aside = self.path.with_name(f".{LOCK_FILE}.stale.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, aside)
            if self._read(aside) != dict(lock):  # another took it meanwhile: put it back
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)
            else:
                self.log(f"taking over a stale lock in {self.out} (pid {lock.get('pid', '?')}: {reason})")
            os.unlink(aside)

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held:
            if self._read(self.path).get("pid") == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def run_lock(out: str | os.PathLike[str], log: Callable[[str], None] = print, enabled: bool = True) -> Iterator[None]:
    """Hold :class:`RunLock` on ``out`` for the block (no lock when ``enabled`` is false)."""
    if not enabled:
        yield
        return
    with RunLock(out, log):
        yield
