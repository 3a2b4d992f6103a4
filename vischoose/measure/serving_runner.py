"""`profile --scenario server`: per model and deployed variant, the highest Poisson rate whose MLPerf LoadGen Server
run is VALID under a p99 bound, the serving settings that reached it, and the Profile row that keeps it (the parent
side: the children are measure.serving_child's modes, the search measure.serving_search).

A graph runtime's file is built and checked first (the "build" child every profile runs). Then one "serve-profile"
child per instance count (the usable cores split between the instances, never more threads in total), fewest first
while the queueing model predicts 5% more, and one "serve-verify" child serving the best predicted setting to LoadGen.
The row keeps every LoadGen run with the model's curve (results plot) and the summary of the reported run.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from vischoose.errors import UsageError, opt
from vischoose.measure import process, rows, serving_search
from vischoose.measure.options import check_models, resolve_device
from vischoose.measure.protocol import Job, new_result
from vischoose.measure.runner import (
    ChildJob,
    Keep,
    ProfileRun,
    Progress,
    Runner,
    article_models,
    new_job,
    run_child,
    stopped,
)
from vischoose.measure.serving_search import (
    Budget,
    Outcome,
    Prediction,
    Run,
    ServeSettings,
    Service,
)
from vischoose.models import catalog
from vischoose.models.catalog import ModelRef
from vischoose.requests.profile import SERVER, ProfileRequest, require_loadgen
from vischoose.runtimes import registry

SECONDS_PER_SIZE = 1.0  # timed seconds per batch size when profiling service times
MAX_BATCH = 32  # dynamic batching: the largest batch the search tries


def budget_of(request: ProfileRequest) -> Budget:
    """Queries and seconds each LoadGen run gets: vischoose's, or MLPerf's with request.official."""
    return serving_search.OFFICIAL_BUDGET if request.official else serving_search.DEFAULT_BUDGET


def chosen_budget(request: ProfileRequest, outcome: Outcome | None) -> Budget:
    """The budget of the chosen setting's LoadGen runs: the request's, or the longer runs its prediction needed."""
    default = budget_of(request)
    return outcome.chosen.runs_budget(default) if outcome and outcome.chosen else default


def serve_models(request: ProfileRequest, progress: Progress | None = None, runner: Runner = run_child,
                 debug: bool = False, keep: Keep | None = None) -> list[ProfileRun]:
    """The server scenario (request.scenario "server"): search each model's sustained rate under request.slo_ms, the
    whole search within request.time_budget_s; one ProfileRun per model. keep hears each model's saveable row when
    its search ends, so an interruption loses only the model in progress.

    Raises:
        UsageError (not the server scenario, a GPU device, an unknown model), MissingExtraError (LoadGen).
    """
    if request.scenario != SERVER or request.slo_ms is None:
        raise UsageError(f"The server search needs {opt('scenario')} {SERVER} and {opt('slo_ms')}.",
                         field="scenario")
    require_loadgen()
    device = "cpu" if registry.get(request.runtime).is_graph else resolve_device(request.device)
    if device != "cpu":
        raise UsageError(f"{opt('scenario')} {SERVER} measures CPU serving here (instances share the cores), not "
                         f"{device}.", hint=f"Add {opt('device')} cpu.", field="device")
    refs = [catalog.parse_model_ref(m) for m in request.models or article_models()]
    check_models(refs)
    runs: list[ProfileRun] = []
    with tempfile.TemporaryDirectory(prefix="vischoose-serve-") as tmp:
        for i, ref in enumerate(refs):
            run = ServerSearch(ref, new_job(request, ref.text, "cpu", (1,)), Path(tmp) / str(i), runner, progress,
                               debug).run()
            if keep is not None and run.saveable:
                keep([run.profile])
            runs.append(run)
    return runs


class ServerSearch:
    """One model's server search: build, profile each instance count, verify the best with LoadGen, the row."""

    def __init__(self, ref: ModelRef, job: Job, folder: Path, runner: Runner, progress: Progress | None,
                 debug: bool) -> None:
        self.ref, self.job, self.request, self.folder = ref, job, job.request, folder
        self.budget = budget_of(job.request)
        self.runner, self.progress, self.debug = runner, progress, debug
        self.cores = job.threads  # every thread the instances may use together
        self.start, self.error = time.monotonic(), None
        self.facts: dict[str, Any] = {}  # what the children said about the model (and the graph's build)
        self.services: dict[tuple[int, int], Service] = {}
        self.verified: dict[str, Any] = {}  # single_stream's child
        self.verifications: dict[tuple[int, int], dict[str, Any]] = {}  # (instances, threads) -> its verify child
        self.others: dict[str, dict[str, Any]] = {}  # per timed child: what the rest of the machine took meanwhile

    def run(self) -> ProfileRun:
        """The search's row (its error, when a child failed)."""
        self.error = self._build()
        outcome = None
        if self.error is None:
            outcome = serving_search.search(serving_search.instance_plans(self.cores), self._predict, self._verify)
        return self._row(outcome)

    def _attempt(self, mode: str, name: str, threads: int, serve: dict[str, Any]) -> dict[str, Any]:
        """Run one child; its result (a failure sets self.error)."""
        child = ChildJob(self.ref, self.job.but(threads=threads, serve=serve), self.folder / name)
        result, status, tail = child.attempt(mode, [1], self.runner, self.progress, self.debug)
        self.error = self.error or stopped(result, status, tail)
        for key in ("model", "conditions", "runtime_version", "error_kind", "exit_code"):
            if key in result:
                self.facts[key] = result[key]
        self.facts["notes"] = list(dict.fromkeys(self.facts.get("notes", []) + result.get("notes", [])))
        if result.get("others"):
            self.others[name] = result["others"]
        return result

    def single_stream(self, seconds: float, min_queries: int) -> dict[str, Any]:
        """vischoose's batch-1 timing and LoadGen's SingleStream on one session (one instance, every thread): the
        "serve-single-stream" child's result, with the error when one failed."""
        if self._build() is None:
            self.verified = self._attempt("serve-single-stream", "single-stream", self.cores, {
                "instances": 1, "threads": self.cores, "seconds": seconds, "min_queries": min_queries})
        return {**self.facts, **self.verified, "error": self.error}

    def _build(self) -> str | None:
        """A graph runtime's file, built and checked as every profile builds it (torch: nothing to build)."""
        if not registry.get(self.request.runtime).is_graph:
            return None
        self.job = self.job.but(graph_dir=str(self.folder / "build"), max_batch=MAX_BATCH)  # batches it may form
        built = self._attempt("build", "build", self.job.threads, {})
        if self.error is None:
            self.job = self.job.but(artifact=built["artifact"])
        self.facts.update({k: built[k] for k in ("graph_facts", "flops_per_image", "peak_gflops_s") if k in built})
        return self.error

    def _predict(self, instances: int, threads: int) -> Prediction:
        """Profile the service times at this instance count; the model's best batching setting there."""
        settings, slo_ms = ServeSettings(instances, threads), self.request.slo_ms or 0.0
        if self.error is not None:
            return Prediction(settings, 0.0, 0.0)
        result = self._attempt("serve-profile", f"profile-{instances}", threads, {
            "instances": instances, "threads": threads, "slo_ms": slo_ms, "max_batch": MAX_BATCH,
            "seconds_per_size": SECONDS_PER_SIZE})
        if self.error is not None or not result.get("service"):
            return Prediction(settings, 0.0, 0.0)
        service = Service({int(b): v for b, v in result["service"].items()}, result.get("service_idle") or ())
        self.services[(instances, threads)] = service
        left = max(self.request.time_budget_s - (time.monotonic() - self.start), 0.0)
        return serving_search.best_prediction(instances, threads, service, slo_ms, self.budget, left)

    def _verify(self, chosen: Prediction, optional: bool = False) -> list[Run]:
        """A setting served to LoadGen at the rates the search asks for (a child of its own per setting). optional (the
        runner-up): its runs must fit the time left, and a child that fails leaves a note, not the row's error."""
        s = chosen.settings
        key = (s.instances, s.threads)
        if self.error is not None:
            return []
        left = max(self.request.time_budget_s - (time.monotonic() - self.start), 0.0)
        whole, budget = 0.0 if optional else self.request.time_budget_s, chosen.runs_budget(self.budget)
        if not serving_search.fits(budget, chosen.qps, left, whole, any_valid=optional):
            self.verifications[key] = {"late_qps": chosen.qps}  # its first run would outlast the search (no_rate)
            return []
        facts = dict(self.facts)
        found = self._attempt("serve-verify", f"verify-{s.instances}x{s.threads}", s.threads, {
            "instances": s.instances, "threads": s.threads, "settings": s.to_dict(), "start_qps": chosen.qps,
            "slo_ms": self.request.slo_ms, "budget": asdict(budget), "seconds_left": left, "whole_s": whole})
        if optional and self.error is not None:  # the chosen setting's row stands; the runner-up is only named
            self.facts = {**facts, "notes": facts.get("notes", []) + [f"{self.ref.display}: {s.label} not verified: "
                                                                      f"{self.error}"]}
            self.error = None
            return []
        self.verifications[key] = found
        return [Run.from_dict(r) for r in found.get("runs", [])]

    def _row(self, outcome: Outcome | None) -> ProfileRun:
        """The model's server row, with the search's predictions and runs as its detail."""
        result = {**new_result(), **self.facts}
        chosen = outcome.chosen.settings if outcome and outcome.chosen else ServeSettings(1, self.cores)
        row = rows.profile_row(self.ref, self.job.but(threads=chosen.threads), result, chosen.max_batch, self.error)
        verified = self.verifications.get((chosen.instances, chosen.threads), {})  # the chosen setting's child
        fields = server_fields(self.request, outcome, self.services, verified, time.monotonic() - self.start)
        row = replace(row, threads=chosen.threads, **fields, **machine_load(self.others))
        notes = tuple(self.facts.get("notes", [])) + serve_notes(self.request, outcome, row)
        capped = process.cap_note(self.job.threads_requested, self.cores, self.job.threads_from)
        detail = {"setup_exit_code": self.facts.get("exit_code"), "serve": outcome_dict(outcome, self.services)}
        return ProfileRun(row, notes + ((capped,) if capped else ()), detail, self.facts.get("error_kind") != "setup")


def server_fields(request: ProfileRequest, outcome: Outcome | None, services: dict[tuple[int, int], Service],
                  verified: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    """The Profile fields of a server search: the sustained run, its settings, the budget, the curve, the summary."""
    budget, best = chosen_budget(request, outcome), outcome.best if outcome else None
    s = outcome.chosen.settings if outcome and outcome.chosen else None
    fields: dict[str, Any] = {
        "scenario": SERVER, "slo_ms": request.slo_ms, "serve_min_queries": budget.min_queries,
        "serve_min_duration_s": budget.min_duration_s, "serve_official": budget.official,
        "serve_runs": len(outcome.runs) if outcome else 0, "serve_search_s": elapsed_s,
        "loadgen_version": verified.get("loadgen_version"), "serve_curve": curve_json(request, outcome, services)}
    if s is not None:
        fields.update(serve_instances=s.instances, serve_threads=s.threads, serve_max_batch=s.max_batch,
                      serve_max_wait_ms=s.max_wait_ms)
    if best is None:
        note = no_rate(request, outcome, services, verified.get("late_qps"))
        return {**fields, "serve_valid": False if outcome else None, "serve_note": note}
    return {**fields, "serve_qps": best.scheduled_qps or best.target_qps, "serve_target_qps": best.target_qps,
            "serve_p50_ms": best.p50_ms, "serve_p90_ms": best.p90_ms, "serve_p99_ms": best.p99_ms,
            "serve_valid": True, "serve_early_stopping": best.early_stopping, "loadgen_summary": best.summary}


def machine_load(others: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The row's others_cpu_cores (the most the rest of the machine took during one of the search's timed children,
    cores) and contended (the children others took too much of: the row is then never reused as measured)."""
    taken = [o["others_cores"] for o in others.values() if o.get("others_cores") is not None]
    contended = "; ".join(f"{name}: {o['contended']}" for name, o in others.items() if o.get("contended"))
    return {"others_cpu_cores": max(taken) if taken else None, "contended": contended or None}


def no_rate(request: ProfileRequest, outcome: Outcome | None, services: dict[tuple[int, int], Service],
            waiting: float | None = None) -> str | None:
    """Why no rate was sustained: the bound below one forward's time, every LoadGen run INVALID, or the next run
    (at `waiting` QPS) too long for the time budget."""
    if outcome is None or outcome.chosen is None:
        return None
    if outcome.chosen.qps <= 0:
        return (f"no rate keeps p99 <= {request.slo_ms:.3g} ms"
                f"{alone_text(services, request.slo_ms or 0.0, budget_of(request))}; no LoadGen run was made")
    budget = chosen_budget(request, outcome)
    late = ""
    if waiting:
        took = budget.seconds(waiting)
        slow = ("; at a bound near one forward's own time almost no request may wait, so the rate is low and a run "
                "long" if took > budget.min_duration_s else "")
        late = (f"a run at {waiting:.3g} QPS needs {budget.queries(waiting):,} queries, about "
                f"{f'{took / 60:,.0f} min' if took >= 120 else f'{took:.0f} s'}, more than --time-budget "
                f"{request.time_budget_s:g} s leaves it (raise it{slow})")
    if not outcome.runs:
        return "no LoadGen run was made" + (f": {late}" if late else "")
    low = min(outcome.runs, key=lambda r: r.target_qps)
    why = low.invalid_reason or low.early_stopping or "INVALID"
    return f"no LoadGen run was VALID (the lowest, {low.target_qps:.3g} QPS: {why})" + (f"; {late}" if late else "")


def alone_text(services: dict[tuple[int, int], Service], slo_ms: float, budget: Budget) -> str:
    """': 5 of 200 batch-1 forwards timed on a server idle 50 ms (how a request arriving at a low rate finds it) are
    over it, p99 16.1 ms, more than early stopping lets over it in runs of 5,000 queries (33, 0.66%)' (the setting
    with the fewest over)."""
    bound = slo_ms / 1e3
    lone = [found for found in (s.lone() for s in services.values()) if found[0]]
    if not lone:
        return ""
    times, idle = min(lone, key=lambda found: sum(1 for v in found[0] if v > bound) / len(found[0]))
    gap = f"{1e3 * serving_search.IDLE_GAP_S:g} ms"
    how = (f"on a server idle {gap}" if idle else
           f"back to back (plus what the median forward after {gap} idle took more)")
    queries = budget.min_queries if budget.official else max(serving_search.LONGER_RUNS + (budget.min_queries,))
    allowed = serving_search.allowed_overlatency(queries)
    return (f": {sum(1 for v in times if v > bound):,} of {len(times):,} batch-1 forwards timed {how} are over it (how "
            f"a request arriving at a low rate finds the server), p99 "
            f"{1e3 * serving_search.percentile(times, serving_search.PERCENTILE):,.1f} ms, more than early stopping "
            f"lets over it in runs of {queries:,} queries ({allowed}, {100 * allowed / queries:.2g}%)")


def curve_json(request: ProfileRequest, outcome: Outcome | None, services: dict[tuple[int, int], Service]) -> str | None:
    """Every LoadGen run [offered QPS, p50, p90, p99 ms, valid] and the queueing model's [QPS, p50, p99 ms] curve of the
    chosen setting, as JSON (results plot draws them)."""
    if outcome is None or outcome.chosen is None:
        return None
    s = outcome.chosen.settings
    runs = [[r.target_qps, *((None,) * 3 if r.abandoned else (r.p50_ms, r.p90_ms, r.p99_ms)), r.valid]
            for r in outcome.runs]  # a run cut short: its percentiles are not the system's (not drawn)
    service = services.get((s.instances, s.threads))
    model: list[list[float]] = []
    if service is not None and outcome.chosen.capacity > 0:
        top = max([outcome.chosen.capacity] + [r.target_qps for r in outcome.runs])
        budget = chosen_budget(request, outcome)
        model = serving_search.Model(service, request.slo_ms or 0.0, budget, 3000).curve(s, top, 10)
    return json.dumps({"runs": runs, "model": model, "settings": s.label})


def serve_notes(request: ProfileRequest, outcome: Outcome | None, row: Any) -> tuple[str, ...]:
    """What the table says under a server row: the budget, the settings tried and the prediction against LoadGen."""
    if outcome is None or outcome.chosen is None:
        return ()
    tried = "; ".join(f"{p.settings.label}: {p.qps:,.1f} QPS predicted" for p in outcome.predictions)
    budget = chosen_budget(request, outcome)
    verified = (f"{outcome.chosen.settings.label} verified by {len(outcome.runs)} LoadGen run(s)" if outcome.runs else
                "no LoadGen run made" if outcome.chosen.qps <= 0 else
                f"{outcome.chosen.settings.label} not verified (its first run would outlast the time budget)")
    notes = [f"{row.model}: {budget.text()}; settings predicted by a queueing model of the measured service "
             f"times ({tried}), {verified}; the search took {row.serve_search_s:.0f} s"]
    cut = [r for r in outcome.runs if r.abandoned]
    if cut:
        notes.append(f"{row.model}: {len(cut)} INVALID run(s) cut short once more queries were late than early "
                     f"stopping allows ({', '.join(f'{r.target_qps:,.1f} QPS: {r.abandoned:,}' for r in cut)} "
                     f"answered without a forward; their percentiles stop there)")
    best = outcome.best
    if best is not None and outcome.chosen.qps > 0:
        notes.append(f"{row.model}: LoadGen sustained {best.target_qps:,.1f} QPS, "
                     f"{best.target_qps / outcome.chosen.qps:.2f}x the model's prediction")
    for other, runs in outcome.also:
        got = serving_search.sustained(runs)
        said = f"sustained {got.target_qps:,.1f} QPS" if got else "no run VALID"
        notes.append(f"{row.model}: {other.settings.label} verified too ({other.qps:,.1f} QPS predicted, {said} in "
                     f"{len(runs)} run(s)), not chosen")
    return tuple(notes)


def outcome_dict(outcome: Outcome | None, services: dict[tuple[int, int], Service] | None = None) -> dict[str, Any] | None:
    """The search as JSON (profile --json's measurement detail), with the mean service times measured per setting
    ("2x1" -> batch -> ms; serving_search.ceiling reads them back with service_means)."""
    if outcome is None:
        return None
    means = {f"{n}x{t}": {str(b): 1e3 * s.means[b] for b in s.sizes} for (n, t), s in (services or {}).items()}
    return {"predictions": [p.to_dict() for p in outcome.predictions], "service_mean_ms": means,
            "chosen": outcome.chosen.to_dict() if outcome.chosen else None,
            "runs": _runs_json(outcome.runs),
            "also_verified": [{"prediction": p.to_dict(), "runs": _runs_json(runs)} for p, runs in outcome.also]}


def _runs_json(runs: list[Run]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.to_dict().items() if k != "summary"} for r in runs]


def service_means(serve: dict[str, Any]) -> dict[tuple[int, int], dict[int, float]]:
    """outcome_dict's service_mean_ms back as (instances, threads) -> batch -> seconds."""
    found = {}
    for plan, sizes in (serve.get("service_mean_ms") or {}).items():
        n, _, t = plan.partition("x")
        found[(int(n), int(t))] = {int(b): ms / 1e3 for b, ms in sizes.items()}
    return found


def compare_single_stream(request: ProfileRequest, seconds: float = 10.0, min_queries: int = 500,
                          runner: Runner = run_child) -> dict[str, Any]:
    """vischoose's batch-1 latency and LoadGen's SingleStream p90 on the same session, in one child, for the request's
    first model (bench/serving.py): result["vischoose"] (ms summary) and result["loadgen"] (p50/p90 ms, validity,
    summary)."""
    require_loadgen("single-stream")
    ref = catalog.parse_model_ref((request.models or tuple(article_models()))[0])
    with tempfile.TemporaryDirectory(prefix="vischoose-single-stream-") as tmp:
        search = ServerSearch(ref, new_job(request, ref.text, "cpu", (1,)), Path(tmp), runner, None, False)
        return search.single_stream(seconds, min_queries)
