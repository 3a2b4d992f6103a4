"""Timing, shared by every runtime: a timer that synchronises the device, the warm-up and stop rules of one timed
phase, the noise rule (a spread too wide is measured again once, then marked), and the sweep every child runs:
throughput at each batch size first, as in a fresh serving process, then batch-1 latency, within one budget."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, TypeVar

from vischoose.measure import stats

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vischoose.measure import contention, lock

MIN_TIMED = 3  # timed runs a phase makes even when its time budget is spent
MAX_SAMPLES = 1000
MAX_WARMUP = 50
WARMUP_SHARE = 0.3  # of a phase's budget at most spent warming up
MIN_WARMUP_S = 0.25  # warm-up runs add up to this at least: a new session's thread pool, arena, first-touch pages
MIN_PHASE_S = 1.0  # timed runs of a phase add up to this at least (or what its budget allows): see _sample
NOISY_P90_OVER_P50 = 1.5  # a phase whose p90 is this far above its median was disturbed...
NOISY_IQR_SHARE = 0.25  # ... or whose IQR is above this share of the median
CONSISTENT_FACTOR = 1.15  # batch-1 img/s and 1000 / batch-1 p50 this far apart contradict each other (inconsistency)
Call = Callable[[], Any]
Timer = Callable[[Call], float]
T = TypeVar("T")
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


def _warm_up(fn: Call, timer: Timer, budget_s: float, start: float) -> int:
    """Run fn until its timings settle and add up to MIN_WARMUP_S (at most MAX_WARMUP runs or WARMUP_SHARE of the
    budget); the runs made."""
    warm: list[float] = []
    least = min(MIN_WARMUP_S, WARMUP_SHARE * budget_s)
    while len(warm) < MAX_WARMUP:
        warm.append(timer(fn))
        if (stats.warmup_done(warm) and sum(warm) >= least) or time.monotonic() - start >= WARMUP_SHARE * budget_s:
            break
    return len(warm)


def _sample(fn: Call, timer: Timer, budget_s: float, report: Report, start: float) -> list[float]:
    """Time fn until the median is known within +-2% over at least MIN_PHASE_S of timed runs, or the budget (counted
    from `start`) ends. Consecutive runs are not independent (a frequency step, another program's burst, the first
    hundreds of milliseconds of a new thread pool slow a stretch of them alike), so a median settled over a few dozen
    runs of a 4 ms model, 0.1 s, is one moment of the machine, and two such moments disagreed by 1.2-1.6x (batch-1 img/s
    against latency, ONNX Runtime int8 resnet18); a phase spans MIN_PHASE_S, or what its budget allows."""
    samples: list[float] = []
    last_report = time.monotonic()
    least = min(MIN_PHASE_S, max(budget_s - (last_report - start), 0.0))
    while len(samples) < MAX_SAMPLES:
        samples.append(timer(fn))
        now = time.monotonic()
        settled = sum(samples) >= least and stats.is_settled(samples)
        if len(samples) >= MIN_TIMED and (now - start >= budget_s or settled):
            break
        if now - last_report >= 1.0:
            report(len(samples), stats.relative_halfwidth(samples))
            last_report = now
    return samples


def timed_phase(fn: Call, timer: Timer, budget_s: float, report: Report) -> tuple[list[float], int]:
    """Warm up until timings settle, then time until the median is known within +-2% or the budget ends.

    Returns the timed samples (seconds) and the number of warm-up runs.
    """
    start = time.monotonic()
    warm = _warm_up(fn, timer, budget_s, start)
    return _sample(fn, timer, budget_s, report, start), warm


class Phase(NamedTuple):
    """One timed phase: its samples (seconds), warm-up runs, why it is too spread (or None), and what the rest of
    the machine took while it was timed (None: not metered)."""

    seconds: list[float]
    warmup: int
    noisy: str | None = None
    others: "contention.Reading | None" = None

    @property
    def contended(self) -> str | None:
        """Why the phase counts as contended ('others took 0.85 cores (limit 0.10)'), or None."""
        return self.others.why() if self.others is not None and self.others.contended else None


def metered_phase(fn: Call, timer: Timer, budget_s: float, report: Report,
                  meter: "contention.Meter | None" = None) -> Phase:
    """timed_phase, with what others took over the timed runs (not the warm-up) when a meter is given."""
    start = time.monotonic()
    warm = _warm_up(fn, timer, budget_s, start)
    mark = meter.start() if meter else None
    samples = _sample(fn, timer, budget_s, report, start)
    return Phase(samples, warm, noise(samples), meter.read(mark) if meter and mark else None)


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


def settled_phase(fn: Call, timer: Timer, budget_s: float, report: Report,
                  meter: "contention.Meter | None" = None) -> Phase:
    """A phase measured again once when its spread is too wide or the rest of the machine took too much of it
    (after a pause for the others to stop: measure.contention); the second measurement stands, marked if still so."""
    first = metered_phase(fn, timer, budget_s, report, meter)
    if first.noisy is None and first.contended is None:
        return first
    if first.contended and meter is not None:
        meter.wait_quiet()
    again = metered_phase(fn, timer, budget_s, report, meter)  # a disturbance passes: measure once more
    return again._replace(warmup=first.warmup + again.warmup)


def phase_summary(phase: Phase, batch: int | None = None) -> dict[str, Any]:
    """A phase's figures for the result file: img/s at `batch` (throughput) or ms (latency, batch None), with its
    warm-up, noise and what others took (cores; None when not metered)."""
    values = [batch / s for s in phase.seconds] if batch else [s * 1e3 for s in phase.seconds]
    others = None if phase.others is None else round(phase.others.others_cores, 3)
    return {**stats.summarize(values).__dict__, "warmup": phase.warmup, "noisy": phase.noisy,
            "others_cores": others, "contended": phase.contended}


def time_call(fn: Call, budget_s: float = 10.0, timer: Timer = cpu_timer) -> stats.Summary:
    """Seconds per call: warm-up, then the profile's stop rules (for export --measure and the benchmarks)."""
    samples, _ = timed_phase(fn, timer, budget_s, lambda n, w: None)
    return stats.summarize(samples)


def timing_sweep(result: dict[str, Any], call_for: Callable[[int], Call], timer: Timer, batches: list[int],
                 budget_s: float, phase: Callable[..., None], report: Report,
                 out_of_memory: tuple[type[BaseException], ...] = (), meter: "contention.Meter | None" = None) -> None:
    """Throughput at each batch size first (as in a fresh serving process), then batch-1 latency; one budget. Each
    phase is metered (what others took, with a meter) and batch 1's two figures are checked against each other.

    call_for(batch) makes the call to time on a fixed input of that batch size (created once, on the device).
    """
    start = time.monotonic()

    def budget(phases_left: int) -> float:  # the pauses for others to stop are not timed runs: not counted
        spent = time.monotonic() - start - (meter.paused_s if meter else 0.0)
        return max(budget_s - spent, 0.0) / phases_left

    for i, batch in enumerate(batches):
        phase("throughput", batch)
        try:
            call = call_for(batch)
            measured = settled_phase(call, timer, budget(len(batches) - i + 1), report, meter)
        except out_of_memory:
            result["throughput"][str(batch)] = {"error": f"out of memory at batch {batch}"}
            continue
        finally:
            call = None  # the input tensors go before the next batch size's
        result["throughput"][str(batch)] = phase_summary(measured, batch)
    phase("latency", 1)
    result["latency"] = phase_summary(settled_phase(call_for(1), timer, budget(1), report, meter))
    check_batch1(result, call_for(1), timer, budget_s / (len(batches) + 1), phase, report, meter)


def consistent_factor() -> float:
    """CONSISTENT_FACTOR, or $VISCHOOSE_CONSISTENT_FACTOR (tests of other things on a loaded machine set it high)."""
    import os

    return float(os.environ.get("VISCHOOSE_CONSISTENT_FACTOR", CONSISTENT_FACTOR))


def inconsistency(throughput: dict[str, Any], latency: dict[str, Any], factor: float | None = None) -> str | None:
    """Why batch-1 img/s and batch-1 latency contradict each other, or None. Both are medians of the same call timed
    one by one, in two phases of one process, so 1000 / img/s and the p50 in ms must agree: within +-2% each once
    settled, plus the drift of a quiet machine between two phases (a few %). More than CONSISTENT_FACTOR apart, one of
    the two phases was not measuring what the other did."""
    img_s, p50 = throughput.get("median"), latency.get("median")
    if not img_s or not p50:
        return None
    implied, factor = 1000.0 / img_s, factor or consistent_factor()
    ratio = max(implied, p50) / min(implied, p50)
    if ratio <= factor:
        return None
    return (f"batch-1 img/s {img_s:,.1f} means {implied:,.2f} ms per image, but batch-1 latency p50 is {p50:,.2f} ms "
            f"({ratio:.2f}x apart, more than {factor}x)")


def check_batch1(result: dict[str, Any], call: Call, timer: Timer, budget_s: float, phase: Callable[..., None],
                 report: Report, meter: "contention.Meter | None" = None) -> None:
    """Where batch-1 img/s and latency disagree (inconsistency), measure both again once; if they still disagree,
    the result says so ("inconsistent"), and no row of it is reused as a measured figure."""
    why = inconsistency(result["throughput"].get("1") or {}, result.get("latency") or {})
    if why is None:
        return
    result["remeasured"] = why
    phase("throughput", 1)
    result["throughput"]["1"] = phase_summary(settled_phase(call, timer, budget_s, report, meter), 1)
    phase("latency", 1)
    result["latency"] = phase_summary(settled_phase(call, timer, budget_s, report, meter))
    still = inconsistency(result["throughput"]["1"], result["latency"])
    if still:
        result["inconsistent"] = still + " after measuring both again"


def median_s(fn: Call, budget_s: float = 10.0) -> float:
    """The median seconds per call of time_call (export --measure takes this as its timer)."""
    return time_call(fn, budget_s).median


class MachineTimer:
    """The timer measure lends to callers below it (export --measure takes it: deploy does not import measure): the
    median seconds per call (median_s), and `exclusive`, which runs a block of such timings holding the machine's
    measurement lock (measure.lock; on_wait hears whom it waits for) with a meter of what the rest of the machine took
    (measure.contention): measured again once, after a pause for the others, when they took too much."""

    def __init__(self, on_wait: "lock.Waiting | None" = None) -> None:
        self.on_wait = on_wait

    def __call__(self, fn: Call, budget_s: float = 10.0) -> float:
        return median_s(fn, budget_s)

    def exclusive(self, what: str, timings: Callable[[], T], wait: bool = True,
                  threads: int | None = None) -> tuple[T, dict[str, Any]]:
        """timings() with the machine held, and what others took: {"others_cpu_cores", "contended"}.

        Raises:
            MeasurementBusyError: wait is False and another process holds the machine.
        """
        from vischoose.measure import contention, lock, process

        with lock.exclusive(f"{what}, for: {lock.command_line()}", wait, self.on_wait):
            meter = contention.Meter(process.capped_threads(threads))
            mark = meter.start()
            found = timings()
            reading = meter.read(mark)
            if reading.contended:
                meter.wait_quiet()
                mark = meter.start()
                found = timings()
                reading = meter.read(mark)
        return found, {"others_cpu_cores": round(reading.others_cores, 3),
                       "contended": reading.why() if reading.contended else None}


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
