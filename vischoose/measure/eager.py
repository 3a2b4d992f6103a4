"""The torch eager child modes: "memory" (peak memory at each batch size, then the FLOP count), "timing" (throughput
at each batch size straight after loading, then batch-1 latency, then the machine peak) and "trial" (one setting of
profile --optimize: img/s, peak memory, agreement with fp32 on a fixed batch, latency). Two processes per profile,
so neither pass warms the allocator or the caches for the other."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from vischoose.errors import VischooseError
from vischoose.measure import peak, process, timing
from vischoose.measure.protocol import (
    Job,
    Result,
    phase_reporter,
    progress,
    setup_failed,
    timed,
    write_result,
)
from vischoose.runtimes import registry

if TYPE_CHECKING:
    import torch

AGREE_BATCH = 8  # the fixed batch an optimize trial's logits are compared with fp32's on
TIE_SHARE = 0.01  # classes whose fp32 logits are this close (share of the logit range) are a near-tie


def start(job: Job, result: Result) -> str:
    """Threads (the parent's cap), conditions; returns the device name."""
    import timm
    import torch

    from vischoose import machine

    torch.set_num_threads(job.threads)
    try:  # one inter-op thread: intra-op threads plus inter-op threads never exceed the cores
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process (a second start in one child)
        pass
    device = torch.device(job.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine.cpu_name()
    result["conditions"] = {"device": job.device, "device_name": device_name, "threads": torch.get_num_threads(),
                            "torch_version": torch.__version__, "timm_version": timm.__version__}
    return device_name


def prepare(job: Job, result: dict[str, Any]) -> tuple["torch.nn.Module", Callable[[int], Any]]:
    """Load the model onto the device at the dtype and layout; fill the result's model facts.

    Returns the module and a function making the random input for a batch size.
    """
    import torch

    from vischoose.models.loading import load_model
    from vischoose.runtimes.torch_eager import autocast_module

    loaded = load_model(job.model, weights=job.weights)
    device, dtype = torch.device(job.device), getattr(torch, job.dtype)
    # autocast: weights cast to dtype once (autocast's own cast cache lasts one context), fp32 input, and the
    # forward under torch.autocast, which keeps its fp32 ops (softmax, norms, ...) in fp32
    cast = dtype if job.autocast else None
    input_dtype = torch.float32 if cast else dtype
    layout = torch.channels_last if job.channels_last else torch.contiguous_format
    net = loaded.model
    size = job.input_size or loaded.input_size
    if size != loaded.input_size and hasattr(net, "set_input_size"):  # ViTs: resample position embeddings
        net.set_input_size(img_size=(size, size))
    net = net.to(device=device, dtype=dtype, memory_format=layout).eval()
    if cast is not None:
        net = autocast_module(net, device.type, cast)
    if job.weights == "auto" and loaded.weights == "random":
        result["notes"].append(f"{job.model}: no cached pretrained weights, so random init of the same "
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
        process.trim_heap()  # what loading the weights freed is not the model's
        was_reset = process.reset_peak_rss()
        net(make_input(batch))
        return {"peak_mb": process.peak_rss_mb() - baseline_mb, "reset": was_reset}


def memory_sweep(job: Job, result: dict[str, Any], net: Any, make_input: Callable[[int], Any],
                 device: "torch.device", baseline_mb: float, phase: Callable[..., None]) -> None:
    """Peak memory at each batch size, smallest first (after an out-of-memory, the larger are skipped)."""
    import torch

    oom_at: int | None = None
    for batch in job.batch_sizes:
        if oom_at is not None:  # a smaller batch already ran out of memory
            result["memory"][str(batch)] = {"error": f"skipped: out of memory at batch {oom_at}"}
            continue
        phase("memory", batch)
        try:
            result["memory"][str(batch)] = memory_pass(net, make_input, batch, device, baseline_mb, job.compile)
        except torch.OutOfMemoryError:
            oom_at = batch
            result["memory"][str(batch)] = {"error": f"out of memory at batch {batch}"}
            if device.type == "cuda":
                torch.cuda.empty_cache()


def _loaded(job: Job, result: Result, phase: Callable[..., None]) -> tuple[Any, Callable[[int], Any]] | None:
    """The prepared model and its input maker, or None when loading failed (the row's setup error, recorded)."""
    phase("loading")
    try:
        return prepare(job, result)
    except VischooseError as err:
        setup_failed(result, err)
        return None


def memory(job: Job, result: Result) -> None:
    """Peak memory at each batch size over the idle child's baseline, then the FLOP count."""
    from vischoose.runtimes.torch_eager import compile_for_inference, count_flops

    start(job, result)
    phase = phase_reporter(job, result)
    # torch, timm (and inductor, to compile): what a process running the model loads first, not charged to it
    result["baseline_includes"] = registry.get(registry.TORCH).prepare_host(compiled=job.compile)
    gc.collect()
    process.trim_heap()  # as before each peak: the baseline and the peaks count the heap alike
    baseline_mb = process.rss_mb()
    result["baseline_rss_mb"] = baseline_mb
    loaded = _loaded(job, result, phase)
    if loaded is None:
        return
    net, make_input = loaded
    import torch

    run = compile_for_inference(net) if job.compile else net
    memory_sweep(job, result, run, make_input, torch.device(job.device), baseline_mb, phase)
    phase("flops")
    result["flops_per_image"] = count_flops(net, make_input(1))
    result.update(status="done", phase="done", batch_size=None)


def timings(job: Job, result: Result) -> None:
    """Throughput at each batch size straight after loading (a fresh serving process), batch-1 latency, the peak."""
    import torch

    from vischoose.runtimes.torch_eager import compile_for_inference

    device_name = start(job, result)
    phase = phase_reporter(job, result)
    loaded = _loaded(job, result, phase)
    if loaded is None:
        return
    net, make_input = loaded
    net = compile_for_inference(net) if job.compile else net
    device = torch.device(job.device)

    def call_for(batch: int) -> timing.Call:
        x = make_input(batch)  # random input created once, on the device
        return lambda: net(x)

    with timed(job) as meter:  # one timed measurement at a time on this machine, and what others take meanwhile
        with torch.inference_mode():
            timing.timing_sweep(result, call_for, timing.make_timer(device), job.batch_sizes, job.time_budget_s,
                                phase, progress, (torch.OutOfMemoryError,), meter)
        net = call_for = None
        # last: the peak's big tensors would otherwise sit in the allocator while the model is timed
        result.update(status="measured", phase="machine peak", batch_size=None)  # rows are complete from here
        write_result(job.result_path, result)
        machine_peak(job, result, device, device_name)
    result.update(status="done", phase="done", batch_size=None)


def machine_peak(job: Job, result: Result, device: "torch.device", device_name: str) -> None:
    """This machine's cached peak at the job's dtype and threads (measured once if missing)."""
    import torch

    key = peak.peak_key(job.machine, job.device, device_name, job.dtype, torch.get_num_threads())
    found = peak.cached_peak(job, device, getattr(torch, job.dtype), key, phase_reporter(job, result),
                             lambda: timed(job))
    result.update(peak_gflops_s=found["gflops_s"], peak_kernel=found.get("kernel"))


def agreement(net: Any, job: Job, size: int, layout: Any) -> dict[str, Any]:
    """Logits on a fixed batch against the reference's (written here by the first, fp32, trial)."""
    import torch

    gen, batch = torch.Generator().manual_seed(0), job.batch
    x = torch.randn(AGREE_BATCH, 3, size, size, generator=gen).to(job.device).contiguous(memory_format=layout)
    if not job.autocast:
        x = x.to(getattr(torch, job.dtype))
    with torch.inference_mode():  # at the timed batch size, so that a compiled model is not compiled again
        if batch >= AGREE_BATCH:
            logits = net(x.repeat(-(-batch // AGREE_BATCH), 1, 1, 1)[:batch])[:AGREE_BATCH]
        else:
            logits = torch.cat([net(x[i:i + batch]) for i in range(0, AGREE_BATCH, batch)])
    logits = logits.float().cpu()
    path = Path(job.reference)
    if not path.is_file():
        torch.save(logits, path)
    ref = torch.load(path)
    span = ref.max(1).values - ref.min(1).values
    # a switch to a class whose fp32 logit is within TIE_SHARE of the range of fp32's best is a near-tie:
    # rounding decides it (random weights give many), not a wrong kernel
    chosen = ref.gather(1, logits.argmax(1, keepdim=True)).squeeze(1)
    decisive = chosen >= ref.max(1).values - TIE_SHARE * span
    diff = (logits - ref).abs().max().item()
    return {"top1_agreement": (logits.argmax(1) == ref.argmax(1)).float().mean().item(), "max_abs_diff": diff,
            "decisive_agreement": decisive.float().mean().item(), "rel_diff": diff / max(span.mean().item(), 1e-12)}


def trial(job: Job, result: Result) -> None:
    """One optimize setting in this fresh process: img/s first (as a new serving process), then its peak memory,
    agreement with fp32, batch-1 latency (not when compiled: batch 1 would compile again), FLOPs, the peak."""
    import torch

    from vischoose.runtimes.torch_eager import compile_for_inference, count_flops

    device_name, phase = start(job, result), phase_reporter(job, result)
    device, batch = torch.device(job.device), job.batch
    result["baseline_includes"] = registry.get(registry.TORCH).prepare_host(compiled=job.compile)
    gc.collect()
    baseline_mb, _ = process.rss_mb(), process.reset_peak_rss()
    torch.manual_seed(0)  # random init: the same weights in every trial
    net, make_input = prepare(job, result)
    eager = net
    result["is_conv"] = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) > 1  # a ViT has one: its stem
    x, timer = make_input(batch), timing.make_timer(device)
    with torch.inference_mode():
        if job.compile:  # compiling times nothing: outside the machine's measurement lock
            begin, net = time.perf_counter(), compile_for_inference(net)
            net(x)  # compiles for this shape
            result["compile_s"] = time.perf_counter() - begin
        with timed(job) as meter:
            phase("throughput", batch)
            measured = timing.settled_phase(lambda: net(x), timer, job.time_budget_s, progress, meter)
    result["throughput"][str(batch)] = timing.phase_summary(measured, batch)
    result["img_s"] = result["throughput"][str(batch)]["median"]
    used = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else \
        process.peak_rss_mb() - baseline_mb
    result["memory"][str(batch)] = {"peak_mb": used}
    layout = torch.channels_last if job.channels_last else torch.contiguous_format
    result.update(agreement(net, job, x.shape[-1], layout))
    if not job.compile:
        phase("latency", 1)
        one = make_input(1)
        with torch.inference_mode(), timed(job) as meter:
            measured = timing.settled_phase(lambda: net(one), timer, job.time_budget_s / 3, progress, meter)
        result["latency"] = timing.phase_summary(measured)
    result["flops_per_image"] = count_flops(eager, make_input(1))
    net = eager = x = None  # freed before the peak's big tensors
    machine_peak(job, result, device, device_name)
    result.update(status="done", phase="done", batch_size=None)


MODES: dict[str, Callable[[Job, Result], None]] = {"memory": memory, "timing": timings, "trial": trial}
