"""The server scenario's child modes (measure.child runs them, one process per instance count):

- "serve-profile": `instances` copies of the model, `threads` each, timed all at once at batch 1, 2, 4, ... (doubling
  until two sizes in a row gain under 5% img/s, while a batch stays under the bound), then batch 1 after an idle gap:
  the service times the queueing model is fed.
- "serve-verify": the chosen setting served to LoadGen's Server scenario at the rates measure.serving_search.verify
  asks for; every run's verdict, percentiles and summary.
- "serve-single-stream": one instance, every thread: vischoose's own batch-1 timing and LoadGen's SingleStream on the
  same session (bench/serving.py compares their p90).

A graph runtime's file is run by its runtime's session as profile times it and a service deploys it by default (ONNX
Runtime's idle threads spinning: with spinning off, a request that found a 2-thread session idle ran at one thread's
pace, 11.7 against 6.5 ms for resnet18 int8 on AMD EPYC, and LoadGen's SingleStream p90 was 0.80-0.85x vischoose's;
with it on, 6.6 ms and 0.88-1.00x); torch runs the eager module from one thread per instance, each with its own
`threads` intra-op threads.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from vischoose.errors import VischooseError
from vischoose.measure import serving, serving_search, timing
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
    from vischoose.measure import contention

Forwards = tuple[list[serving.Forward], Callable[[], None] | None, int]  # forwards, per-thread start, input side


def _graph_forwards(job: Job, result: Result, count: int, threads: int) -> Forwards:
    from vischoose.runtimes.artifact import Artifact

    runtime = registry.get(job.runtime)
    artifact = Artifact.from_dict(job.artifact)
    result["runtime_version"] = runtime.version()
    result["conditions"] = {"device": "cpu", "threads": threads}
    return [runtime.session(artifact, threads) for _ in range(count)], None, artifact.input_size


def _torch_forwards(job: Job, result: Result, count: int, threads: int) -> Forwards:
    import torch

    from vischoose.measure import eager

    eager.start(job.but(threads=threads), result)
    net, make_input = eager.prepare(job, result)
    sample = make_input(1)
    dtype, layout = sample.dtype, torch.channels_last if job.channels_last else torch.contiguous_format

    def forward(batch: Any) -> Any:
        with torch.inference_mode():  # thread-local: entered in each worker
            return net(torch.from_numpy(batch).to(dtype=dtype, memory_format=layout))

    def thread_start() -> None:
        torch.set_num_threads(threads)  # this thread's OpenMP team: `threads`, as every other instance

    return [forward] * count, thread_start, int(sample.shape[-1])


def forwards(job: Job, result: Result) -> Forwards | None:
    """The job's instances (None when loading failed: the row's setup error, recorded)."""
    spec = job.serve or {}
    count, threads = spec["instances"], spec["threads"]
    phase_reporter(job, result)("loading")
    try:
        make = _graph_forwards if registry.get(job.runtime).is_graph else _torch_forwards
        return make(job, result, count, threads)
    except VischooseError as err:
        setup_failed(result, err)
        return None


@contextmanager
def machine_held(job: Job, result: Result) -> Iterator["contention.Meter"]:
    """The block is timed: it holds the machine's measurement lock (protocol.timed, every instance's threads counted)
    and the result keeps what the rest of the machine took over it, {"others_cores", "contended"}, for the row."""
    spec = job.serve or {}
    with timed(job, spec.get("instances", 1) * spec.get("threads", job.threads)) as meter:
        mark = meter.start()
        yield meter
        reading = meter.read(mark)
    result["others"] = {"others_cores": round(reading.others_cores, 3),
                        "contended": reading.why() if reading.contended else None}


def images(size: int) -> Any:
    """The QSL's images: fixed random float32 NCHW inputs, all in memory."""
    from vischoose.runtimes.agreement import random_batch

    return random_batch(size, n=serving.SAMPLES)


def serve_profile(job: Job, result: Result) -> None:
    """Service times of every instance at once, at batch 1, 2, 4, ... while img/s grows and a batch fits the bound."""
    found = forwards(job, result)
    if found is None:
        return
    calls, thread_start, size = found
    spec, phase = job.serve or {}, phase_reporter(job, result)
    pixels = images(size)
    with machine_held(job, result):
        ladder = serving.service_ladder(calls, pixels, spec["slo_ms"], spec["max_batch"], spec["seconds_per_size"],
                                        thread_start, lambda batch: phase("service times", batch))
        phase("service times after idle", 1)
        result["service_idle"] = serving.idle_times(calls, pixels, serving.idle_calls(ladder, spec["slo_ms"]),
                                                    thread_start=thread_start)
    result["service"] = {str(b): v for b, v in ladder.items()}
    result.update(status="done", phase="done", batch_size=None)


def serve_verify(job: Job, result: Result) -> None:
    """LoadGen Server runs of the chosen setting, at the rates the search asks for (each kept as it ends)."""
    found = forwards(job, result)
    if found is None:
        return
    calls, thread_start, size = found
    spec, phase = job.serve or {}, phase_reporter(job, result)
    budget = serving_search.Budget(**spec["budget"])
    result["runs"] = []

    def starting(qps: float) -> None:
        phase(f"LoadGen server run at {qps:.3g} QPS ({budget.queries(qps)} queries, ~{budget.seconds(qps):.0f} s)")

    def ended(run: serving_search.Run, version: str) -> None:
        result["runs"].append(run.to_dict())
        result["loadgen_version"] = version
        write_result(job.result_path, result)

    pixels = images(size)
    with machine_held(job, result):
        serving.verify_with_loadgen(calls, pixels, serving_search.ServeSettings.from_dict(spec["settings"]),
                                    spec["start_qps"], spec["slo_ms"], budget, spec["seconds_left"],
                                    Path(job.result_path).parent / "loadgen", thread_start, starting, ended,
                                    spec.get("whole_s", 0.0), lambda qps: result.update(late_qps=qps))
    result.update(status="done", phase="done", batch_size=None)


def serve_single_stream(job: Job, result: Result) -> None:
    """vischoose's batch-1 timing and LoadGen's SingleStream on the same session: both p90s."""
    found = forwards(job, result)
    if found is None:
        return
    (forward, *_), thread_start, size = found
    if thread_start:
        thread_start()
    spec, phase, pixels = job.serve or {}, phase_reporter(job, result), images(size)
    one = pixels[:1]
    with machine_held(job, result) as meter:
        phase("latency", 1)
        measured = timing.settled_phase(lambda: forward(one), timing.cpu_timer, spec["seconds"], progress, meter)
        result["vischoose"] = timing.phase_summary(measured)
        phase("LoadGen single-stream")
        _loadgen_single_stream(job, result, forward, pixels, thread_start)
    result.update(status="done", phase="done", batch_size=None)


def _loadgen_single_stream(job: Job, result: Result, forward: serving.Forward, pixels: Any,
                           thread_start: Callable[[], None] | None) -> None:
    spec = job.serve or {}
    settings = serving_search.ServeSettings(1, spec["threads"])
    sut = serving.SystemUnderTest([forward], pixels, settings, thread_start, inline=True)
    harness = serving.LoadGen(sut, serving.SAMPLES)
    try:
        result["loadgen"] = serving.single_stream_p90(harness, spec["min_queries"], spec["seconds"],
                                                      result["vischoose"]["median"],
                                                      Path(job.result_path).parent / "single-stream")
    finally:
        harness.close()
        sut.close()


MODES: dict[str, Callable[[Job, Result], None]] = {"serve-profile": serve_profile, "serve-verify": serve_verify,
                                                    "serve-single-stream": serve_single_stream}
