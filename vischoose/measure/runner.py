"""Profile models: each model in child processes of its own (measure.child), results as records.Profile.

torch eager: one child for peak memory and FLOPs (run again for the smaller batch sizes if it dies), then one for
timings, throughput first. An exported graph: one child builds and checks it (torch), then one measures its memory
and one its timings, importing only the runtime. The parent never imports timm and imports torch only to resolve
--device auto/cuda. A crash, kill or out-of-memory of one child becomes that model's row error; the others go on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vischoose.errors import (
    EXIT_USAGE,
    EXIT_WEIGHTS,
    MeasurementBusyError,
    ProfilingError,
    UsageError,
    WeightsUnavailableError,
)
from vischoose.measure import application, forked, process, rows
from vischoose.measure.options import check_models, resolve_device
from vischoose.measure.protocol import PROGRESS_PREFIX, Job
from vischoose.models import catalog
from vischoose.models.catalog import ModelRef
from vischoose.records import Profile
from vischoose.requests.profile import DEFAULT_BATCH_SIZES, ProfileRequest
from vischoose.runtimes import registry

CHILD_MODULE = "vischoose.measure.child"  # run as python -m CHILD_MODULE JOB.json
LineSink = Callable[[str], None]
Runner = Callable[[list[str], dict[str, str], LineSink], int]
Progress = Callable[[str, str, float], None]  # (model, what it is doing, seconds since the model started)
TIMING_KEYS = ("latency", "remeasured", "inconsistent")  # what a timing child adds beside its throughput
MEMORY_KEYS = ("baseline_rss_mb", "baseline_includes", "runtime_memory")  # a graph's memory child's, beside peaks


@dataclass(frozen=True)
class ProfileRun:
    """One Profile with what the table shows beside it: notes and how well each figure is known."""

    profile: Profile
    notes: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    saveable: bool = True  # False for setup failures (weights unavailable): no fact about the model here


def waiting_text(holder: str | None) -> str:
    """The progress line while another vischoose times: 'waiting for another vischoose measurement: pid 4121, ...'."""
    return "waiting for another vischoose measurement" + (f": {holder}" if holder else "")


def article_models() -> list[str]:
    """The source article's models (catalog entries with article figures)."""
    return [e.alias for e in catalog.list_entries() if e.article_top1 is not None]


def run_child(cmd: list[str], env: dict[str, str], on_line: LineSink) -> int:
    """Run a child to the end, passing each line of its output on; returns its exit status (-N: signal N).

    A measure.child job that child.forkable allows is forked from the server that imported torch (measure.forked)
    where that works; any other command starts fresh.
    """
    if cmd[1:3] == ["-m", CHILD_MODULE] and len(cmd) == 4 and forked.available():
        from vischoose.measure import child

        if child.forkable(Job.from_json(Path(cmd[3]).read_text())):
            try:
                return forked.run(cmd[3], env, on_line)
            except forked.ServerGone:
                pass  # started fresh below
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
        return proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: do not leave the child running
            proc.kill()
            proc.wait()


Keep = Callable[[list[Profile]], None]  # told each model's rows as soon as they are measured (to store them)


def profile_models(request: ProfileRequest, progress: Progress | None = None, runner: Runner = run_child,
                   debug: bool = False, keep: Keep | None = None) -> list[ProfileRun]:
    """Measure each model of the request in its own child processes; one ProfileRun per model per batch size.

    keep hears each model's saveable rows when they are measured, so an interruption loses only the model in progress.

    Raises:
        UnknownModelError, UsageError, ProfilingError (device missing).
    """
    refs = [catalog.parse_model_ref(m) for m in request.models or article_models()]
    check_models(refs)
    device = "cpu" if registry.get(request.runtime).is_graph else resolve_device(request.device)
    sizes = tuple(sorted(set(request.batch_sizes or DEFAULT_BATCH_SIZES[device.split(":")[0]])))
    runs: list[ProfileRun] = []
    with tempfile.TemporaryDirectory(prefix="vischoose-profile-") as tmp:
        for i, ref in enumerate(refs):
            found = ChildJob(ref, new_job(request, ref.text, device, sizes), Path(tmp) / str(i)).run(
                runner, progress, debug)
            if keep is not None:
                keep([r.profile for r in found if r.saveable])
            runs += found
    return runs


def new_job(request: ProfileRequest, model: str, device: str, batch_sizes: tuple[int, ...]) -> Job:
    """A child's job for one model (the mode and result file are set per child); threads capped at the cores."""
    from vischoose import machine
    from vischoose.measure.lock import (
        command_line,  # whom another vischoose waiting for the machine waits for
    )
    from vischoose.paths import home

    return Job(request=request, model=model, mode="", device=device, threads=process.capped_threads(request.threads),
               batch_sizes=batch_sizes, machine=machine.fingerprint(), home=str(home()), machine_kind=machine.kind(),
               command=command_line())


def failed(runs: list[ProfileRun]) -> None:
    """Raise when any row failed (after the table has shown which and why): ProfilingError (exit 1), or, when
    every failure is the same setup error (weights not cached: 3, a model timm cannot build: 2), that error's kind."""
    bad = [r for r in runs if not r.profile.ok]
    if not bad:
        return
    names = ", ".join(dict.fromkeys(r.profile.model for r in bad))
    message = f"{len(bad)} of {len(runs)} profile rows failed ({names}); the error column says why."
    codes = {r.detail.get("setup_exit_code") for r in bad}
    kind = {EXIT_WEIGHTS: WeightsUnavailableError, EXIT_USAGE: UsageError}.get(codes.pop()) if len(codes) == 1 else None
    raise (kind or ProfilingError)(message)


def describe_exit(status: int) -> str:
    """'signal 9 (SIGKILL)' or 'exit code 1'."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = "unknown"
        return f"signal {-status} ({name})"
    return f"exit code {status}"


def crash(result: dict[str, Any], status: int, tail: deque[str]) -> str | None:
    """Why a child stopped before finishing ('crashed: signal 9 ... during latency at batch 1'), or None."""
    if result.get("status") in ("done", "failed", "measured"):  # measured: only the machine peak is missing
        return None
    at = result.get("batch_size")
    error = f"crashed: {describe_exit(status)}" + (" (killed: out of memory?)" if status == -9 else "")
    error += f" during {result['phase']}" + (f" at batch {at}" if at else "")
    last = next((line.strip() for line in reversed(tail) if line.strip()), "")
    return error + (f" ({last[:160]})" if status > 0 and last else "")


def stopped(result: dict[str, Any], status: int, tail: deque[str]) -> str | None:
    """The child's crash, or the error it reported itself, or None when it finished."""
    return crash(result, status, tail) or (result.get("error") if result.get("status") == "failed" else None)


class ChildJob:
    """One model's child processes, for its runtime (torch eager or an exported graph), and its rows."""

    def __init__(self, ref: ModelRef, job: Job, folder: Path) -> None:
        self.ref, self.job, self.folder = ref, job, folder

    def run(self, runner: Runner, progress: Progress | None, debug: bool) -> list[ProfileRun]:
        """The model's rows, one per batch size."""
        batches = list(self.job.batch_sizes)
        is_graph = registry.get(self.job.runtime).is_graph
        result, errors, general = (self._graph if is_graph else self._eager)(batches, runner, progress, debug)
        notes = tuple(result.get("notes", [])) + rows.size_notes(self.ref, result)
        if not is_graph:
            notes += rows.stale_peak(self.ref, self.job, self.job.dtype, result, batches)
        capped = process.cap_note(self.job.threads_requested, self.job.threads, self.job.threads_from)
        notes += (capped,) if capped else ()
        saveable = result.get("error_kind") != "setup"
        return [ProfileRun(rows.profile_row(self.ref, self.job, result, b,
                                            rows.row_error(result, b, errors.get(b) or general)),
                           notes, rows.detail(result, b), saveable) for b in batches]

    def _eager(self, batches: list[int], runner: Runner, progress: Progress | None,
               debug: bool) -> tuple[dict[str, Any], dict[int, str], str | None]:
        """Memory and FLOPs, then timings for the batch sizes that fit."""
        errors: dict[int, str] = {}
        result = self._memory(batches, errors, runner, progress, debug)
        fitting = [b for b in batches if b not in errors and "peak_mb" in (result["memory"].get(str(b)) or {})]
        if not (fitting and result.get("status") == "done"):
            return result, errors, result.get("error")
        timing, status, tail = self.attempt("timing", fitting, runner, progress, debug)
        for key in ("conditions", "peak_gflops_s", "peak_kernel", *TIMING_KEYS):
            if key in timing:
                result[key] = timing[key]
        result["throughput"] = timing.get("throughput", {})
        result["notes"] = list(dict.fromkeys(result.get("notes", []) + timing.get("notes", [])))
        error = stopped(timing, status, tail)
        if error is None:  # cold start, and end to end and layers where asked
            application.run_children(self, result, runner, progress, debug, stopped)
        return result, errors, error

    def _memory(self, pending: list[int], errors: dict[int, str], runner: Runner, progress: Progress | None,
                debug: bool) -> dict[str, Any]:
        """Run the memory child until each batch size is measured or has its error; returns the merged result."""
        merged: dict[str, Any] = {}
        while pending:
            result, status, tail = self.attempt("memory", pending, runner, progress, debug)
            merged = {**merged, **result, "memory": {**merged.get("memory", {}), **result.get("memory", {})}}
            why, retry = crash(result, status, tail), []
            if why:
                at = result.get("batch_size")
                if result["phase"] == "memory" and at:
                    retry = [b for b in pending if b < at]  # the smaller ones may fit
                errors.update({b: why for b in pending if b not in retry})
            pending = retry
        merged.setdefault("throughput", {})
        return merged

    def _graph(self, batches: list[int], runner: Runner, progress: Progress | None,
               debug: bool) -> tuple[dict[str, Any], dict[int, str], str | None]:
        """Build and check the graph, then its memory, then its timings, each in a fresh process."""
        self.job = self.job.but(graph_dir=str(self.folder))
        built, status, tail = self.attempt("build", batches, runner, progress, debug)
        result = {"memory": {}, "throughput": {}, "notes": [], **built}
        error = stopped(built, status, tail)
        if error is None:
            self.job = self.job.but(artifact=built["artifact"])
            for mode in ("memory", "timing"):
                found, status, tail = self.attempt(mode, batches, runner, progress, debug)
                for key in ("memory", "throughput"):
                    result[key].update(found.get(key, {}))
                for key in ("runtime_version", *TIMING_KEYS, *MEMORY_KEYS):
                    if key in found:
                        result[key] = found[key]
                error = stopped(found, status, tail)
                if error:
                    break
        if error is None:  # cold start, and end to end and layers where asked
            application.run_children(self, result, runner, progress, debug, stopped)
        return result, {}, error

    def attempt(self, mode: str, pending: list[int], runner: Runner, progress: Progress | None,
                debug: bool) -> tuple[dict[str, Any], int, deque[str]]:
        """Run one child in `mode` for the pending batch sizes: (its result file, its exit status, its last lines)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        result_path = self.folder / f"result-{mode}-{len(pending)}.json"
        job_path = self.folder / f"job-{mode}-{len(pending)}.json"
        job_path.write_text(self.job.but(batch_sizes=tuple(pending), mode=mode, result_path=str(result_path)).to_json())
        tail: deque[str] = deque(maxlen=20)
        status = runner([sys.executable, "-m", CHILD_MODULE, str(job_path)], process.thread_env(self.job.threads),
                        self._line_sink(tail, progress, debug))
        if result_path.is_file():
            found = json.loads(result_path.read_text())
            if found.get("error_kind") == "busy":  # --no-wait and another measurement holds the machine
                raise MeasurementBusyError(found.get("holder"), found.get("lock", ""))
            return found, status, tail
        return {"phase": "starting", "batch_size": None, "memory": {}, "throughput": {}, "notes": []}, status, tail

    def _line_sink(self, tail: deque[str], progress: Progress | None, debug: bool) -> LineSink:
        """Progress events to `progress`; other lines kept (the last 20) and echoed with VISCHOOSE_DEBUG."""
        start, doing = time.monotonic(), ["starting"]

        def on_line(line: str) -> None:
            if not line.startswith(PROGRESS_PREFIX):
                tail.append(line)
                if debug:
                    sys.stderr.write(line + "\n")
                return
            event = json.loads(line[len(PROGRESS_PREFIX):])
            if event["event"] == "waiting":
                what = waiting_text(event.get("holder"))
            elif event["event"] == "phase":
                doing[0] = event["phase"] + (f" batch {event['batch_size']}" if event.get("batch_size") else "")
                what = doing[0]
            else:
                ci = f", median +-{event['ci_pct']:.1f}%" if event.get("ci_pct") is not None else ""
                what = f"{doing[0]}: {event['n']} runs{ci}"
            if progress:
                progress(self.ref.display, what, time.monotonic() - start)
        return on_line
