"""Timing, shared by every runtime: a timer that synchronises the device, the warm-up and stop rules of one timed
phase, the noise rule (a spread too wide is measured again once, then marked), and the sweep every child runs:
throughput at each batch size first, as in a fresh serving process, then batch-1 latency, within one budget."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from vischoose.measure import stats

if TYPE_CHECKING:
    import numpy as np
    import torch

MIN_TIMED = 3  # timed runs a phase makes even when its time budget is spent
MAX_SAMPLES = 1000
MAX_WARMUP = 50
WARMUP_SHARE = 0.3  # of a phase's budget at most spent warming up
NOISY_P90_OVER_P50 = 1.5  # a phase whose p90 is this far above its median was disturbed...
NOISY_IQR_SHARE = 0.25  # ... or whose IQR is above this share of the median
Call = Callable[[], Any]
Timer = Callable[[Call], float]
Report = Callable[[int, "float | None"], None]  # (timed runs so far, the median's relative CI half-width)


def make_timer(device: "torch.device") -> Timer:
    """A function timing one call in seconds, with the device synchronised before the clock is read."""
    import torch

    if device.type == "cuda":
        def cuda_time(fn: Call) -> float:
            # CUDA kernels run asynchronously: time with events, wait for the end event before reading
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        return cuda_time
    return cpu_timer


def cpu_timer(fn: Call) -> float:
    """Seconds one call of fn takes on the wall clock."""
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def timed_phase(fn: Call, timer: Timer, budget_s: float, report: Report) -> tuple[list[float], int]:
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


def noise(seconds: list[float]) -> str | None:
    """Why a phase's timings are too spread to trust ('p90 2.1x the median'), or None when they are not."""
    if len(seconds) < MIN_TIMED:
        return None
    mid = stats.median(seconds)
    if mid <= 0:
        return None
    p90, spread = stats.quantile(seconds, 0.9), stats.iqr(seconds)
    if p90 / mid > NOISY_P90_OVER_P50:
        return f"p90 {p90 / mid:.1f}x the median"
    if spread / mid > NOISY_IQR_SHARE:
        return f"IQR {100 * spread / mid:.0f}% of the median"
    return None


def settled_phase(fn: Call, timer: Timer, budget_s: float, report: Report) -> tuple[list[float], int, str | None]:
    """timed_phase, measured again once when its spread is too wide; returns (seconds, warm-up runs, noise)."""
    samples, warm = timed_phase(fn, timer, budget_s, report)
    if noise(samples) is None:
        return samples, warm, None
    samples, again = timed_phase(fn, timer, budget_s, report)  # a disturbance passes: measure once more
    return samples, warm + again, noise(samples)


def phase_summary(seconds: list[float], warm: int, noisy: str | None, batch: int | None = None) -> dict[str, Any]:
    """A phase's figures for the result file: img/s at `batch` (throughput) or ms (latency, batch None)."""
    values = [batch / s for s in seconds] if batch else [s * 1e3 for s in seconds]
    return {**stats.summarize(values).__dict__, "warmup": warm, "noisy": noisy}


def time_call(fn: Call, budget_s: float = 10.0, timer: Timer = cpu_timer) -> stats.Summary:
    """Seconds per call: warm-up, then the profile's stop rules (for export --measure and the benchmarks)."""
    samples, _ = timed_phase(fn, timer, budget_s, lambda n, w: None)
    return stats.summarize(samples)


def timing_sweep(result: dict[str, Any], call_for: Callable[[int], Call], timer: Timer, batches: list[int],
                 budget_s: float, phase: Callable[..., None], report: Report,
                 out_of_memory: tuple[type[BaseException], ...] = ()) -> None:
    """Throughput at each batch size first (as in a fresh serving process), then batch-1 latency; one budget.

    call_for(batch) makes the call to time on a fixed input of that batch size (created once, on the device).
    """
    start = time.monotonic()

    def budget(phases_left: int) -> float:
        return max(budget_s - (time.monotonic() - start), 0.0) / phases_left

    for i, batch in enumerate(batches):
        phase("throughput", batch)
        try:
            call = call_for(batch)
            seconds, warm, noisy = settled_phase(call, timer, budget(len(batches) - i + 1), report)
        except out_of_memory:
            result["throughput"][str(batch)] = {"error": f"out of memory at batch {batch}"}
            continue
        finally:
            call = None  # the input tensors go before the next batch size's
        result["throughput"][str(batch)] = phase_summary(seconds, warm, noisy, batch)
    phase("latency", 1)
    seconds, warm, noisy = settled_phase(call_for(1), timer, budget(1), report)
    result["latency"] = phase_summary(seconds, warm, noisy)


def median_s(fn: Call, budget_s: float = 10.0) -> float:
    """The median seconds per call of time_call (export --measure takes this as its timer)."""
    return time_call(fn, budget_s).median


def time_eager(model: "torch.nn.Module", batch: "np.ndarray", budget_s: float = 10.0, threads: int | None = None,
               bf16: bool = False) -> Any:
    """stats.Summary of seconds per eager forward pass on the CPU (bf16: under autocast), timed like a graph's."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    x = torch.from_numpy(batch)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)

    return time_call(forward, budget_s)
