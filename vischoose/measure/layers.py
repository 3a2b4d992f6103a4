"""The child mode "layers": where one inference's time goes, operator by operator, through the runtime's own profiler
(Runtime.layer_profile: torch.profiler, ONNX Runtime's session profiling, OpenVINO's performance counters, ExecuTorch's
ETDump; LiteRT's Python bindings have none, and say so), at batch 1 and the profile's threads. A graph runtime's
process imports only the runtime, as for its timings; profiling slows the run down, so these times are read as
shares, beside the row's own latency."""

from __future__ import annotations

from typing import Callable

from vischoose.measure import application
from vischoose.measure.protocol import Job, Result, phase_reporter
from vischoose.runtimes import registry

RUNS = 10  # profiled inferences after the warm-up: each operator's median over them


def layers(job: Job, result: Result) -> None:
    """The runtime's layer profile of the variant, kept as JSON (runtimes.layers.LayerProfile)."""
    runtime = registry.get(job.runtime)
    phase_reporter(job, result)("layers", 1)
    if runtime.is_graph:
        from vischoose.runtimes.artifact import Artifact

        artifact = Artifact.from_dict(job.artifact)
    else:
        from vischoose.measure import eager
        from vischoose.runtimes.torch_eager import EagerModel

        eager.start(job, result)
        artifact = EagerModel(*eager.prepare(job, result), job.precision)
        if job.compile:
            result["notes"].append(f"{job.model}: layers profiled on the eager module; torch.compile's graph has "
                                   "other kernels.")
    with application.timed_section(job):
        found = runtime.layer_profile(artifact, 1, job.threads, RUNS)
    result["layer_profile"] = found.to_json()
    result.update(status="done", phase="done", batch_size=None)


MODES: dict[str, Callable[[Job, Result], None]] = {application.LAYERS: layers}
