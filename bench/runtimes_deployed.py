"""Throughput of resnet50 and vit_b16 as deployed: eager fp32, ONNX Runtime fp32/int8, ExecuTorch fp32/int8, LiteRT
fp32/int8, OpenVINO fp32/bf16/int8, at batch 1 and 8 on 2 threads (random weights: speed and file size only; cosine
vs eager is on random inputs). Plus the fidelity checks of vischoose's sessions against the runtimes' own benchmark
tools on the same file: OpenVINO's benchmark_app, and LiteRT's litert-benchmark (the benchmark the ai-edge-litert
wheel ships: a Python tool over LiteRT's CompiledModel API that mirrors the C++ benchmark_model, which the wheel
does not ship).

    PYTHONPATH=. python bench/runtimes_deployed.py [--models resnet50.a1_in1k ...] [--budget-s 3] [--runtimes litert]

Writes bench/results/runtimes-deployed-<cpu>-2threads.txt (-<runtimes> with --runtimes). int8 is calibrated on 8
random images (speed only). Random init zero-initialises each ResNet block's last BatchNorm, so that block's branch
adds zero; LiteRT's converter then removes those convolutions, timing a smaller network than a trained one. Every
variant here runs the model with those norms set to one (`trained_like`), as trained weights would have them.
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


def trained_like(model) -> int:
    """Norm layers whose weight is all zero (random init's zero_init_last) set to one; returns how many."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and m.weight is not None and not m.weight.detach().any()]
    with torch.no_grad():
        for m in norms:
            m.weight.fill_(1.0)
    return len(norms)


def variants(loaded, tmp: Path, size: int, calib: np.ndarray, only: set[str] | None = None):
    """(label, file MiB, forward) for every deployed variant; a failed build yields its error instead."""
    from vischoose.models.family import model_family
    from vischoose.runtimes import ortbuild as ort_rt
    from vischoose.runtimes.executorch import ExecuTorch
    from vischoose.runtimes.litert import LiteRT
    from vischoose.runtimes.openvino import OpenVino

    if only is None or "onnxruntime" in only:
        yield from _onnxruntime(loaded, tmp, size, calib, model_family(loaded.model), ort_rt)
    for runtime, precisions in ((ExecuTorch(), ("fp32", "int8")), (LiteRT(), ("fp32", "int8")),
                                (OpenVino(), ("fp32", "bf16", "int8"))):
        if only is not None and runtime.name not in only:
            continue
        for precision in precisions:
            yield _built(runtime, precision, loaded, tmp, size, calib)


def _onnxruntime(loaded, tmp: Path, size: int, calib: np.ndarray, family: str, ort_rt):
    try:
        fp32 = ort_rt.export_onnx(loaded, tmp / "m.onnx", size)
        plain = ort_rt.ort_session(fp32.path, THREADS)
        plain_name = plain.get_inputs()[0].name
        yield "ONNX Runtime fp32", fp32.file_mb, lambda b: plain.run(None, {plain_name: b})[0], None
        q = ort_rt.quantize_int8(fp32.path, tmp / "m-int8.onnx", family, [calib])
        sess = ort_rt.ort_session(q.path, THREADS)
        name = sess.get_inputs()[0].name
        yield f"ONNX Runtime int8 ({q.recipe.name})", q.file_mb, lambda b: sess.run(None, {name: b})[0], None
    except Exception as err:  # a benchmark row, not a product path: report and go on
        yield "ONNX Runtime int8", None, None, err


def _built(runtime, precision: str, loaded, tmp: Path, size: int, calib: np.ndarray):
    """One runtime's variant: (label, MiB, forward, artifact), or its failure."""
    label = f"{runtime.title} {precision}"
    why = runtime.precision_supported(precision) or runtime.missing()
    if why:
        return label, None, None, why
    try:
        start = time.perf_counter()
        art = runtime.build(loaded, precision, tmp / f"m-{runtime.name}-{precision}{runtime.suffix}", size,
                            calib if precision == "int8" else None)
        label += f" [build {time.perf_counter() - start:.0f} s]"
        if runtime.name == "executorch":
            label += f" [XNNPACK {art.facts['delegated_nodes']}/{art.facts['operator_nodes']} nodes]"
        if runtime.name == "litert":
            label += f" [XNNPACK {art.facts['xnnpack_operators']}/{art.facts['operators']} ops]"
        return label, art.file_mb, runtime.session(art, THREADS), art
    except Exception as err:  # noqa: BLE001 - a benchmark row, not a product path
        return label, None, None, err


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


def litert_benchmark(tflite: str, runs: int = 30) -> float:
    """litert-benchmark's images/s on the .tflite (batch 1: the file's batch): 1000 / its median ms, 2 CPU threads."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", f"--model={tflite}",
               f"--num_threads={THREADS}", f"--num_runs={runs}", "--warmup_runs=5", f"--result_json={report}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if not report.is_file():
            raise RuntimeError(f"litert-benchmark wrote no result: {done.stdout[-500:]} {done.stderr[-500:]}")
        import json

        return 1000.0 / json.loads(report.read_text())["latency"]["median_ms"]


def fidelity_line(tag: str, label: str, batch: int, ips: float, art, size: int) -> str | None:
    """vischoose's figure against the runtime's own benchmark on the same file (OpenVINO fp32, LiteRT fp32 and int8);
    None for other rows. LiteRT's tool runs the batch-1 file once per inference, so it is compared at batch 1."""
    try:
        if label.startswith("OpenVINO fp32"):
            app, tool = benchmark_app(art.path, batch, size), "benchmark_app"
        elif label.startswith("LiteRT") and batch == 1:
            app, tool = litert_benchmark(art.path), "litert-benchmark"
        else:
            return None
    except (RuntimeError, subprocess.SubprocessError) as err:
        return f"{tag} {label.split(' [')[0]} batch {batch}: the runtime's own benchmark failed: {err}"
    return (f"{tag} {label.split(' [')[0]} batch {batch}: vischoose {ips:.1f} img/s, {tool} {app:.1f} img/s, "
            f"ratio {ips / app:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--budget-s", type=float, default=3.0)
    parser.add_argument("--runtimes", nargs="+", default=None,
                        help="only these (onnxruntime, executorch, litert, openvino); default: all")
    args = parser.parse_args()
    import torch

    from vischoose.models.loading import load_model
    from vischoose.runtimes.agreement import compare as agreement
    from vischoose.runtimes.agreement import eager_logits, random_batch

    torch.set_num_threads(THREADS)
    only = set(args.runtimes) if args.runtimes else None
    cpu = re.sub(r"[^A-Za-z0-9]+", "-", cpu_name()).strip("-").lower()
    which = "" if only is None else "-" + "-".join(sorted(only))
    out = Path(__file__).parent / "results" / f"runtimes-deployed-{cpu}-2threads{which}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)
        out.write_text("\n".join(lines) + "\n")

    header(say)
    wall0, busy0, own0 = time.monotonic(), psutil.cpu_times(), _own_cpu_s()
    fidelity: list[str] = []
    for tag in args.models:
        loaded = load_model(tag, weights="random")
        normed = trained_like(loaded.model)
        size = loaded.input_size
        calib = random_batch(size, CALIBRATION, seed=1)
        inputs = {b: random_batch(size, b, seed=2) for b in BATCHES}
        reference = {b: eager_logits(loaded.model, x) for b, x in inputs.items()}
        say()
        say(f"## {tag} ({loaded.params / 1e6:.1f} M params, {size} px; {normed} zero-initialised norms set to one)")
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
            for label, mib, forward, art in variants(loaded, Path(tmp), size, calib, only):
                if forward is None:
                    say(f"{label:<72} failed/skipped: {str(art).splitlines()[0][:150] if art else ''}")
                    continue
                for b, x in inputs.items():
                    ips = b / timed(lambda x=x: forward(x), args.budget_s)
                    cos = agreement(reference[b], forward(x)).cosine
                    say(f"{label:<72} {b:>5} {ips:>8.1f} {ips / eager[b]:>8.2f} {mib:>7.1f} {cos:>8.4f}")
                    fidelity.append(fidelity_line(tag, label, b, ips, art, size))
    footer(say, [line for line in fidelity if line], wall0, busy0, own0)


def header(say) -> None:
    """Machine, versions and what the columns mean."""
    from importlib.metadata import PackageNotFoundError

    def installed_version(package: str) -> str:
        try:
            return f"{package} {version(package)}"
        except PackageNotFoundError:
            return f"{package} not installed"

    say(f"# Deployed runtimes, {THREADS} threads, random weights (speed and size only)")
    say(f"machine: {cpu_name()}, {psutil.cpu_count(logical=False)} cores / {psutil.cpu_count()} logical, "
        f"{platform.machine()}")
    say("versions: " + ", ".join(installed_version(p) for p in (
        "torch", "timm", "onnxruntime", "executorch", "litert-torch", "ai-edge-litert", "openvino", "nncf")))
    say("img/s: median of timed runs (vischoose.measure.child.timed_phase); x eager: vs eager fp32 at the same batch;"
        " cosine: smallest per-image logit cosine vs eager fp32 on random inputs")
    say(f"int8: calibrated on {CALIBRATION} random images; ExecuTorch programs and LiteRT files are batch 1 (a batch of "
        "8 runs 8 times); random init's zero-initialised norms set to one for every row (see the module docstring)")


def footer(say, fidelity: list[str], wall0: float, busy0, own0: float) -> None:
    """The fidelity lines and how busy the machine was."""
    say()
    say("## fidelity: vischoose's session vs the runtime's own benchmark on the same file; target ratio 0.9-1.1")
    say("OpenVINO fp32: benchmark_app -hint none -nstreams 1 -nthreads 2 -infer_precision f32, dynamic batch with "
        "-data_shape. LiteRT: litert-benchmark (python -m ai_edge_litert.tools.benchmark_litert_model, CompiledModel "
        "API, CPU accelerator, --num_threads=2), batch 1, 1000 / median ms; the wheel ships no C++ benchmark_model.")
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
