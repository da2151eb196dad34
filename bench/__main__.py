"""Run the benchmarks and write one JSON file each, with the machine described."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from mksgn.atomic import atomic_write_text


def machine() -> dict:
    """A description of this machine for benchmark results."""
    import numpy
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }


def available() -> list[str]:
    """Names of the benchmark modules in this folder."""
    here = Path(__file__).parent
    return sorted(p.stem[len("bench_"):] for p in here.glob("bench_*.py"))


def _is_slow(name: str) -> bool:
    return bool(getattr(importlib.import_module(f"bench.bench_{name}"), "SLOW", False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {available()})")
    parser.add_argument("--out", default="bench/results", help="output folder for NAME.json")
    parser.add_argument("--all", action="store_true", help="include the slow benchmarks (SLOW = True)")
    args = parser.parse_args(argv)
    names = args.names or [n for n in available() if args.all or not _is_slow(n)]
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {available()}")
    if len(names) > 1:  # each in a fresh interpreter: Lava forks its processes from this one, and a heap
        # grown by earlier benchmarks makes every fork slower and adds to the measured memory
        failed = [n for n in names if subprocess.run([sys.executable, "-m", "bench", n, "--out", args.out]).returncode]
        if failed:
            print(f"failed: {failed}", file=sys.stderr)
        return 1 if failed else 0
    info = machine()
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        start = time.perf_counter()
        result = module.run()
        record = {
            "benchmark": name,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wall_s": round(time.perf_counter() - start, 3),
            "machine": info,
            "result": result,
        }
        path = Path(args.out) / f"{name}.json"
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
        print(f"{name}: {json.dumps(result)} -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
