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


def known(missing: dict[str, str] | None = None):
    """The catalog and the registry's runtimes for the pure ranking, each installed unless `missing` names it (with
    why): tests of the ranking do not depend on what this machine has installed."""
    from vischoose.recommendation.pipeline import known as here

    world = here()
    runtimes = {name: facts._replace(missing=(missing or {}).get(name)) for name, facts in world.runtimes.items()}
    return world._replace(runtimes=runtimes)
