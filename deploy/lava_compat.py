"""The one door to Lava: lava-nc 0.10.0 made importable on Python 3.11.

Every other module imports Lava through :func:`lava_import` (or :func:`ensure_lava`).
Two problems are handled, both measured on lava-nc 0.10.0:

1. ``lava/magma/compiler/var_model.py`` gives dataclass fields of ``CoreEncoder``,
   ``ChipEncoder`` and ``AxonEncoder`` an instance of the (unhashable) dataclass
   ``ByteEncoder`` as default. Python 3.11 rejects unhashable defaults, so any import of
   ``lava.magma.compiler`` fails. The fix edits no installed file: while that one module is
   imported, ``dataclasses.dataclass`` is wrapped so that, for classes defined in ``lava.*``
   modules only, an unhashable default becomes ``field(default_factory=...)`` returning a
   deep copy (each instance gets its own encoder, as no caller mutates the shared one);
   the original decorator is restored afterwards, whatever happens.
2. Lava calls ``multiprocessing.set_start_method('fork')`` at import and fails if a start
   method was already chosen. A non-fork method is refused with :class:`LavaSetupError`
   (Lava's runtime needs fork); an explicit ``'fork'`` is re-set around the import.
   After the import the process-wide start method is ``'fork'``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import multiprocessing
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from mksgn.errors import LavaSetupError

BROKEN_MODULE = "lava.magma.compiler.var_model"
"""The Lava module that Python 3.11 cannot import unpatched."""

MESSAGING_MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"
"""The Lava module that sets the multiprocessing start method at import."""

REQUIRED_START_METHOD = "fork"

LAVA_INSTALL_COMMAND = "pip install --no-deps --ignore-requires-python lava-nc==0.10.0"
"""How to install Lava beside mksgn (its dependencies come with mksgn; README "Install with pip")."""


@dataclass(frozen=True)
class PatchedField:
    """One dataclass field whose unhashable default became a ``default_factory``."""

    module: str
    qualname: str
    field: str
    default_type: str


def _unhashable(value: Any) -> bool:
    return type(value).__hash__ is None


def _patch_class(cls: type, record: list[PatchedField]) -> None:
    """Turn ``cls``'s unhashable class-level defaults into ``field(default_factory=...)``."""
    for name in cls.__dict__.get("__annotations__", {}):
        if name not in cls.__dict__:
            continue
        default = cls.__dict__[name]
        if isinstance(default, dataclasses.Field) or not _unhashable(default):
            continue
        setattr(cls, name, dataclasses.field(default_factory=functools.partial(copy.deepcopy, default)))
        record.append(PatchedField(cls.__module__, cls.__qualname__, name, type(default).__name__))


def _patching_dataclass(original: Any, record: list[PatchedField]) -> Any:
    """A stand-in for ``dataclasses.dataclass`` that patches classes of ``lava.*`` modules."""

    @functools.wraps(original)
    def wrapper(cls: type | None = None, /, **kwargs: Any) -> Any:
        def decorate(klass: type) -> type:
            if str(getattr(klass, "__module__", "")).startswith("lava."):
                _patch_class(klass, record)
            return original(**kwargs)(klass)

        return decorate if cls is None else decorate(cls)

    return wrapper


def import_patched(module: str = BROKEN_MODULE) -> list[PatchedField]:
    """Import ``module`` with unhashable dataclass defaults of Lava classes fixed.

    Returns
    -------
    list[PatchedField]
        The fields that were patched in this call (empty if the module was already
        imported). ``dataclasses.dataclass`` is restored before returning or raising.
    """
    if module in sys.modules:
        return []
    record: list[PatchedField] = []
    original = dataclasses.dataclass
    dataclasses.dataclass = _patching_dataclass(original, record)
    try:
        importlib.import_module(module)
    finally:
        dataclasses.dataclass = original
    return record


def _check_start_method() -> str | None:
    method = multiprocessing.get_start_method(allow_none=True)
    if method not in (None, REQUIRED_START_METHOD):
        raise LavaSetupError(
            f"Lava needs the multiprocessing start method 'fork' but this process already uses "
            f"{method!r}; import mksgn's Lava backend before anything calls "
            f"multiprocessing.set_start_method, or run it in a separate process"
        )
    return method


def _import_messaging() -> None:
    """Import Lava's messaging module, which calls ``set_start_method('fork')``."""
    if MESSAGING_MODULE in sys.modules:
        return
    if _check_start_method() == REQUIRED_START_METHOD:
        multiprocessing.set_start_method(None, force=True)  # type: ignore[arg-type]
        try:
            importlib.import_module(MESSAGING_MODULE)
        finally:
            if multiprocessing.get_start_method(allow_none=True) is None:
                multiprocessing.set_start_method(REQUIRED_START_METHOD)
    else:
        importlib.import_module(MESSAGING_MODULE)


def ensure_lava() -> list[PatchedField]:
    """Make Lava importable in this process; idempotent.

    Returns
    -------
    list[PatchedField]
        Fields patched by this call (empty on later calls).

    Raises
    ------
    LavaSetupError
        lava-nc is not installed, or a non-fork multiprocessing start method is set.
    """
    if sys.platform != "win32":
        _check_start_method()
    try:
        importlib.import_module("lava")
    except ImportError as exc:
        raise LavaSetupError(
            f"lava-nc is not installed ({exc}); install it into this environment ({sys.prefix}) with "
            f"`{LAVA_INSTALL_COMMAND}` (lava-nc 0.10.0 declares Python < 3.11 but mksgn makes it work "
            f"on 3.11; in a source checkout `make venv` does it)"
        ) from exc
    patched = import_patched(BROKEN_MODULE)
    if sys.platform != "win32":
        _import_messaging()
    return patched


def lava_import(module: str) -> ModuleType:
    """Import a Lava module (``"lava.proc.dense.process"``) after :func:`ensure_lava`."""
    if module != "lava" and not module.startswith("lava."):
        raise ValueError(f"lava_import imports Lava modules only, not {module!r}")
    ensure_lava()
    return importlib.import_module(module)
