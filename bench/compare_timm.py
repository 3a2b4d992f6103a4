"""Does vischoose's profiler measure what a plain timm loop measures? Throughput, CPU, fp32, batch 8.

Alternates, per round and model: (a) vischoose.profile (random weights, own child process, median of timed
runs) and (b) the plain loop below (timm.create_model, eval, inference_mode, 10 warm-up + 40 timed forwards of
one fixed random batch; img/s = images / total time). Prints both and vischoose/plain; 0.95-1.05 means
vischoose neither adds overhead nor flatters.

The plain loop also runs in a fresh process each time (this script, --plain): glibc malloc's state after one
model changes the next one's CPU throughput (resnet50 batch 8: ~26 img/s fresh, ~35 img/s after a ViT ran in
the same process, as with MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ raised: fewer page faults).

    python bench/compare_timm.py [--rounds 3] [--time-budget 30] [--models resnet50 vit_b16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

BATCH = 8
WARMUP, TIMED = 10, 40


def plain_timm_img_s(tag: str, size: int) -> float:
    """A plain timm throughput loop, written as a user would."""
    import timm
    import torch

    model = timm.create_model(tag, pretrained=False).eval()
    x = torch.randn(BATCH, 3, size, size)
    with torch.inference_mode():
        for _ in range(WARMUP):
            model(x)
        start = time.perf_counter()
        for _ in range(TIMED):
            model(x)
        elapsed = time.perf_counter() - start
    return BATCH * TIMED / elapsed


def plain_in_fresh_process(tag: str, size: int) -> float:
    """plain_timm_img_s in a new interpreter, so no earlier model shaped its allocator."""
    out = subprocess.run([sys.executable, __file__, "--plain", tag, str(size)], check=True, capture_output=True,
                         text=True).stdout
    return float(out.split()[-1])


def vischoose_img_s(alias: str, budget_s: float) -> float:
    """vischoose's profiler, as `vischoose profile --device cpu --dtype float32 -b 8 --weights random`."""
    import vischoose

    (row,) = vischoose.profile([alias], device="cpu", dtype="float32", batch_sizes=[BATCH], weights="random",
                               time_budget_s=budget_s, save=False)
    if row.error:
        raise SystemExit(f"{alias}: {row.error}")
    return row.throughput_img_s


def main() -> None:
    """Alternate the two measurements and print the ratio per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternations; the median of each side is compared")
    parser.add_argument("--time-budget", type=float, default=30.0, help="vischoose's budget per model, s")
    parser.add_argument("--models", nargs="+", default=["resnet50", "vit_b16"])
    parser.add_argument("--plain", nargs=2, metavar=("TAG", "SIZE"), help="only run the plain loop once, here")
    args = parser.parse_args()
    if args.plain:
        print(f"{plain_timm_img_s(args.plain[0], int(args.plain[1])):.4f}")
        return

    import torch

    from vischoose import machine
    from vischoose.models import catalog

    print(f"{machine.cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch {BATCH}")
    found: dict[str, dict[str, list[float]]] = {m: {"vischoose": [], "plain": []} for m in args.models}
    for r in range(args.rounds):
        for alias in args.models:
            entry = catalog.load()[alias]
            found[alias]["vischoose"].append(vischoose_img_s(alias, args.time_budget))
            found[alias]["plain"].append(plain_in_fresh_process(entry.tag, entry.input_size))
            load = os.getloadavg()[0]  # this benchmark itself accounts for about the thread count
            busy = "; other work was competing" if load > torch.get_num_threads() + 0.5 else ""
            print(f"round {r + 1} {alias}: vischoose {found[alias]['vischoose'][-1]:.2f} img/s, "
                  f"plain timm {found[alias]['plain'][-1]:.2f} img/s (load average {load:.1f}{busy})", flush=True)
    print(f"\n{'model':10} {'vischoose img/s':>16} {'plain timm img/s':>17} {'ratio':>7}")
    for alias, runs in found.items():
        ours, plain = statistics.median(runs["vischoose"]), statistics.median(runs["plain"])
        verdict = "ok" if 0.95 <= ours / plain <= 1.05 else "OUTSIDE 0.95-1.05"
        print(f"{alias:10} {ours:16.2f} {plain:17.2f} {ours / plain:7.3f}  {verdict}")


if __name__ == "__main__":
    main()
