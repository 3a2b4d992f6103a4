"""recommend end to end: preset + overrides, figures from the store or exported files, optional measuring."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from vischoose import paths, presets
from vischoose.errors import UsageError, opt
from vischoose.models import catalog
from vischoose.recommendation import selection, wording
from vischoose.recommendation.candidates import build_candidates
from vischoose.recommendation.choose import Recommendation, recommend
from vischoose.recommendation.figures import Deployable, Known
from vischoose.requests.recommend import RecommendRequest
from vischoose.runtimes import registry
from vischoose.runtimes.precision import Variant

if TYPE_CHECKING:
    from vischoose.models.zoo import Zoo
    from vischoose.recommendation import measuring, ondata
    from vischoose.records import EvalResult, Profile
    from vischoose.requests.profile import ProfileRequest

Progress = Callable[[str, str, float], None]  # (what is measured, its phase, seconds since it started)
Measured = "tuple[list[Profile], list[str], list[tuple[str, str]]]"  # (profiles, log lines, (model, why not measured))


class Bar(Protocol):
    """A progress bar for one evaluation: called with (images done, images in all), closed when it ends."""

    def __call__(self, done: int, total: int) -> None: ...

    def close(self) -> None: ...


def advise(request: RecommendRequest, progress: Progress | None = None, bar: Callable[[str], Bar] | None = None,
           figures: tuple[list[Profile], list[EvalResult]] | None = None,
           measure_with: "Callable[[presets.Preset], measuring.Measure] | None" = None) -> Recommendation:
    """Recommend a model for a target preset, using measured figures where this machine (or request.results) has
    them; measuring what can change the answer (request.measure), evaluating on labelled images (request.data) and
    judging each model as a service at the preset's [serve] bound (request.serving: recommendation.serving, ranked by
    cost per million images) as asked. progress hears each measurement's phases; bar(label) makes a progress bar for
    each evaluation. figures: the (profiles, evaluations) to judge by instead of this machine's (the fleet: one kind
    of machine's); measure_with: given the target's preset, what measures for request.measure instead of this machine
    (the fleet: that kind's node).

    Raises:
        PresetError, UnknownModelError, StoreError, NoModelFitsError, UsageError, DatasetError.
    """
    preset, world = _preset(request), known()
    chosen = selection.select(request, preset, world)
    entries, extra = chosen.entries, chosen.extra
    dataset = _dataset(request)  # a bad data set fails here, before anything is measured
    profiles, evals = figures if figures is not None else _figures(request.results)
    evals = shippable(evals, dataset)
    lines, skipped = _unused_limit(preset, dataset), []
    if request.measure:
        if request.serving:
            profiles, lines, skipped = _measure_services(request, preset, entries, extra, profiles, evals, world,
                                                         lines, progress)
        else:
            profiles, lines, skipped = _measure_profiles(request, preset, entries, extra, profiles, evals, world,
                                                         lines, progress, measure_with)

    def rank(found: list[EvalResult]) -> Recommendation:
        cands = build_candidates(entries, preset, profiles, found, world, extra)
        if request.serving:
            from vischoose.recommendation import serving

            return recommend(serving.judge(cands, preset, profiles), serving.ranked(preset))
        return recommend(cands, preset)

    if dataset is None:
        rec = rank(evals)
    else:
        from vischoose.recommendation import ondata

        evals, evaluated = ondata.settle(rank, preset, dataset, evals, _evaluator(bar), request.fresh)
        lines += [f"evaluated on {dataset.path} ({dataset.images} images): {line}" for line in evaluated]
        rec = rank(evals)
        rec = rec._replace(notes=rec.notes + tuple(ondata.separation_notes(rec, evals)))
    here, gpu_note = _runs_here(preset, request.results)
    rec = rec._replace(notes=rec.notes + chosen.notes + tuple(wording.selection_notes(rec, chosen.others))
                       + tuple(_flagged(entries, extra, preset, profiles)) + gpu_note, unmeasured_why=tuple(skipped),
                       runs_here=here)
    return rec._replace(measure_log=tuple(lines)) if lines else rec


def _runs_here(preset: presets.Preset, results: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """Where the target's device resolves on this machine ('auto': a GPU if there is one), and, for a GPU target on a
    machine without one, the note that its figures are published GPU figures and measuring needs a GPU (with --results
    the figures come from the deployment machine: nothing to say)."""
    device = preset.measure.device
    if device == "cpu" or results:
        return "", ()
    from vischoose import machine

    gpus = machine.gpu_names()
    if gpus:
        return ("cuda here: " + ", ".join(gpus)) if device == "auto" else "", ()
    where = "cpu here: no CUDA device" if device == "auto" else "no CUDA device here"
    return where, (wording.no_gpu_note(preset),)


def _flagged(entries: list[catalog.CatalogEntry], extra: list[tuple[str, str]], preset: presets.Preset,
             profiles: list[Profile]) -> list[str]:
    """Lines for the candidates whose timings here are flagged and not reused (recommendation.reuse)."""
    if not any(p.flagged for p in profiles):
        return []
    from vischoose.recommendation import reuse

    return reuse.flagged_lines(entries, extra, preset, profiles)


def known() -> Known:
    """The catalog, every runtime's facts and timm's zoo (read when first asked for), for the candidates' selection
    and the pure ranking (what is installed only words how to measure)."""
    facts = {r.name: Deployable(r.name, r.title, r.devices, r.is_graph, r.extra, r.missing(), r.host_only)
             for r in registry.KINDS.values()}
    return Known(catalog.load(), facts, registry.CATALOG_INT8, _zoo)


def _zoo() -> "Zoo":
    """timm's zoo, read on first use (models.zoo.load caches it)."""
    from vischoose.models import (
        zoo,  # only for a zoo flag, a glob, a name outside the catalog or a GPU target
    )

    return zoo.load()


def _measure_profiles(request: RecommendRequest, preset: presets.Preset, entries: list[catalog.CatalogEntry],
                      extra: list[tuple[str, str]], profiles: list[Profile], evals: list[EvalResult], world: Known,
                      lines: list[str], progress: Progress | None,
                      measure_with: "Callable[[presets.Preset], measuring.Measure] | None" = None) -> Measured:
    """recommend --measure: what can change the answer (mode "decision") or everything ("all"), here or with
    measure_with (a fleet's node)."""
    from vischoose.recommendation import (
        measuring,  # only here: recommend on stored figures starts fast
    )

    measurer = _Measurer(preset, progress, request.budget_s, request.wait)
    measured, log = measuring.measure_for_decision(preset, entries, extra, profiles, evals,
                                                   measure_with(preset) if measure_with else measurer, world,
                                                   request.measure, request.fresh, on_plan=measurer.plan)
    return profiles + measured, lines + log.lines(), log.skipped


def _measure_services(request: RecommendRequest, preset: presets.Preset, entries: list[catalog.CatalogEntry],
                      extra: list[tuple[str, str]], profiles: list[Profile], evals: list[EvalResult], world: Known,
                      lines: list[str], progress: Progress | None) -> Measured:
    """recommend --serve --measure: the server searches that can change the answer (recommendation.serving)."""
    from vischoose.recommendation import serving

    serving.check(preset)

    def candidates(rows: list[Profile]) -> list:
        return build_candidates(entries, preset, rows, evals, world, extra)

    measured, found = serving.measure_for_decision(candidates, preset, profiles,
                                                   _ServerMeasurer(preset, progress, request.budget_s, request.wait))
    return profiles + measured, lines + found, []


def _preset(request: RecommendRequest) -> presets.Preset:
    preset = presets.load_preset(request.target).with_overrides(device=request.device,
                                                                memory_basis=request.memory_basis,
                                                                latency_basis=request.latency_basis,
                                                                **request.overrides)
    if preset.constraints.latency_basis == "end-to-end" and preset.constraints.max_latency_ms is None:
        raise UsageError(f"{opt('latency_basis')} end-to-end says what {opt('max_latency_ms')} limits, and target "
                         f"'{preset.name}' sets no latency limit.", hint=f"Add {opt('max_latency_ms')} MS.",
                         field="latency_basis")
    if preset.measure.device.startswith("cuda") and all("cuda" not in registry.kind(v.runtime).devices
                                                         for v in preset.variants):
        titles = list(dict.fromkeys(registry.title(v.runtime) for v in preset.variants))
        runs = " and ".join([", ".join(titles[:-1]), titles[-1]] if len(titles) > 1 else titles)
        raise UsageError(f"Target '{preset.name}' deploys only {runs} graphs, which vischoose measures on the "
                         f"CPU: {opt('device')} {preset.measure.device} admits none of them.",
                         hint=f"Drop {opt('device')}, or pick a target that deploys torch on a GPU (cloud, edge).",
                         field="device")
    return preset


def _dataset(request: RecommendRequest) -> "ondata.DataSet | None":
    if request.data is None:
        return None
    from vischoose.recommendation import ondata  # only with data

    return ondata.read(request.data, request.labels, request.max_accuracy_drop)


def shippable(evals: list[EvalResult], dataset: "ondata.DataSet | None") -> list[EvalResult]:
    """The results that stand for a variant this run ships, for measuring and ranking alike: never a file evaluated
    as written (`evaluate --graph`: its recipe and float layers are its own); with --data, the results on that data
    set at this run's --max-accuracy-drop (ondata.on_data); without, no accuracy-aware int8 (it ships only with
    --data)."""
    plain = [e for e in evals if e.graph is None]
    if dataset is None:
        return [e for e in plain if e.max_accuracy_drop is None]
    from vischoose.recommendation import ondata

    return ondata.on_data(plain, dataset)


def _unused_limit(preset: presets.Preset, dataset: "ondata.DataSet | None") -> list[str]:
    """A line for the report when --max-accuracy-drop has nothing to act on: the target deploys no int8 on a runtime
    that keeps layers in float."""
    if dataset is None or dataset.max_accuracy_drop is None:
        return []
    from vischoose.recommendation import ondata

    if any(ondata.accuracy_aware(v, dataset) for v in preset.variants):
        return []
    return [f"--max-accuracy-drop {dataset.max_accuracy_drop:g} changes nothing: target '{preset.name}' deploys no "
            "int8 on a runtime that can keep layers in float"]


def _evaluator(bar: Callable[[str], Bar] | None) -> "Callable[..., EvalResult]":
    """Evaluates one candidate on the data set, with a progress bar where one is given."""
    from vischoose.recommendation import ondata

    def run(cand, preset: presets.Preset, data) -> EvalResult:
        shown = bar(f"{cand.model} at {cand.variant.label}") if bar else None
        try:
            return ondata.evaluate_candidate(cand, preset, data, shown)
        finally:
            if shown:
                shown.close()
    return run


def _figures(results: tuple[str, ...]) -> tuple[list[Profile], list[EvalResult]]:
    """The rows to judge by: the results files given, else this machine's in the results store."""
    if results:
        from vischoose.results import exchange

        profiles: list[Profile] = []
        evals: list[EvalResult] = []
        for path in results:
            if not Path(path).is_file():
                raise UsageError(f"Results file '{path}' does not exist.", field="results",
                                 hint="Make one on the deployment machine with: vischoose results export --format "
                                      "json --out FILE")
            for record in exchange.read_results_file(Path(path)):
                (profiles if exchange.kind_of(record) == "profile" else evals).append(record)
        return profiles, evals
    if not paths.results_db().exists():  # nothing stored here yet: nothing to read, and a query makes no database
        return [], []
    from vischoose.machine import fingerprint
    from vischoose.results import store

    db = store.open_store()
    return db.profiles(machine=fingerprint()), db.evals(machine=fingerprint())


class _Measurer:
    """Profiles (model, tag) pairs at one variant under the preset's protocol (stored as they are measured), with
    progress and an ETA."""

    def __init__(self, preset: presets.Preset, progress: Progress | None, time_budget_s: float,
                 wait: bool = True) -> None:
        self.preset, self.time_budget_s, self.progress, self.wait = preset, time_budget_s, progress, wait
        self.runs, self.started, self.left = 0, time.monotonic(), 0

    def plan(self, runs_left: int) -> None:
        """The most runs still to come, this one included (measuring.Plan): the ETA's basis."""
        self.left = runs_left

    def __call__(self, todo: list[tuple[str, str]], variant: Variant) -> list[Profile]:
        from vischoose.measure.runner import profile_models
        from vischoose.results.store import keep_profiles

        request = measure_request(self.preset, variant, self.time_budget_s, tuple(m for m, _ in todo), self.wait)
        runs = profile_models(request, progress=self._progress(variant), keep=keep_profiles)
        self.runs += len(todo)
        return [r.profile for r in runs]

    def _progress(self, variant: Variant) -> Progress | None:
        if self.progress is None:
            return None
        progress, done, left, spent = self.progress, self.runs, self.left, time.monotonic() - self.started
        of = f" of at most {done + left}" if left > 1 else ""

        def show(model: str, what: str, elapsed: float) -> None:
            eta_s = spent / done * left - elapsed if done else 0.0  # this run overran the average: no guess
            eta = f", at most ~{_duration(eta_s)} left" if eta_s >= 1 else ""
            progress(f"{model} at {variant.label} (run {done + 1}{of}{eta})", what, elapsed)
        return show


class _ServerMeasurer(_Measurer):
    """Runs one model's server search at a variant and bound (measure.serving_runner), stored as it is measured, with
    the same progress line; time_budget_s is the whole search's."""

    def __call__(self, model: str, variant: Variant, slo_ms: float) -> list[Profile]:  # type: ignore[override]
        from vischoose.measure.serving_runner import serve_models
        from vischoose.requests.profile import SERVER, ProfileRequest
        from vischoose.results.store import keep_profiles

        request = ProfileRequest(models=(model,), device="cpu", runtime=variant.runtime, dtype=variant.dtype,
                                 threads=self.preset.measure.threads, threads_from=self.preset.name, weights="auto",
                                 time_budget_s=self.time_budget_s, scenario=SERVER, slo_ms=slo_ms, wait=self.wait)
        runs = serve_models(request, progress=self._progress(variant), keep=keep_profiles)
        self.runs += 1
        return [r.profile for r in runs]


def measure_request(preset: presets.Preset, variant: Variant, time_budget_s: float,
                    models: tuple[str, ...], wait: bool = True) -> "ProfileRequest":
    """What recommend --measure measures a variant with (here, or on a fleet's node): the preset's [measure]
    protocol at batch 1 and its batch sizes; an exported file on its runtime, on the CPU."""
    from vischoose.requests.profile import ProfileRequest

    spec = preset.measure
    protocol = {"threads": spec.threads, "batch_sizes": tuple(sorted({1, *spec.batch_sizes})), "weights": "auto",
                "time_budget_s": time_budget_s, "threads_from": preset.name, "models": models, "wait": wait,
                "end_to_end": preset.constraints.latency_basis == "end-to-end"}
    if registry.is_graph(variant.runtime):  # the exported file on its runtime, on the CPU
        return ProfileRequest(device="cpu", runtime=variant.runtime, dtype=variant.dtype, **protocol)
    return ProfileRequest(device=spec.device, dtype=spec.dtype, channels_last=spec.channels_last, **protocol)


def _duration(seconds: float) -> str:
    """'45 s' or '3 min 20 s'."""
    seconds = max(round(seconds), 0)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"
