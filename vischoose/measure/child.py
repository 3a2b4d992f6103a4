"""The one child-process framework: every measurement runs in a process of its own, started as
``python -m vischoose.measure.child JOB.json`` (or, for the jobs `forkable` names, on Linux, forked from a server that
imported torch once: measure.forked), so its peak memory is its own and its throughput that of a new process, and a
crash, kill or out-of-memory becomes that row's error.

The job (measure.protocol.Job) holds the ProfileRequest, the model and the mode. The child writes its results (so far) to
``job.result_path`` after every phase, and progress lines prefixed with PROGRESS_PREFIX to stderr; the parent
(measure.runner) reads both. torch eager modes live in measure.eager, exported-graph modes in measure.graph, the
server scenario's (either runtime) in measure.serving_child, and what the application sees (either runtime: cold start,
end to end, layers) in measure.coldstart, measure.endtoend and measure.layers.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from vischoose.errors import MeasurementBusyError
from vischoose.measure import coldstart, eager, endtoend, graph, layers, serving_child
from vischoose.measure.protocol import Job, Mode, Result, new_result, write_result
from vischoose.runtimes import registry


APPLICATION_MODES: dict[str, Mode] = {**coldstart.MODES, **endtoend.MODES, **layers.MODES}


def modes(job: Job) -> dict[str, Mode]:
    """The modes of the job's runtime: torch eager, or an exported graph; the server scenario's for either."""
    if job.mode in serving_child.MODES:
        return serving_child.MODES
    if job.mode in APPLICATION_MODES:
        return APPLICATION_MODES
    return graph.MODES if registry.get(job.runtime).is_graph else eager.MODES


def forkable(job: Job) -> bool:
    """Whether the job may run forked from the server that imported torch (measure.forked): the modes that import
    torch anyway, every torch eager mode and the build of an exported graph. A graph's memory and timing import
    only the runtime, as a deployed process would, and start fresh; a cold start is never forked."""
    if job.mode in coldstart.MODES:
        return False
    return not registry.get(job.runtime).is_graph or job.mode == "build"


def run(job: Job, result: Result) -> None:
    """Run the job's mode, writing into result."""
    modes(job)[job.mode](job, result)


def main(argv: list[str]) -> int:
    """Read the job file named in argv, run its mode, and leave the result file behind, whatever happens."""
    job = Job.from_json(Path(argv[0]).read_text())
    result = new_result()
    try:
        run(job, result)
    except MeasurementBusyError as err:  # --no-wait: the parent stops with the busy exit code, storing nothing
        result.update(status="failed", error=str(err), error_kind="busy", holder=err.holder, lock=err.path)
    except Exception as err:  # a model, an exporter or a runtime can raise anything: it is this row's error
        traceback.print_exc()
        where = result["phase"] + (f" at batch {result['batch_size']}" if result["batch_size"] else "")
        result.update(status="failed", error=f"failed during {where}: {type(err).__name__}: {err}"[:300],
                      error_kind="measure")
    write_result(job.result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
