"""Helpers for profiler tests: a pre-measured machine peak, so tests do not spend seconds on big matmuls."""

from __future__ import annotations

import json
from pathlib import Path

from vischoose import machine, paths
from vischoose.measure.peak import peak_key

SEEDED_PEAK_GFLOPS_S = 10_000.0  # above what this CPU reaches: a peak the model beats is dropped as stale
FAST = {"device": "cpu", "threads": 1, "weights": "random", "time_budget_s": 0.5}  # protocol of the child tests


def seed_peak(threads: int = 1, dtype: str = "float32") -> Path:
    """Write the machine-peak cache (the test's own machine folder: conftest) as a previous run would have, for CPU
    at `threads`, beside the entries already there; returns the cache file."""
    key = peak_key(machine.fingerprint(), "cpu", machine.cpu_name(), dtype, threads)
    cache = paths.peak_cache()
    cache.parent.mkdir(parents=True, exist_ok=True)
    entry = {"gflops_s": SEEDED_PEAK_GFLOPS_S, "kernel": "seeded by the test", "reps": 0}
    found = json.loads(cache.read_text()) if cache.is_file() else {}
    cache.write_text(json.dumps({**found, key: entry}))
    return cache


def known(missing: dict[str, str] | None = None):
    """The catalog and the registry's runtimes for the pure ranking, each installed unless `missing` names it (with
    why): tests of the ranking do not depend on what this machine has installed."""
    from vischoose.recommendation.pipeline import known as here

    world = here()
    runtimes = {name: facts._replace(missing=(missing or {}).get(name)) for name, facts in world.runtimes.items()}
    return world._replace(runtimes=runtimes)
