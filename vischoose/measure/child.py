"""The profiler's child processes: one model, measured in fresh interpreters (one for peak memory and FLOPs,
one for timings), so its peak memory is its own and its throughput is that of a fresh process.

Run as ``python -m vischoose.measure JOB.json``. The job names the model, the mode and the protocol; the child writes
its results (so far) to ``job["result_path"]`` after every phase, and progress lines prefixed with
PROGRESS_PREFIX to stderr. A crash or kill therefore leaves the finished phases behind for the parent.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from vischoose.measure import stats

if TYPE_CHECKING:
    import torch

PROGRESS_PREFIX = "VISCHOOSE-PROGRESS "
MIN_TIMED = 3  # timed runs a phase makes even when its time budget is spent
MAX_SAMPLES = 1000
MAX_WARMUP = 50
WARMUP_SHARE = 0.3  # of a phase's budget at most spent warming up
PEAK_SIZES = (2048, 4096)  # square matmuls for the machine's FLOP/s peak
PEAK_REPS = 3
PEAK_MAX_REP_S = 5.0  # one run of a kernel this slow (a dtype without fast kernels here) is enough


def emit(event: str, **data: Any) -> None:
    """One progress line for the parent."""
    sys.stderr.write(PROGRESS_PREFIX + json.dumps({"event": event, **data}) + "\n")
    sys.stderr.flush()


def write_result(path: str, result: dict[str, Any]) -> None:
    """Replace the result file atomically, so the parent never reads half of it."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, path)


# --- memory -------------------------------------------------------------------------------------------

def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Resident set size of this process now, MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def reset_peak_rss() -> bool:
    """Lower the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process since start or the last reset, MiB."""
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: getrusage's maximum is since start (kB on Linux/BSD, bytes on macOS)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
    return kb / 2**10


# --- timing -------------------------------------------------------------------------------------------

def make_timer(device: "torch.device") -> Callable[[Callable[[], Any]], float]:
    """A function timing one call in seconds, with the device synchronised before the clock is read."""
    import torch

    if device.type == "cuda":
        def cuda_time(fn: Callable[[], Any]) -> float:
            # CUDA kernels run asynchronously: time with events, wait for the end event before reading
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        return cuda_time

    def cpu_time(fn: Callable[[], Any]) -> float:
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin
    return cpu_time


def timed_phase(fn: Callable[[], Any], timer: Callable[[Callable[[], Any]], float], budget_s: float,
                report: Callable[[int, float | None], None]) -> tuple[list[float], int]:
    """Warm up until timings settle, then time until the median is known within +-2% or the budget ends.

    Returns the timed samples (seconds) and the number of warm-up runs.
    """
    start = time.monotonic()
    warm: list[float] = []
    while len(warm) < MAX_WARMUP:
        warm.append(timer(fn))
        if stats.warmup_done(warm) or time.monotonic() - start >= WARMUP_SHARE * budget_s:
            break
    samples: list[float] = []
    last_report = time.monotonic()
    while len(samples) < MAX_SAMPLES:
        samples.append(timer(fn))
        now = time.monotonic()
        if len(samples) >= MIN_TIMED and (now - start >= budget_s or stats.is_settled(samples)):
            break
        if now - last_report >= 1.0:
            report(len(samples), stats.relative_halfwidth(samples))
            last_report = now
    return samples, len(warm)


def summary_dict(samples: list[float], scale: float = 1.0) -> dict[str, Any]:
    """stats.summarize of samples x scale, as a JSON-able dict."""
    return stats.summarize([s * scale for s in samples]).__dict__.copy()


# --- machine peak -------------------------------------------------------------------------------------

def _peak_kernels(device: "torch.device", dtype: "torch.dtype",
                  sizes: tuple[int, ...]) -> list[tuple[str, float, Callable[[], Callable[[], Any]]]]:
    """(name, FLOPs per call, setup returning the call) of the dense kernels the peak is the best of."""
    import torch

    def matmul(n: int) -> Callable[[], Any]:
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        return lambda: a @ b

    def conv() -> Callable[[], Any]:
        x = torch.randn(8, 256, 56, 56, device=device).to(dtype)
        w = torch.randn(256, 256, 3, 3, device=device).to(dtype)
        return lambda: torch.nn.functional.conv2d(x, w, padding=1)

    kernels = [(f"matmul {n}^3", 2.0 * n**3, lambda n=n: matmul(n)) for n in sizes]
    # a 3x3 convolution too: on some CPUs (MKL's sgemm on AMD) convolutions run twice as fast as matmuls
    return kernels + [("conv3x3 8x256x56x56", 2.0 * 8 * 256 * 256 * 9 * 56 * 56, conv)]


def machine_peak_gflops(device: "torch.device", dtype: "torch.dtype", sizes: tuple[int, ...] = PEAK_SIZES,
                       reps: int = PEAK_REPS) -> dict[str, Any]:
    """The machine's dense-compute peak at a device and dtype, GFLOP/s: best of square matmuls and a conv."""
    import torch

    timer = make_timer(device)
    best, best_kernel = 0.0, ""
    with torch.inference_mode():
        for name, flops, setup in _peak_kernels(device, dtype, sizes):
            call = setup()
            seconds = timer(call)  # warm-up: library initialisation, kernel selection
            if seconds > PEAK_MAX_REP_S:  # far too slow at this dtype here: one run says enough
                best, best_kernel = max((best, best_kernel), (flops / seconds / 1e9, name))
                continue
            for _ in range(reps):
                seconds = timer(call)
                best, best_kernel = max((best, best_kernel), (flops / seconds / 1e9, name))
            del call
    return {"gflops_s": best, "kernel": best_kernel, "reps": reps}


def cached_peak(job: dict[str, Any], device: "torch.device", dtype: "torch.dtype", key: str) -> dict[str, Any]:
    """The machine's peak for this key ({gflops_s, kernel, ...}), measured once, cached as JSON under VISCHOOSE_HOME."""
    import torch

    path = Path(job["peak_cache"])
    cache = json.loads(path.read_text()) if path.is_file() else {}
    if key not in cache:
        emit("phase", phase="machine peak (once)")
        cache = json.loads(path.read_text()) if path.is_file() else {}  # another process may have written it
        entry = machine_peak_gflops(device, dtype)
        entry.update(measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), torch_version=torch.__version__)
        cache[key] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        write_result(str(path), cache)
    return dict(cache[key])


def peak_key(machine: str, device: str, device_name: str, dtype: str, threads: int | None) -> str:
    """Cache key of a machine peak: machine, device, dtype (and threads on CPU)."""
    key = f"{machine}|{device}|{device_name}|{dtype}"
    return key if device.startswith("cuda") else f"{key}|threads={threads}"


# --- the model --------------------------------------------------------------------------------------

def count_flops(model: "torch.nn.Module", x: "torch.Tensor") -> int:
    """FLOPs of one forward (2 per multiply-accumulate), attention included, by torch's flop counter."""
    import torch
    from torch.utils import flop_counter

    def sdpa(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return flop_counter.sdpa_flop_count(query, key, value)

    # torch counts the CUDA attention kernels but not the CPU one, which ViTs use on CPU
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping={cpu_sdpa: sdpa} if cpu_sdpa else None)
    with torch.inference_mode(), counter:
        model(x)
    return int(counter.get_total_flops())


def autocast_module(net: "torch.nn.Module", device_type: str, dtype: "torch.dtype") -> "torch.nn.Module":
    """Wrap a model so that its forward runs under torch.autocast at dtype."""
    import torch

    class AutocastModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type, dtype=dtype):
                return self.net(x)
    return AutocastModule()


def compile_for_inference(net: "torch.nn.Module") -> Any:
    """torch.compile (inductor) with freezing: the weights become constants, so convolution and linear weights
    are pre-packed for the CPU kernels once (resnet50 bf16 on 2 CPU cores: 105 img/s against 86 without)."""
    import torch
    import torch._inductor.config as inductor

    inductor.freezing = True  # valid here: profiles run under inference_mode and never change the weights
    return torch.compile(net)


def prepare(job: dict[str, Any], result: dict[str, Any]) -> tuple["torch.nn.Module", Callable[[int], Any]]:
    """Load the model onto the device at the dtype and layout; fill the result's model facts.

    Returns the module and a function making the random input for a batch size.
    """
    import torch

    from vischoose.models.loading import load_model

    loaded = load_model(job["model"], weights=job["weights"])
    device, dtype = torch.device(job["device"]), getattr(torch, job["dtype"])
    # autocast: weights cast to dtype once (autocast's own cast cache lasts one context), fp32 input, and the
    # forward under torch.autocast, which keeps its fp32 ops (softmax, norms, ...) in fp32
    cast = dtype if job.get("autocast") else None
    input_dtype = torch.float32 if cast else dtype
    layout = torch.channels_last if job["channels_last"] else torch.contiguous_format
    net = loaded.model
    size = job["input_size"] or loaded.input_size
    if size != loaded.input_size and hasattr(net, "set_input_size"):  # ViTs: resample position embeddings
        net.set_input_size(img_size=(size, size))
    net = net.to(device=device, dtype=dtype, memory_format=layout).eval()
    if cast is not None:
        net = autocast_module(net, device.type, cast)
    if job["weights"] == "auto" and loaded.weights == "random":
        result["notes"].append(f"{job['model']}: no cached pretrained weights, so random init of the same "
                               "architecture (speed and memory do not depend on the weight values).")
    result["model"] = {"tag": loaded.tag, "arch": loaded.arch, "params": loaded.params,
                       "weights": loaded.weights_label, "input_size": size,
                       "pretrained_input_size": loaded.input_size}

    def make_input(batch: int) -> torch.Tensor:
        return torch.randn(batch, 3, size, size, device=device, dtype=input_dtype).contiguous(memory_format=layout)
    return net, make_input


def memory_pass(net: Any, make_input: Callable[[int], Any], batch: int, device: "torch.device",
                baseline_mb: float, compiled: bool) -> dict[str, Any]:
    """Peak memory of one forward at a batch size: GPU max allocated/reserved, CPU peak RSS over the baseline."""
    import gc

    import torch

    gc.collect()
    with torch.inference_mode():
        if compiled:
            net(make_input(batch))  # compile for this shape first: the compiler's memory is not the model's
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            net(make_input(batch))
            torch.cuda.synchronize(device)
            return {"peak_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                    "reserved_mb": torch.cuda.max_memory_reserved(device) / 2**20}
        was_reset = reset_peak_rss()
        net(make_input(batch))
        return {"peak_mb": peak_rss_mb() - baseline_mb, "reset": was_reset}


def _start(job: dict[str, Any], result: dict[str, Any]) -> tuple[Callable[..., None], str]:
    """Threads, conditions and the phase reporter of a child; returns (phase, device name)."""
    import timm
    import torch

    from vischoose.measure import machine

    def phase(name: str, batch: int | None = None) -> None:
        report_phase(job, result, name, batch)

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine.cpu_name()
    result["conditions"] = {"device": job["device"], "device_name": device_name, "threads": torch.get_num_threads(),
                            "torch_version": torch.__version__, "timm_version": timm.__version__}
    return phase, device_name


def run_job(job: dict[str, Any], result: dict[str, Any]) -> None:
    """Measure one model as the job's mode says, writing results into `result` (and its file) as they come.

    mode "memory": peak memory at each batch size, then the FLOP count; mode "timing": throughput at each batch
    size straight after loading (the state of a fresh serving process), then batch-1 latency, then the machine
    peak. Two processes, so neither pass warms the allocator or the caches for the other.
    """
    import gc

    import torch

    from vischoose.errors import VischooseError

    phase, device_name = _start(job, result)
    device = torch.device(job["device"])
    gc.collect()
    baseline_mb = rss_mb()  # the idle child after importing torch: not charged to the model
    result["baseline_rss_mb"] = baseline_mb
    phase("loading")
    try:
        net, make_input = prepare(job, result)
    except VischooseError as err:
        result.update(status="failed", error=str(err), error_kind="setup", exit_code=err.exit_code)
        return
    plain = net
    if job["compile"]:
        net = compile_for_inference(net)
    if job.get("mode", "memory") == "memory":
        memory_sweep(job, result, net, make_input, device, baseline_mb, phase)
        phase("flops")
        result["flops_per_image"] = count_flops(plain, make_input(1))
        result.update(status="done", phase="done", batch_size=None)
        return
    timing_sweep(job, result, net, make_input, device, job["batch_sizes"], phase)
    del net, plain
    # last: the peak's big tensors would otherwise sit in the allocator while the model is timed
    result.update(status="measured", phase="machine peak", batch_size=None)  # rows are complete from here
    write_result(job["result_path"], result)
    key = peak_key(job["machine"], job["device"], device_name, job["dtype"], torch.get_num_threads())
    peak = cached_peak(job, device, getattr(torch, job["dtype"]), key)
    result.update(peak_gflops_s=peak["gflops_s"], peak_kernel=peak.get("kernel"))
    result.update(status="done", phase="done", batch_size=None)


def memory_sweep(job: dict[str, Any], result: dict[str, Any], net: Any, make_input: Callable[[int], Any],
                 device: "torch.device", baseline_mb: float, phase: Callable[..., None]) -> None:
    """Peak memory at each batch size, smallest first (after an out-of-memory, the larger are skipped)."""
    import torch

    oom_at: int | None = None
    for batch in job["batch_sizes"]:
        if oom_at is not None:  # a smaller batch already ran out of memory
            result["memory"][str(batch)] = {"error": f"skipped: out of memory at batch {oom_at}"}
            continue
        phase("memory", batch)
        try:
            result["memory"][str(batch)] = memory_pass(net, make_input, batch, device, baseline_mb, job["compile"])
        except torch.OutOfMemoryError:
            oom_at = batch
            result["memory"][str(batch)] = {"error": f"out of memory at batch {batch}"}
            if device.type == "cuda":
                torch.cuda.empty_cache()


def timing_sweep(job: dict[str, Any], result: dict[str, Any], net: Any, make_input: Callable[[int], Any],
                 device: "torch.device", batches: list[int], phase: Callable[..., None]) -> None:
    """Throughput at each batch size first (as in a fresh serving process), then batch-1 latency; one budget."""
    import torch

    timer, start = make_timer(device), time.monotonic()

    def budget(phases_left: int) -> float:
        return max(job["time_budget_s"] - (time.monotonic() - start), 0.0) / phases_left

    def report(n: int, width: float | None) -> None:
        emit("progress", n=n, ci_pct=None if width is None else 100 * width)

    with torch.inference_mode():
        for i, batch in enumerate(batches):
            phase("throughput", batch)
            x = make_input(batch)  # random input created once, on the device
            try:
                samples, warm = timed_phase(lambda: net(x), timer, budget(len(batches) - i + 1), report)
            except torch.OutOfMemoryError:
                result["throughput"][str(batch)] = {"error": f"out of memory at batch {batch}"}
                del x
                torch.cuda.empty_cache()
                continue
            result["throughput"][str(batch)] = {**summary_dict([batch / s for s in samples]), "warmup": warm}
            del x
        phase("latency", 1)
        x = make_input(1)
        samples, warm = timed_phase(lambda: net(x), timer, budget(1), report)
        result["latency"] = {**summary_dict(samples, 1e3), "warmup": warm}


def report_phase(job: dict[str, Any], result: dict[str, Any], name: str, batch: int | None = None) -> None:
    """A child starts a phase: the result file says so (a crash leaves it behind) and the parent is told."""
    result.update(phase=name, batch_size=batch)
    write_result(job["result_path"], result)
    emit("phase", phase=name, batch_size=batch)


def main(argv: list[str]) -> int:
    """Child entry point: read the job file, measure, leave the result file behind."""
    return child_main(argv, run_job)


def child_main(argv: list[str], run: Callable[[dict[str, Any], dict[str, Any]], None]) -> int:
    """Read the job file named in argv, run(job, result), and leave the result file behind, whatever happens."""
    job = json.loads(Path(argv[0]).read_text())
    result: dict[str, Any] = {"status": "running", "phase": "starting", "batch_size": None, "notes": [],
                              "memory": {}, "throughput": {}}
    try:
        run(job, result)
    except Exception as err:  # a model, the exporter or ONNX Runtime can raise anything: it is this row's error
        traceback.print_exc()
        where = result["phase"] + (f" at batch {result['batch_size']}" if result["batch_size"] else "")
        result.update(status="failed", error=f"failed during {where}: {type(err).__name__}: {err}"[:300],
                      error_kind="measure")
    write_result(job["result_path"], result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
