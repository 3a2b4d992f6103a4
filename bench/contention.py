"""Figures that know the machine was busy (issue 32): what vischoose stores when it is not alone on the machine.

For each model and variant, batch 1, each run a real `vischoose profile` on a home of its own (a shared graph cache,
warmed first, so no run builds):
  (a) alone;
  (b) two profiles started together on one home (they queue on the machine's measurement lock);
  (c) alone, with a hog (one process spinning on every core) started halfway through the run.
Every row stored in (b) and (c) must be within 1.2x of (a) on p50 latency and img/s, or be flagged (contended or
inconsistent) and then never reused by recommend (recommendation.figures.matching_profiles returns nothing for it). It also prints
(b)'s wall time against twice (a)'s: the lock serialises the timed phases, not the untimed ones.

"Alone" is only as alone as the machine is: the load average and the `others` figure of (a) are printed beside it.
Run it on a quiet machine for figures; a busy one shows the flags working (most rows are then contended).

    python bench/contention.py [--models resnet18,resnet50] [--variants torch:fp32,onnxruntime:int8] [--budget 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOLERANCE = 1.2


def profile_cmd(model: str, runtime: str, precision: str, budget_s: float) -> list[str]:
    return [sys.executable, "-m", "vischoose", "profile", model, "--runtime", runtime, "--precision", precision,
            "-b", "1", "--time-budget", str(budget_s), "--weights", "auto", "--device", "cpu"]


def start(cmd: list[str], home: Path, graphs: Path) -> subprocess.Popen:
    env = {**os.environ, "VISCHOOSE_HOME": str(home), "VISCHOOSE_GRAPH_CACHE": str(graphs)}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stored(home: Path) -> list:
    """The profile rows a run stored in its home."""
    from vischoose.results.store import open_store

    if not (home / "results.db").is_file():
        return []
    with open_store(home / "results.db") as db:
        return db.profiles()


def hog() -> list[subprocess.Popen]:
    """A process spinning on every core this process may use."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in os.sched_getaffinity(0)]


def reused(row) -> bool:
    """Whether recommend would use this row as a measured figure (a preset measuring at batch 1, 2 threads)."""
    from vischoose.presets import load_preset
    from vischoose.recommendation.figures import matching_profiles
    from vischoose.runtimes.precision import Variant

    preset = load_preset("mobile")
    return bool(matching_profiles([row], row.model, row.tag, preset, Variant(row.runtime, _precision(row.dtype))))


def _precision(dtype: str) -> str:
    from vischoose.runtimes.precision import precision_of

    return precision_of(dtype)


def judge(label: str, row, alone) -> bool:
    """Print one row against (a); True when it passes (within TOLERANCE, or flagged and not reused)."""
    lat = row.latency_ms_p50 / alone.latency_ms_p50 if row.latency_ms_p50 and alone.latency_ms_p50 else None
    thr = alone.throughput_img_s / row.throughput_img_s if row.throughput_img_s and alone.throughput_img_s else None
    close = lat is not None and thr is not None and max(lat, 1 / lat, thr, 1 / thr) <= TOLERANCE
    flagged, used = row.flagged, reused(row)
    ok = close or (flagged is not None and not used)
    print(f"  {label:24s} p50 {row.latency_ms_p50 or 0:8.2f} ms ({lat or 0:.2f}x a)  img/s {row.throughput_img_s or 0:8.2f} "
          f"({1 / thr if thr else 0:.2f}x a)  others {row.others_cpu_cores if row.others_cpu_cores is not None else '-'}"
          f"  flagged {'yes' if flagged else 'no'}, reused {'yes' if used else 'no'}  -> {'ok' if ok else 'FAIL'}")
    if flagged:
        print(f"      {flagged[:200]}")
    return ok


def run_case(model: str, runtime: str, precision: str, budget_s: float, root: Path) -> bool:
    graphs = root / "graphs"
    cmd = profile_cmd(model, runtime, precision, budget_s)
    start(cmd, root / "warm", graphs).communicate()  # builds the graph once, and loads caches
    begin = time.monotonic()
    start(cmd, root / "a", graphs).communicate()
    alone_s = time.monotonic() - begin
    (alone,) = stored(root / "a")
    print(f"{model} {runtime} {precision}: (a) alone p50 {alone.latency_ms_p50:.2f} ms, {alone.throughput_img_s:.2f} "
          f"img/s, others {alone.others_cpu_cores}, flagged {alone.flagged or 'no'}; {alone_s:.0f} s")
    begin = time.monotonic()
    pair = [start(cmd, root / "b", graphs) for _ in range(2)]
    for p in pair:
        p.communicate()
    pair_s = time.monotonic() - begin
    print(f"  (b) two together: {pair_s:.0f} s against twice alone {2 * alone_s:.0f} s ({pair_s / (2 * alone_s):.2f}x)")
    ok = all(judge(f"(b) together #{i + 1}", r, alone) for i, r in enumerate(stored(root / "b")))
    proc, spin = start(cmd, root / "c", graphs), []
    try:
        time.sleep(alone_s / 2)
        spin = hog()
        proc.communicate()
    finally:
        for s in spin:
            s.kill()
            s.wait()
    return all([ok] + [judge("(c) hog from halfway", r, alone) for r in stored(root / "c")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--variants", default="torch:fp32,onnxruntime:int8")
    parser.add_argument("--budget", type=float, default=20.0, help="--time-budget of each profile, s")
    args = parser.parse_args()
    from vischoose import machine

    print(f"machine: {machine.cpu_name()}, {len(os.sched_getaffinity(0))} cores usable, fingerprint "
          f"{machine.fingerprint()}; load average {os.getloadavg()[0]:.2f} at the start")
    results = []
    for model in args.models.split(","):
        for variant in args.variants.split(","):
            runtime, precision = variant.split(":")
            with tempfile.TemporaryDirectory(prefix="vischoose-contention-") as tmp:
                results.append(run_case(model, runtime, precision, args.budget, Path(tmp)))
    print(f"{sum(results)} of {len(results)} cases pass: every stored figure within {TOLERANCE}x of alone, or flagged "
          "and not reused.")
    print(json.dumps({"load_average_end": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
