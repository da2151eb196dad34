"""Loading pickles of plain containers and numpy arrays without running arbitrary code.

:func:`pickle.load` calls whatever global a pickle names, so a downloaded annotation file can
run ``os.system``. :func:`safe_load` uses an unpickler whose ``find_class`` admits only the
globals that dicts, lists, tuples, sets, bytes and numpy arrays, dtypes and scalars need,
under the names numpy 1 and numpy 2 write, and refuses numpy arrays of object dtype.
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Callable
from os import PathLike
from typing import Any, BinaryIO

import numpy as np

from mksgn.errors import DatasetError

_LATIN1 = frozenset(("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"))


def _codecs_encode(obj: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: a str to latin-1 only."""
    if not isinstance(obj, str) or encoding.lower() not in _LATIN1 or errors != "strict":
        raise pickle.UnpicklingError(f"_codecs.encode only for str to latin-1, got {type(obj).__name__}, {encoding!r}")
    return obj.encode("latin-1")


def _bytes(*args: object) -> bytes:
    """``bytes()`` as protocol-2 pickles use it for ``b''``; no integer size (memory bomb)."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    if len(args) == 2 and isinstance(args[0], str) and str(args[1]).lower() in _LATIN1:
        return args[0].encode("latin-1")
    raise pickle.UnpicklingError("bytes() only from bytes or a latin-1 str")


def _bytearray(*args: object) -> bytearray:
    """``bytearray()`` as pickles of protocols 2-4 use it; no integer size (memory bomb)."""
    return bytearray(_bytes(*args))


def _numpy_attr(submodule: str, name: str) -> Callable[[], Any]:
    """A resolver of ``numpy.<_core|core>.<submodule>.<name>``, whichever numpy has."""

    def resolve() -> Any:
        for package in ("numpy._core", "numpy.core"):
            try:
                module = importlib.import_module(f"{package}.{submodule}")
            except ImportError:
                continue
            if hasattr(module, name):
                return getattr(module, name)
        raise pickle.UnpicklingError(f"numpy has no {submodule}.{name}")  # pragma: no cover

    return resolve


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _frombuffer(buf: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """numpy's ``_frombuffer`` (protocol-5 arrays) on a private copy of the buffer.

    The pickle's buffer (a ``bytearray``) is copied to ``bytes`` first, so no array keeps an
    export of an object the unpickler owns (a mutated pickle once left a ``bytearray``
    deallocated with an export outstanding inside numpy).
    """
    if not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)) or not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError("_frombuffer needs a bytes buffer and a numpy dtype")
    if dtype.hasobject:
        raise pickle.UnpicklingError("_frombuffer of an object dtype")
    if not isinstance(shape, tuple) or order not in ("C", "F"):
        raise pickle.UnpicklingError("_frombuffer needs a shape tuple and order 'C' or 'F'")
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape, order=order).copy(order="K")


_NUMPY_GLOBALS: tuple[tuple[str, str, str], ...] = (
    ("multiarray", "_reconstruct", "_reconstruct"),
    ("multiarray", "scalar", "scalar"),
)

_BUILTINS: dict[str, Callable[[], Any]] = {
    "set": _constant(set),
    "frozenset": _constant(frozenset),
    "bytes": _constant(_bytes),
    "bytearray": _constant(_bytearray),
}


def _allowed_globals() -> dict[tuple[str, str], Callable[[], Any]]:
    """The admitted ``(module, name)`` pairs and how to resolve each."""
    allowed: dict[tuple[str, str], Callable[[], Any]] = {
        ("numpy", "ndarray"): _constant(np.ndarray),
        ("numpy", "dtype"): _constant(np.dtype),
        ("_codecs", "encode"): _constant(_codecs_encode),
    }
    for submodule, name, attr in _NUMPY_GLOBALS:
        for package in ("numpy.core", "numpy._core"):
            allowed[(f"{package}.{submodule}", name)] = _numpy_attr(submodule, attr)
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.numeric", "_frombuffer")] = _constant(_frombuffer)
    for module in ("builtins", "__builtin__"):
        for name, resolve in _BUILTINS.items():
            allowed[(module, name)] = resolve
    return allowed


ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(_allowed_globals())
"""The ``(module, name)`` globals a pickle may name; anything else is refused."""


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` admits only :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: BinaryIO, path: str | PathLike[str] | None) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        resolve = self._allowed.get((module, name))
        if resolve is None:
            raise DatasetError(f"refused global '{module}.{name}' (not a plain container or numpy array)", self._path)
        return resolve()

    def persistent_load(self, pid: Any) -> Any:
        raise DatasetError("refused persistent id in pickle", self._path)


def _reject_object_arrays(obj: object, path: str | PathLike[str] | None) -> None:
    """Raise if a numpy array with Python objects is anywhere inside ``obj``."""
    stack: list[tuple[object, str]] = [(obj, "")]
    seen: set[int] = set()
    while stack:
        item, where = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                raise DatasetError("numpy array of object dtype refused", path, where or "top level")
        elif isinstance(item, dict):
            for key, value in item.items():
                stack.append((key, f"{where} key {key!r}".strip()))
                stack.append((value, f"{where}[{key!r}]"))
        elif isinstance(item, (list, tuple)):
            stack.extend((value, f"{where}[{i}]") for i, value in enumerate(item))
        elif isinstance(item, (set, frozenset)):
            stack.extend((value, f"{where} member") for value in item)


def _check_opcodes(stream: BinaryIO, path: str | PathLike[str] | None) -> None:
    """Walk the pickle's opcodes before unpickling (then rewind).

    :func:`pickletools.genops` reads each length-prefixed argument only as far as the file
    goes, so a corrupt or crafted length (a memory bomb) is refused here instead of making
    the unpickler allocate it; protocol-5 out-of-band buffers, which a file cannot carry,
    are refused too.
    """
    import pickletools

    if not stream.seekable():
        return
    start = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(start)

    class Bounded:  # reads never ask for more than the file still holds (no huge allocation)
        def read(self, n: int = -1) -> bytes:
            left = end - stream.tell()
            return stream.read(left if n is None or n < 0 else min(n, left))

        def readline(self) -> bytes:
            return stream.readline()

    try:
        for opcode, _, _ in pickletools.genops(Bounded()):
            if opcode.name in ("NEXT_BUFFER", "READONLY_BUFFER"):
                raise DatasetError(f"refused pickle opcode {opcode.name} (out-of-band buffers)", path)
    except DatasetError:
        raise
    except Exception as exc:  # truncated or garbled: genops raises ValueError and friends
        raise DatasetError(f"not a readable pickle: {type(exc).__name__}: {exc}", path) from None
    finally:
        stream.seek(start)


def safe_load(
    fileobj_or_bytes: BinaryIO | bytes | bytearray | memoryview,
    path_for_errors: str | PathLike[str] | None,
) -> object:
    """Unpickle plain containers and numpy arrays, refusing every other global.

    Parameters
    ----------
    fileobj_or_bytes
        A binary file object opened for reading, or the pickle's bytes.
    path_for_errors
        The file named in error messages.

    Returns
    -------
    object
        The unpickled object: dicts, lists, tuples, sets, str, bytes, numbers, ``None`` and
        numpy arrays, dtypes and scalars (never of object dtype).

    Raises
    ------
    DatasetError
        ``"refused global 'posix.system'"`` for a global outside :data:`ALLOWED_GLOBALS`,
        an object-dtype array, or a corrupt or truncated pickle.
    """
    if isinstance(fileobj_or_bytes, (bytes, bytearray, memoryview)):
        stream: BinaryIO = io.BytesIO(bytes(fileobj_or_bytes))
    else:
        stream = fileobj_or_bytes
    _check_opcodes(stream, path_for_errors)
    try:
        obj = _RestrictedUnpickler(stream, path_for_errors).load()
    except DatasetError:
        raise
    except RecursionError:
        raise DatasetError("pickle nested too deeply", path_for_errors) from None
    except MemoryError:
        raise DatasetError("pickle too large for memory", path_for_errors) from None
    except Exception as exc:  # corrupt pickles raise nearly any exception type
        raise DatasetError(f"not a readable pickle: {type(exc).__name__}: {exc}", path_for_errors) from None
    _reject_object_arrays(obj, path_for_errors)
    return obj
