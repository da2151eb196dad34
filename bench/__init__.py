"""Benchmarks: ``python -m bench [--out DIR] [NAME ...]`` writes ``DIR/NAME.json``.

Each ``bench/bench_<name>.py`` defines ``run() -> dict``; the runner adds a description
of the machine (CPU, cores, memory, Python, torch, numpy) to every result.
"""
