"""recommend --measure on an empty VISCHOOSE_HOME: cold (measure for the decision), warm (reuse), and, unless
--no-exhaustive, --measure-all in another empty home, the two choices compared; the estimates' error against the
exhaustive run's measurements; recommend without measuring against `import typer`; batch-1 p50 at a preset's
threads (capped) against the core count. Prints figures (ratios from one run); no pass/fail.

    python bench/recommend_measure.py [--time-budget 20] [--no-exhaustive]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = ["--target", "mobile", "--budget-mb", "150"]


def run(args: list[str], home: Path) -> tuple[float, dict]:
    env = {**os.environ, "VISCHOOSE_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(home / "hub")}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "vischoose", *args, "--json"], env=env, capture_output=True,
                         text=True, check=True)
    return time.perf_counter() - start, json.loads(out.stdout)["data"]


def stored(home: Path) -> list:
    os.environ["VISCHOOSE_HOME"] = str(home)
    from vischoose.results.store import open_store

    with open_store() as db:
        return db.profiles()


def estimate_errors(rows: list) -> list[float]:
    """|estimate - measured| / measured of each measured model's batch-1 p90, from the others in its group."""
    from vischoose.models import catalog
    from vischoose.recommendation import estimates

    entries = catalog.load()
    groups = [((p.runtime, p.dtype, entries[p.model].family), p) for p in rows
              if p.model in entries and p.batch_size == 1 and p.ok]
    rates = estimates.rates(groups)
    errors = []
    for group, p in groups:
        est = estimates.estimate(entries[p.model], group, rates)
        if est and p.latency_ms_p90:
            errors.append(abs(est.latency_ms / p.latency_ms_p90 - 1))
    return errors


def startup(n: int = 10) -> tuple[float, float]:
    def median_of(cmd: list[str]) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)
    with tempfile.TemporaryDirectory() as home:
        os.environ["VISCHOOSE_HOME"] = home
        rec = median_of([sys.executable, "-m", "vischoose", "recommend", *TARGET])
    return rec, median_of([sys.executable, "-c", "import typer"])


def threads_ratio(budget: float, rounds: int = 3) -> tuple[float, float]:
    """Median p50 of resnet18 batch 1 at the mobile preset's threads (capped here) and at the core count, the two
    alternated `rounds` times so that the machine's drift hits both alike."""
    from vischoose.measure.process import usable_cores
    from vischoose.measure.runner import profile

    cores = usable_cores()
    common = {"device": "cpu", "batch_sizes": [1], "weights": "random", "time_budget_s": budget, "save": False}
    at_preset, at_cores = [], []
    for _ in range(rounds):
        at_preset.append(profile(["resnet18"], target="mobile", **common)[0].latency_ms_p50)
        at_cores.append(profile(["resnet18"], threads=cores, **common)[0].latency_ms_p50)
    return statistics.median(at_preset), statistics.median(at_cores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-budget", type=float, default=20.0)
    parser.add_argument("--no-exhaustive", action="store_true")
    args = parser.parse_args()
    budget = ["--time-budget", str(args.time_budget)]
    from vischoose.measure import machine

    print(f"machine: {machine.cpu_name()}, {os.cpu_count()} cores; time budget {args.time_budget} s per variant")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "cold"
        cold_s, cold = run(["recommend", *TARGET, "--measure", *budget], home)
        warm_s, warm = run(["recommend", *TARGET, "--measure", *budget], home)
        print(f"cold --measure: {cold_s:.0f} s, chose {cold['chosen']['model']}; {len(stored(home))} rows stored")
        for line in cold["measure_log"]:
            print(f"  {line}")
        print(f"warm --measure: {warm_s:.1f} s, chose {warm['chosen']['model']}")
        if not args.no_exhaustive:
            full = Path(tmp) / "all"
            all_s, every = run(["recommend", *TARGET, "--measure-all", *budget], full)
            print(f"--measure-all: {all_s:.0f} s, chose {every['chosen']['model']}: "
                  f"{'same' if every['chosen']['model'] == cold['chosen']['model'] else 'DIFFERENT'} choice; "
                  f"cold is {all_s / cold_s:.1f}x faster")
            errors = estimate_errors(stored(full))
            if errors:
                print(f"estimated batch-1 p90 vs measured: median |error| {100 * statistics.median(errors):.0f}% "
                      f"over {len(errors)} rows (leave-one-out within runtime, precision and family)")
    rec_s, typer_s = startup()
    print(f"recommend (no measuring): {1e3 * rec_s:.0f} ms vs import typer {1e3 * typer_s:.0f} ms = "
          f"{rec_s / typer_s:.2f}x (median of 10 each)")
    at_preset, at_cores = threads_ratio(min(args.time_budget, 10.0))
    print(f"resnet18 batch-1 p50 at mobile's threads (capped): {at_preset:.1f} ms; at the core count: "
          f"{at_cores:.1f} ms = {at_preset / at_cores:.2f}x (median of 3 alternated)")


if __name__ == "__main__":
    main()
