"""Helpers for profiler tests: a pre-measured machine peak, so tests do not spend seconds on big matmuls."""

from __future__ import annotations

import json
from pathlib import Path

from vischoose import machine
from vischoose.measure.peak import PEAK_CACHE_FILE, peak_key

SEEDED_PEAK_GFLOPS_S = 10_000.0  # above what this CPU reaches: a peak the model beats is dropped as stale
FAST = {"device": "cpu", "threads": 1, "weights": "random", "time_budget_s": 0.5}  # protocol of the child tests


def seed_peak(home: Path, threads: int = 1, dtype: str = "float32") -> None:
    """Write the machine-peak cache as a previous run would have, for CPU at `threads`."""
    key = peak_key(machine.fingerprint(), "cpu", machine.cpu_name(), dtype, threads)
    home.mkdir(parents=True, exist_ok=True)
    entry = {"gflops_s": SEEDED_PEAK_GFLOPS_S, "kernel": "seeded by the test", "reps": 0}
    (home / PEAK_CACHE_FILE).write_text(json.dumps({key: entry}))
