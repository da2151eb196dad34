"""A Lava run that an interrupt (Ctrl-C, SIGTERM) stops cleanly.

Lava 0.10.0's multiprocessing runtime forks one OS process per process model and per runtime
service, and a shared-memory manager; its channels are ``/dev/shm/psm_*`` segments that the
manager unlinks when the runtime stops. Measured on ``mksgn-run --backend lava`` before this
module: a Ctrl-C (SIGINT to the whole process group) raised ``KeyboardInterrupt`` in every
child (one traceback each), the parent's ``stop()`` then waited forever for answers from
children that were gone, and 359 segments per network stayed behind; a SIGTERM to the
parent alone orphaned the children.

:func:`guarded_run` fixes both around a run:

- children forked by ``multiprocessing`` while it is active ignore SIGINT and take the
  default action on SIGTERM (a handler the parent installed is not inherited), so only the
  parent handles Ctrl-C; for the moment between the fork and that reset, the parent's
  SIGINT and SIGTERM handlers are wrapped for the run so that, in a child, they ignore
  SIGINT and exit quietly on SIGTERM (in the parent they act as before);
- a normal exit stops the runtime as before (``process.stop()``); an ordinary exception ends
  the children as an interrupt does (below: ``stop()`` after a child raised waits forever),
  and a child's own exception, which Lava reports only as "1 Exception(s) occurred", comes
  back as a :class:`LavaChildError` naming it;
- an interrupt (any ``BaseException`` that is not an ``Exception``: ``KeyboardInterrupt``,
  ``SystemExit``, a CLI's SIGTERM exception) does not talk to the children at all (their
  channels may be half-written): it terminates them (SIGTERM, then SIGKILL after
  ``timeout``), shuts the shared-memory manager down (which unlinks the segments), unlinks
  any segment still left, kills any other child forked during the run, marks the runtime as
  stopped (Lava's ``Runtime.__del__`` would otherwise wait on the dead channels), and
  re-raises. Further SIGINT/SIGTERM are ignored while this cleanup runs (a second Ctrl-C
  cannot leave it half done); it is bounded by about ``2 * timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from multiprocessing import util as mp_util
from multiprocessing.managers import SharedMemoryManager
from multiprocessing.shared_memory import SharedMemory
from typing import Any

from mksgn.errors import MksgnError

STOP_TIMEOUT = 2.0
"""Seconds a terminated child gets to exit before it is killed."""

RESIGNAL_DELAY = 0.05
"""Seconds after which a signal that arrived in a critical section is sent again."""


class LavaChildError(MksgnError, RuntimeError):
    """A Lava process raised in its own OS process; names the exception and where it was raised.

    Lava 0.10.0 reports it only as ``RuntimeError: 1 Exception(s) occurred. See output above``
    and logs the child's traceback at INFO level, which nobody sees. ``tracebacks`` holds the
    children's tracebacks in full.
    """

    def __init__(self, message: str, tracebacks: list[str]) -> None:
        super().__init__(message)
        self.tracebacks = tracebacks


def _infrastructure(process: Any) -> Any:
    """The multiprocessing message infrastructure of ``process``'s runtime (``None`` before compilation)."""
    return getattr(getattr(process, "runtime", None), "_messaging_infrastructure", None)


def child_errors(process: Any) -> list[tuple[BaseException, str]]:
    """The exceptions (and formatted tracebacks) the Lava processes of ``process``'s runtime raised."""
    found = []
    for actor in list(getattr(_infrastructure(process), "actors", None) or []):
        with contextlib.suppress(Exception):
            error = actor.exception  # Lava's SystemProcess: (exception, traceback text) or None
            if error:
                found.append(error)
    return found


def _child_error(errors: list[tuple[BaseException, str]]) -> LavaChildError:
    exc, tb = errors[0]
    frames = [line.strip() for line in tb.splitlines() if line.strip().startswith("File ")]
    where = f" ({frames[-1]})" if frames else ""
    more = f"; {len(errors) - 1} more Lava process(es) raised too" if len(errors) > 1 else ""
    return LavaChildError(f"a Lava process raised {type(exc).__name__}: {exc}{where}{more}", [t for _, t in errors])


class _ForkToken:
    """Keeps the after-fork hook registered while alive (``multiprocessing`` holds it weakly)."""


def _child_signals(_token: object) -> None:
    """In a forked child: Ctrl-C is the parent's to handle; SIGTERM ends the child quietly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop_children(children: list[Any], timeout: float) -> None:
    """Terminate ``multiprocessing`` children, wait up to ``timeout`` s, kill what is left, reap all."""
    alive = [c for c in children if _alive(c)]
    for child in alive:
        with contextlib.suppress(Exception):
            child.terminate()
    deadline = time.monotonic() + timeout
    for child in alive:
        with contextlib.suppress(Exception):
            multiprocessing.Process.join(child, max(0.0, deadline - time.monotonic()))
    for child in alive:
        if _alive(child):
            with contextlib.suppress(Exception):
                child.kill()
                multiprocessing.Process.join(child, timeout)


def _alive(child: Any) -> bool:
    try:
        return bool(child.is_alive())
    except Exception:  # closed (joined by Lava) or never started
        return False


def _segment_names(smm: Any) -> list[str]:
    """Names of the segments Lava's shared-memory manager handed out (read before it shuts down)."""
    return [h.name for h in list(getattr(smm, "_shared_memory_handles", None) or [])]


def _unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        segment = SharedMemory(name)
        segment.close()
        segment.unlink()


def abort_runtime(process: Any, before: set[int], timeout: float = STOP_TIMEOUT) -> None:
    """Stop the Lava runtime of ``process`` without talking to its children; see the module doc.

    Parameters
    ----------
    process
        Any Lava process of the network (its ``runtime`` is ``None`` until it compiled).
    before
        Process ids of this process's ``multiprocessing`` children before the run (left alone).
    timeout
        Seconds each group of children gets to exit before it is killed.
    """
    runtime = getattr(process, "runtime", None)
    infra = _infrastructure(process)
    _stop_children(list(getattr(infra, "actors", None) or []), timeout)
    smm = getattr(infra, "smm", None)
    if smm is not None:
        names = _segment_names(smm)
        with contextlib.suppress(Exception):
            smm.shutdown()  # the manager unlinks every segment it tracked
        for name in names:
            with contextlib.suppress(Exception):
                _unlink(name)
    _stop_children([c for c in multiprocessing.active_children() if c.pid not in before], timeout)
    if runtime is not None:
        runtime._is_started = False
        runtime._is_running = False


def _in_critical_section(frame: Any) -> bool:
    """Whether ``frame`` runs where an exception would lose track of a child or a segment.

    That is inside ``multiprocessing``'s ``Process.start`` (the fork, its hooks, and the
    child's registration) or the creation of a shared-memory segment (between ``shm_open``
    and its registration with the manager).
    """
    codes = (multiprocessing.process.BaseProcess.start.__code__, SharedMemory.__init__.__code__,
             SharedMemoryManager.SharedMemory.__code__)
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


class RunGuard:
    """What :func:`guarded_run` yields: its signal handlers, and :meth:`check` between Lava calls.

    A signal handler's exception is lost when it fires inside an at-fork hook (CPython
    prints "Exception ignored" and goes on; measured: a Ctrl-C while Lava forked its
    processes, inside ``logging``'s lock release, printed that and let the run finish with
    status 0), and one raised between the fork and the child's registration would orphan
    the child (measured: a Ctrl-C inside ``SharedMemory()`` left a segment nobody tracked).
    So a signal that arrives in such a section (:func:`_in_critical_section`) is sent again
    ``RESIGNAL_DELAY`` seconds later, and one lost elsewhere (a ``__del__``) is
    remembered: :meth:`check` raises it again.
    """

    def __init__(self, owner: int) -> None:
        self.owner = owner
        self.pending: tuple[int, Any] | None = None

    def check(self) -> None:
        """Raise again (``KeyboardInterrupt``, or what the SIGTERM handler raises) a signal that was lost."""
        if self.pending is not None:
            signum, previous = self.pending
            previous(signum, None)

    def handler(self, previous: Any) -> Any:
        """A handler acting as ``previous`` in the owner process and quietly in a child forked from it.

        A child forked before its after-fork hook ran still has this handler: it ignores
        SIGINT and exits on SIGTERM without a traceback.
        """

        def handle(signum: int, frame: Any) -> None:
            if os.getpid() != self.owner:
                if signum == signal.SIGTERM:
                    os._exit(128 + signum)
                return
            if callable(previous):
                if _in_critical_section(frame):  # raise once the child or segment is registered
                    threading.Timer(RESIGNAL_DELAY, os.kill, (self.owner, signum)).start()
                    return
                self.pending = (signum, previous)
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(self.owner, signum)

        return handle


@contextlib.contextmanager
def _handlers(make: Any) -> Iterator[None]:
    """SIGINT and SIGTERM handled by ``make(previous)`` inside, restored after (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, previous in saved.items():
        signal.signal(s, make(previous))
    try:
        yield
    finally:
        for s, previous in saved.items():
            signal.signal(s, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def guarded_run(process: Any, timeout: float = STOP_TIMEOUT) -> Iterator[RunGuard]:
    """Run Lava inside; stop it as before on exit, or abort it cleanly on an interrupt or an error
    (Lava's ``stop`` after a child raised waits forever on its runtime channel).

    Call the yielded guard's :meth:`RunGuard.check` after each Lava call (a Ctrl-C during
    Lava's forks is otherwise lost; the block's end checks too).

    Parameters
    ----------
    process
        The Lava process whose ``run`` is called inside (any process of the network).
    timeout
        Seconds a terminated child gets before it is killed (see :func:`abort_runtime`).
    """
    token = _ForkToken()
    mp_util.register_after_fork(token, _child_signals)
    before = {c.pid for c in multiprocessing.active_children()}
    guard = RunGuard(os.getpid())
    with _handlers(guard.handler):
        try:
            try:
                yield guard
                guard.check()
            except Exception as exc:  # a Lava child that raised can leave stop() waiting forever: end them instead
                errors = child_errors(process)
                with _handlers(lambda previous: signal.SIG_IGN):
                    abort_runtime(process, before, timeout)
                if errors:
                    raise _child_error(errors) from exc
                raise
            process.stop()
        except Exception:
            raise
        except BaseException:
            with _handlers(lambda previous: signal.SIG_IGN):
                abort_runtime(process, before, timeout)
            raise
        finally:
            del token
