"""Fuzzing every reader of untrusted input with thousands of cases (``tests/test_fuzz.py``).

Runs each fuzz test of ``tests/test_fuzz.py`` with ``MKSGN_FUZZ_EXAMPLES`` cases (default
2000; CI runs 60 per reader): random and mutated ``.skeleton`` text, CTR-GCN npz, pyskl
pickles, NW-UCLA json, NIR files, random NIR graphs (validation and fusion), hardware
profiles. Reports the cases run per reader and every failure (a failure is any outcome
other than a result or mksgn's own error).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from pathlib import Path

EXAMPLES = int(os.environ.get("MKSGN_FUZZ_BENCH_EXAMPLES", "2000"))


def run() -> dict:
    os.environ["MKSGN_FUZZ_EXAMPLES"] = str(EXAMPLES)
    tests = Path(__file__).parents[1] / "tests"
    sys.path.insert(0, str(tests))
    try:
        module = importlib.import_module("test_fuzz")
        module = importlib.reload(module)  # pick up the example count
        results = {}
        for name in sorted(n for n in dir(module) if n.startswith("test_fuzz_")):
            start = time.perf_counter()
            before = dict(module.CASES)
            try:
                getattr(module, name)()
                failure = None
            except Exception as exc:  # a fuzz failure: keep going, report it
                failure = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
            ran = {k: v - before.get(k, 0) for k, v in module.CASES.items() if v - before.get(k, 0)}
            results[name] = {"cases": ran, "seconds": round(time.perf_counter() - start, 2), "failure": failure}
    finally:
        sys.path.remove(str(tests))
    return {"examples_per_test": EXAMPLES, "tests": results,
            "total_cases": sum(sum(r["cases"].values()) for r in results.values()),
            "failures": sum(1 for r in results.values() if r["failure"])}
