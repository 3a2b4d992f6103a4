"""What an app sees, for resnet50 and vit_b16 at every runtime and precision installed here: the cold start (import,
file to ready session, first inference, RSS) in a fresh process, the warm batch-1 p50, and each 12 MP phone JPEG end
to end (decode + the model's preprocessing + the model), with decode and preprocessing against the model's share.

Everything goes through `vischoose.profile` with end_to_end=True (the photos: 4032x3024 JPEGs at quality 90 made on
the fly, or --images DIR), so the figures are the ones profile stores. Each variant is profiled --repeat times (a new
cold-start process each time); the cold figures are their median and range, the warm and end-to-end ones the last
run's. Weights: cached pretrained where there are some, else random init (speed does not depend on them; the rows
say which). int8 is calibrated on random data (speed only).

    PYTHONPATH=. python bench/app_latency.py [--models resnet50 vit_b16] [--runtimes torch onnxruntime ...]
        [--time-budget 20] [--repeat 3] [--images DIR] [--threads 2]

Writes bench/results/app-latency-<cpu>-<threads>threads.txt as it goes. Run it on a quiet machine: on a shared
one the figures show that the code works, not what the machine can do.
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

MODELS = ("resnet50", "vit_b16")


def variants(only: list[str] | None) -> list[tuple[str, str]]:
    """(runtime, precision) for every runtime installed here and each precision this machine runs on it."""
    from vischoose.runtimes import registry

    found = []
    for runtime in registry.RUNTIMES.values():
        if runtime.missing() is not None or (only and runtime.name not in only):
            continue
        for precision in runtime.precisions:
            if precision == "fp16" or runtime.precision_supported(precision) is not None:
                continue  # fp16 eager on a CPU is not what an app runs
            if runtime.name == "torch" and precision == "bf16":
                from vischoose import machine

                if not machine.has_bf16():
                    continue
            found.append((runtime.name, precision))
    return found


def spread(values: list[float]) -> str:
    """'123 (118-131)' or '-'."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):,.0f}" + (f" ({min(values):,.0f}-{max(values):,.0f})" if len(values) > 1 else "")


def measure(model: str, runtime: str, precision: str, args: argparse.Namespace) -> list:
    import vischoose

    rows = []
    for _ in range(args.repeat):
        fields = {"runtime": runtime, "precision": precision, "batch_sizes": [1], "end_to_end": True,
                  "time_budget_s": args.time_budget, "threads": args.threads, "save": False, "device": "cpu"}
        if args.images:
            fields["images"] = args.images
        rows += vischoose.profile([model], **fields)
    return rows


def line(model: str, runtime: str, precision: str, rows: list) -> str:
    last = rows[-1]
    if last.error:
        return f"{model:<10} {runtime + ' ' + precision:<18} FAILED: {last.error}"
    share = "-" if last.e2e_model_share is None else f"{100 * last.e2e_model_share:.0f}%"
    pre = (last.decode_ms_p50 or 0) + (last.preprocess_ms_p50 or 0)
    return (f"{model:<10} {runtime + ' ' + precision:<18} {spread([r.cold_import_ms for r in rows]):>16} "
            f"{spread([r.cold_load_ms for r in rows]):>16} {spread([r.cold_first_ms for r in rows]):>14} "
            f"{spread([r.cold_rss_mb for r in rows]):>12} {last.latency_ms_p50 or 0:>9.1f} "
            f"{last.e2e_ms_p50 or 0:>9.1f} {last.e2e_ms_p90 or 0:>9.1f} {last.decode_ms_p50 or 0:>8.1f} "
            f"{last.preprocess_ms_p50 or 0:>8.1f} {last.e2e_model_ms_p50 or 0:>8.1f} {pre:>10.1f} {share:>7}")


def header(say, args: argparse.Namespace) -> None:
    from importlib.metadata import PackageNotFoundError, version

    from vischoose import machine
    from vischoose.inference import photos

    def installed(package: str) -> str:
        try:
            return f"{package} {version(package)}"
        except PackageNotFoundError:
            return f"{package} not installed"

    facts = machine.describe()
    say(f"# What the app sees: cold start, warm batch 1, a 12 MP JPEG end to end ({args.threads} threads)")
    say(f"machine: {facts['cpu']}, {facts['cores']} cores, {facts['memory_gib']} GiB, {facts['os']} "
        f"(kind {facts['kind']})")
    say("versions: " + ", ".join(installed(p) for p in ("torch", "timm", "onnxruntime", "executorch", "openvino",
                                                         "ai-edge-litert", "litert-torch", "pillow")))
    say(f"decoder: {photos.decoder()}; photos: {args.images or 'phone-camera JPEGs made on the fly (4032x3024, q90)'}")
    say("cold (fresh process, median (range) of --repeat): import ms, load ms (file -> ready session), first ms, RSS "
        "MiB after it; warm p50: batch-1 median on a tensor; e2e: decode + preprocess + model per photo (p50/p90); "
        "decode+prep p50 against the model's p50; model %: its mean share of the whole.")
    say(f"{'model':<10} {'variant':<18} {'import ms':>16} {'load ms':>16} {'first ms':>14} {'RSS MiB':>12} "
        f"{'warm p50':>9} {'e2e p50':>9} {'e2e p90':>9} {'decode':>8} {'prep':>8} {'model':>8} {'dec+prep':>10} "
        f"{'model %':>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--runtimes", nargs="+", default=None, help="only these runtimes (default: every installed)")
    parser.add_argument("--precisions", nargs="+", default=None, help="only these precisions (fp32, int8, bf16)")
    parser.add_argument("--time-budget", type=float, default=20.0, help="profile's time budget per model, s")
    parser.add_argument("--repeat", type=int, default=3, help="profiles (cold starts) per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", default=None, help="your photos instead of synthesized 12 MP JPEGs")
    args = parser.parse_args()
    from vischoose import machine

    cpu = re.sub(r"[^A-Za-z0-9]+", "-", machine.cpu_name()).strip("-").lower()[:40]
    out = Path(__file__).parent / "results" / f"app-latency-{cpu}-{args.threads}threads.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)
        out.write_text("\n".join(lines) + "\n")

    header(say, args)
    for model in args.models:
        for runtime, precision in variants(args.runtimes):
            if args.precisions and precision not in args.precisions:
                continue
            say(line(model, runtime, precision, measure(model, runtime, precision, args)))
    say(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
