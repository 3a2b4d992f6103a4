"""The choice: the guide's preferred model if it fits, else the best fitting one by the preset's ranking; the
runners-up, every rejection, the Pareto front, and the notes that qualify the answer (recommendation.wording)."""

from typing import NamedTuple

from vischoose.errors import NoModelFitsError, opt
from vischoose.presets import Preset
from vischoose.recommendation import candidates, constraints, wording
from vischoose.recommendation.candidates import Candidate
from vischoose.recommendation.figures import Figure


class Recommendation(NamedTuple):
    """The chosen model, why, the runners-up, every rejection and the Pareto front (a NamedTuple, as Figure)."""

    target: str
    chosen: Candidate
    reason: str
    runners_up: list[Candidate]
    rejected: list[Candidate]
    pareto: frozenset[str]
    preset: Preset
    notes: tuple[str, ...] = ()
    measure_log: tuple[str, ...] = ()  # recommend --measure: what was measured and skipped
    unmeasured: tuple[Candidate, ...] = ()  # no figure for a limit only measuring checks: not measured, not rejected
    unmeasured_why: tuple[tuple[str, str], ...] = ()  # (model, why it was not measured), from recommend --measure
    runs_here: str = ""  # where the target's device resolves on this machine ("cpu: no CUDA device here"), if it differs


SHOWN = 5  # the candidates a note about estimates looks at: the chosen one and the runners-up a default answer shows
TIMING = ("latency_ms", "throughput")  # figures only a measurement here gives


def separated(fitting: list[Candidate], sort: tuple[str, ...]) -> list[Candidate]:
    """The ranked candidates, the first two swapped when their first key is a measured timing that their runs' own
    spread cannot separate and the next keys rank the second first: an order is never decided inside the noise."""
    if len(fitting) < 2 or not sort or sort[0].lstrip("-") not in TIMING:
        return fitting
    a, b = fitting[:2]
    if within_spread(a, b, sort[0].lstrip("-")) and candidates.rank_key(b, sort[1:]) < candidates.rank_key(a, sort[1:]):
        return [b, a, *fitting[2:]]
    return fitting


def within_spread(a: Candidate, b: Candidate, key: str) -> bool:
    """Whether two measured figures differ by less than their runs' relative spread (IQR / median) together."""
    fa, fb = a.figures.get(key), b.figures.get(key)
    if fa is None or fb is None or fa.spread is None or fb.spread is None or not fa.value or not fb.value:
        return False
    return abs(fa.value - fb.value) / max(fa.value, fb.value) < fa.spread + fb.spread


def recommend(cands: list[Candidate], preset: Preset) -> Recommendation:
    """Choose: the guide's preferred model if it fits, else the best fitting one by the preset's ranking.

    Raises:
        NoModelFitsError: no candidate meets every constraint (message names the closest and the limits
            that would admit them).
    """
    fitting = separated(sorted((c for c in cands if c.fits), key=lambda c: candidates.rank_key(c, preset.sort)),
                        preset.sort)
    rejected = sorted((c for c in cands if not c.fits), key=lambda c: (c.excess, c.model))
    if not fitting:
        raise nothing_fits(rejected, preset)
    unmeasured = tuple(c for c in rejected if unmeasured_only(c))
    rejected = [c for c in rejected if not unmeasured_only(c)]
    preferred = next((c for p in preset.prefer for c in fitting if c.model == p), None)
    if preferred:
        chosen, reason = preferred, wording.guide_reason(preset)
    else:
        chosen = fitting[0]
        missed = next((c for p in preset.prefer for c in (*rejected, *unmeasured) if c.model == p), None)
        reason = wording.ranked_reason(preset, len(fitting), missed, missed is not None and unmeasured_only(missed))
    notes = [f"{chosen.model}: {chosen.caveat}"] if chosen.caveat else []
    notes += wording.dominance_note(chosen, dominated_by(chosen, fitting), reason)
    nearest = next((c for c in fitting if c is not chosen), None)
    if nearest is not None and preset.sort and within_spread(chosen, nearest, preset.sort[0].lstrip("-")):
        notes.append(wording.spread_note(chosen, nearest, preset.sort))
    if any(f.source == "estimated" for c in fitting[:SHOWN] for k, f in c.figures.items() if k in TIMING):
        notes.append(wording.estimates_note(preset))
    if any(c.variant.precision == "int8" and c.figures.get("memory_mb", Figure(0, "")).source == "estimated"
           for c in fitting):
        notes.append(wording.int8_estimate_note(preset))
    return Recommendation(target=preset.name, chosen=chosen, reason=reason,
                          runners_up=[c for c in fitting if c is not chosen], rejected=rejected,
                          pareto=pareto_front(cands), preset=preset, notes=tuple(notes), unmeasured=unmeasured)


def unmeasured_only(cand: Candidate) -> bool:
    """A candidate that breaks no limit but lacks a figure only measuring gives: not measured, never rejected."""
    return bool(cand.missing) and not cand.violations


def pareto_front(cands: list[Candidate]) -> frozenset[str]:
    """Models no other model beats on accuracy, latency and memory at once."""
    pts = [(c.model, c.value("top1"), c.value("latency_ms"), c.value("memory_mb")) for c in cands]
    # most accurate first (then fastest, smallest): whatever dominates a point comes before it, and a point dominated
    # at all is dominated by a point of the front, so each is checked against the front found so far (zoo-sized
    # candidate lists: hundreds, not all pairs)
    pts = sorted((p for p in pts if None not in p), key=lambda p: (-p[1], p[2], p[3]))
    front, kept = set(), []
    for m, acc, lat, mem in pts:
        if not any(a >= acc and l <= lat and s <= mem and (a, l, s) != (acc, lat, mem) for a, l, s in kept):
            front.add(m)
            kept.append((acc, lat, mem))
    return frozenset(front)


def dominated_by(cand: Candidate, others: list[Candidate]) -> list[Candidate]:
    """Candidates at least as accurate, as fast and as small as `cand`, and better in one of the three."""
    mine = (cand.value("top1"), cand.value("latency_ms"), cand.value("memory_mb"))
    if None in mine:
        return []
    found = []
    for other in others:
        theirs = (other.value("top1"), other.value("latency_ms"), other.value("memory_mb"))
        if other is cand or None in theirs:
            continue
        if theirs[0] >= mine[0] and theirs[1] <= mine[1] and theirs[2] <= mine[2] and theirs != mine:
            found.append(other)
    return found


def nothing_fits(rejected: list[Candidate], preset: Preset) -> NoModelFitsError:
    closest = [c for c in rejected if not c.missing][:3] or rejected[:3]
    parts = []
    for c in closest:
        needs = []
        for key, (fig_name, is_max, _unit) in constraints.CONSTRAINTS.items():
            limit, value = getattr(preset.constraints, key), c.value(fig_name)
            if limit is not None and value is not None and (value > limit if is_max else value < limit):
                needs.append(f"{opt(key)} {constraints.round_to_admit(value, is_max)}")
        needs += c.unusable[:1]  # the smaller graph that was rejected: relaxing the budget is not the only way
        parts.append(f"{c.model} ({', '.join(needs)})" if needs else f"{c.model} ({(c.reasons or ('?',))[0]})")
    unmeasured = [c for c in rejected if unmeasured_only(c)]
    if unmeasured and len(unmeasured) == len(rejected):  # nothing breaks a limit: nothing measured could
        return NoModelFitsError(f"No model is known to fit target '{preset.name}': {len(unmeasured)} candidate(s) "
                                f"not measured ({'; '.join(parts)}).",
                                hint=f"Measure them first ({opt('measure')}), or profile them (vischoose profile).")
    return NoModelFitsError(
        f"No model fits target '{preset.name}'; closest: {'; '.join(parts)}.",
        hint=f"Relax a constraint as shown, or add candidates with {opt('models')}.")
