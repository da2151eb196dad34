"""Generation speed of the built-in procedural dataset (:mod:`mksgn.data.synth`)."""

from __future__ import annotations

import time

from mksgn.data.synth import generate

SAMPLES = 10_000
FRAMES = 64
SEED = 0
TARGET_S = 30
"""Generating ``SAMPLES`` clips of ``FRAMES`` frames must take well under this (seconds)."""


def run() -> dict:
    """Generate 10,000 clips of 64 frames once and time it."""
    start = time.perf_counter()
    splits = generate(samples=SAMPLES, seed=SEED, frames=FRAMES)
    seconds = time.perf_counter() - start
    assert len(splits.train) + len(splits.test) == SAMPLES
    return {
        "samples": SAMPLES,
        "frames": FRAMES,
        "seconds": round(seconds, 3),
        "samples_per_s": round(SAMPLES / seconds, 1),
        "target_s": TARGET_S,
        "within_target": seconds < TARGET_S,
    }
