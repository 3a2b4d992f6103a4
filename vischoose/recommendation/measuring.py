"""`recommend --measure`: measure only what can change the answer.

First everything that needs no timing is settled (the deployed size of each runtime and precision, parameters,
published or measured top-1): a model that breaks a constraint on those alone is never measured. The others are
measured in the order that decides (torch at the [measure] dtype beside a graph, as the speed-up reference): the
selection guide's models first (one that fits wins outright), then by the
preset's ranking; each model's variants in preference order, until one fits. Measuring stops as soon as no
unmeasured candidate can still change the recommendation: with a first rank key that no timing changes
(`-top1`), nothing ranked strictly below a measured candidate that meets every constraint can win.
`--measure all` measures every candidate at every variant. Pure decisions; the measuring is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from vischoose.errors import NoModelFitsError
from vischoose.models.catalog import CatalogEntry
from vischoose.presets import Preset
from vischoose.recommendation.candidates import (
    Candidate,
    build_candidates,
    preference_order,
    rank_key,
)
from vischoose.recommendation.choose import recommend
from vischoose.recommendation.constraints import broken
from vischoose.recommendation.figures import Known, matching_profiles
from vischoose.records import EvalResult, Profile
from vischoose.runtimes.precision import Variant

MODES = ("decision", "all")
EXAMPLES = 4  # models named per group in the log
TIMING_FREE_KEYS = ("top1", "params_m", "gflops")  # rank keys that no measurement on this machine changes
Measure = Callable[[list[tuple[str, str]], Variant], list[Profile]]  # profile these (model, tag) at a variant
Plan = Callable[[int], None]  # told, before each measurement, the most runs (model at a variant) still to come


@dataclass
class MeasureLog:
    """What recommend --measure measured, what it skipped and why."""

    measured: list[str] = field(default_factory=list)  # "resnet50 at onnxruntime fp32"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (model, why)
    reused: list[str] = field(default_factory=list)  # measured before, under this protocol, on this machine
    not_here: dict[str, str] = field(default_factory=dict)  # variant -> why its runtime cannot run here
    pruned: dict[str, list[str]] = field(default_factory=dict)  # the limit timing cannot change -> models it rules out
    candidates: int = 0

    def lines(self) -> list[str]:
        """Sentences for the report: what was measured, and what was not and why, grouped (hundreds of candidates
        give a few lines)."""
        out = [f"measured: {', '.join(self.measured) or 'nothing'}"]
        if self.reused:
            out.append(f"already measured here (reused; --fresh measures again): {', '.join(self.reused)}")
        if self.pruned:
            total = sum(len(models) for models in self.pruned.values())
            parts = [f"{len(models)} {label} ({_examples(models)})" for label, models in self.pruned.items()]
            out.append(f"ruled out without timing: {total} of {self.candidates} candidates: {'; '.join(parts)}")
        pruned = {m for models in self.pruned.values() for m in models}
        rest: dict[str, list[str]] = {}
        for model, why in self.skipped:
            if model not in pruned:
                rest.setdefault(why, []).append(model)
        for why, models in rest.items():
            who = models[0] if len(models) == 1 else f"{len(models)} models ({_examples(models)})"
            out.append(f"not measured: {who}: {why}")
        out += [f"not measured at {label}, on any model: {why}" for label, why in self.not_here.items()]
        return out


def _examples(models: list[str]) -> str:
    """'a, b, c, d and 5 more'."""
    more = f" and {len(models) - EXAMPLES} more" if len(models) > EXAMPLES else ""
    return ", ".join(models[:EXAMPLES]) + more


@dataclass
class _State:
    preset: Preset
    entries: list[CatalogEntry]
    extra: list[tuple[str, str]]
    profiles: list[Profile]
    evals: list[EvalResult]
    fresh: bool
    known: Known
    done: set[tuple[str, Variant]] = field(default_factory=set)  # measured in this run

    def candidates(self, preset: Preset | None = None) -> dict[str, Candidate]:
        found = build_candidates(self.entries, preset or self.preset, self.profiles, self.evals, self.known,
                                 self.extra)
        return {c.model: c for c in found}

    def has_rows(self, model: str, tag: str, variant: Variant) -> bool:
        if (model, variant) in self.done:
            return True
        return not self.fresh and bool(matching_profiles(self.profiles, model, tag, self.preset, variant))


def timing_free(preset: Preset) -> Preset:
    """The preset without the constraints only a timing can check (latency, throughput, cold start, measured peak
    memory)."""
    c = preset.constraints
    relaxed = c._replace(max_latency_ms=None, min_throughput=None, max_cold_start_ms=None,
                         max_memory_mb=None if c.memory_basis == "peak" else c.max_memory_mb)
    return preset._replace(constraints=relaxed)


def measure_for_decision(preset: Preset, entries: list[CatalogEntry], extra: list[tuple[str, str]],
                         profiles: list[Profile], evals: list[EvalResult], measure: Measure, known: Known,
                         mode: str = "decision", fresh: bool = False,
                         on_plan: Plan | None = None) -> tuple[list[Profile], MeasureLog]:
    """Measure what the recommendation needs (mode "decision") or every candidate (mode "all").

    on_plan hears, before each model (or each variant, in mode "all"), the most runs still to come: the progress
    line's ETA. Returns the new profiles and the log of what was measured and skipped.
    """
    state, log = _State(preset, entries, extra, list(profiles), evals, fresh, known), MeasureLog()
    tags = {model: cand.tag for model, cand in state.candidates().items()}
    plan_left = on_plan or (lambda runs: None)
    if mode == "all":
        variants = _measurable(state, log, [preset.plain] + [v for v in preset.variants if v != preset.plain])
        todos = [[(m, t) for m, t in tags.items() if not state.has_rows(m, t, v)] for v in variants]
        for i, (variant, todo) in enumerate(zip(variants, todos)):
            plan_left(sum(len(t) for t in todos[i:]))
            _run(state, log, todo, variant, measure)
        return state.profiles[len(profiles):], log
    feasible = _prune(state, log)
    plan = list(feasible)
    for i, model in enumerate(plan):
        plan_left(sum(_runs_needed(state, m, tags[m], feasible[m]) for m in plan[i:]))
        _measure_model(state, log, model, tags[model], feasible[model], measure)
        why = _settled(state, plan[i + 1:])
        if why:
            log.skipped += [(m, why) for m in plan[i + 1:]]
            break
    return state.profiles[len(profiles):], log


def prune(preset: Preset, entries: list[CatalogEntry], extra: list[tuple[str, str]], profiles: list[Profile],
          evals: list[EvalResult], known: Known) -> tuple[dict[str, list[Variant]], MeasureLog]:
    """The timing-free pruning alone: the candidates --measure would time, in order, each with its variants worth
    timing, and the log of what was ruled out and why (nothing is measured)."""
    log = MeasureLog()
    return _prune(_State(preset, entries, extra, list(profiles), evals, False, known), log), log


def _prune(state: _State, log: MeasureLog) -> dict[str, list[Variant]]:
    """Candidates that can still fit once timed, in the order that decides, each with its variants worth timing."""
    relaxed = timing_free(state.preset)
    order = _measurable(state, log, preference_order(state.preset))
    per_variant = {v: state.candidates(relaxed._replace(deploy=(v,))) for v in order}  # once, not once per model
    feasible: dict[str, list[Variant]] = {}
    judged = state.candidates(relaxed)
    log.candidates = len(judged)
    for model, cand in judged.items():
        if not cand.fits:
            log.skipped.append((model, f"ruled out without timing: {'; '.join(cand.reasons[:1])}"))
            log.pruned.setdefault(_broken(cand, relaxed), []).append(model)
            continue
        feasible[model] = [v for v in order if per_variant[v][model].fits]
    ranked = state.candidates()
    prefer = [m for m in state.preset.prefer if m in feasible]
    rest = sorted((m for m in feasible if m not in prefer), key=lambda m: rank_key(ranked[m], state.preset.sort))
    return {m: feasible[m] for m in prefer + rest}


def _measurable(state: _State, log: MeasureLog, variants: list[Variant]) -> list[Variant]:
    """The variants whose runtime runs here; the others are said once, with the command that installs them (their
    stand-in figures still rank them: what this machine has installed never changes the choice)."""
    runnable = []
    for v in variants:
        runtime = state.known.runtime(v.runtime)
        if runtime.missing is None:
            runnable.append(v)
        else:
            log.not_here.setdefault(v.label, f"{runtime.missing}: pip install 'vischoose[{runtime.extra}]'")
    return runnable


def _broken(cand: Candidate, preset: Preset) -> str:
    """The first limit a candidate breaks without timing, as a group label for the log."""
    found = broken(cand, preset)
    if not found:
        return "; ".join(cand.reasons[:1]) or "not deployable"
    return found[0] + (" at every variant the target deploys" if found[0].endswith("budget") else "")


def _reference(state: _State, variants: list[Variant]) -> list[Variant]:
    """torch at the [measure] dtype, when the model's variants include a graph: their speed-up's reference."""
    plain = state.preset.plain
    graphs = any(state.known.runtime(v.runtime).is_graph for v in variants)
    return [plain] if plain not in variants and graphs else []


def _runs_needed(state: _State, model: str, tag: str, variants: list[Variant]) -> int:
    """The most runs the model can still take: its reference and every variant not measured yet."""
    return sum(not state.has_rows(model, tag, v) for v in _reference(state, variants) + variants)


def _measure_model(state: _State, log: MeasureLog, model: str, tag: str, variants: list[Variant],
                   measure: Measure) -> None:
    """Time the model's variants in preference order until one meets every constraint; torch at the [measure]
    dtype first, when the target deploys graphs: the reference their speed-up is stated against. When the preset
    ranks on a timing (a throughput or latency key), a later variant that fits can rank better than the first one
    that fits (a verified graph wins then: candidates._choose), so the other fp32 graphs are timed too; an int8 graph
    is verified only on pretrained weights and the user's images, which measuring here does not have: its command
    is said instead."""
    reference, fitted = _reference(state, variants), None
    for variant in reference + variants:
        if fitted is not None and not _can_outrank(state, log, model, variant):
            continue
        if state.has_rows(model, tag, variant):
            if (model, variant) not in state.done:
                log.reused.append(f"{model} at {variant.label}")
        else:
            _run(state, log, [(model, tag)], variant, measure)
        if variant in reference or fitted is not None:
            continue
        if state.candidates(state.preset._replace(deploy=(variant,)))[model].fits:
            if not _timing_ranked(state.preset):
                return
            fitted = variant


def _timing_ranked(preset: Preset) -> bool:
    """Whether a rank key is a figure only timing here gives (throughput, latency)."""
    return any(key.lstrip("-") not in TIMING_FREE_KEYS for key in preset.sort)


def _can_outrank(state: _State, log: MeasureLog, model: str, variant: Variant) -> bool:
    """Whether timing this variant can change the model's place once another fits: a graph that is checked as
    deployed without the user's images (fp32); int8 says what verifies it instead."""
    if variant.precision == "fp32" and state.known.runtime(variant.runtime).is_graph:
        return True
    if variant.precision == "int8":
        log.skipped.append((f"{model} at {variant.label}", "an int8 graph ranks only once verified on pretrained "
                            "weights and your images: vischoose profile --target "
                            f"{state.preset.name} --runtime {variant.runtime} --precision int8 --weights pretrained "
                            f"--calibration DIR {model}"))
    return False


def _run(state: _State, log: MeasureLog, todo: list[tuple[str, str]], variant: Variant, measure: Measure) -> None:
    if not todo:
        return
    state.profiles += measure(todo, variant)
    state.done.update((m, variant) for m, _ in todo)
    log.measured += [f"{m} at {variant.label}" for m, _ in todo]


def _settled(state: _State, unmeasured: list[str]) -> str | None:
    """Why no unmeasured candidate can change the recommendation any more, or None while one can."""
    try:
        rec = recommend(list(state.candidates().values()), state.preset)
    except NoModelFitsError:
        return None
    chosen = rec.chosen
    latency = chosen.figures.get("latency_ms")
    if latency is not None and latency.source != "measured":
        return None
    if chosen.model in state.preset.prefer:
        return f"{chosen.model}, the selection guide's choice, was measured and meets every constraint"
    first = state.preset.sort[0]
    key = first.lstrip("-")
    if key not in TIMING_FREE_KEYS or any(m in state.preset.prefer for m in unmeasured):
        return None
    ranked = state.candidates()
    best = chosen.value(key)
    if best is None:
        return None
    higher = first.startswith("-")
    for model in unmeasured:
        value = ranked[model].value(key)
        if value is not None and (value >= best if higher else value <= best):
            return None  # an unknown value ranks after every known one (rank_key): it cannot win
    return (f"ranked below {chosen.model} on {key} ({best:g}), which no timing changes; {chosen.model} was "
            "measured and meets every constraint")
