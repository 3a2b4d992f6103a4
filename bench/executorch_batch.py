"""ExecuTorch (XNNPACK): a batch of N in one call of the dynamic-batch program vischoose builds, against N calls of a
static batch-1 program (what vischoose built before #34), on this CPU, fp32, random weights (speed does not depend on
the weight values). Ratios are only meaningful within one run: the machine may be shared.

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


def static_program(loaded, out: Path) -> Path:
    """The model exported at a static batch of 1 and lowered to XNNPACK, as vischoose built it before #34."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from vischoose.runtimes.executorch import exportable

    size = loaded.input_size
    with torch.no_grad(), exportable(loaded.model):
        program = torch.export.export(loaded.model, (torch.zeros(1, 3, size, size),))
        out.write_bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    return out


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
            dynamic = et.build(loaded, "fp32", Path(tmp) / f"{name}-dynamic.pte", loaded.input_size, None)
            static = et.open_file(static_program(loaded, Path(tmp) / f"{name}-static.pte"))
            for label, artifact in (("static batch 1, N calls", static), ("dynamic, one call", dynamic)):
                forward = et.session(artifact, args.threads)
                for batch in batches:
                    x = agreement.random_batch(loaded.input_size, batch)
                    seconds = time_call(lambda: forward(x), args.budget_s).median
                    rows.append([name, label, batch, report.fmt(batch / seconds, 1), report.fmt(1e3 * seconds, 2)])
    print(f"ExecuTorch {et.version()} XNNPACK fp32, {args.threads} threads, {machine.cpu_name()} "
          f"(machine {machine.fingerprint()}); median of timed calls after warm-up")
    print(report.table(["model", "program", "batch", "img/s", "ms per call"], rows))


if __name__ == "__main__":
    main()
