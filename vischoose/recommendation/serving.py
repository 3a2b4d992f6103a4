"""recommend as a service (`--serve`, or any of `--slo-ms`, `--target-qps`, `--price-per-hour`): each candidate judged at
its best serving settings under the p99 bound, from the server-scenario rows `profile --scenario server` stored.

For the variant ranking chose, a candidate gets `serve_qps` (the highest rate whose LoadGen run was VALID at the
bound: measured M; or, without a row, its best offline img/s times the ratio of sustained to offline rate on the models
this machine measured at that bound, labelled E with that ratio's leave-one-out error), `cost_per_million` (USD per
million images at that rate, with a price) and `machines` (for a target rate). A row that found no rate under the bound
rules the model out. The ranking then puts cost first (or sustained rate, without a price), before the preset's keys.
Pure: figures in, candidates out; the measuring (`--measure`) is passed in.
"""

from __future__ import annotations

import statistics
from typing import Callable, NamedTuple

from vischoose.errors import UsageError, opt
from vischoose.presets import Preset
from vischoose.recommendation import cost
from vischoose.recommendation.candidates import Candidate, rank_key
from vischoose.recommendation.constraints import CONSTRAINTS
from vischoose.recommendation.figures import Figure, matching_profiles
from vischoose.records import Profile
from vischoose.runtimes.precision import Variant

SERVER = "server"
MeasureServer = Callable[[str, Variant, float], list[Profile]]  # (model, variant, slo_ms) -> the rows it stored


class Ratio(NamedTuple):
    """Sustained over best offline rate on the models measured here at one bound, and how well it predicts."""

    value: float
    models: int
    error: float | None  # largest leave-one-out relative error; None with one model


def check(preset: Preset) -> None:
    """Raise UsageError when a service is to be judged without a bound (a preset with no [serve] slo_ms)."""
    if preset.serve.slo_ms is None:
        raise UsageError(f"Target '{preset.name}' has no [serve] slo_ms: a service is judged at a p99 bound.",
                         hint=f"Add {opt('slo_ms')} MS (e.g. {opt('slo_ms')} 100).", field="slo_ms")


def server_rows(profiles: list[Profile], model: str, tag: str, variant: Variant, slo_ms: float) -> list[Profile]:
    """This model's server-scenario rows at the variant and bound, newest first; never a flagged one (contended:
    Profile.flagged)."""
    rows = [p for p in profiles if p.scenario == SERVER and p.ok and not p.flagged
            and (p.model == model or p.tag == tag)
            and p.runtime == variant.runtime and p.dtype == variant.dtype and p.slo_ms is not None
            and abs(p.slo_ms - slo_ms) <= 1e-6 * slo_ms]
    return sorted(rows, key=lambda p: p.created_at, reverse=True)


def best_offline(profiles: list[Profile], model: str, tag: str, preset: Preset, variant: Variant) -> Profile | None:
    """The row with the most img/s of this model at the variant under the preset's protocol (any batch size)."""
    rows = [p for p in matching_profiles(profiles, model, tag, preset, variant) if p.throughput_img_s]
    return max(rows, key=lambda p: p.throughput_img_s or 0.0) if rows else None


def offline_ratio(profiles: list[Profile], preset: Preset) -> Ratio | None:
    """Sustained QPS over best offline img/s, the median over the models with both at this bound (None: none)."""
    slo, pairs = preset.serve.slo_ms or 0.0, []
    for row in (p for p in profiles if p.scenario == SERVER and p.serve_qps and not p.flagged
                and p.slo_ms is not None and abs(p.slo_ms - slo) <= 1e-6 * slo):
        offline = [p.throughput_img_s for p in profiles if p.scenario is None and p.ok and not p.flagged
                   and p.throughput_img_s
                   and p.model == row.model and p.runtime == row.runtime and p.dtype == row.dtype
                   and p.machine == row.machine]
        if offline:
            pairs.append((row.serve_qps, max(offline)))
    if not pairs:
        return None
    ratios = [q / o for q, o in pairs]
    error = None
    if len(ratios) > 1:
        error = max(abs(statistics.median(ratios[:i] + ratios[i + 1:]) / r - 1) for i, r in enumerate(ratios))
    return Ratio(statistics.median(ratios), len(ratios), error)


def judge(cands: list[Candidate], preset: Preset, profiles: list[Profile]) -> list[Candidate]:
    """Each candidate with its serving figures at its chosen variant, at the preset's [serve] bound."""
    check(preset)
    ratio = offline_ratio(profiles, preset)
    return [_judged(c, preset, profiles, ratio) for c in cands]


def _judged(cand: Candidate, preset: Preset, profiles: list[Profile], ratio: Ratio | None) -> Candidate:
    slo = preset.serve.slo_ms or 0.0
    rows = server_rows(profiles, cand.model, cand.tag, cand.variant, slo)
    if rows and not rows[0].serve_qps:
        why = f"no rate sustained at p99 <= {slo:g} ms ({rows[0].serve_note or 'every LoadGen run INVALID'}; measured)"
        return cand._replace(violations=cand.violations + (why,), excess=max(cand.excess, 10.0))
    fig = _measured(rows[0]) if rows else _estimated(cand, preset, profiles, ratio)
    if fig is None:
        todo = (f"no sustained rate at p99 <= {slo:g} ms (measure it: vischoose profile --scenario server --slo-ms "
                f"{slo:g} --runtime {cand.variant.runtime} --precision {cand.variant.precision} {cand.model})")
        return cand._replace(missing=cand.missing + (todo,))
    return cand._replace(figures={**cand.figures, **service_figures(fig, preset)})


def _measured(row: Profile) -> Figure:
    settings = (f"{row.serve_instances} x {row.serve_threads} threads, batch <= {row.serve_max_batch}"
                if row.serve_instances else "")
    rules = "MLPerf's durations" if row.serve_official else f"runs of >= {row.serve_min_queries} queries"
    return Figure(row.serve_qps or 0.0, "measured", f"LoadGen Server VALID at p99 <= {row.slo_ms:g} ms, {settings}, "
                                                    f"{rules}")


def _estimated(cand: Candidate, preset: Preset, profiles: list[Profile], ratio: Ratio | None) -> Figure | None:
    offline = best_offline(profiles, cand.model, cand.tag, preset, cand.variant)
    if offline is None or ratio is None or offline.throughput_img_s is None:
        return None
    error = f"leave-one-out error {100 * ratio.error:.0f}%" if ratio.error is not None else "error unknown (one model)"
    return Figure(ratio.value * offline.throughput_img_s, "estimated",
                  f"{ratio.value:.2f} x its offline {offline.throughput_img_s:,.1f} img/s (batch {offline.batch_size}):"
                  f" the sustained/offline ratio of {ratio.models} model(s) measured here at this bound, {error}")


def service_figures(qps: Figure, preset: Preset) -> dict[str, Figure]:
    """serve_qps, and with a price its cost per million images, and with a target rate the machines it needs."""
    spec, out = preset.serve, {"serve_qps": qps}
    if spec.price_per_hour is not None:
        out["cost_per_million"] = Figure(cost.cost_per_million(spec.price_per_hour, qps.value), qps.source,
                                         f"USD at USD {spec.price_per_hour:g}/h and {qps.value:,.1f} QPS")
    if spec.target_qps is not None:
        need = cost.fleet(spec.target_qps, qps.value, spec.price_per_hour)
        if need is not None:
            out["machines"] = Figure(float(need.machines), qps.source, f"for {spec.target_qps:g} QPS"
                                     + (f": USD {need.cost_per_hour:,.2f}/h" if spec.price_per_hour else ""))
    return out


def ranked(preset: Preset) -> Preset:
    """The preset ranking services: cost per million images first (sustained rate without a price), then its keys."""
    first = "cost_per_million" if preset.serve.price_per_hour is not None else "-serve_qps"
    return preset._replace(sort=(first, *(k for k in preset.sort if k.lstrip("-") != first.lstrip("-"))))


def measure_for_decision(candidates: Callable[[list[Profile]], list[Candidate]], preset: Preset,
                         profiles: list[Profile], measure: MeasureServer) -> tuple[list[Profile], list[str]]:
    """`recommend --serve --measure`: server searches only where one can change the answer. Candidates that break a
    constraint no timing changes are never searched; the others in the order that decides (the guide's models, then
    the service ranking on the figures known so far); one whose best offline img/s measured here bounds its rate
    below what a measured candidate sustains (or its cost above) is skipped, since no server rate beats the offline one.

    candidates(rows) builds the candidates from these rows; returns the new rows and the report's lines.
    """
    from vischoose.recommendation.measuring import timing_free

    slo, new, lines = preset.serve.slo_ms or 0.0, [], []
    order = ranked(preset)
    relaxed = {c.model for c in candidates(profiles) if not _timing_free_violations(c, timing_free(preset))}
    while True:
        rows = profiles + new
        cands = [c for c in judge(candidates(rows), preset, rows) if c.model in relaxed]
        todo = [c for c in cands if not server_rows(rows, c.model, c.tag, c.variant, slo)]
        if not todo:
            break
        todo.sort(key=lambda c: (c.model not in preset.prefer, rank_key(c, order.sort)))
        best = min((c for c in cands if c.fits and c.value("serve_qps") and c.figures["serve_qps"].source == "measured"),
                   key=lambda c: rank_key(c, order.sort), default=None)
        beaten = [c for c in todo if best is not None and _cannot_beat(c, best, preset, rows)]
        for c in beaten:
            lines.append(f"not measured as a service: {c.model}: {_cannot_beat(c, best, preset, rows)}")
            relaxed.discard(c.model)
        todo = [c for c in todo if c not in beaten]
        if not todo:
            break
        found = measure(todo[0].model, todo[0].variant, slo)
        new += found
        lines.append(f"measured as a service: {todo[0].model} at {todo[0].variant.label}, p99 <= {slo:g} ms")
        if not found:
            relaxed.discard(todo[0].model)
    return new, lines


def _timing_free_violations(cand: Candidate, relaxed: Preset) -> bool:
    """Whether the candidate breaks a constraint that no timing changes (memory by weights, params, top-1)."""
    for key, (name, is_max, _unit) in CONSTRAINTS.items():
        limit, value = getattr(relaxed.constraints, key), cand.value(name)
        if limit is not None and value is not None and (value > limit if is_max else value < limit):
            return True
    return False


def _cannot_beat(cand: Candidate, best: Candidate, preset: Preset, rows: list[Profile]) -> str | None:
    """Why `cand` cannot beat the measured `best` even at its offline rate (None: it might)."""
    offline = best_offline(rows, cand.model, cand.tag, preset, cand.variant)
    if offline is None or not offline.throughput_img_s or cand.model in preset.prefer:
        return None
    top, theirs = offline.throughput_img_s, best.value("serve_qps") or 0.0
    if top > theirs:
        return None
    return (f"its best offline rate here, {top:,.1f} img/s, bounds any sustained rate below the {theirs:,.1f} QPS "
            f"{best.model} sustains at p99 <= {preset.serve.slo_ms:g} ms")
