"""Does `vischoose profile --optimize` find a setting faster than timm's own eager flags? CPU, batch 8, 224 px.

For each model: (a) timm's eager flag combinations as a plain loop, each in a fresh process (create_model,
eval, inference_mode; fp32, channels_last, bf16 autocast, bf16 autocast + channels_last; WARMUP + TIMED
forwards of one fixed random batch; img/s = images / total time), and (b) vischoose's optimize search with
a time budget. Prints the best of each, the ratios, and vischoose's efficiency (achieved FLOP/s over the
machine's peak at the same dtype). Targets: resnet50 >= 1.1x timm's best eager and >= 2.5x plain fp32,
efficiency >= 0.75; vit_b16 >= 1.0x timm's best eager.

    python bench/optimize_vs_timm.py [--budget 300] [--models resnet50 vit_b16]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

BATCH = 8
WARMUP, TIMED = 5, 20
COMBOS = {"fp32": (False, False), "channels_last": (True, False), "bf16": (False, True),
          "bf16 + channels_last": (True, True)}
TARGETS = {"resnet50": (1.1, 2.5, 0.75), "vit_b16": (1.0, None, None)}  # x timm best, x plain fp32, efficiency


def plain_timm_img_s(tag: str, size: int, combo: str) -> float:
    """timm with its eager flags, as a user would write it."""
    import timm
    import torch

    channels_last, bf16 = COMBOS[combo]
    model = timm.create_model(tag, pretrained=False).eval()
    x = torch.randn(BATCH, 3, size, size)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for _ in range(WARMUP):
            model(x)
        start = time.perf_counter()
        for _ in range(TIMED):
            model(x)
        elapsed = time.perf_counter() - start
    return BATCH * TIMED / elapsed


def in_fresh_process(tag: str, size: int, combo: str) -> float:
    """plain_timm_img_s in a new interpreter."""
    out = subprocess.run([sys.executable, __file__, "--plain", tag, str(size), combo], check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[-1])


def main() -> None:
    """Measure timm's combinations and vischoose's search per model; print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="vischoose's search budget per model, s")
    parser.add_argument("--models", nargs="+", default=["resnet50", "vit_b16"])
    parser.add_argument("--plain", nargs=3, metavar=("TAG", "SIZE", "COMBO"), help="one timm loop, here")
    args = parser.parse_args()
    if args.plain:
        print(f"{plain_timm_img_s(args.plain[0], int(args.plain[1]), args.plain[2]):.4f}")
        return

    from vischoose import machine
    from vischoose.measure import optimize
    from vischoose.models import catalog
    from vischoose.requests.profile import ProfileRequest

    print(f"{machine.cpu_name()}, CPU, batch {BATCH}, random weights; timm loops: {WARMUP} warm-up + {TIMED} timed")
    for alias in args.models:
        entry = catalog.load()[alias]
        timm_figures = {c: in_fresh_process(entry.tag, entry.input_size, c) for c in COMBOS}
        for combo, img_s in timm_figures.items():
            print(f"  timm {alias} {combo}: {img_s:.2f} img/s", flush=True)
        options = ProfileRequest.build(models=(alias,), device="cpu", weights="random", batch_sizes=[BATCH])
        (o,) = optimize.optimize_models(options, args.budget,
                                        progress=lambda m, w, t: print(f"  [{t:5.0f} s] {m}: {w}", flush=True))
        for t in o.trials:
            print(f"  vischoose {t.variant.label}: {t.img_s or 0:.2f} img/s, compile {t.compile_s or 0:.0f} s, "
                  f"top-1 agree {t.top1_agreement}, max|diff| {t.max_abs_diff}, {t.status}")
        best_timm = max(timm_figures.values())
        best = o.best_run.profile if o.best_run else None
        if best is None:
            print(f"{alias}: vischoose found no setting")
            continue
        eff = best.efficiency or 0.0
        over_timm, over_plain = best.throughput_img_s / best_timm, best.throughput_img_s / timm_figures["fp32"]
        goal_timm, goal_plain, goal_eff = TARGETS.get(alias, (1.0, None, None))
        verdict = "ok" if over_timm >= goal_timm and (goal_plain is None or over_plain >= goal_plain) and \
            (goal_eff is None or eff >= goal_eff) else "BELOW TARGET"
        print(f"{alias}: vischoose best {o.best.variant.label} {best.throughput_img_s:.2f} img/s "
              f"(efficiency {eff:.2f} of the {best.dtype} peak); timm best eager {best_timm:.2f} img/s; "
              f"x{over_timm:.2f} timm's best, x{over_plain:.2f} timm fp32; search {o.elapsed_s:.0f} s of "
              f"{args.budget:.0f} s  {verdict}", flush=True)


if __name__ == "__main__":
    main()
