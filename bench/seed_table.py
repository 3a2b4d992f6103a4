"""Reproduce the article's speed table on a CUDA GPU: plain and optimized, fp32 and bf16, batch 64.

Models: resnet50, vit_b16, vit_l16 at 224 px and the hybrid r50_vit_b16 at its 384 px; random weights (speed
does not depend on them). Plain rows: `vischoose profile` at float32 and bfloat16 (weights cast); optimized:
`vischoose profile --optimize` with a short budget. A few minutes on a recent GPU. On a machine without a CUDA
GPU it says so and exits 0.

    python bench/seed_table.py [--budget 60] [--save]
"""

from __future__ import annotations

import argparse
import sys

MODELS = ("resnet50", "vit_b16", "r50_vit_b16", "vit_l16")
BATCH = 64


def main() -> int:
    """Profile the article's models on the GPU and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="optimize search budget per model, s")
    parser.add_argument("--save", action="store_true", help="write the rows to the results store")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("No CUDA GPU on this machine: the article's table needs one; nothing measured.")
        return 0
    from vischoose.measure import optimize
    from vischoose.measure import runner as profiling
    from vischoose.requests.profile import ProfileRequest
    from vischoose.results.store import keep_profiles

    keep = keep_profiles if args.save else None

    rows = []
    for dtype in ("float32", "bfloat16"):
        options = ProfileRequest.build(models=MODELS, device="cuda", batch_sizes=[BATCH], dtype=dtype,
                                       weights="random", time_budget_s=10)
        for run in profiling.profile_models(options, keep=keep):
            p = run.profile
            rows.append((p.model, p.input_size, f"plain {dtype}", p.batch_size, p.throughput_img_s,
                         p.latency_ms_p50, p.efficiency, p.error or ""))
    options = ProfileRequest.build(models=MODELS, device="cuda", batch_sizes=[BATCH], weights="random",
                                   time_budget_s=5)
    for o in optimize.optimize_models(options, args.budget, keep=keep):
        p = o.best_run.profile if o.best_run else None
        if p is None:
            rows.append((o.model, 0, "optimized", BATCH, None, None, None, "no setting measured"))
            continue
        rows.append((p.model, p.input_size, f"optimized: {o.best.variant.label}", p.batch_size, p.throughput_img_s,
                     p.latency_ms_p50, p.efficiency, ""))
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'model':12} {'px':>4} {'setting':55} {'batch':>5} {'img/s':>9} {'p50 ms':>8} {'eff':>6}  error")
    for model, size, setting, batch, img_s, p50, eff, error in rows:
        print(f"{model:12} {size:4} {setting:55} {batch:5} {img_s or 0:9.1f} {p50 or 0:8.2f} "
              f"{100 * (eff or 0):5.1f}%  {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
