"""recommend --measure on an empty VISCHOOSE_HOME: cold (measure for the decision), warm (reuse), and, unless
--no-exhaustive, --measure-all in another empty home, the two choices compared; the estimates' error against the
exhaustive run's measurements; recommend without measuring against `import typer`; batch-1 p50 at a preset's
threads (capped) against the core count. Prints figures (ratios from one run); no pass/fail.

    python bench/recommend_measure.py [--time-budget 20] [--no-exhaustive]
    python bench/recommend_measure.py --estimates HOME [--rows-csv FILE] [--time-budget 5]
    python bench/recommend_measure.py --from-csv FILE      # the estimates' error from rows written by --rows-csv

--estimates measures only what the estimates are checked against (every catalog model at batch 1, torch fp32 and
mobile's [deploy] variants) in HOME, and prints their error: each model predicted from the others of its runtime,
precision and family, by the rule in use and by one GFLOP/s rate per group.
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


def estimate_errors(rows: list, curve: bool = True) -> dict[tuple[str, str, str], list[float]]:
    """|estimate - measured| / measured of each measured model's batch-1 p90, predicted from the other models of its
    runtime, precision and family (the model held out, as for a model recommend has not measured), per group.
    curve=False: one effective GFLOP/s per group, the rule before the power of the FLOPs was fitted."""
    from vischoose.models import catalog
    from vischoose.recommendation import estimates

    entries = catalog.load()
    groups = [((p.runtime, p.dtype, entries[p.model].family), entries[p.model], p) for p in rows
              if p.model in entries and p.batch_size == 1 and p.ok]
    found = estimates.points(groups)
    floor, estimates.MIN_FOR_CURVE = estimates.MIN_FOR_CURVE, (estimates.MIN_FOR_CURVE if curve else 10**9)
    try:
        errors: dict[tuple[str, str, str], list[float]] = {}
        for group, entry, p in groups:
            est = estimates.estimate(entry, group, found)
            if est and p.latency_ms_p90:
                errors.setdefault(group, []).append(abs(est.latency_ms / p.latency_ms_p90 - 1))
        return errors
    finally:
        estimates.MIN_FOR_CURVE = floor


def report_estimates(rows: list) -> None:
    """Median |error| over every row, for the rule in use and one rate per group, and per group."""
    ours, one_rate = estimate_errors(rows), estimate_errors(rows, curve=False)
    flat = [e for errs in ours.values() for e in errs]
    if not flat:
        print("estimates: no group has two measured models")
        return
    base = [e for errs in one_rate.values() for e in errs]
    print(f"estimated batch-1 p90 vs measured, each model held out of its runtime, precision and family: median "
          f"|error| {100 * statistics.median(flat):.0f}% over {len(flat)} rows (one GFLOP/s rate per group: "
          f"{100 * statistics.median(base):.0f}%)")
    for group in sorted(ours):
        print(f"  {' '.join(group):32s} {len(ours[group])} models: {100 * statistics.median(ours[group]):3.0f}% "
              f"(one rate {100 * statistics.median(one_rate[group]):3.0f}%)")


def rows_from_csv(path: Path) -> list:
    """Profiles back from a --rows-csv file, each cell coerced to its field's type as `vischoose results import`
    does."""
    import csv

    from vischoose.results.exchange import record_from_dict

    with path.open(newline="") as fh:
        return [record_from_dict("profile", raw) for raw in csv.DictReader(fh)]


def measure_for_estimates(home: Path, budget: float, csv_out: Path | None) -> None:
    """Batch-1 p90 of every catalog model at torch fp32 and each of mobile's [deploy] variants (kept in `home`:
    graphs are built once, a re-run only times them), then the estimates' error against them."""
    from vischoose.models import catalog
    from vischoose.presets import load_preset

    models = list(catalog.load())
    variants = [("torch", "fp32")] + [(v.runtime, v.precision) for v in load_preset("mobile").variants]
    for runtime, precision in dict.fromkeys(variants):
        start = time.perf_counter()
        run(["profile", *models, "--target", "mobile", "-b", "1", "--runtime", runtime, "--precision", precision,
             "--weights", "random", "--time-budget", str(budget)], home)
        print(f"measured {len(models)} models at {runtime} {precision}: {time.perf_counter() - start:.0f} s")
    rows = [p for p in stored(home) if p.batch_size == 1]
    newest = {}
    for p in sorted(rows, key=lambda p: p.created_at):
        newest[(p.model, p.runtime, p.dtype)] = p
    report_estimates(list(newest.values()))
    if csv_out:
        import csv

        with csv_out.open("w", newline="") as fh:
            out = csv.DictWriter(fh, fieldnames=list(rows[0].to_dict()))
            out.writeheader()
            out.writerows(p.to_dict() for p in newest.values())
        print(f"rows: {csv_out}")


def startup(n: int = 10) -> tuple[float, float]:
    """recommend on the catalog and `import typer`, alternated (bench/recommend_speed.py's measurement)."""
    from recommend_speed import (
        measure,  # bench/ is on sys.path: this script runs from it
    )

    return measure(n)


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
    parser.add_argument("--estimates", type=Path, metavar="HOME",
                        help="only the estimates: batch-1 rows of the whole catalog measured in HOME (kept: graphs "
                             "are built once), their error printed")
    parser.add_argument("--rows-csv", type=Path, help="with --estimates: write the rows used here")
    parser.add_argument("--from-csv", type=Path, metavar="FILE",
                        help="only the estimates' error, from rows an earlier --rows-csv wrote (nothing measured)")
    args = parser.parse_args()
    if args.from_csv:
        report_estimates(rows_from_csv(args.from_csv))
        return
    budget = ["--time-budget", str(args.time_budget)]
    from vischoose import machine

    print(f"machine: {machine.cpu_name()}, {os.cpu_count()} cores; time budget {args.time_budget} s per variant")
    if args.estimates:
        measure_for_estimates(args.estimates.resolve(), args.time_budget, args.rows_csv)
        return
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
            report_estimates(stored(full))
    rec_s, typer_s = startup()
    print(f"recommend (no measuring): {1e3 * rec_s:.0f} ms vs import typer {1e3 * typer_s:.0f} ms = "
          f"{rec_s / typer_s:.2f}x (median of 10 each, alternated)")
    at_preset, at_cores = threads_ratio(min(args.time_budget, 10.0))
    print(f"resnet18 batch-1 p50 at mobile's threads (capped): {at_preset:.1f} ms; at the core count: "
          f"{at_cores:.1f} ms = {at_preset / at_cores:.2f}x (median of 3 alternated)")


if __name__ == "__main__":
    main()
