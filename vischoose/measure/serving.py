"""MLPerf LoadGen drives the model: the system under test (SUT) and query sample library (QSL) LoadGen calls, its test
settings per scenario (from LoadGen's own mlperf.conf, durations from the budget), and its logs read back.

The SUT is a small inference server: LoadGen's issuing thread puts each query on one FIFO queue; one worker thread per
model instance forms a batch as Triton's dynamic batcher does (up to max_batch requests, waiting at most max_wait
after the first one was issued; wait 0 takes what is queued), copies the images out of the QSL, runs its instance's
forward and reports the queries complete. One batch is formed at a time, by the first free worker. LoadGen counts each
latency from the query's scheduled arrival (Server: queueing included) and judges the run VALID or INVALID itself;
once more queries were late than early stopping allows, the SUT answers the rest at once (the run is INVALID anyway).

Imports numpy and mlperf_loadgen (the `serve` extra) inside the functions; never torch.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from vischoose.measure import serving_search
from vischoose.measure.serving_search import Budget, Run, ServeSettings

if TYPE_CHECKING:
    import numpy as np

MODEL_NAME = "vischoose"  # mlperf.conf has no such model: its "*" lines (seeds, percentiles, 600 s) apply
SAMPLES = 64  # images the QSL holds, all in memory (LoadGen picks among them at random)
BATCH1_CALLS = 30  # service times at batch 1 an instance gives at least (the tail the model draws from)
IDLE_CALLS = 8  # batch-1 forwards timed after serving_search.IDLE_GAP_S with every instance idle
_STOP = None
Forward = Callable[["np.ndarray"], Any]


class SystemUnderTest:
    """LoadGen's SUT: a FIFO queue and one worker thread per model instance, each running its own forward."""

    def __init__(self, forwards: Sequence[Forward], images: "np.ndarray", settings: ServeSettings,
                 thread_start: Callable[[], None] | None = None, inline: bool = False) -> None:
        self.images, self.settings, self.thread_start = images, settings, thread_start
        self.queue: "queue.Queue[Any]" = queue.Queue()
        self.collecting = threading.Lock()  # one batch formed at a time, by the first free worker
        # inline (SingleStream, one instance): the forward runs in LoadGen's issuing thread, no queue in between
        self.inline, self.started_in = (forwards[0] if inline else None), 0
        self.bound_s, self.allowed, self.over, self.abandoned = math.inf, -1, 0, 0  # watch(): a Server run's verdict
        self.workers = [] if inline else [threading.Thread(target=self._work, args=(f,), daemon=True) for f in forwards]
        for worker in self.workers:
            worker.start()

    def watch(self, bound_s: float, allowed: int) -> None:
        """Before a Server run: count the queries answered later than `bound_s` after their issue; once more than
        `allowed` (early stopping's most for the run) are, the run is INVALID whatever follows, and every query is
        answered at once without a forward (abandoned), so an overloaded run ends with its schedule instead of
        draining a backlog for minutes. Issue time is at or after LoadGen's scheduled arrival, so a query late by
        this count is late by LoadGen's too."""
        self.bound_s, self.allowed, self.over, self.abandoned = bound_s, allowed, 0, 0

    @property
    def doomed(self) -> bool:
        """Whether more queries were late than the run may have: it is INVALID."""
        return self.over > self.allowed >= 0

    def issue(self, samples: Sequence[Any]) -> None:
        """LoadGen's IssueQuery: queue each sample with the time it was issued (inline: run it now; a doomed run:
        answer it now)."""
        if self.inline is not None:
            self._run_inline(samples)
            return
        if self.doomed:
            self._complete([(s.id, s.index, 0.0) for s in samples], abandoned=True)
            return
        now = time.perf_counter()
        for s in samples:
            self.queue.put((s.id, s.index, now))

    def _run_inline(self, samples: Sequence[Any]) -> None:
        import mlperf_loadgen as lg

        if self.thread_start and self.started_in != threading.get_ident():
            self.thread_start()  # once, in LoadGen's issuing thread
            self.started_in = threading.get_ident()
        for s in samples:
            self.inline(self.images[s.index:s.index + 1])
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0)])

    def flush(self) -> None:
        """LoadGen's FlushQueries: nothing is held back."""

    def close(self) -> None:
        """Stop the workers (after the queries in flight)."""
        for _ in self.workers:
            self.queue.put(_STOP)
        for worker in self.workers:
            worker.join()

    def _work(self, forward: Forward) -> None:
        import numpy as np

        if self.thread_start:
            self.thread_start()
        while True:
            with self.collecting:
                batch = self._collect()
            if not batch:
                return
            if self.doomed:
                self._complete(batch, abandoned=True)
                continue
            forward(np.take(self.images, [index for _, index, _ in batch], axis=0))
            self._complete(batch)

    def _complete(self, batch: list[Any], abandoned: bool = False) -> None:
        """Tell LoadGen these queries are answered; count those later than the bound (or abandoned)."""
        import mlperf_loadgen as lg

        if abandoned:
            self.abandoned += len(batch)
        else:
            now = time.perf_counter()
            self.over += sum(1 for _, _, issued in batch if now - issued > self.bound_s)
        lg.QuerySamplesComplete([lg.QuerySampleResponse(qid, 0, 0) for qid, _, _ in batch])

    def _collect(self) -> list[Any]:
        """The next batch: the first queued request, then more until max_batch or its wait is over."""
        first = self.queue.get()
        if first is _STOP:
            return []
        batch, deadline = [first], first[2] + self.settings.max_wait_ms / 1e3
        while len(batch) < self.settings.max_batch:
            left = deadline - time.perf_counter()
            try:
                item = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self.queue.put(_STOP)  # for the next worker: this one stops after its batch
                break
            batch.append(item)
        return batch


class LoadGen:
    """One SUT and QSL registered with LoadGen, for a series of tests in this process."""

    def __init__(self, sut: SystemUnderTest, samples: int) -> None:
        import mlperf_loadgen as lg

        self.lg, self.sut = lg, sut
        self.sut_handle = lg.ConstructSUT(sut.issue, sut.flush)
        self.qsl_handle = lg.ConstructQSL(samples, samples, lambda ids: None, lambda ids: None)

    def run(self, settings: Any, outdir: Path) -> dict[str, Any]:
        """Run one test; LoadGen's detail log as a dict, its summary text under "summary", and the wall time."""
        outdir.mkdir(parents=True, exist_ok=True)
        out = self.lg.LogOutputSettings()
        out.outdir, out.copy_summary_to_stdout = str(outdir), False
        log = self.lg.LogSettings()
        log.log_output, log.enable_trace = out, False
        begin = time.monotonic()
        self.lg.StartTestWithLogSettings(self.sut_handle, self.qsl_handle, settings, log)
        found = read_detail(outdir / "mlperf_log_detail.txt")
        found["summary"] = (outdir / "mlperf_log_summary.txt").read_text(errors="replace")
        found["wall_s"] = time.monotonic() - begin
        return found

    def close(self) -> None:
        """Unregister the QSL and SUT."""
        self.lg.DestroyQSL(self.qsl_handle)
        self.lg.DestroySUT(self.sut_handle)


def read_detail(path: Path) -> dict[str, Any]:
    """LoadGen's detail log (':::MLLOG {json}' lines) as key -> value (the last value of a repeated key)."""
    found: dict[str, Any] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(":::MLLOG "):
            try:
                item = json.loads(line[len(":::MLLOG "):])
            except json.JSONDecodeError:
                continue
            found[item.get("key", "")] = item.get("value")
    return found


def mlperf_settings(scenario: str) -> Any:
    """TestSettings for a scenario ("SingleStream", "Offline", "Server") from LoadGen's own mlperf.conf: its seeds,
    percentiles (p90 single-stream, p99 server) and minimum duration (600 s), in performance mode."""
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    settings.FromConfig("", MODEL_NAME, scenario, 0)  # conf_type 0: the mlperf.conf built into LoadGen
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.PerformanceOnly
    return settings


def server_settings(qps: float, slo_ms: float, budget: Budget) -> Any:
    """A Server test at `qps` Poisson arrivals, p99 bound `slo_ms`, with the budget's queries and duration."""
    settings = mlperf_settings("Server")
    settings.server_target_qps = float(qps)
    settings.server_target_latency_ns = int(slo_ms * 1e6)
    settings.min_query_count = budget.queries(qps) if not budget.official else budget.min_queries
    if not budget.official:
        settings.min_duration_ms = int(budget.min_duration_s * 1e3)
    if budget.max_run_s:
        settings.max_duration_ms = int(budget.max_run_s * 1e3)
    return settings


def single_stream_settings(min_queries: int, min_duration_s: float, expected_ms: float) -> Any:
    """A SingleStream test: one query at a time, the next issued when it completes; p90 reported."""
    settings = mlperf_settings("SingleStream")
    settings.min_query_count, settings.min_duration_ms = min_queries, int(min_duration_s * 1e3)
    settings.single_stream_expected_latency_ns = int(expected_ms * 1e6)
    return settings


def to_run(qps: float, found: dict[str, Any]) -> Run:
    """A Run from a Server test's detail log (latencies in ms)."""
    def ms(key: str) -> float | None:
        value = found.get(key)
        return None if value is None else float(value) / 1e6

    return Run(target_qps=qps, valid=found.get("result_validity") == "VALID",
               queries=int(found.get("result_query_count") or 0), p50_ms=ms("result_50.00_percentile_latency_ns"),
               p90_ms=ms("result_90.00_percentile_latency_ns"), p99_ms=ms("result_99.00_percentile_latency_ns"),
               scheduled_qps=found.get("result_scheduled_samples_per_sec"),
               completed_qps=found.get("result_completed_samples_per_sec"),
               overlatency=found.get("result_overlatency_query_count"),
               early_stopping_met=bool(found.get("early_stopping_met")),
               early_stopping=" ".join(str(found.get("early_stopping_result", "")).replace("*", "").split()),
               invalid_reason=str(found.get("result_invalid_reason", "")).strip(),
               summary=found.get("summary", ""), wall_s=float(found.get("wall_s", 0.0)))


def loadgen_version(found: dict[str, Any]) -> str:
    """'6.0.17' from the detail log's loadgen_version ('6.0.17 @ d6147c7eb7')."""
    return str(found.get("loadgen_version", "")).split(" ")[0]


def server_run(harness: LoadGen, qps: float, slo_ms: float, budget: Budget, outdir: Path) -> tuple[Run, str]:
    """One Server test at `qps`: the Run and LoadGen's version. The run is cut short once it is certainly INVALID
    (SystemUnderTest.watch); the Run then says how many queries were answered without a forward."""
    spare = math.ceil(1.1 * budget.queries(qps))  # LoadGen may issue a few more than asked: 10% to spare
    harness.sut.watch(slo_ms / 1e3, serving_search.allowed_overlatency(spare))
    found = harness.run(server_settings(qps, slo_ms, budget), outdir)
    return replace(to_run(qps, found), abandoned=harness.sut.abandoned), loadgen_version(found)


def single_stream_p90(harness: LoadGen, min_queries: int, min_duration_s: float, expected_ms: float,
                      outdir: Path) -> dict[str, Any]:
    """LoadGen's SingleStream p50/p90 (ms), its validity and query count."""
    found = harness.run(single_stream_settings(min_queries, min_duration_s, expected_ms), outdir)
    return {"p50_ms": float(found["result_50.00_percentile_latency_ns"]) / 1e6,
            "p90_ms": float(found["result_90.00_percentile_latency_ns"]) / 1e6,
            "valid": found.get("result_validity") == "VALID", "queries": found.get("result_query_count"),
            "loadgen_version": loadgen_version(found), "summary": found.get("summary", "")}


def service_times(forwards: Sequence[Forward], images: "np.ndarray", batch: int, seconds: float, warmup: int = 1,
                  min_calls: int = 3, thread_start: Callable[[], None] | None = None) -> list[float]:
    """Seconds per call (the batch copied out of the images, then the forward) with every instance running at once,
    as under load: each instance warms up, then all are timed for `seconds` and at least `min_calls` calls each."""
    import numpy as np

    ready, stop, found, lock = threading.Barrier(len(forwards) + 1), threading.Event(), [], threading.Lock()
    picks = np.random.default_rng(batch).integers(0, len(images), size=batch)

    def loop(forward: Forward) -> None:
        if thread_start:
            thread_start()
        for _ in range(warmup):
            forward(np.take(images, picks, axis=0))
        ready.wait()
        calls = 0
        while not stop.is_set() or calls < min_calls:
            begin = time.perf_counter()
            forward(np.take(images, picks, axis=0))
            with lock:
                found.append(time.perf_counter() - begin)
            calls += 1

    threads = [threading.Thread(target=loop, args=(f,), daemon=True) for f in forwards]
    for t in threads:
        t.start()
    ready.wait()  # every instance warmed up: time them together
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return found


def idle_times(forwards: Sequence[Forward], images: "np.ndarray", calls: int = IDLE_CALLS,
               gap_s: float = serving_search.IDLE_GAP_S, thread_start: Callable[[], None] | None = None) -> list[float]:
    """Seconds of batch-1 forwards that each follow `gap_s` with every instance idle (the instances taking turns, each
    from a thread of its own as when serving): what a request that finds the server idle waits for its forward."""
    found: list[float] = []
    one = images[:1]

    def loop(forward: Forward, turns: int) -> None:
        if thread_start:
            thread_start()
        forward(one)  # warmed up (the session's first call is not what an idle server pays)
        for _ in range(turns):
            time.sleep(gap_s)
            begin = time.perf_counter()
            forward(one)
            found.append(time.perf_counter() - begin)

    share = -(-calls // len(forwards))
    for forward in forwards:  # one instance at a time: the others stay idle
        worker = threading.Thread(target=loop, args=(forward, share), daemon=True)
        worker.start()
        worker.join()
    return found


def idle_calls(ladder: dict[int, list[float]], slo_ms: float) -> int:
    """How many idle forwards idle_times takes: IDLE_TAIL_CALLS where batch 1's tail decides the bound (a lone
    request's tail over it is what early stopping counts at low rates), else IDLE_CALLS (their median)."""
    tail = serving_search.tail_decides(ladder.get(1, []), slo_ms)
    return serving_search.IDLE_TAIL_CALLS if tail else IDLE_CALLS


def service_ladder(forwards: Sequence[Forward], images: "np.ndarray", slo_ms: float, max_batch: int, seconds: float,
                   thread_start: Callable[[], None] | None = None,
                   on_size: Callable[[int], None] | None = None) -> dict[int, list[float]]:
    """Service times (s) of every instance at once at batch 1, 2, 4, ... (serving_search.next_batch decides how far).
    Batch 1 gets twice the time and at least BATCH1_CALLS calls an instance: its tail decides tight bounds; where the
    bound is near one forward's time (serving_search.tail_decides), batch 1 is timed on to TAIL_CALLS forwards (at
    most TAIL_SECONDS more). The idle pace is idle_times'."""
    found: dict[int, list[float]] = {}
    batch = serving_search.next_batch(found, len(forwards), slo_ms, max_batch)
    while batch is not None:
        if on_size:
            on_size(batch)
        first = batch == 1
        found[batch] = service_times(forwards, images, batch, 2 * seconds if first else seconds,
                                     min_calls=BATCH1_CALLS if first else 3, thread_start=thread_start)
        if first and serving_search.tail_decides(found[1], slo_ms):
            found[1] += _tail(forwards, images, found[1], thread_start)
        batch = serving_search.next_batch(found, len(forwards), slo_ms, max_batch)
    return found


def _tail(forwards: Sequence[Forward], images: "np.ndarray", timed: list[float],
          thread_start: Callable[[], None] | None) -> list[float]:
    """More batch-1 service times, to serving_search.TAIL_CALLS in all (at most TAIL_SECONDS)."""
    more = serving_search.TAIL_CALLS - len(timed)
    if more <= 0:
        return []
    per_s = len(forwards) * len(timed) / math.fsum(timed)  # forwards a second, every instance at once
    more = min(more, math.ceil(per_s * serving_search.TAIL_SECONDS))
    return service_times(forwards, images, 1, 0.0, warmup=0, min_calls=-(-more // len(forwards)),
                         thread_start=thread_start)


def verify_with_loadgen(forwards: Sequence[Forward], images: "np.ndarray", settings: ServeSettings, start_qps: float,
                        slo_ms: float, budget: Budget, seconds_left: float, outdir: Path,
                        thread_start: Callable[[], None] | None = None, on_run: Callable[[float], None] | None = None,
                        on_result: Callable[[Run, str], None] | None = None, whole_s: float = 0.0,
                        on_late: Callable[[float], None] | None = None) -> list[Run]:
    """Serve `settings` to LoadGen's Server scenario at the rates serving_search.verify asks for, from `start_qps`;
    the runs as LoadGen judged them (on_run hears each rate before its run, on_result each run and LoadGen's
    version after it)."""
    sut = SystemUnderTest(forwards, images, settings, thread_start)
    harness = LoadGen(sut, len(images))
    deadline, count = time.monotonic() + seconds_left, [0]

    def run(qps: float) -> Run:
        if on_run:
            on_run(qps)
        done, version = server_run(harness, qps, slo_ms, budget, outdir / f"run-{count[0]}")
        count[0] += 1
        if on_result:
            on_result(done, version)
        return done

    try:
        return serving_search.verify(run, start_qps, budget, lambda: deadline - time.monotonic(), whole_s=whole_s,
                                     on_late=on_late)
    finally:
        harness.close()
        sut.close()


def search_in_process(make_forwards: Callable[[int, int], Sequence[Forward]], images: "np.ndarray", cores: int,
                      slo_ms: float, budget: Budget, outdir: Path, max_batch: int = 32, seconds_per_size: float = 1.0,
                      seconds_left: float = 600.0) -> serving_search.Outcome:
    """The whole server search in this process, for any forward (make_forwards(instances, threads) returns that many
    callables, each using `threads` threads): the profiles, the prediction, the LoadGen runs. profile --scenario
    server runs the same steps in child processes (measure.serving_runner); this serves any callable, and tests."""
    plans, deadline = serving_search.instance_plans(cores), time.monotonic() + seconds_left

    def predict(instances: int, threads: int) -> serving_search.Prediction:
        forwards = make_forwards(instances, threads)
        found = service_ladder(forwards, images, slo_ms, max_batch, seconds_per_size)
        service = serving_search.Service(found, idle_times(forwards, images, idle_calls(found, slo_ms)))
        return serving_search.best_prediction(instances, threads, service, slo_ms, budget,
                                              max(deadline - time.monotonic(), 0.0))

    def verify(chosen: serving_search.Prediction, optional: bool) -> list[Run]:
        s = chosen.settings
        return verify_with_loadgen(make_forwards(s.instances, s.threads), images, s, chosen.qps, slo_ms,
                                   chosen.runs_budget(budget),
                                   max(deadline - time.monotonic(), 0.0), outdir / f"{s.instances}x{s.threads}",
                                   whole_s=0.0 if optional else seconds_left)

    return serving_search.search(plans, predict, verify)
