"""The protocol between the parent (measure.runner) and a measuring child: the job and result dicts, progress
lines on stderr, and the result file written after every phase (a crash leaves the finished phases behind)."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from vischoose.measure import contention, lock

PROGRESS_PREFIX = "VISCHOOSE-PROGRESS "
Job = dict[str, Any]
Result = dict[str, Any]
Mode = Callable[[Job, Result], None]


def emit(event: str, **data: Any) -> None:
    """One progress line for the parent."""
    sys.stderr.write(PROGRESS_PREFIX + json.dumps({"event": event, **data}) + "\n")
    sys.stderr.flush()


def progress(n: int, width: float | None) -> None:
    """Timed runs so far and the median's relative CI half-width, for the parent's progress line."""
    emit("progress", n=n, ci_pct=None if width is None else 100 * width)


def write_result(path: str, result: Result) -> None:
    """Replace the result file atomically, so the parent never reads half of it."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, path)


def report_phase(job: Job, result: Result, name: str, batch: int | None = None) -> None:
    """A child starts a phase: the result file says so (a crash leaves it behind) and the parent is told."""
    result.update(phase=name, batch_size=batch)
    write_result(job["result_path"], result)
    emit("phase", phase=name, batch_size=batch)


def phase_reporter(job: Job, result: Result) -> Callable[..., None]:
    """report_phase bound to this job and result: phase(name, batch=None)."""
    return lambda name, batch=None: report_phase(job, result, name, batch)


def setup_failed(result: Result, err: Any) -> None:
    """A VischooseError before measuring (weights not cached, a bad calibration folder): the row's error."""
    result.update(status="failed", error=str(err), error_kind="setup", exit_code=err.exit_code)


def new_result() -> Result:
    """An empty result, as the parent expects it."""
    return {"status": "running", "phase": "starting", "batch_size": None, "notes": [], "memory": {},
            "throughput": {}}


@contextmanager
def timed(job: Job) -> Iterator[contention.Meter]:
    """A block that times something: it holds the machine's measurement lock (measure.lock; the parent hears who it
    waits for, every POLL_S) and gets the meter of what others take (measure.contention) for its phases.

    Raises:
        MeasurementBusyError: the job says not to wait (--no-wait) and another process holds the lock.
    """
    what = f"{job.get('model')} at {job.get('runtime')} {job.get('precision')}, for: {job.get('command') or 'vischoose'}"

    def waiting(holder: lock.Holder | None, waited_s: float) -> None:
        emit("waiting", holder=holder.describe() if holder else None, waited_s=round(waited_s, 1))

    with lock.exclusive(what, wait=job.get("wait", True), on_wait=waiting):
        yield contention.Meter(job["threads"])
