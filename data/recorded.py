"""Which dataset a command uses when ``--data`` is not given: the one its model records.

A student checkpoint records the data it was trained on (``record["data"]``: ``path``, the
npz's absolute path or ``None`` for the built-in dataset, and ``sha256``, its fingerprint);
``mksgn-export`` copies that record into the graph's metadata (``"data"``) and
``mksgn-quantize`` keeps it. Every command that reads data defaults to it:

- the record names the built-in dataset: the built-in dataset;
- it names a file that is still there with the same fingerprint: that file (said in one line);
- it names a file that is gone or changed: refused, asking for ``--data``;
- there is no record (an older checkpoint, a graph from another tool): the built-in
  dataset, with a warning saying so.

An explicit ``--data`` always wins; when it differs from the record a warning says so.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mksgn.errors import DatasetError

CHUNK_BYTES = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DatasetError(f"cannot read the data file ({exc.strerror or exc})", path) from exc
    return digest.hexdigest()


def data_record(path: str | os.PathLike[str] | None, fingerprint: bool = True) -> dict[str, str | None]:
    """``{"path", "sha256"}`` of a data file (absolute path); both ``None`` for the built-in dataset.

    ``fingerprint=False`` leaves ``sha256`` ``None`` (ranks other than 0 of a distributed run).
    """
    if path is None:
        return {"path": None, "sha256": None}
    absolute = str(Path(path).expanduser().absolute())
    return {"path": absolute, "sha256": file_sha256(absolute) if fingerprint else None}


def recorded_data(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The data a model was trained on, from its checkpoint's ``data`` record.

    Returns ``(path, sha256)``: the absolute path of the npz and its SHA-256, or
    ``(None, None)`` for the built-in dataset. A checkpoint older than these fields gives
    its ``source`` (as it was written, perhaps relative) and ``None``, or ``(None, None)``
    when that source is the built-in dataset's cache file.
    """
    if "path" in record:
        path, sha = record.get("path"), record.get("sha256")
        return (None if path is None else str(path)), (None if sha is None else str(sha))
    source = record.get("source")
    if not source:
        return None, None
    from mksgn.data.builtin import BuiltinSpec

    return (None if Path(str(source)).name == BuiltinSpec().file_name() else str(source)), None


def graph_data_record(graph: Any) -> dict[str, Any] | None:
    """The data record in a NIR graph's metadata (``"data"``), or ``None``."""
    from mksgn.core.nir_file import decode_metadata

    record = decode_metadata(dict(getattr(graph, "metadata", None) or {})).get("data")
    return record if isinstance(record, dict) else None


@dataclass(frozen=True)
class DataChoice:
    """The dataset a command will read and why.

    Attributes
    ----------
    path
        The npz, or ``None`` for the built-in dataset (what ``load_dataset`` takes).
    note
        One line for the user (``None`` when there is nothing to say).
    warning
        ``True`` when the note is a warning (the data may not be the model's).
    """

    path: str | None
    note: str | None = None
    warning: bool = False

    def announce(self) -> None:
        """Print the note, if any: a warning on stderr, information on stdout."""
        if self.note is not None:
            print(self.note, file=sys.stderr if self.warning else sys.stdout)


def choose_data(given: str | os.PathLike[str] | None, recorded: Mapping[str, Any] | None,
                model: str | os.PathLike[str]) -> DataChoice:
    """The dataset to use: ``--data`` if ``given``, else the one ``model`` records.

    Parameters
    ----------
    given
        ``--data``, or ``None``.
    recorded
        The model's data record (a checkpoint's ``record["data"]``, a graph's metadata
        ``"data"``), or ``None`` when it has none.
    model
        The model's file, for the messages.

    Raises
    ------
    DatasetError
        If the recorded file is gone or changed and ``--data`` was not given.
    """
    has_record = recorded is not None and ("path" in recorded or bool(recorded.get("source")))
    rec_path, sha = recorded_data(recorded) if has_record else (None, None)
    if given is not None:
        if has_record and (rec_path is None or Path(given).resolve() != Path(rec_path).resolve()):
            trained = rec_path or "the built-in dataset"
            return DataChoice(str(given), f"warning: {model} records its data as {trained}; using --data {given}",
                              True)
        return DataChoice(str(given))
    if not has_record:
        return DataChoice(None, f"warning: {model} does not record its data; using the built-in dataset "
                                "(give --data X.npz if it was trained on other data)", True)
    if rec_path is None:
        return DataChoice(None)
    if not Path(rec_path).is_file():
        raise DatasetError(f"{model} was trained on {rec_path}, which is gone; give --data X.npz")
    if sha is not None and file_sha256(rec_path) != sha:
        raise DatasetError(f"{model} was trained on {rec_path}, which has changed since (its SHA-256 differs); "
                           "give --data X.npz to use it anyway")
    return DataChoice(rec_path, f"data: {rec_path} (recorded by {model})")


def graph_test_split(given: str | os.PathLike[str] | None, graph: Any, model: str | os.PathLike[str]):
    """The test split a command runs a graph on: of ``--data`` if ``given``, else of the data the
    graph records, else of the built-in dataset (:func:`choose_data`, its note announced)."""
    from mksgn.data.builtin import load_dataset

    data = choose_data(given, graph_data_record(graph), model)
    data.announce()
    return load_dataset(data.path).test
