"""Batch-1 img/s against batch-1 latency on a graph runtime, with the timing rules before and after issue 32.

A graph's timing child measures batch-1 throughput first, straight after creating the session, then the other batch
sizes, then batch-1 latency: two medians of the same call, so img/s x p50 / 1000 should be 1. Each run here is a fresh
process doing exactly that (measure.timing.timing_sweep) on one built file, alternating the two rules:

- before: a phase stopped as soon as its median was known within +-2% (a few dozen runs: 0.1 s for a 4 ms model),
  after a warm-up of 4+ runs;
- after: a phase's timed runs add up to measure.timing.MIN_PHASE_S at least, after MIN_WARMUP_S of warm-up.

(The consistency check that measures a disagreeing pair again is off here: this compares the phase rules alone.)
It prints, per run, the ratio, each phase's runs and what others took (measure.contention), then the spread of the
ratio per rule. Run it on a quiet machine (the figures of a busy one say little).

    python bench/batch1_consistency.py [--model resnet18] [--runtime onnxruntime] [--precision int8] [--runs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys
from vischoose.measure import contention, timing
from vischoose.runtimes import agreement, registry
from vischoose.runtimes.artifact import Artifact

artifact, threads, rule, budget = Artifact.from_dict(json.loads(sys.argv[1])), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
if rule == "before":
    timing.MIN_PHASE_S, timing.MIN_WARMUP_S = 0.0, 0.0
timing.check_batch1 = lambda *args, **kwargs: None  # the phase rules alone: no second measurement of disagreeing pairs
forward = registry.get(artifact.runtime).session(artifact, threads)
result = {"throughput": {}}
inputs = {b: agreement.random_batch(artifact.input_size, n=b) for b in (1, 8)}
meter = contention.Meter(threads, limit_cores=float("inf"))
timing.timing_sweep(result, lambda b: (lambda: forward(inputs[b])), timing.cpu_timer, [1, 8], budget,
                    lambda *a: None, lambda n, w: None, meter=meter)
print(json.dumps(result))
"""


def build(model: str, runtime: str, precision: str, home: Path) -> dict:
    """The file, built once through vischoose export's pipeline (random weights)."""
    from vischoose.deploy.export import export_model
    from vischoose.requests.export import ExportRequest
    from vischoose.runtimes import registry

    chosen = registry.get(runtime)
    out = home / f"model{chosen.suffix}"
    export_model(ExportRequest(model, str(out), format=chosen.format, precision=precision, weights="random"))
    return chosen.open_file(out, precision).to_dict()


def one_run(artifact: dict, threads: int, rule: str, budget_s: float) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(artifact), str(threads), rule, str(budget_s)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--runs", type=int, default=6, help="fresh processes per rule (alternated)")
    parser.add_argument("--budget", type=float, default=9.0, help="seconds of timed runs per process")
    args = parser.parse_args()
    from vischoose import machine
    from vischoose.measure import process, stats

    threads = process.capped_threads(None)
    print(f"machine: {machine.cpu_name()}, {threads} threads; {args.model} {args.runtime} {args.precision}, batch 1 "
          f"and 8, {args.budget:g} s per process; load average {os.getloadavg()[0]:.2f}")
    ratios: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        artifact = build(args.model, args.runtime, args.precision, Path(tmp))
        for i in range(args.runs):
            for rule in ("before", "after") if i % 2 == 0 else ("after", "before"):
                r = one_run(artifact, threads, rule, args.budget)
                thr, lat = r["throughput"]["1"], r["latency"]
                ratio = thr["median"] * lat["median"] / 1000.0
                ratios[rule].append(ratio)
                print(f"{rule:6s} img/s b1 {thr['median']:8.1f} ({thr['n']:4d} runs, others {thr['others_cores']:.2f}) "
                      f"p50 {lat['median']:7.2f} ms ({lat['n']:4d} runs, others {lat['others_cores']:.2f})  "
                      f"img/s x p50 / 1000 = {ratio:.3f}", flush=True)
    for rule, found in ratios.items():
        worst = max(max(found), 1 / min(found))
        print(f"{rule}: ratio median {stats.median(found):.3f}, range {min(found):.3f}-{max(found):.3f}, "
              f"worst {worst:.2f}x apart over {len(found)} runs")


if __name__ == "__main__":
    main()
