"""Deployment runtimes side by side: eager fp32, eager bf16 (autocast), ONNX Runtime fp32 and int8 (per the
family's recipe), on this CPU, for the article's ResNet50 and ViT-B/16 (random weights; speed and size do not
depend on the weight values). Ratios are only meaningful within one run: the machine may be shared.

    python bench/runtimes.py [--models resnet50,vit_b16] [--batch-sizes 1,8] [--threads 2] [--budget-s 8]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vischoose import machine
from vischoose.measure.timing import time_call, time_eager
from vischoose.models.catalog import MIB  # noqa: E402
from vischoose.models.family import model_family
from vischoose.report import tables as report  # noqa: E402
from vischoose.runtimes import ortbuild as deploy

TARGETS = (  # (model, runtime, batch, at least this many times eager fp32)
    ("resnet50", "ORT int8", 8, 4.5),
    ("vit_b16", "ORT int8", 8, 2.5),
    ("resnet50", "ORT fp32", 1, 1.3),
)


@dataclass
class Row:
    """One runtime of one model at one batch size."""

    model: str
    runtime: str
    batch: int
    img_s: float
    iqr_pct: float  # IQR of the per-run times, % of their median
    file_mb: float
    agreement: deploy.Agreement | None
    ratio: float = 1.0


def bench_model(alias: str, batch_sizes: list[int], threads: int, budget_s: float, folder: Path) -> list[Row]:
    """Build the graphs of one model and time every runtime at every batch size."""
    import torch

    from vischoose.models.loading import load_model

    torch.set_num_threads(threads)
    loaded = load_model(alias, weights="random")
    size = 224
    check = deploy.random_batch(size)
    reference = deploy.eager_logits(loaded.model, check)
    exported = deploy.export_onnx(loaded, folder / f"{alias}.onnx", size, check_batch=check, reference=reference)
    family = model_family(loaded.model)
    quant = deploy.quantize_int8(exported.path, folder / f"{alias}.int8.onnx", family)
    print(f"{alias}: {family}; export {exported.export_s:.1f} s, {quant.recipe.name} {quant.quantize_s:.1f} s "
          f"(calibration: {quant.calibration})", file=sys.stderr)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_logits = loaded.model(torch.from_numpy(check)).float().numpy()
    weights_mb = sum(p.numel() * p.element_size() for p in loaded.model.parameters()) / MIB
    graphs = {"ORT fp32": (exported.path, exported.file_mb), "ORT int8": (quant.path, quant.file_mb)}
    agreements = {"eager fp32": None, "eager bf16": deploy.agreement(reference, bf16_logits)}
    for name, (path, _) in graphs.items():
        agreements[name] = deploy.agreement(reference, deploy.run_session(deploy.ort_session(path, threads), check))
    rows = []
    for batch in batch_sizes:
        x = deploy.random_batch(size, n=batch, seed=7)
        timed = {"eager fp32": time_eager(loaded.model, x, budget_s, threads),
                 "eager bf16": time_eager(loaded.model, x, budget_s, threads, bf16=True)}
        for name, (path, _) in graphs.items():
            session = deploy.ort_session(path, threads)
            timed[name] = time_call(lambda s=session: deploy.run_session(s, x), budget_s)
            del session  # its threads stop spinning before the next runtime is timed
            gc.collect()
        base = batch / timed["eager fp32"].median
        for name, summary in timed.items():
            img_s = batch / summary.median
            size_mb = graphs[name][1] if name in graphs else weights_mb
            rows.append(Row(alias, name, batch, img_s, 100 * summary.iqr / summary.median, size_mb,
                            agreements[name], img_s / base))
        print(f"{alias}: batch {batch} done", file=sys.stderr)
    return rows


def render(rows: list[Row]) -> str:
    """The results table."""
    body = [[r.model, r.runtime, r.batch, report.fmt(r.img_s, 1), report.fmt(r.iqr_pct, 1), f"{r.ratio:.2f}x",
             report.fmt(r.file_mb, 1),
             "-" if r.agreement is None else report.fmt(100 * r.agreement.top1_agreement, 0),
             "-" if r.agreement is None else f"{r.agreement.cosine:.4f}",
             "-" if r.agreement is None else f"{r.agreement.max_abs_diff:.3g}"] for r in rows]
    return report.table(["model", "runtime", "batch", "img/s", "IQR %", "x eager fp32", "MiB", "top-1 agree %",
                         "cosine", "max |diff|"], body)


def check_targets(rows: list[Row]) -> list[str]:
    """One PASS/FAIL line per target ratio."""
    lines = []
    for model, runtime, batch, target in TARGETS:
        found = next((r for r in rows if (r.model, r.runtime, r.batch) == (model, runtime, batch)), None)
        if found is not None:
            verdict = "PASS" if found.ratio >= target else "FAIL"
            lines.append(f"{verdict}: {model} {runtime} at batch {batch}: {found.ratio:.2f}x eager fp32 "
                         f"(target >= {target}x)")
    return lines


class OtherWork:
    """How much of the machine's CPU time other processes took since this was made (0-1 of all cores)."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._start = self._times()

    def _times(self) -> tuple[float, float, float]:
        import psutil

        system, mine = psutil.cpu_times(), self._me.cpu_times()
        busy = system.user + system.system + getattr(system, "nice", 0.0)
        return busy, mine.user + mine.system + mine.children_user + mine.children_system, time.monotonic()

    def share(self) -> float:
        """Others' CPU seconds over (wall seconds x cores)."""
        busy, mine, now = self._times()
        b0, m0, t0 = self._start
        return max(0.0, (busy - b0) - (mine - m0)) / max((now - t0) * (os.cpu_count() or 1), 1e-9)


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,vit_b16")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=8.0, help="timed seconds per runtime and batch size")
    args = parser.parse_args()
    import onnxruntime
    import torch

    others = OtherWork()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vischoose-bench-") as tmp:
        for alias in args.models.split(","):
            rows += bench_model(alias, [int(b) for b in args.batch_sizes.split(",")], args.threads, args.budget_s,
                                Path(tmp))
    print(render(rows))
    print(f"\n{machine.cpu_name()}, {args.threads} threads, 224 px, random weights; torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; other processes used {others.share():.0%} of the "
          f"{os.cpu_count()} cores during the run.\nimg/s: median over timed runs after warm-up (vischoose.measure "
          "stop rules), no preprocessing; MiB: ONNX file, or fp32 weights for eager (autocast keeps them fp32); "
          "IQR %: of the per-run times; agreement: with eager fp32 on 8 fixed random inputs (random weights "
          "give near-tied logits, so top-1 agreement means little here: read the cosine).")
    if others.share() > 0.05:
        print(f"Warning: other processes used {others.share():.0%} of the cores: eager torch suffers most from shared "
              "cores, so the ratios overstate the runtimes' gains.")
    print("\n".join(check_targets(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
