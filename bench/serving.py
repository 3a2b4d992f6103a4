"""The server scenario against its targets, per model and variant, on this machine (random weights; serving speed does
not depend on the weight values), every figure from one run:

- offline: profile's best img/s over the batch sizes; single-stream: its batch-1 p90 and p99;
- vischoose's batch-1 p90 against LoadGen's SingleStream p90 on the same session (target 0.9-1.1x);
- loose SLO (10x the batch-1 p99): the sustained server QPS against the best offline img/s (target >= 0.8x);
- tight SLO (1.5x the batch-1 p99): a VALID rate above 0 (at such a bound almost no request may wait and the lone
  forwards' tail over it decides: the rate is a fraction of a percent of capacity, and where more than 1 in 662
  forwards are over, the runs are longer, up to 5,000 queries; one run can last tens of minutes: --search-s 3000);
- the ceiling: the rate a server whose every forward took its measured mean would sustain at the loose bound (the
  queueing model without spread, over every setting measured): forwards that vary queue longer, so a real server of
  these service times sustains less;
- the wall time of each server search (target <= 3 min on 2 cores at default durations).

    python bench/serving.py [--models resnet18,resnet50] [--variants onnxruntime:int8,torch:fp32] [--threads 2]
                            [--search-s 180] [--skip-tight] [--smoke]

--smoke: timm's tiny test_resnet on ONNX Runtime fp32 with short budgets (checks the script, not the targets).
Ratios compare figures of one run; the machine may be shared (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vischoose import machine  # noqa: E402
from vischoose.measure import serving_runner, serving_search  # noqa: E402
from vischoose.measure.runner import profile_models  # noqa: E402
from vischoose.report.tables import table  # noqa: E402
from vischoose.requests.profile import DEFAULT_SERVE_BUDGET_S, SERVER, ProfileRequest  # noqa: E402

TARGET_LOOSE, TARGET_SINGLE = 0.8, (0.9, 1.1)
TARGET_SEARCH_S = 180.0


def measure_variant(model: str, runtime: str, precision: str, threads: int | None, search_s: float,
                    batch_sizes: tuple[int, ...], time_budget_s: float, tight: bool) -> dict:
    """Every figure of one model at one variant."""
    options = ProfileRequest.build(None, precision=precision, models=(model,), device="cpu", runtime=runtime,
                                   threads=threads, weights="random", batch_sizes=batch_sizes,
                                   time_budget_s=time_budget_s)
    rows = [r.profile for r in profile_models(options)]
    good = [p for p in rows if p.ok]
    if not good:
        return {"error": rows[0].error if rows else "no row"}
    best = max(good, key=lambda p: p.throughput_img_s or 0.0)
    out = {"offline": best.throughput_img_s, "offline_batch": best.batch_size, "p90": good[0].latency_ms_p90,
           "p99": good[0].latency_ms_p99}
    single = serving_runner.compare_single_stream(options, seconds=min(time_budget_s, 10.0))
    if single.get("loadgen"):
        out.update(vischoose_p90=single["vischoose"]["p90"], loadgen_p90=single["loadgen"]["p90_ms"],
                   loadgen_single_valid=single["loadgen"]["valid"])
    for name, factor in (("loose", 10.0), ("tight", 1.5))[:2 if tight else 1]:
        begin = time.monotonic()
        request = options.but(scenario=SERVER, slo_ms=factor * out["p99"], time_budget_s=search_s)
        (run,) = serving_runner.serve_models(request)
        serve = (run.detail or {}).get("serve") or {}
        p, means = run.profile, serving_runner.service_means(serve)
        top = serving_search.ceiling(means, request.slo_ms, serving_runner.budget_of(request))
        out[name] = {"slo": request.slo_ms, "qps": p.serve_qps, "valid": p.serve_valid, "runs": p.serve_runs,
                     "queries": p.serve_min_queries,
                     "settings": f"{p.serve_instances}x{p.serve_threads} b{p.serve_max_batch} w{p.serve_max_wait_ms}",
                     "wall_s": time.monotonic() - begin, "error": p.error or p.serve_note,
                     "ceiling": top.qps if top else None, "ceiling_settings": top.settings.label if top else "",
                     "predicted": [(x["settings"], x["qps"]) for x in serve.get("predictions") or []],
                     "also": [(x["prediction"]["settings"], x["prediction"]["qps"], serving_search.sustained(
                         [serving_search.Run.from_dict(r) for r in x["runs"]])) for x in serve.get("also_verified") or []]}
    return out


def verdicts(fig: dict) -> list[str]:
    """Each target met or missed, with the figure."""
    lines = []
    if fig.get("loadgen_p90"):
        ratio = fig["vischoose_p90"] / fig["loadgen_p90"]
        ok = TARGET_SINGLE[0] <= ratio <= TARGET_SINGLE[1]
        lines.append(f"single-stream p90, vischoose/LoadGen {ratio:.2f}x ({'ok' if ok else 'MISSED'}: 0.9-1.1x)")
    loose = fig.get("loose") or {}
    if loose.get("qps"):
        ratio = loose["qps"] / fig["offline"]
        lines.append(f"loose SLO sustained/offline {ratio:.2f}x ({'ok' if ratio >= TARGET_LOOSE else 'MISSED'}: >= 0.8x)")
        if loose.get("ceiling"):
            lines.append(f"loose SLO ceiling/offline {loose['ceiling'] / fig['offline']:.2f}x: {loose['ceiling']:,.1f} QPS "
                         f"if every forward took its measured mean ({loose['ceiling_settings']}; forwards that vary "
                         f"queue longer); sustained/ceiling {loose['qps'] / loose['ceiling']:.2f}x")
    for name in ("loose", "tight"):
        got = fig.get(name)
        if got and got.get("predicted"):
            said = ", ".join(f"{s['instances']}x{s['threads']} b{s['max_batch']} {q:,.1f}" for s, q in got["predicted"])
            lines.append(f"{name} SLO: predicted QPS {said}; verified {got['settings']}" + "".join(
                f"; {s['instances']}x{s['threads']} b{s['max_batch']} verified too ({q:,.1f} predicted, "
                f"{f'{r.target_qps:,.1f} sustained' if r else 'no run VALID'}), not chosen" for s, q, r in got["also"]))
        if got:
            valid = "ok" if got["qps"] and got["valid"] else f"MISSED ({got['error']})"
            fast = "ok" if got["wall_s"] <= TARGET_SEARCH_S else "MISSED"
            lines.append(f"{name} SLO {got['slo']:.1f} ms: VALID rate {got['qps'] or 0:,.2f} QPS ({valid}; runs of >= "
                         f"{got.get('queries') or 0:,} queries); search {got['wall_s']:.0f} s ({fast}: <= "
                         f"{TARGET_SEARCH_S:.0f} s)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--variants", default="onnxruntime:int8,torch:fp32")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--search-s", type=float, default=DEFAULT_SERVE_BUDGET_S)
    parser.add_argument("--skip-tight", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    models, variants = args.models.split(","), [v.split(":") for v in args.variants.split(",")]
    batch_sizes, budget = (1, 8, 32), 20.0
    if args.smoke:
        models, variants, batch_sizes, budget = ["test_resnet.r160_in1k"], [["onnxruntime", "fp32"]], (1, 8), 4.0
    print(f"machine: {machine.cpu_name()}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f} "
          f"at start")
    rows, notes = [], []
    for model in models:
        for runtime, precision in variants:
            fig = measure_variant(model, runtime, precision, args.threads, args.search_s, batch_sizes, budget,
                                  not args.skip_tight)
            label = f"{model} {runtime} {precision}"
            if "error" in fig:
                notes.append(f"{label}: FAILED {fig['error']}")
                continue
            loose, tight = fig.get("loose") or {}, fig.get("tight") or {}
            rows.append([label, f"{fig['offline']:,.1f} (b{fig['offline_batch']})", f"{fig['p90']:.2f}",
                         f"{fig['p99']:.2f}", f"{fig.get('loadgen_p90', 0):.2f}",
                         f"{loose.get('qps') or 0:,.1f} @ {loose.get('slo', 0):.0f} ms ({loose.get('settings')})",
                         f"{tight.get('qps') or 0:,.2f} @ {tight.get('slo', 0):.1f} ms" if tight else "-",
                         f"{loose.get('wall_s', 0):.0f}/{tight.get('wall_s', 0):.0f}"])
            notes += [f"{label}: {line}" for line in verdicts(fig)]
    print(table(["variant", "offline img/s", "b1 p90 ms", "b1 p99 ms", "LoadGen SS p90 ms", "loose: QPS",
                 "tight: QPS", "search s loose/tight"], rows))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()
