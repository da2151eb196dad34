"""Fuzzing every reader of untrusted input with hypothesis: random and mutated inputs.

The only allowed outcomes are a result or mksgn's own error (:class:`MksgnError`) with a
message; anything else (an IndexError, a numpy warning turned error, a hang) fails.
``MKSGN_FUZZ_EXAMPLES`` sets the cases per reader (CI: the default below;
``python -m bench fuzz`` runs thousands). :data:`CASES` counts what ran, per reader.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import tempfile
from collections import Counter
from pathlib import Path

import nir
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mksgn.errors import MksgnError

EXAMPLES = int(os.environ.get("MKSGN_FUZZ_EXAMPLES", "60"))
CASES: Counter[str] = Counter()
"""Cases run per reader (read by the fuzz benchmark)."""
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def _allowed(reader: str, fn, *args):
    """Run ``fn``; a result or an :class:`MksgnError` with a message is fine, anything else fails."""
    CASES[reader] += 1
    try:
        return fn(*args)
    except MksgnError as exc:
        assert str(exc).strip(), f"{reader}: {type(exc).__name__} without a message"
        return None


# --------------------------------------------------------------------------- byte mutations


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """``original`` with a few random edits: flipped bytes, a cut, an insertion, a deleted span."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "truncate", "insert", "delete", "overwrite")))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 64))]
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[i:i + len(chunk)] = chunk
    return bytes(data)


@functools.cache
def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="mksgn-fuzz-"))


def _write(suffix: str, data: bytes, name: str | None = None) -> Path:
    """Write one case (each case overwrites the previous one of its reader)."""
    path = _folder() / (name or f"case{suffix}")
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- .skeleton


def _skeleton_text() -> str:
    from test_reader_ntu import good_lines

    return "\n".join(good_lines()) + "\n"


TOKENS = st.sampled_from(["nan", "inf", "-inf", "1e309", "-1", "0", "99999999999", "", "x", "25", "3", "1.5", "\x00"])


@st.composite
def skeleton_texts(draw) -> str:
    lines = _skeleton_text().splitlines()
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(("token", "drop", "dup", "cut", "garbage")))
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if not lines:
            break
        if op == "token":
            tokens = lines[i].split() or [""]
            tokens[draw(st.integers(0, len(tokens) - 1))] = draw(TOKENS)
            lines[i] = " ".join(tokens)
        elif op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "cut":
            del lines[i:]
        else:
            lines[i] = draw(st.text(max_size=40))
    return "\n".join(lines)


@FUZZ
@given(st.one_of(skeleton_texts(), st.text(max_size=200)))
def test_fuzz_skeleton_parser(text):
    from mksgn.data.readers.ntu_skeleton import parse_skeleton_text

    _allowed("ntu .skeleton", parse_skeleton_text, text, "S001C001P001R001A001.skeleton")


# --------------------------------------------------------------------------- CTR-GCN npz


def _valid_npz() -> bytes:
    from helpers import random_splits

    from mksgn.data.readers.ctrgcn_npz import write_ctrgcn_npz

    path = _write(".npz", b"", "valid.npz")
    write_ctrgcn_npz(path, random_splits(frames=6))
    return path.read_bytes()


ARRAYS = st.builds(
    lambda shape, kind, fill: np.full(shape, fill, dtype=kind),
    st.lists(st.integers(0, 5), max_size=4).map(tuple),
    st.sampled_from(["float32", "float64", "int64", "bool", "U3"]),
    st.sampled_from([0, 1, -1, 0.5]),
)


@st.composite
def npz_bytes(draw) -> bytes:
    if draw(st.booleans()):
        return draw(mutated(_VALID_NPZ))
    keys = draw(st.lists(st.sampled_from(["x_train", "x_test", "y_train", "y_test", "class_names", "layout", "other"]),
                         unique=True, max_size=6))
    buf = io.BytesIO()
    np.savez(buf, **{k: draw(ARRAYS) for k in keys})
    return buf.getvalue()


_VALID_NPZ = _valid_npz()


@FUZZ
@given(npz_bytes())
def test_fuzz_ctrgcn_npz(data):
    from mksgn.data.readers.ctrgcn_npz import read_ctrgcn_npz

    _allowed("ctrgcn npz", read_ctrgcn_npz, _write(".npz", data))


# --------------------------------------------------------------------------- pyskl pickle

PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 400), st.floats(allow_nan=True), st.text(max_size=8),
              ARRAYS),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(
        st.sampled_from(["split", "annotations", "frame_dir", "label", "keypoint", "total_frames", "xsub_train",
                         "xsub_val", "x"]), inner, max_size=5)),
    max_leaves=20,
)


def _valid_pickle() -> bytes:
    rng = np.random.default_rng(0)
    ann = [{"frame_dir": f"S001C001P00{i}R001A00{i % 3 + 1}", "label": i % 3,
            "keypoint": rng.normal(size=(1, 5, 25, 3)).astype(np.float16), "total_frames": 5} for i in range(4)]
    return pickle.dumps({"split": {"xsub_train": [a["frame_dir"] for a in ann[:2]],
                                   "xsub_val": [a["frame_dir"] for a in ann[2:]]}, "annotations": ann})


_VALID_PICKLE = _valid_pickle()


@FUZZ
@given(st.one_of(mutated(_VALID_PICKLE), PLAIN.map(pickle.dumps), st.binary(max_size=64)))
def test_fuzz_pyskl_pickle(data):
    from mksgn.data.readers.pyskl import read_pyskl

    _allowed("pyskl pickle", read_pyskl, _write(".pkl", data))


# --------------------------------------------------------------------------- NW-UCLA json

JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 30), st.floats(allow_nan=False),
                              st.text(max_size=6)),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(st.sampled_from(["skeletons", "label", "file_name", "x"]),
                                                            inner, max_size=4)),
                    max_leaves=30)


def _valid_json() -> bytes:
    sk = np.random.default_rng(1).normal(size=(3, 20, 3)).tolist()
    return json.dumps({"file_name": "a08_s03_e01_v02", "skeletons": sk, "label": 7}).encode()


_VALID_JSON = _valid_json()


@FUZZ
@given(st.one_of(mutated(_VALID_JSON), JSON.map(lambda v: json.dumps(v).encode()),
                 st.builds(lambda t: json.dumps({"skeletons": np.full(t, 0.5).tolist()}).encode(),
                           st.lists(st.integers(0, 21), max_size=4).map(tuple))))
def test_fuzz_ucla_json(data):
    from mksgn.data.readers.ucla import read_ucla_file

    _allowed("ucla json", read_ucla_file, _write(".json", data, "a08_s03_e01_v02.json"))


# --------------------------------------------------------------------------- NIR files and graphs


def _valid_nir() -> bytes:
    path = _write(".nir", b"", "valid.nir")
    graph = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((3, 2)), bias=np.zeros(3)),
                                   nir.LIF(tau=np.full(3, 2e-4), r=np.full(3, 2.0), v_leak=np.zeros(3),
                                           v_threshold=np.ones(3), v_reset=np.zeros(3)))
    nir.write(str(path), graph)
    return path.read_bytes()


_VALID_NIR = _valid_nir()


def _read_and_validate(path: Path):
    from mksgn.core.nir_file import read_graph
    from mksgn.core.fuse import fuse
    from mksgn.core.executor import NIRExecutor

    graph = read_graph(path)
    NIRExecutor(graph)
    return fuse(graph)


@FUZZ
@given(mutated(_VALID_NIR))
def test_fuzz_nir_file(data):
    _allowed("nir file", _read_and_validate, _write(".nir", data))


FLOATS = st.one_of(st.floats(-3, 3), st.sampled_from([float("nan"), float("inf"), 0.0, -1.0]))


@st.composite
def nir_graphs(draw) -> nir.NIRGraph:
    """Small graphs with random shapes, parameters (NaN, inf, negative), edges and cycles."""
    n_in = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(np.array([n_in]))}
    prev, prev_size = "input", n_in
    edges = []
    for i, size in enumerate(sizes):
        w_rows = size if draw(st.integers(0, 9)) else size + 1  # now and then a shape mismatch
        weight = np.array([[draw(FLOATS) for _ in range(prev_size)] for _ in range(w_rows)])
        nodes[f"w{i}"] = nir.Affine(weight=weight, bias=np.array([draw(FLOATS) for _ in range(w_rows)]))
        kind = draw(st.sampled_from(("LIF", "IF", "LI", "Delay")))
        if kind == "LIF":
            nodes[f"n{i}"] = nir.LIF(tau=np.full(size, draw(FLOATS)), r=np.ones(size), v_leak=np.zeros(size),
                                     v_threshold=np.full(size, draw(FLOATS)), v_reset=np.zeros(size))
        elif kind == "IF":
            nodes[f"n{i}"] = nir.IF(r=np.ones(size), v_threshold=np.full(size, draw(FLOATS)), v_reset=np.zeros(size))
        elif kind == "LI":
            nodes[f"n{i}"] = nir.LI(tau=np.full(size, draw(FLOATS)), r=np.ones(size), v_leak=np.zeros(size))
        else:
            nodes[f"n{i}"] = nir.Delay(delay=np.full(size, draw(FLOATS)))
        edges += [(prev, f"w{i}"), (f"w{i}", f"n{i}")]
        prev, prev_size = f"n{i}", size
    nodes["output"] = nir.Output(np.array([prev_size]))
    edges.append((prev, "output"))
    extra = draw(st.lists(st.tuples(st.sampled_from([*nodes, "ghost"]), st.sampled_from([*nodes, "ghost"])),
                          max_size=2))  # cycles without delay, dangling edges
    return nir.NIRGraph(nodes=nodes, edges=edges + extra, metadata={}, type_check=False)  # as read_graph reads


def _validate_graph(graph: nir.NIRGraph):
    from mksgn.core.fuse import fuse
    from mksgn.core.executor import NIRExecutor

    NIRExecutor(graph)
    return fuse(graph)


@FUZZ
@given(nir_graphs())
def test_fuzz_nir_graph_validation(graph):
    _allowed("nir graph", _validate_graph, graph)


# --------------------------------------------------------------------------- hardware profiles

PROFILE_VALUES = st.one_of(st.floats(allow_nan=True), st.integers(-5, 5), st.text(max_size=5), st.booleans(),
                           st.sampled_from(["pJ", "count", "KiB", "ms", "estimate", "measured"]))


@st.composite
def profile_dicts(draw) -> dict:
    from mksgn.hw_profiles.profile import SCHEMA

    data: dict = {}
    if draw(st.integers(0, 9)):
        data["profile"] = {"name": "x", "description": "y", "kind": draw(st.sampled_from(["neuromorphic", "ann", "?"]))}
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from([*SCHEMA, "weather"]))
        key = draw(st.sampled_from([*SCHEMA.get(section, {"rain": None}), "colour"]))
        entry = {k: draw(PROFILE_VALUES) for k in draw(st.lists(
            st.sampled_from(["value", "unit", "source", "evidence", "note", "extra"]), unique=True, max_size=6))}
        data.setdefault(section, {})[key] = entry if draw(st.integers(0, 9)) else draw(PROFILE_VALUES)
    return data


_VALID_PROFILE = (Path(__file__).parents[1] / "hw_profiles" / "loihi.toml").read_bytes()


@FUZZ
@given(st.one_of(profile_dicts().map(lambda d: ("dict", d)), mutated(_VALID_PROFILE).map(lambda b: ("file", b))))
def test_fuzz_profile_loader(case):
    from mksgn.hw_profiles.profile import load_profile, parse_profile

    kind, value = case
    if kind == "dict":
        _allowed("hardware profile", parse_profile, value, "fuzz.toml")
    else:
        _allowed("hardware profile", load_profile, _write(".toml", value, "fuzz.toml"))
