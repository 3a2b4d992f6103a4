"""ExecuTorch (XNNPACK): a batch of N in one call of a program built for 1 to max(N) images a call (`export
--max-batch`, and what profile builds for its largest batch) against N calls of the batch-1 program vischoose builds
by default (what a phone app deploys), and what the bound costs in planned buffer memory; on this CPU, fp32, random
weights (speed does not depend on the weight values). Ratios are only meaningful within one run: the machine may be
shared.

    python bench/executorch_batch.py [--models resnet18,tf_efficientnet_lite0] [--batches 1,8,32] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vischoose import machine  # noqa: E402
from vischoose.measure.timing import time_call  # noqa: E402
from vischoose.report import tables as report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,tf_efficientnet_lite0")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=4.0)
    args = parser.parse_args()
    from vischoose.models.loading import load_model
    from vischoose.runtimes import agreement
    from vischoose.runtimes.executorch import ExecuTorch

    et, rows = ExecuTorch(), []
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            loaded = load_model(name, weights="random")
            one = et.build(loaded, "fp32", Path(tmp) / f"{name}-1.pte", loaded.input_size, None)
            bounded = et.build(loaded, "fp32", Path(tmp) / f"{name}-{max(batches)}.pte", loaded.input_size, None,
                               max_batch=max(batches))
            for label, artifact in (("batch 1, N calls", one), (f"1 to {max(batches)}, one call", bounded)):
                forward, planned = et.session(artifact, args.threads), artifact.facts["memory_plan"]["planned_mb"]
                for batch in batches:
                    x = agreement.random_batch(loaded.input_size, batch)
                    seconds = time_call(lambda: forward(x), args.budget_s).median
                    rows.append([name, label, batch, report.fmt(batch / seconds, 1), report.fmt(1e3 * seconds, 2),
                                 report.fmt(planned, 2)])
    print(f"ExecuTorch {et.version()} XNNPACK fp32, {args.threads} threads, {machine.cpu_name()} "
          f"(machine {machine.fingerprint()}); median of timed calls after warm-up")
    print(report.table(["model", "program", "batch", "img/s", "ms per call", "planned MiB"], rows))


if __name__ == "__main__":
    main()
