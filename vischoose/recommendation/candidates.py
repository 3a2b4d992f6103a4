"""Each model judged as deployed: for every runtime and precision its preset allows ([deploy]; torch at the [measure]
dtype without one) it gets figures (recommendation.figures) and its limits are checked (recommendation.constraints);
the model keeps one variant: the preset's own or the most precise one that fits, unless a measured, verified graph
that fits ranks better. A model that fits no way is judged at its smallest variant."""

from typing import TYPE_CHECKING, NamedTuple

from vischoose.models.catalog import CatalogEntry
from vischoose.presets import Preset
from vischoose.recommendation import constraints, figures, wording
from vischoose.recommendation.figures import Figure, Known
from vischoose.runtimes.precision import FIDELITY, Variant

if TYPE_CHECKING:
    from vischoose.recommendation import estimates, memory
    from vischoose.records import EvalResult, Profile

    # what this machine's measured models fit for the others: latency points, and peaks per weight (--memory-basis peak)
    Fitted = tuple[dict[estimates.Group, list[estimates.Point]], dict[memory.Group, list[memory.Peer]]]


class Candidate(NamedTuple):
    """One model's figures under the target's conditions, and the constraints it breaks (a NamedTuple, as Figure)."""

    model: str
    tag: str
    family: str | None
    figures: dict[str, Figure]
    violations: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # constraint figures nobody measured or published
    excess: float = 1.0  # how far the worst violated limit is off (ratio >= 1)
    caveat: str | None = None  # where the source article's figure is not reproducible
    variant: Variant = figures.TORCH_FP32  # how the model is deployed: runtime and precision
    plain: bool = True  # torch at the preset's [measure] dtype (no label needed)
    verified: bool = False  # figures from a stored graph whose agreement check passed (variant_status "ok")
    variant_note: str = ""  # the variant's size, and its measured speed-up and agreement or what is unknown
    variant_todo: str = ""  # the command that measures an unmeasured variant
    unusable: tuple[str, ...] = ()  # variants never used: their stored graph was rejected

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the model is rejected (or what was ruled out): violations, missing figures, rejected graphs."""
        return self.violations + self.missing + self.unusable

    @property
    def fits(self) -> bool:
        """Whether every constraint is met (and could be checked)."""
        return not self.violations and not self.missing

    def value(self, name: str) -> float | None:
        """The value of a figure, or None."""
        fig = self.figures.get(name)
        return fig.value if fig else None


def build_candidates(entries: list[CatalogEntry], preset: Preset, profiles: "list[Profile]",
                     evals: "list[EvalResult]", known: Known, extra: list[tuple[str, str]] = ()) -> list[Candidate]:
    """Figures for each catalog entry (and extra (model, tag) pairs known only from profiles)."""
    known = known._replace(catalog={**known.catalog, **{e.alias: e for e in entries}})  # estimates need references
    order = preference_order(preset)
    local = figures.local_points(known.catalog, preset, profiles, order)
    peaks = figures.peak_peers(known.catalog, preset, profiles, order, known)
    stored = (profiles, _index(profiles), evals, _index(evals))
    cands = [_candidate(e.alias, e.tag, e.family, e, preset, order, stored, known, (local, peaks)) for e in entries]
    cands += [_candidate(m, t, None, None, preset, order, stored, known, (local, peaks)) for m, t in extra]
    return cands


Stored = tuple[list["Profile"], dict[str, list[int]], list["EvalResult"], dict[str, list[int]]]


def _index(rows: list) -> dict[str, list[int]]:
    """Model or tag -> positions of its rows (a zoo-sized candidate list must not scan every row per variant)."""
    found: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        for name in {row.model, row.tag}:
            found.setdefault(name, []).append(i)
    return found


def _own(rows: list, index: dict[str, list[int]], model: str, tag: str) -> list:
    """The rows of a model (by its name or its tag), once each, in stored order."""
    return [rows[i] for i in sorted({*index.get(model, ()), *index.get(tag, ())})]


def _candidate(model: str, tag: str, family: str | None, entry: CatalogEntry | None, preset: Preset,
               order: list[Variant], stored: Stored, known: Known, fitted: "Fitted") -> Candidate:
    (local, peaks), (all_profiles, by_profile, evals, by_eval) = fitted, stored
    family, caveat = family or (entry.family if entry else None), entry.caveat if entry else None
    profiles = _own(all_profiles, by_profile, model, tag)  # this model's rows: what matching_profiles keeps of all
    mine = _own(evals, by_eval, model, tag)
    torch_fp32 = figures.matching_profiles(profiles, model, tag, preset, figures.TORCH_FP32)
    options, unusable, own = [], [], preset.plain
    on_gpu = _on_gpu(profiles, model, tag, preset)  # once: the same for every variant
    for variant in order:
        if options and options[-1].fits and not profiles and not mine:
            break  # nothing measured: the first variant that fits is the one chosen (_choose), the rest cannot rank
        if on_gpu and "cuda" not in known.runtime(variant.runtime).devices:
            continue  # a graph runtime measured on the CPU: where the target's figures come from a GPU, torch runs
        rows = figures.matching_profiles(profiles, model, tag, preset, variant)
        if rows and rows[0].variant_status == "rejected":
            unusable.append(wording.rejected_graph(variant, rows[0]))
            continue
        evaluated = figures.latest_eval(mine, variant)
        if evaluated is not None and evaluated.accuracy_met is False:
            unusable.append(wording.missed_accuracy(variant, evaluated))
            continue
        # an unmeasured graph borrows the torch fp32 figures measured here (its speed, the fp32 peak)
        stand_in = torch_fp32 if variant.runtime != "torch" and not rows else []
        figs: dict[str, Figure] = {}
        figures.top1(figs, entry, mine, variant, rows)
        figures.size(figs, entry, rows, stand_in, preset, variant, known, peaks)
        figures.aware_size(figs, evaluated, preset)
        figures.speed(figs, entry, rows or stand_in, preset, known.catalog, variant, bool(stand_in), local)
        figures.end_to_end(figs, entry, rows or stand_in, all_profiles, preset)
        figures.cold_start(figs, rows, variant)
        violations, missing, excess = constraints.limits(figs, preset, model, variant)
        plain = variant == own
        note, todo = ("", "") if plain else wording.describe_variant(model, variant, figs, rows, torch_fp32, preset, evaluated,
                                                      known.runtime(variant.runtime))
        options.append(Candidate(model=model, tag=tag, family=family, figures=figs, violations=violations,
                                 missing=missing, excess=excess, caveat=caveat, variant=variant, plain=plain,
                                 verified=bool(rows) and rows[0].variant_status == "ok", variant_note=note,
                                 variant_todo=todo))
    chosen = _choose(options, preset, Candidate(model, tag, family, {}, caveat=caveat), unusable)
    chosen = _against_other_runtimes(chosen, options)
    return chosen._replace(unusable=tuple(unusable)) if unusable else chosen


def _against_other_runtimes(chosen: Candidate, options: list[Candidate]) -> Candidate:
    """Which runtime won and by how much: the chosen variant's measured batch-1 latency against the other
    runtimes measured here at the same precision."""
    mine = chosen.figures.get("latency_ms")
    if chosen.variant is None or mine is None or mine.source != "measured":
        return chosen
    others = [c for c in options if c.variant and c.variant.runtime != chosen.variant.runtime
              and c.variant.precision == chosen.variant.precision
              and (f := c.figures.get("latency_ms")) is not None and f.source == "measured" and "standing in" not in f.note]
    if not others or "standing in" in mine.note:
        return chosen
    ratios = ", ".join(f"{c.value('latency_ms') / mine.value:.2f}x the latency on {c.variant.label}" for c in others)
    note = f"{chosen.variant.label} measured against the other runtimes here: {ratios}"
    return chosen._replace(variant_note="; ".join(n for n in (chosen.variant_note, note) if n))


def _on_gpu(profiles: "list[Profile]", model: str, tag: str, preset: Preset) -> bool:
    """Whether the target runs this model on a GPU: a cuda preset, or 'auto' with GPU rows measured for it."""
    device = preset.measure.device
    if device.startswith("cuda"):
        return True
    return device == "auto" and any(p.device.startswith("cuda") for p in
                                    figures.matching_profiles(profiles, model, tag, preset, preset.plain))


def preference_order(preset: Preset) -> list[Variant]:
    """The preset's own variant first, then the most precise (fp32, then 16-bit, then int8), in listed order."""
    listed = list(preset.variants)
    return sorted(listed, key=lambda v: (v != preset.plain, FIDELITY[v.precision], listed.index(v)))


def _choose(options: list[Candidate], preset: Preset, base: Candidate, unusable: list[str]) -> Candidate:
    """The first variant that fits, unless a verified graph that fits ranks better; else the smallest."""
    if not options:
        return base._replace(violations=(f"no deployable variant of the {len(unusable)} allowed",), excess=float("inf"))
    fitting = [c for c in options if c.fits]
    if fitting:
        first, sort = fitting[0], preset.sort
        better = [c for c in fitting[1:] if c.verified and rank_key(c, sort) < rank_key(first, sort)]
        return min(better, key=lambda c: rank_key(c, sort)) if better else first
    # judged at the variant closest to fitting: with only the budget broken, the smallest one
    return min(options, key=lambda c: (bool(c.missing), constraints.shortfall(c, preset), options.index(c)))


def rank_key(cand: Candidate, sort: tuple[str, ...]) -> tuple:
    """Sort key: preset keys in order ('-' = higher is better), unknown figures last, then the name."""
    key: list = []
    for spec in sort:
        name = spec.lstrip("-")
        value = cand.value(name)
        if value is None:
            key.append((1, 0.0))
        else:
            key.append((0, -value if spec.startswith("-") else value))
    return (*key, cand.model)
