"""Memory figures that belong to the model (issue 33): peak RSS over the new baseline, beside each runtime's own
accounting, the file size, and peak / (weights + planned activations).

For each model, batch size and installed runtime (torch eager, and every graph runtime at fp32), one real
`vischoose profile` (random weights, batch 1 and 8, a short time budget: only the memory child matters here). The
baseline is now taken once the runtime's host binding is loaded (Runtime.prepare_host: ExecuTorch's pybindings and
the torch they import, ONNX Runtime, OpenVINO without its CPU plugin, which a deployment loads too), and the heap
that loading freed is given back before each peak.

weights: the file (graphs) or the weights at fp32 (torch); planned activations: the runtime's own planned buffers
where it reports them (ExecuTorch's plan: what no delegate owns), else the widest layer's input plus output at that
batch size, from the eager model (less than any plan needs: a lower bound). A ratio far above 1-2 is memory the
model does not explain: a bug to chase (a lazy import after the baseline, a copy kept).

    python bench/memory.py [--models resnet18,resnet50,vit_s16] [--batches 1,8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

MIB = 2**20


def widest_mb(model: str, batch: int) -> float:
    """The widest leaf layer's input plus output at `batch`, fp32, MiB (from the eager model)."""
    import torch

    from vischoose.models.loading import load_model

    loaded = load_model(model, weights="random")
    net, widest = loaded.model.eval(), [0]

    def hook(module, inputs, output) -> None:
        size = sum(t.numel() for t in inputs if isinstance(t, torch.Tensor)) + output.numel()
        widest[0] = max(widest[0], size)
    hooks = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    with torch.no_grad():
        net(torch.randn(1, 3, loaded.input_size, loaded.input_size))
    for h in hooks:
        h.remove()
    return widest[0] * 4 * batch / MIB


def profile(model: str, runtime: str, batches: str, home: str) -> list[dict]:
    cmd = [sys.executable, "-m", "vischoose", "profile", model, "--runtime", runtime, "--precision", "fp32",
           "-b", batches, "--time-budget", "1", "--weights", "random", "--device", "cpu", "--json", "--no-save"]
    out = subprocess.run(cmd, env={**os.environ, "VISCHOOSE_HOME": home}, capture_output=True, text=True)
    if out.returncode not in (0, 1) or not out.stdout.strip():
        return [{"error": (out.stderr.strip().splitlines() or ["?"])[-1]}]
    return json.loads(out.stdout)["data"]["profiles"]


def line(model: str, runtime: str, row: dict, widest: float) -> str:
    if row.get("error") and row.get("peak_memory_mb") is None:
        return f"{model:10s} {runtime:12s} failed: {row['error'][:120]}"
    weights = row.get("file_mb") or row.get("weights_mb") or 0.0
    plan_note = row.get("runtime_memory_note") or ""
    planned = None
    if plan_note.startswith("ExecuTorch plan: "):
        planned = float(plan_note.split("ExecuTorch plan: ")[1].split(" MiB")[0])
    activations, which = (planned, "plan") if planned is not None else (widest, "widest layer")
    peak = row["peak_memory_mb"]
    ratio = peak / (weights + activations) if weights + activations else float("nan")
    plan = row.get("runtime_memory_mb")
    return (f"{model:10s} {runtime:12s} b{row['batch_size']:<2d} peak {peak:8.1f}  file/weights {weights:7.1f}  "
            f"runtime's own {'-' if plan is None else f'{plan:7.1f}':>7s}  activations {activations:6.1f} ({which})  "
            f"peak/(weights+act) {ratio:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50,vit_s16")
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    from vischoose import machine
    from vischoose.runtimes import registry

    runtimes = ["torch"] + [r.name for r in registry.graph_runtimes(installed_only=True)]
    print(f"machine: {machine.cpu_name()}, {len(os.sched_getaffinity(0))} cores; runtimes {', '.join(runtimes)}; "
          f"load average {os.getloadavg()[0]:.2f}; MiB = 2^20 bytes")
    notes = set()
    with tempfile.TemporaryDirectory(prefix="vischoose-memory-") as home:
        for model in args.models.split(","):
            for runtime in runtimes:
                for row in profile(model, runtime, args.batches, home):
                    widest = widest_mb(model, row.get("batch_size", 1)) if "batch_size" in row else 0.0
                    print(line(model, runtime, row, widest), flush=True)
                    for key in ("baseline_includes", "runtime_memory_note"):
                        if row.get(key):
                            notes.add(f"{runtime}: {row[key]}")
    for note in sorted(notes):
        print(f"- {note}")


if __name__ == "__main__":
    main()
