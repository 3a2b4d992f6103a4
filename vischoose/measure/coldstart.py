"""The child mode "coldstart": what the first request after a process starts costs, in a process that has loaded
nothing (measure.child never forks it from the server that imported torch, and it refuses to run where the runtime,
or a session of this module, was already loaded): importing the runtime, the file to a ready session (a graph
runtime's load, compile and graph preparation; torch eager: the model built and its cached weights loaded), the
first inference at batch 1, and the process's RSS right after it.

The file was just built or read, so it comes from the OS page cache, as on a second launch of an app; a first launch
after a reboot also reads it from storage. One process, one reading: the warm figures are the medians.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from vischoose.measure import application, process
from vischoose.measure.protocol import Job, Result, phase_reporter
from vischoose.runtimes import registry

_SESSIONS = 0  # sessions this process opened for a cold start: a second one would be warm


class NotCold(RuntimeError):
    """A cold start asked of a process that already loaded the runtime or opened a session: its figure would be warm."""


def coldstart(job: Job, result: Result) -> None:
    """Import the runtime, make the session ready, run one batch-1 inference; each timed, then the RSS."""
    global _SESSIONS
    runtime = registry.get(job.runtime)
    loaded = [name for name in (runtime.module, *runtime.host_modules) if name in sys.modules]
    if _SESSIONS or loaded:
        raise NotCold(f"this process already {'opened a session' if _SESSIONS else 'imported ' + ', '.join(loaded)}: "
                      "a cold start needs a fresh one")
    phase_reporter(job, result)("cold start", 1)
    with application.timed_section(job):
        begin = time.perf_counter()
        runtime.prepare_host()
        imported = time.perf_counter()
        forward, x = (_graph_session if runtime.is_graph else _eager_session)(job, result)
        _SESSIONS += 1
        ready = time.perf_counter()
        forward(x)
        answered = time.perf_counter()
    result["cold_start"] = {"import_ms": (imported - begin) * 1e3, "load_ms": (ready - imported) * 1e3,
                            "first_ms": (answered - ready) * 1e3, "rss_mb": process.rss_mb(), "pid": os.getpid()}
    result.update(status="done", phase="done", batch_size=None)


def _graph_session(job: Job, result: Result) -> tuple[Callable[[Any], Any], Any]:
    """The runtime's session on the built file (load, compile, graph preparation) and a batch-1 input made after it."""
    from vischoose.runtimes import agreement
    from vischoose.runtimes.artifact import Artifact

    artifact = Artifact.from_dict(job.artifact)
    forward = registry.get(job.runtime).session(artifact, job.threads)
    return forward, agreement.random_batch(artifact.input_size, n=1)


def _eager_session(job: Job, result: Result) -> tuple[Callable[[Any], Any], Any]:
    """The model built and its weights loaded at the run's dtype and layout (compiled on its first call with
    compile), and a batch-1 input: its first call runs under inference_mode, as the timed ones do."""
    import torch

    from vischoose.measure import eager
    from vischoose.runtimes.torch_eager import compile_for_inference

    eager.start(job, result)
    net, make_input = eager.prepare(job, result)
    net = compile_for_inference(net) if job.compile else net

    def forward(x: Any) -> Any:
        with torch.inference_mode():
            out = net(x)
            return out.float().cpu()  # the answer on the host: on a GPU this waits for the kernels

    return forward, make_input(1)


MODES: dict[str, Callable[[Job, Result], None]] = {application.COLD: coldstart}
