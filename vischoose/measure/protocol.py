"""The protocol between the parent (measure.runner) and a measuring child: the Job (the ProfileRequest and what
the parent resolved for one model and mode, serialised as one JSON file), the result dict, progress lines on stderr,
and the result file written after every phase (a crash leaves the finished phases behind)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from vischoose.measure.peak import PEAK_CACHE_FILE
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
    home: str  # the vischoose home: graph cache and machine peak
    machine_kind: str = ""  # this kind of machine (machine.kind): the hardware without the host
    result_path: str = ""
    graph_dir: str | None = None  # graph runtimes: where the build goes
    artifact: dict[str, Any] | None = None  # graph runtimes, after the build: the file (Artifact.to_dict)
    batch: int | None = None  # an optimize trial: its batch size
    reference: str | None = None  # an optimize trial: the fp32 logits it is compared with (.npy)
    serve: dict[str, Any] | None = None  # a server-scenario child (measure.serving_child): instances, threads, ...
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
    def peak_cache(self) -> Path:
        """This machine's matmul peak cache."""
        return Path(self.home) / PEAK_CACHE_FILE

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
