"""Reading the fields of NIR nodes: one parser per kind of field, shared by every consumer.

NIR stores integers, tuples, paddings and shapes loosely (a Python int, a list, a 0-d or
1-d NumPy array, bytes for strings after a round trip through HDF5). The reference
executor, the synapse fuser and the nirtorch maps all read them through these functions,
so a field means the same everywhere. Each parser raises :class:`FieldError` naming the
field; callers that know the node prefix it (the executor does).

Paddings: an integer or one per spatial axis; ``"valid"`` is zero padding; ``"same"``
keeps the spatial size at stride 1 (:func:`same_padding` gives the symmetric padding when
the kernel allows one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mksgn.errors import MksgnError

SAME = "same"
"""The one padding kept as a string (``"valid"`` becomes zeros)."""


class FieldError(MksgnError, ValueError):
    """A NIR node field that cannot be read; the message names the field."""


def as_text(value: Any) -> str | None:
    """A string stored as str, bytes or a 0-d NumPy array, else None."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf8")
    if isinstance(value, str):
        return str(value)
    return None


def broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without changing it."""
    try:
        return tuple(np.broadcast_shapes(tuple(shape), tuple(target))) == tuple(target)
    except ValueError:
        return False


def declared_shape(types: Any, key: str) -> tuple[int, ...] | None:
    """The shape stored in a NIR type dict (``{"input": array}``), or None if undeclared."""
    if not isinstance(types, Mapping):
        return None
    value = types.get(key)
    if value is None:
        return None
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


def int_scalar(value: Any, field: str) -> int:
    """One integer (a float with an integer value is accepted)."""
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "iuf" or float(array.reshape(-1)[0]) != int(array.reshape(-1)[0]):
        raise FieldError(f"field {field!r} must be an integer, got {value!r}")
    return int(array.reshape(-1)[0])


def int_tuple(value: Any, n: int, field: str) -> tuple[int, ...]:
    """An int, or a sequence of 1 or ``n`` ints, as an ``n``-tuple."""
    array = np.asarray(value)
    flat = array.reshape(-1)
    if array.dtype.kind not in "iuf" or flat.size not in (1, n) or not np.all(flat == np.round(flat)):
        raise FieldError(f"field {field!r} must be an integer or {n} integers, got {value!r}")
    values = tuple(int(v) for v in flat)
    return values * n if len(values) == 1 else values


def padding(value: Any, n: int) -> tuple[int, ...] | str:
    """A padding as an ``n``-tuple (``"valid"``: zeros), or :data:`SAME`."""
    text = as_text(value)
    if text is not None:
        if text.lower() == "valid":
            return (0,) * n
        if text.lower() == SAME:
            return SAME
        raise FieldError(f"padding must be an integer, {n} integers, 'same' or 'valid', got {text!r}")
    return int_tuple(value, n, "padding")


def same_padding(kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...] | None:
    """The symmetric padding that keeps the size at stride 1, or None when only an asymmetric one does."""
    total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
    if any(t % 2 for t in total):
        return None
    return tuple(t // 2 for t in total)


def explicit_padding(value: Any, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...] | None:
    """:func:`padding` with ``"same"`` resolved to integers (None: an asymmetric ``"same"``)."""
    pad = padding(value, len(kernel))
    return same_padding(kernel, dilation) if pad == SAME else pad
