"""Throughput of resnet50 and vit_b16 as deployed: eager fp32, ONNX Runtime fp32/int8, ExecuTorch fp32/int8, OpenVINO
fp32/bf16/int8, at batch 1 and 8 on 2 threads (random weights: speed and file size only; cosine vs eager is on
random inputs). Plus the fidelity check of vischoose's OpenVINO session against benchmark_app on the same IR.

    PYTHONPATH=. python bench/runtimes_deployed.py [--models resnet50.a1_in1k ...] [--budget-s 3]

Writes bench/results/runtimes-deployed-<cpu>-2threads.txt. int8 is calibrated on 8 random images (speed only).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import psutil

MODELS = ("resnet50.a1_in1k", "vit_base_patch16_224.augreg2_in21k_ft_in1k")
BATCHES = (1, 8)
THREADS = 2
CALIBRATION = 8


def cpu_name() -> str:
    found = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    return found.group(1).strip() if found else platform.processor()


def timed(fn, budget_s: float) -> float:
    from vischoose.measure import stats
    from vischoose.measure.timing import cpu_timer, timed_phase

    samples, _ = timed_phase(fn, cpu_timer, budget_s, lambda n, w: None)
    return stats.summarize(samples).median


def variants(loaded, tmp: Path, size: int, calib: np.ndarray):
    """(label, file MiB, forward) for every deployed variant; a failed build yields its error instead."""
    from vischoose.models.family import model_family
    from vischoose.runtimes import ortbuild as ort_rt
    from vischoose.runtimes.executorch import ExecuTorch
    from vischoose.runtimes.openvino import OpenVino

    try:
        fp32 = ort_rt.export_onnx(loaded, tmp / "m.onnx", size)
        plain = ort_rt.ort_session(fp32.path, THREADS)
        plain_name = plain.get_inputs()[0].name
        yield "ONNX Runtime fp32", fp32.file_mb, lambda b: plain.run(None, {plain_name: b})[0], None
        q = ort_rt.quantize_int8(fp32.path, tmp / "m-int8.onnx", model_family(loaded.model), [calib])
        sess = ort_rt.ort_session(q.path, THREADS)
        name = sess.get_inputs()[0].name
        yield f"ONNX Runtime int8 ({q.recipe.name})", q.file_mb, lambda b: sess.run(None, {name: b})[0], None
    except Exception as err:  # a benchmark row, not a product path: report and go on
        yield "ONNX Runtime int8", None, None, err
    for runtime, precisions in ((ExecuTorch(), ("fp32", "int8")), (OpenVino(), ("fp32", "bf16", "int8"))):
        for precision in precisions:
            label = f"{runtime.title} {precision}"
            why = runtime.precision_supported(precision)
            if why:
                yield label, None, None, why
                continue
            try:
                start = time.perf_counter()
                art = runtime.build(loaded, precision, tmp / f"m-{runtime.name}-{precision}{runtime.suffix}", size,
                                    calib if precision == "int8" else None)
                label += f" [build {time.perf_counter() - start:.0f} s]"
                if runtime.name == "executorch":
                    label += f" [XNNPACK {art.facts['delegated_nodes']}/{art.facts['operator_nodes']} nodes]"
                yield label, art.file_mb, runtime.session(art, THREADS), art
            except Exception as err:  # noqa: BLE001 - a benchmark row, not a product path
                yield label, None, None, err


def benchmark_app(xml: str, batch: int, size: int, seconds: int = 10) -> float:
    """benchmark_app's throughput (FPS = images/s) on the IR: one stream (what the latency hint picks), 2 threads, f32.

    benchmark_app refuses -nthreads together with a hint, so the latency hint is spelled out as -nstreams 1."""
    exe = Path(sys.executable).with_name("benchmark_app")
    cmd = [str(exe), "-m", xml, "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nthreads", str(THREADS),
           "-infer_precision", "f32", "-data_shape", f"[{batch},3,{size},{size}]", "-t", str(seconds)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    found = re.search(r"Throughput:\s*([\d.]+)\s*FPS", done.stdout)
    if not found:
        raise RuntimeError(f"benchmark_app printed no throughput: {done.stdout[-500:]} {done.stderr[-500:]}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--budget-s", type=float, default=3.0)
    args = parser.parse_args()
    import torch

    from vischoose.models.loading import load_model
    from vischoose.runtimes.agreement import compare as agreement
    from vischoose.runtimes.agreement import eager_logits, random_batch

    torch.set_num_threads(THREADS)
    cpu = re.sub(r"[^A-Za-z0-9]+", "-", cpu_name()).strip("-").lower()
    out = Path(__file__).parent / "results" / f"runtimes-deployed-{cpu}-2threads.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)
        out.write_text("\n".join(lines) + "\n")

    say(f"# Deployed runtimes, {THREADS} threads, random weights (speed and size only)")
    say(f"machine: {cpu_name()}, {psutil.cpu_count(logical=False)} cores / {psutil.cpu_count()} logical, "
        f"{platform.machine()}")
    say("versions: " + ", ".join(f"{p} {version(p)}" for p in ("torch", "timm", "onnxruntime", "executorch",
                                                                "openvino", "nncf")))
    say("img/s: median of timed runs (vischoose.measure.child.timed_phase); x eager: vs eager fp32 at the same batch;"
        " cosine: smallest per-image logit cosine vs eager fp32 on random inputs")
    say(f"int8: calibrated on {CALIBRATION} random images; ExecuTorch programs are batch 1 (a batch of 8 runs 8 times)")
    wall0, busy0, own0 = time.monotonic(), psutil.cpu_times(), _own_cpu_s()
    fidelity: list[str] = []
    for tag in args.models:
        loaded = load_model(tag, weights="random")
        size = loaded.input_size
        calib = random_batch(size, CALIBRATION, seed=1)
        inputs = {b: random_batch(size, b, seed=2) for b in BATCHES}
        reference = {b: eager_logits(loaded.model, x) for b, x in inputs.items()}
        say()
        say(f"## {tag} ({loaded.params / 1e6:.1f} M params, {size} px)")
        say(f"{'variant':<72} {'batch':>5} {'img/s':>8} {'x eager':>8} {'MiB':>7} {'cosine':>8}")
        eager = {}
        for b, x in inputs.items():
            tx = torch.from_numpy(x)

            def run(tx=tx):
                with torch.inference_mode():
                    loaded.model(tx)
            eager[b] = b / timed(run, args.budget_s)
            mib = sum(p.numel() * p.element_size() for p in loaded.model.state_dict().values()) / 2**20
            say(f"{'eager fp32 (torch)':<72} {b:>5} {eager[b]:>8.1f} {1.0:>8.2f} {mib:>7.1f} {1.0:>8.4f}")
        with tempfile.TemporaryDirectory(prefix="vischoose-bench-") as tmp:
            for label, mib, forward, art in variants(loaded, Path(tmp), size, calib):
                if forward is None:
                    say(f"{label:<72} failed/skipped: {str(art).splitlines()[0][:150] if art else ''}")
                    continue
                for b, x in inputs.items():
                    ips = b / timed(lambda x=x: forward(x), args.budget_s)
                    cos = agreement(reference[b], forward(x)).cosine
                    say(f"{label:<72} {b:>5} {ips:>8.1f} {ips / eager[b]:>8.2f} {mib:>7.1f} {cos:>8.4f}")
                    if label.startswith("OpenVINO fp32"):
                        try:
                            app = benchmark_app(art.path, b, size)
                        except (RuntimeError, subprocess.SubprocessError) as err:
                            fidelity.append(f"{tag} batch {b}: benchmark_app failed: {err}")
                            continue
                        fidelity.append(f"{tag} batch {b}: vischoose {ips:.1f} img/s, benchmark_app {app:.1f} img/s, "
                                        f"ratio {ips / app:.2f}")
    say()
    say("## fidelity: vischoose OpenVINO fp32 session vs benchmark_app (same IR, -hint none -nstreams 1, -nthreads 2, "
        "-infer_precision f32, dynamic batch with -data_shape); target ratio 0.9-1.1")
    for line in fidelity:
        say(line)
    wall, busy1 = time.monotonic() - wall0, psutil.cpu_times()
    busy = sum(getattr(busy1, k) - getattr(busy0, k) for k in ("user", "nice", "system", "irq", "softirq", "steal"))
    other = max(0.0, busy - (_own_cpu_s() - own0)) / (wall * psutil.cpu_count())
    say()
    say(f"run: {wall / 60:.1f} min; other processes took {other:.0%} of the machine's CPU time during it"
        + (" (the machine was shared: figures are lower and noisier than on an idle machine)" if other > 0.05 else ""))


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


if __name__ == "__main__":
    main()
