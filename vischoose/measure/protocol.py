"""The protocol between the parent (measure.runner) and a measuring child: the Job (the ProfileRequest and what
the parent resolved for one model and mode, serialised as one JSON file), the result dict, progress lines on stderr,
and the result file written after every phase (a crash leaves the finished phases behind)."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from vischoose import paths
from vischoose.measure import contention, lock
from vischoose.requests.profile import ProfileRequest

PROGRESS_PREFIX = "VISCHOOSE-PROGRESS "
Result = dict[str, Any]


@dataclass(frozen=True)
class Job:
    """One child's work: the request as asked, and what the parent resolved for this model and mode."""

    request: ProfileRequest
    model: str  # the reference the user gave
    mode: str  # a mode of the runtime's child (measure.eager, measure.graph or measure.serving_child MODES)
    device: str  # resolved: "cpu" or "cuda:N"
    threads: int  # capped at the cores this process may use (measure.process)
    batch_sizes: tuple[int, ...]
    machine: str  # this machine's fingerprint
    home: str  # the vischoose home: graph cache (the machine peak is machine-wide: paths.peak_cache)
    machine_kind: str = ""  # this kind of machine (machine.kind): the hardware without the host
    result_path: str = ""
    graph_dir: str | None = None  # graph runtimes: where the build goes
    artifact: dict[str, Any] | None = None  # graph runtimes, after the build: the file (Artifact.to_dict)
    batch: int | None = None  # an optimize trial: its batch size
    reference: str | None = None  # an optimize trial: the fp32 logits it is compared with (.npy)
    serve: dict[str, Any] | None = None  # a server-scenario child (measure.serving_child): instances, threads, ...
    command: str = ""  # the command line that asked (measure.lock.command_line): whom a waiting vischoose waits for
    max_batch: int | None = None  # graph runtimes: the largest batch a built file must take in one call, where the
    # parent asks more than the batch sizes (the server search's dynamic batching); None: the largest batch size
    app: dict[str, Any] | None = None  # an application child (measure.application): preprocessing, photos

    def __getattr__(self, name: str) -> Any:  # the protocol's own options: job.dtype is job.request.dtype
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.request, name)

    @property
    def threads_requested(self) -> int | None:
        """What the preset or threads asked for."""
        return self.request.threads

    @property
    def call_bound(self) -> int:
        """The largest batch a file built for this job takes in one call (a runtime that plans memory for the bound
        builds for it; measure.graph): max_batch where the parent set it, else the largest batch size measured."""
        return self.max_batch or max(self.batch_sizes, default=1)

    @property
    def peak_cache(self) -> Path:
        """This machine's dense-compute peak cache, one for every home on the machine (paths.peak_cache)."""
        return paths.peak_cache()

    def but(self, **changes: Any) -> "Job":
        """A copy with these fields changed."""
        return replace(self, **changes)

    def to_json(self) -> str:
        """The job file's text."""
        return json.dumps({**asdict(self), "request": self.request.to_dict()})

    @classmethod
    def from_json(cls, text: str) -> "Job":
        """The job a job file holds."""
        data = json.loads(text)
        data["request"] = ProfileRequest.from_dict(data["request"])
        data["batch_sizes"] = tuple(data["batch_sizes"])
        return cls(**data)


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
    write_result(job.result_path, result)
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
def timed(job: Job, threads: int | None = None) -> Iterator[contention.Meter]:
    """A block that times something: it holds the machine's measurement lock (measure.lock; the parent hears who it
    waits for, every POLL_S) and gets the meter of what others take (measure.contention) for its phases; threads:
    every thread the block runs (default the job's: several server instances run more).

    Raises:
        MeasurementBusyError: the job says not to wait (--no-wait) and another process holds the lock.
    """
    what = f"{job.model} at {job.runtime} {job.precision}, for: {job.command or 'vischoose'}"

    def waiting(holder: lock.Holder | None, waited_s: float) -> None:
        emit("waiting", holder=holder.describe() if holder else None, waited_s=round(waited_s, 1))

    with lock.exclusive(what, wait=job.wait, on_wait=waiting):
        yield contention.Meter(threads or job.threads)
