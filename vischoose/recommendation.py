"""Pure recommendation: (candidates, profiles, evaluations, preset) -> Recommendation. No I/O, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from vischoose.catalog import MIB, CatalogEntry
from vischoose.catalog import load as load_catalog
from vischoose.errors import NoModelFitsError
from vischoose.presets import Preset, bytes_per_param
from vischoose.records import EvalResult, Profile

# constraint key -> (figure name, is an upper limit, CLI flag, unit)
CONSTRAINTS = {
    "max_memory_mb": ("memory_mb", True, "--budget-mb", "MiB"),
    "max_latency_ms": ("latency_ms", True, "--max-latency-ms", "ms"),
    "min_throughput": ("throughput", False, "--min-throughput", "img/s"),
    "min_top1": ("top1", False, "--min-top1", "%"),
    "max_params_m": ("params_m", True, "--max-params-m", "M params"),
}
_LABELS = {"max_memory_mb": "budget", "max_latency_ms": "latency limit", "min_throughput": "throughput floor",
           "min_top1": "top-1 floor", "max_params_m": "parameter limit"}
# timm's published CPU latency (i9-10940X, batch 1, fp32) used to estimate unmeasured models of a family
_ESTIMATE_REF = {"resnet": "resnet50", "vit": "vit_b16", "hybrid": "vit_b16"}


@dataclass(frozen=True)
class Figure:
    """A number with where it came from: measured, published, computed or estimated."""

    value: float
    source: str
    note: str = ""


@dataclass(frozen=True)
class Candidate:
    """One model's figures under the target's conditions, and the constraints it breaks."""

    model: str
    tag: str
    family: str | None
    figures: dict[str, Figure]
    violations: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # constraint figures nobody measured or published
    excess: float = 1.0  # how far the worst violated limit is off (ratio >= 1)
    caveat: str | None = None  # where the source article's figure is not reproducible

    @property
    def fits(self) -> bool:
        """Whether every constraint is met (and could be checked)."""
        return not self.violations and not self.missing

    def value(self, name: str) -> float | None:
        """The value of a figure, or None."""
        fig = self.figures.get(name)
        return fig.value if fig else None


@dataclass(frozen=True)
class Recommendation:
    """The chosen model, why, the runners-up, every rejection and the Pareto front."""

    target: str
    chosen: Candidate
    reason: str
    runners_up: list[Candidate]
    rejected: list[Candidate]
    pareto: frozenset[str]
    preset: Preset
    notes: list[str] = field(default_factory=list)


def build_candidates(entries: list[CatalogEntry], preset: Preset, profiles: list[Profile],
                     evals: list[EvalResult], extra: list[tuple[str, str]] = ()) -> list[Candidate]:
    """Figures for each catalog entry (and extra (model, tag) pairs known only from profiles)."""
    catalog = {**load_catalog(), **{e.alias: e for e in entries}}  # latency estimates need the family references
    cands = [_candidate(e.alias, e.tag, e.family, e, preset, profiles, evals, catalog) for e in entries]
    cands += [_candidate(m, t, None, None, preset, profiles, evals, catalog) for m, t in extra]
    return cands


def _candidate(model: str, tag: str, family: str | None, entry: CatalogEntry | None, preset: Preset,
               profiles: list[Profile], evals: list[EvalResult], catalog: dict[str, CatalogEntry]) -> Candidate:
    figs: dict[str, Figure] = {}
    mine = matching_profiles(profiles, model, tag, preset)
    _top1(figs, entry, [e for e in evals if e.model == model or e.tag == tag])
    _size(figs, entry, mine, preset)
    _speed(figs, entry, mine, preset, catalog)
    return _checked(Candidate(model=model, tag=tag, family=family or (entry.family if entry else None),
                              figures=figs, caveat=entry.caveat if entry else None), preset)


def matching_profiles(profiles: list[Profile], model: str, tag: str, preset: Preset) -> list[Profile]:
    """Successful torch profiles of this model under the preset's protocol, newest first."""
    spec = preset.measure
    rows = [p for p in profiles if p.ok and (p.model == model or p.tag == tag) and p.dtype == spec.dtype
            and p.runtime == "torch" and (p.layout == "channels_last") == spec.channels_last]
    if spec.device == "auto":
        gpu = [p for p in rows if p.device.startswith("cuda")]
        rows = gpu or [p for p in rows if p.device == "cpu"]
    else:
        rows = [p for p in rows if p.device.split(":")[0] == spec.device.split(":")[0]]
    return sorted(rows, key=lambda p: p.created_at, reverse=True)


def _top1(figs: dict[str, Figure], entry: CatalogEntry | None, evals: list[EvalResult]) -> None:
    if evals:
        ev = max(evals, key=lambda e: e.created_at)
        figs["top1"] = Figure(ev.top1, "measured", f"on {ev.images} images of {ev.dataset}")
    elif entry:
        figs["top1"] = Figure(entry.top1, "published", f"ImageNet-1k at {entry.top1_size} px (timm results)")


def _size(figs: dict[str, Figure], entry: CatalogEntry | None, mine: list[Profile], preset: Preset) -> None:
    params = entry.params / 1e6 if entry else next((p.params_m for p in mine if p.params_m), None)
    if params is None:
        return
    figs["params_m"] = Figure(params, "published" if entry else "measured")
    dtype = preset.measure.dtype
    if preset.constraints.memory_basis == "peak":
        peak = next((p.peak_memory_mb for p in mine if p.peak_memory_mb is not None), None)
        if peak is not None:
            figs["memory_mb"] = Figure(peak, "measured", f"peak inference memory, {dtype}")
    else:
        figs["memory_mb"] = Figure(params * 1e6 * bytes_per_param(dtype) / MIB, "computed", f"{dtype} weights")
    if entry:
        figs["gflops"] = Figure(entry.gflops, "published", f"at {entry.input_size} px")


def _speed(figs: dict[str, Figure], entry: CatalogEntry | None, mine: list[Profile], preset: Preset,
           catalog: dict[str, CatalogEntry]) -> None:
    spec = preset.measure
    lat = next((p for p in mine if p.latency_ms_p90 is not None), None)
    if lat:
        figs["latency_ms"] = Figure(lat.latency_ms_p90, "measured", f"batch-1 p90, {lat.device} {lat.dtype}")
    elif entry and (est := _estimate_latency(entry, catalog)):
        figs["latency_ms"] = est
    thr = next((p for p in mine if p.throughput_img_s and p.batch_size == spec.batch_size), None)
    if thr:
        figs["throughput"] = Figure(thr.throughput_img_s, "measured", f"batch {thr.batch_size}, {thr.device}")
    elif "latency_ms" in figs:
        figs["throughput"] = Figure(1000.0 / figs["latency_ms"].value, "estimated", "1000 / batch-1 latency")


def _estimate_latency(entry: CatalogEntry, catalog: dict[str, CatalogEntry]) -> Figure | None:
    if entry.ref_cpu_latency_ms:
        return Figure(entry.ref_cpu_latency_ms, "published", entry.ref_cpu or "")
    ref = catalog.get(_ESTIMATE_REF.get(entry.family, ""))
    if not ref or not ref.ref_cpu_latency_ms:
        return None
    ms = ref.ref_cpu_latency_ms / ref.gmacs * entry.gmacs
    return Figure(ms, "estimated", f"GMACs-scaled from {ref.alias} {ref.ref_cpu_latency_ms} ms ({ref.ref_cpu})")


def _checked(cand: Candidate, preset: Preset) -> Candidate:
    violations, missing, excess = [], [], 1.0
    for key, (fig_name, is_max, _flag, unit) in CONSTRAINTS.items():
        limit = getattr(preset.constraints, key)
        if limit is None:
            continue
        fig = cand.figures.get(fig_name)
        if fig is None:
            missing.append(f"no {fig_name.replace('_', ' ')} figure to check the {_LABELS[key]} "
                           f"(measure it: vischoose profile --target {preset.name} {cand.model})")
            continue
        bad = fig.value > limit if is_max else fig.value < limit
        if bad:
            sign = ">" if is_max else "<"
            violations.append(f"{fig.value:,.1f} {unit} {sign} {limit:,.6g} {unit} {_LABELS[key]}"
                              f" ({fig.source}{', ' + fig.note if fig.note else ''})")
            excess = max(excess, fig.value / limit if is_max else limit / max(fig.value, 1e-9))
    return replace(cand, violations=tuple(violations), missing=tuple(missing), excess=excess)


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


def pareto_front(cands: list[Candidate]) -> frozenset[str]:
    """Models no other model beats on accuracy, latency and memory at once."""
    pts = [(c.model, c.value("top1"), c.value("latency_ms"), c.value("memory_mb")) for c in cands]
    pts = [p for p in pts if None not in p]
    front = set()
    for m, acc, lat, mem in pts:
        dominated = any(a >= acc and l <= lat and s <= mem and (a, l, s) != (acc, lat, mem)
                        for _, a, l, s in pts)
        if not dominated:
            front.add(m)
    return frozenset(front)


def recommend(cands: list[Candidate], preset: Preset) -> Recommendation:
    """Choose: the guide's preferred model if it fits, else the best fitting one by the preset's ranking.

    Raises:
        NoModelFitsError: no candidate meets every constraint (message names the closest and the limits
            that would admit them).
    """
    fitting = sorted((c for c in cands if c.fits), key=lambda c: rank_key(c, preset.sort))
    rejected = sorted((c for c in cands if not c.fits), key=lambda c: (c.excess, c.model))
    if not fitting:
        raise _nothing_fits(rejected, preset)
    preferred = next((c for p in preset.prefer for c in fitting if c.model == p), None)
    if preferred:
        chosen = preferred
        reason = f"the selection guide's choice for '{preset.name}' and it meets every constraint"
    else:
        chosen = fitting[0]
        reason = f"best by {', '.join(preset.sort)} among the {len(fitting)} models that meet every constraint"
        misses = [c for p in preset.prefer for c in rejected if c.model == p]
        if misses:
            why = (misses[0].violations or misses[0].missing)[0]
            reason += f"; the guide's choice {misses[0].model} was rejected: {why}"
    notes = [f"{chosen.model}: {chosen.caveat}"] if chosen.caveat else []
    if any(f.source == "estimated" for c in cands for f in c.figures.values()):
        notes.append("estimated figures are scaled from published ones: run vischoose profile "
                     f"--target {preset.name} (or recommend --measure) to measure them here")
    return Recommendation(target=preset.name, chosen=chosen, reason=reason,
                          runners_up=[c for c in fitting if c is not chosen], rejected=rejected,
                          pareto=pareto_front(cands), preset=preset, notes=notes)


def _nothing_fits(rejected: list[Candidate], preset: Preset) -> NoModelFitsError:
    closest = [c for c in rejected if not c.missing][:3] or rejected[:3]
    parts = []
    for c in closest:
        needs = []
        for key, (fig_name, is_max, flag, unit) in CONSTRAINTS.items():
            limit, value = getattr(preset.constraints, key), c.value(fig_name)
            if limit is not None and value is not None and (value > limit if is_max else value < limit):
                needs.append(f"{flag} {_round_to_admit(value, is_max)}")
        parts.append(f"{c.model} ({', '.join(needs)})" if needs else f"{c.model} ({(c.missing or ('?',))[0]})")
    return NoModelFitsError(
        f"No model fits target '{preset.name}'; closest: {'; '.join(parts)}.",
        hint="Relax a constraint as shown, or add candidates with --models.")


def _round_to_admit(value: float, is_max: bool) -> str:
    import math

    return f"{math.ceil(value * 10) / 10:g}" if is_max else f"{math.floor(value * 10) / 10:g}"
