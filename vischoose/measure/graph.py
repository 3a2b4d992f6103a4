"""The child modes of an exported graph, for every runtime in the registry that builds one: "build" (torch: load
the model, export and quantize it through the runtime, check it against eager fp32 on a fixed batch, count FLOPs),
then "memory" and "timing", which import the runtime but not torch, as a deployed process would: peak RSS over the
idle process at each batch size, then throughput at each batch size from a fresh session and batch-1 latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from vischoose.deploy import check, graphcache, verdict
from vischoose.errors import VischooseError
from vischoose.measure import process, timing
from vischoose.measure.protocol import (
    Job,
    Result,
    phase_reporter,
    progress,
    setup_failed,
    timed,
)
from vischoose.runtimes import agreement, registry
from vischoose.runtimes.artifact import Artifact


def _load(job: Job, result: Result) -> tuple[Any, int, Any]:
    """The model (at the job's input size) and the calibration images, or raise the VischooseError that stops it."""
    import torch

    from vischoose.inference import calibration
    from vischoose.models.loading import load_model

    torch.manual_seed(graphcache.RANDOM_SEED)  # random init: the same weights every time, so the file can be cached
    loaded = load_model(job.model, weights=job.weights)
    size = job.input_size or loaded.input_size
    if size != loaded.input_size and hasattr(loaded.model, "set_input_size"):
        loaded.model.set_input_size(img_size=(size, size))
    calib = None
    if job.calibration:
        calib = calibration.load_calibration(job.calibration, calibration.preprocessing(loaded, size))
    if job.weights == "auto" and loaded.weights == "random":
        result["notes"].append(f"{job.model}: no cached pretrained weights, so random init of the same "
                               "architecture: speed and size hold, agreement with fp32 says little.")
    result["model"] = {"tag": loaded.tag, "arch": loaded.arch, "params": loaded.params,
                       "weights": loaded.weights_label, "input_size": size, "pretrained_input_size": loaded.input_size}
    result["preprocessing"] = calibration.preprocessing(loaded, size)  # the end-to-end child's (measure.endtoend)
    return loaded, size, calib


def build(job: Job, result: Result) -> None:
    """Build the graph through its runtime, check it against eager fp32, count FLOPs, read the fp32 peak."""
    import torch

    from vischoose.measure import eager
    from vischoose.runtimes.torch_eager import count_flops

    runtime, phase = registry.get(job.runtime), phase_reporter(job, result)
    device_name = eager.start(job, result)  # a graph's job runs on the CPU
    phase("loading")
    try:
        loaded, size, calib = _load(job, result)
    except VischooseError as err:
        setup_failed(result, err)
        return
    phase("exporting" if job.precision != "int8" else "exporting and quantizing")
    try:
        checked = _built(job, result, runtime, loaded, size, calib)
    except VischooseError as err:
        result.update(status="failed", error=str(err), error_kind="measure")
        return
    artifact, judged = checked.artifact, checked.verdict
    result.update(artifact=artifact.to_dict(), graph_facts={
        "file_mb": artifact.file_mb, "export_s": artifact.build_s, "quantize_s": artifact.quantize_s,
        "recipe": artifact.recipe, "check_source": "images" if calib else "random",
        "agreement": checked.agreement.to_dict(), "status": judged.status})
    if artifact.note:
        result["notes"].append(f"{job.model}: {artifact.note}.")
    if judged.status != verdict.OK:
        result["notes"].append(f"{job.model} {job.precision}: {verdict.describe(judged)}")
    phase("flops")
    result["flops_per_image"] = count_flops(loaded.model, torch.randn(1, 3, size, size))
    del loaded
    if job.precision == "fp32":  # efficiency against the fp32 peak (no int8 peak is measured)
        eager.machine_peak(job, result, torch.device("cpu"), device_name)  # an fp32 job: float32
    result.update(status="done", phase="done", batch_size=None)


def _built(job: Job, result: Result, runtime: Any, loaded: Any, size: int, calib: Any) -> check.Checked:
    """The runtime's file for this model, checked against eager fp32 (from the graph cache when these weights,
    images and versions built it); a runtime that plans memory for its largest batch builds for the job's largest
    (Job.call_bound: a batch-1-only profile builds a batch-1 program)."""
    out = Path(job.graph_dir) / f"model-{job.precision}{runtime.suffix}"
    images = None if calib is None else calib.batch
    checked = check.build_checked(runtime, loaded, job.precision, out, size, images, job.min_agreement, job.threads,
                                  seeded=True, home=job.home, link=True, max_batch=job.call_bound)
    if checked.reused:
        result["notes"].append(f"{job.model}: its {runtime.name} {job.precision} file was built before from "
                               "these weights, calibration images and versions: reused from the graph cache.")
    return checked


def _forward(job: Job, result: Result) -> tuple[timing.Call, Any]:
    """The runtime's forward on the built artifact, in this process that has not imported torch."""
    runtime = registry.get(job.runtime)
    artifact = Artifact.from_dict(job.artifact)
    result["runtime_version"] = runtime.version()
    result["conditions"] = {"device": "cpu", "threads": job.threads}
    return runtime.session(artifact, job.threads), artifact


def memory(job: Job, result: Result) -> None:
    """Peak RSS of one run at each batch size, smallest first, over a baseline taken once the runtime's host binding
    is loaded (Runtime.prepare_host: what a deployed process has before any model), then the runtime's own account."""
    import gc

    import numpy  # noqa: F401  (imported before the baseline: a deployed process has it too)

    runtime = registry.get(job.runtime)
    includes = runtime.prepare_host()
    gc.collect()
    process.trim_heap()  # as before each peak: the baseline and the peaks count the heap alike
    baseline = process.rss_mb()
    result.update(baseline_rss_mb=baseline, baseline_includes=includes)
    forward, artifact = _forward(job, result)
    phase = phase_reporter(job, result)
    for batch in sorted(job.batch_sizes):
        phase("memory", batch)
        process.trim_heap()  # what loading freed is not the model's
        process.reset_peak_rss()
        forward(agreement.random_batch(artifact.input_size, n=batch))
        result["memory"][str(batch)] = {"peak_mb": process.peak_rss_mb() - baseline}
    phase("memory plan")  # after the peaks: what reading the plan imports is not the model's
    result["runtime_memory"] = runtime.memory_plan(artifact)
    result.update(status="done", phase="done", batch_size=None)


def timings(job: Job, result: Result) -> None:
    """Throughput at each batch size from a fresh session, then batch-1 latency; one time budget."""
    forward, artifact = _forward(job, result)

    def call_for(batch: int) -> timing.Call:
        x = agreement.random_batch(artifact.input_size, n=batch)
        return lambda: forward(x)

    with timed(job) as meter:  # one timed measurement at a time on this machine, and what others take meanwhile
        timing.timing_sweep(result, call_for, timing.cpu_timer, sorted(job.batch_sizes), job.time_budget_s,
                            phase_reporter(job, result), progress, meter=meter)
    result.update(status="done", phase="done", batch_size=None)


MODES: dict[str, Callable[[Job, Result], None]] = {"build": build, "memory": memory, "timing": timings}
