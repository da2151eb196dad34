"""The package dependency graph is the DAG the README declares, checked from every import.

Every ``import`` and ``from ... import`` in the package sources (module-level and inside
functions) is read with ``ast``; a module may import only its own package and the packages
below it in the README's order. The core stays free of SNN frameworks. Functions stay short.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"mksgn": "mksgn", "core": "mksgn.core", "data": "mksgn.data", "train": "mksgn.train",
           "convert": "mksgn.convert", "deploy": "mksgn.deploy", "hw_profiles": "mksgn.hw_profiles"}
TOP = "mksgn.demo"
"""The demo drives the whole pipeline: it sits above everything."""
FRAMEWORKS = ("snntorch", "lava", "nirtorch", "norse", "sinabs")
MAX_FUNCTION_LINES = 80


def _declared_layers() -> list[str]:
    """The README's dependency line: ``mksgn <- core <- ... <- demo``, lowest first."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^Dependencies: `([^`]+)`", text, re.MULTILINE)
    assert match, "README.md has no 'Dependencies: `...`' line"
    return [part.strip() for part in match.group(1).split("<-")]


def _package(module: str) -> str:
    """The layer of a dotted module name (``mksgn.core.fuse`` -> ``core``; ``mksgn.errors`` -> ``mksgn``)."""
    if module == TOP or module.startswith(TOP + "."):
        return "demo"
    parts = module.split(".")
    if len(parts) > 1 and parts[0] == "mksgn" and parts[1] in FOLDERS:
        return parts[1]
    return "mksgn"


def _sources() -> dict[str, Path]:
    """Module name -> file, for every package source."""
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """Absolute names of everything ``module`` imports, with line numbers (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = base[: len(base) - node.level + 1]
                name = ".".join(prefix + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            found += [(f"{name}.{alias.name}", node.lineno) for alias in node.names if name == "mksgn"]
    return found


def test_imports_follow_the_declared_layers():
    layers = _declared_layers()
    assert layers[0] == "mksgn" and layers[-1] == "demo"
    assert set(layers) == {"demo", *FOLDERS}, layers
    rank = {name: i for i, name in enumerate(layers)}
    wrong = []
    for module, path in _sources().items():
        own = _package(module)
        for name, line in _imports(module, path):
            if name != "mksgn" and not name.startswith("mksgn."):
                continue
            other = _package(name)
            if rank[other] > rank[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {name} ({other} is above it)")
    assert not wrong, "\n".join(wrong)


def test_the_core_is_free_of_snn_frameworks():
    wrong = [f"{path.relative_to(ROOT)}:{line}: {name}"
             for module, path in _sources().items() if _package(module) == "core"
             for name, line in _imports(module, path) if name.split(".")[0] in FRAMEWORKS]
    assert not wrong, "\n".join(wrong)


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in _sources().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, "\n".join(long)
