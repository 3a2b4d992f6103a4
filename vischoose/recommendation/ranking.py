"""Pure recommendation: (candidates, profiles, evaluations, preset) -> Recommendation. No I/O, no torch.

Each model is judged as deployed: for every runtime and precision its preset allows ([deploy]; torch at the
[measure] dtype without one) it gets a size, speed and accuracy, and the model keeps one variant: the preset's
own (torch at its dtype) or the most precise one that fits, unless a measured, verified graph that fits ranks
better. A model that fits no way is judged at its smallest variant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from vischoose.errors import NoModelFitsError
from vischoose.models.catalog import MIB, CatalogEntry
from vischoose.models.catalog import load as load_catalog
from vischoose.recommendation import memory
from vischoose.recommendation.presets import Preset
from vischoose.results.records import EvalResult, Profile
from vischoose.runtimes import registry
from vischoose.runtimes.precision import FIDELITY, Variant, bytes_per_param

if TYPE_CHECKING:  # estimates is imported only where this machine measured something to estimate from
    from vischoose.recommendation import estimates

# constraint key -> (figure name, is an upper limit, CLI flag, unit)
CONSTRAINTS = {
    "max_memory_mb": ("memory_mb", True, "--budget-mb", "MiB"),
    "max_latency_ms": ("latency_ms", True, "--max-latency-ms", "ms"),
    "min_throughput": ("throughput", False, "--min-throughput", "img/s"),
    "min_top1": ("top1", False, "--min-top1", "%"),
    "max_params_m": ("params_m", True, "--max-params-m", "M params"),
}
_FIGURE_WORDS = {"memory_mb": "memory", "latency_ms": "latency", "throughput": "throughput", "top1": "top-1",
                 "params_m": "parameter count"}
_LABELS = {"max_memory_mb": "budget", "max_latency_ms": "latency limit", "min_throughput": "throughput floor",
           "min_top1": "top-1 floor", "max_params_m": "parameter limit"}
# timm's published CPU latency (i9-10940X, batch 1, fp32) used to estimate unmeasured models of a family
_ESTIMATE_REF = {"resnet": "resnet50", "vit": "vit_b16", "hybrid": "vit_b16"}
# Bytes per parameter of an int8 ONNX file (runtimes.ortbuild.quantize_int8's recipes), measured on random-init exports:
# resnet18 1.01 (every convolution int8); vit_ti16 1.24, vit_s16 1.10, vit_b16 1.04 (patch embedding, position
# embeddings and norms stay fp32); r_vit_ti16 1.51, r50_vit_b16 1.43, r26_vit_s32 2.28 (the CNN stem stays fp32)
INT8_BYTES_PER_PARAM = {"resnet": 1.01, "vit": 1.10, "hybrid": 1.5}
INT8_BYTES_UNKNOWN = 1.5  # a model outside the catalog's families
TORCH_FP32 = Variant(registry.TORCH, "fp32")


class Figure(NamedTuple):
    """A number with where it came from: measured, published, computed or estimated (a NamedTuple: see Variant)."""

    value: float
    source: str
    note: str = ""


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
    variant: Variant = TORCH_FP32  # how the model is deployed: runtime and precision
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
    unmeasured: list[Candidate] = []  # no figure for a limit only measuring checks: not measured, not rejected
    unmeasured_why: tuple[tuple[str, str], ...] = ()  # (model, why it was not measured), from recommend --measure


def build_candidates(entries: list[CatalogEntry], preset: Preset, profiles: list[Profile],
                     evals: list[EvalResult], extra: list[tuple[str, str]] = ()) -> list[Candidate]:
    """Figures for each catalog entry (and extra (model, tag) pairs known only from profiles)."""
    catalog = {**load_catalog(), **{e.alias: e for e in entries}}  # latency estimates need the family references
    order = preference_order(preset)
    local, peaks = local_points(catalog, preset, profiles, order), peak_peers(catalog, preset, profiles, order)
    cands = [_candidate(e.alias, e.tag, e.family, e, preset, order, profiles, evals, catalog, local, peaks)
             for e in entries]
    cands += [_candidate(m, t, None, None, preset, order, profiles, evals, catalog, local, peaks) for m, t in extra]
    return cands


def local_points(catalog: dict[str, CatalogEntry], preset: Preset, profiles: list[Profile],
                 order: list[Variant]) -> dict[estimates.Group, list[estimates.Point]]:
    """The catalog models measured here per runtime, precision and family, from rows under the preset's protocol."""
    rows = [((v.runtime, v.dtype, e.family), e, p) for e in catalog.values() for v in {*order, TORCH_FP32}
            for p in matching_profiles(profiles, e.alias, e.tag, preset, v)[:1]]
    if not rows:
        return {}
    from vischoose.recommendation import estimates

    return estimates.points(rows)


def _candidate(model: str, tag: str, family: str | None, entry: CatalogEntry | None, preset: Preset,
               order: list[Variant], profiles: list[Profile], evals: list[EvalResult],
               catalog: dict[str, CatalogEntry], local: dict[estimates.Group, list[estimates.Point]],
               peaks: dict[memory.Group, list[memory.Peer]] | None = None) -> Candidate:
    family, caveat = family or (entry.family if entry else None), entry.caveat if entry else None
    mine = [e for e in evals if e.model == model or e.tag == tag]
    torch_fp32 = matching_profiles(profiles, model, tag, preset, TORCH_FP32)
    options, unusable, own = [], [], preset.plain
    for variant in order:
        if "cuda" not in registry.get(variant.runtime).devices and _on_gpu(profiles, model, tag, preset):
            continue  # a graph runtime measured on the CPU: where the target's figures come from a GPU, torch runs
        rows = matching_profiles(profiles, model, tag, preset, variant)
        if not rows and registry.get(variant.runtime).missing():
            continue  # a runtime that cannot run here (not installed, another CPU), and no figures from elsewhere
        if rows and rows[0].variant_status == "rejected":
            unusable.append(_rejected_graph(variant, rows[0]))
            continue
        evaluated = _latest_eval(mine, variant)
        if evaluated is not None and evaluated.accuracy_met is False:
            unusable.append(_missed_accuracy(variant, evaluated))
            continue
        # an unmeasured graph borrows the torch fp32 figures measured here (its speed, the fp32 peak)
        stand_in = torch_fp32 if variant.runtime != "torch" and not rows else []
        figs: dict[str, Figure] = {}
        _top1(figs, entry, mine, variant, rows)
        _size(figs, entry, rows, stand_in, preset, variant, peaks)
        _aware_size(figs, evaluated, preset)
        _speed(figs, entry, rows or stand_in, preset, catalog, variant, bool(stand_in), local)
        violations, missing, excess = _limits(figs, preset, model, variant)
        plain = variant == own
        note, todo = ("", "") if plain else _describe(model, variant, figs, rows, torch_fp32, preset, evaluated)
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


def _on_gpu(profiles: list[Profile], model: str, tag: str, preset: Preset) -> bool:
    """Whether the target runs this model on a GPU: a cuda preset, or 'auto' with GPU rows measured for it."""
    device = preset.measure.device
    if device.startswith("cuda"):
        return True
    return device == "auto" and any(p.device.startswith("cuda") for p in
                                    matching_profiles(profiles, model, tag, preset, preset.plain))


def _catalog_int8_note(variant: Variant) -> str:
    """Where a catalog int8 size comes from: the catalog lists one runtime's files, standing in for the others."""
    if variant.runtime == registry.CATALOG_INT8:
        return f"{variant.label} file of this architecture, from the catalog"
    return (f"{registry.title(registry.CATALOG_INT8)} int8 file of this architecture, from the catalog, standing in "
            f"for {variant.label} until measured")


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
    return min(options, key=lambda c: (bool(c.missing), _shortfall(c, preset), options.index(c)))


def _shortfall(cand: Candidate, preset: Preset) -> float:
    """How far a candidate is off all its broken limits together: the product of the ratios (1 = fits)."""
    total = 1.0
    for key, (fig_name, is_max, _flag, _unit) in CONSTRAINTS.items():
        limit, value = getattr(preset.constraints, key), cand.value(fig_name)
        if limit is not None and value is not None and (value > limit if is_max else value < limit):
            total *= value / limit if is_max else limit / max(value, 1e-9)
    return total


def _rejected_graph(variant: Variant, row: Profile) -> str:
    agree = f"top-1 agreement {100 * row.agreement_top1:.1f}%" if row.agreement_top1 is not None else "agreement"
    return f"{variant.label} not used: its graph was rejected ({agree} with eager fp32, {row.created_at[:10]})"


def matching_profiles(profiles: list[Profile], model: str, tag: str, preset: Preset,
                      variant: Variant | None = None, flagged: bool = False) -> list[Profile]:
    """Successful profiles of this model under the preset's protocol, newest first; never a flagged one (contended,
    or batch-1 figures that contradict each other: Profile.flagged) unless `flagged` asks for those too.

    Without a variant: torch at the preset's [measure] dtype; onnxruntime rows match on precision only (the
    graph's layout is its own).
    """
    spec = preset.measure
    variant = variant or preset.plain
    rows = [p for p in profiles if p.ok and (flagged or not p.flagged) and (p.model == model or p.tag == tag)
            and p.dtype == variant.dtype
            and p.runtime == variant.runtime
            and (variant.runtime != "torch" or (p.layout == "channels_last") == spec.channels_last)]
    if spec.device == "auto":
        gpu = [p for p in rows if p.device.startswith("cuda")]
        rows = gpu or [p for p in rows if p.device == "cpu"]
    else:
        rows = [p for p in rows if p.device.split(":")[0] == spec.device.split(":")[0]]
    return sorted(rows, key=lambda p: p.created_at, reverse=True)


def _latest_eval(evals: list[EvalResult], variant: Variant) -> EvalResult | None:
    own = [e for e in evals if e.runtime == variant.runtime and (e.runtime == "torch" or e.dtype == variant.dtype)]
    return max(own, key=lambda e: e.created_at) if own else None


def _missed_accuracy(variant: Variant, ev: EvalResult) -> str:
    return f"{variant.label} not used: {missed_limit(ev)}"


def float_layers(ev: EvalResult) -> str:
    """'3 of 52 layers' (or '3 layers' where the count of quantizable layers is not known)."""
    layers = len(ev.reverted_layers or [])
    return f"{layers} of {ev.quantizable_layers} layers" if ev.quantizable_layers else f"{layers} layers"


def missed_limit(ev: EvalResult) -> str:
    """Why accuracy-aware int8 was rejected, with the best drop it reached: on the images that chose the float layers
    (where the search judged it) and on the held-out ones."""
    limit = f"--max-accuracy-drop {ev.max_accuracy_drop:g}"
    if ev.float_only:
        return (f"int8 keeps {limit} on {ev.dataset} only with all {ev.quantizable_layers} quantizable layers in "
                "float, which is the fp32 graph")
    drops = []
    if ev.choice_drop_pts is not None:
        drops.append(f"{ev.choice_drop_pts:.1f} top-1 points on the images that chose the layers")
    if ev.drop_pts is not None:
        drops.append(f"{ev.drop_pts:.1f} top-1 points on {ev.images} held-out images")
    lost = " and ".join(drops) or "top-1 points"
    return f"int8 loses {lost} of {ev.dataset} even with {float_layers(ev)} in float ({limit})"


def _aware_size(figs: dict[str, Figure], ev: EvalResult | None, preset: Preset) -> None:
    """Accuracy-aware int8 ships a larger file than plain int8: its own size, where the limit is on the file."""
    if ev is None or ev.max_accuracy_drop is None or ev.file_mb is None or preset.constraints.memory_basis == "peak":
        return
    figs["memory_mb"] = Figure(ev.file_mb, "measured", f"accuracy-aware int8 file, "
                               f"{float_layers(ev)} in float")


def _top1(figs: dict[str, Figure], entry: CatalogEntry | None, evals: list[EvalResult], variant: Variant,
          rows: list[Profile]) -> None:
    ev = _latest_eval(evals, variant)
    if ev is not None:
        figs["top1"] = Figure(ev.top1, "measured", _measured_top1_note(ev, variant))
        if entry:
            figs["published_top1"] = Figure(entry.top1, "published", f"ImageNet-1k at {entry.top1_size} px (timm results)")
        return
    torch_evals = [e for e in evals if e.runtime == "torch"] if variant.runtime != "torch" else []
    if torch_evals:
        ev = max(torch_evals, key=lambda e: e.created_at)
        fig = Figure(ev.top1, "measured", f"on {ev.images} images of {ev.dataset}, torch {ev.dtype}")
    elif entry:
        fig = Figure(entry.top1, "published", f"ImageNet-1k at {entry.top1_size} px (timm results)")
    else:
        return
    if variant.precision == "int8":
        row = rows[0] if rows else None
        if row and row.agreement_top1 is not None and row.variant_status == "ok":
            cost = f"int8 top-1 agreement {100 * row.agreement_top1:.1f}% measured on {row.agreement_images} images"
        elif row and row.agreement_top1 is not None:
            cost = "int8 accuracy cost unverified (agreement checked on random inputs or weights only)"
        else:
            cost = "int8 accuracy cost not measured"
        fig = fig._replace(note=f"{fig.note}; the fp32 model's figure, {cost}")
    figs["top1"] = fig


def _measured_top1_note(ev: EvalResult, variant: Variant) -> str:
    """'on 200 images of DIR, onnxruntime int8, 95 % CI 70.1-82.0; eager fp32 77.50 % on the same images (drop 1.50)'."""
    where = "" if variant.runtime == "torch" else f", {variant.label}"
    ci = f", 95 % CI {ev.top1_low:.1f}-{ev.top1_high:.1f}" if ev.top1_low is not None and ev.top1_high is not None else ""
    drop = (f"; eager fp32 {ev.fp32_top1:.2f} % on the same images (drop {ev.fp32_top1 - ev.top1:.2f})"
            if ev.fp32_top1 is not None else "")
    if ev.max_accuracy_drop is not None:
        return (f"on {ev.images} held-out images of {ev.dataset} (the others chose the float layers), "
                f"accuracy-aware {variant.label} with {float_layers(ev)} in float{ci}{drop}; "
                f"speed figures are plain int8's")
    return f"on {ev.images} images of {ev.dataset}{where}{ci}{drop}"


def _peak(figs: dict[str, Figure], entry: CatalogEntry | None, rows: list[Profile], stand_in: list[Profile],
          variant: Variant, label: str, params: float, peaks: dict[memory.Group, list[memory.Peer]]) -> None:
    """--memory-basis peak: the measured peak (recommendation.memory: the on-device one), torch fp32's standing in
    for an unmeasured fp32 graph, or an estimate from the models of the family measured here; else none (the model
    is then listed as not measured, not rejected)."""
    found = memory.peak_figure(rows, variant, label)
    borrowed = next((p for p in stand_in if memory.usable(p)), None) if variant.precision == "fp32" else None
    if found is None and borrowed is not None:
        found = (borrowed.peak_memory_mb, "measured", f"peak inference memory, torch float32, standing in for "
                                                      f"{variant.label}")
    if found is None and entry is not None:
        per = INT8_BYTES_PER_PARAM.get(entry.family, INT8_BYTES_UNKNOWN) if variant.precision == "int8" else \
            bytes_per_param(variant.dtype)
        found = memory.estimate(entry.alias, params * 1e6 * per / MIB, (variant.runtime, variant.dtype, entry.family),
                                peaks)
    if found is not None:
        figs["memory_mb"] = Figure(*found)


def peak_peers(catalog: dict[str, CatalogEntry], preset: Preset, profiles: list[Profile],
               order: list[Variant]) -> dict[memory.Group, list[memory.Peer]]:
    """The catalog models measured here with a usable peak, per runtime, dtype and family (--memory-basis peak)."""
    if preset.constraints.memory_basis != "peak":
        return {}
    return memory.group_peers([((v.runtime, v.dtype, e.family), p) for e in catalog.values()
                               for v in {*order, TORCH_FP32} for p in matching_profiles(profiles, e.alias, e.tag,
                                                                                         preset, v)])


def _size(figs: dict[str, Figure], entry: CatalogEntry | None, rows: list[Profile], stand_in: list[Profile],
          preset: Preset, variant: Variant, peaks: dict[memory.Group, list[memory.Peer]] | None = None) -> None:
    params = entry.params / 1e6 if entry else next((p.params_m for p in rows + stand_in if p.params_m), None)
    if params is None:
        return
    figs["params_m"] = Figure(params, "published" if entry else "measured")
    label = variant.dtype if variant.runtime == "torch" else variant.label
    if preset.constraints.memory_basis == "peak":
        _peak(figs, entry, rows, stand_in, variant, label, params, peaks or {})
    elif filed := next((p for p in rows if p.file_mb), None):
        figs["memory_mb"] = Figure(filed.file_mb, "measured", f"{variant.label} file")
    elif variant.precision == "int8" and entry and entry.int8_mib:
        figs["memory_mb"] = Figure(entry.int8_mib, "computed", _catalog_int8_note(variant))
    elif variant.precision == "int8":
        per = INT8_BYTES_PER_PARAM.get(entry.family if entry else "", INT8_BYTES_UNKNOWN)
        figs["memory_mb"] = Figure(params * 1e6 * per / MIB, "estimated", f"{label} file, ~{per:g} bytes/param")
    else:
        figs["memory_mb"] = Figure(params * 1e6 * bytes_per_param(variant.dtype) / MIB, "computed",
                                   f"{variant.dtype} weights")
    if entry:
        figs["gflops"] = Figure(entry.gflops, "published", f"at {entry.input_size} px")


def _local_estimate(entry: CatalogEntry, variant: Variant,
                    local: dict[estimates.Group, list[estimates.Point]]) -> estimates.LocalEstimate | None:
    """The batch-1 p90 from the models measured here for the entry's runtime, precision and family (None: none)."""
    if not local:
        return None
    from vischoose.recommendation import estimates

    return estimates.estimate(entry, (variant.runtime, variant.dtype, entry.family), local)


def _speed(figs: dict[str, Figure], entry: CatalogEntry | None, mine: list[Profile], preset: Preset,
           catalog: dict[str, CatalogEntry], variant: Variant, borrowed: bool,
           local: dict[estimates.Group, list[estimates.Point]]) -> None:
    spec = preset.measure
    runs = ("torch float32" if borrowed else variant.dtype if variant.runtime == "torch" else variant.label)
    instead = f", standing in for {variant.label}" if borrowed else ""
    lat = next((p for p in mine if p.latency_ms_p90 is not None), None)
    if lat:
        figs["latency_ms"] = Figure(lat.latency_ms_p90, "measured", f"batch-1 p90, {lat.device} {runs}{instead}")
    elif entry and (here := _local_estimate(entry, variant, local)):
        figs["latency_ms"] = Figure(here.latency_ms, "estimated",
                                    here.note((variant.runtime, variant.dtype, entry.family)))
    elif entry and (est := _estimate_latency(entry, catalog)):
        figs["latency_ms"] = est
    thr = next((p for p in mine if p.throughput_img_s and p.batch_size == spec.batch_size), None)
    if thr:
        where = "" if variant.runtime == "torch" else f" {runs}{instead}"
        figs["throughput"] = Figure(thr.throughput_img_s, "measured", f"batch {thr.batch_size}, {thr.device}{where}")
    elif "latency_ms" in figs:
        figs["throughput"] = Figure(1000.0 / figs["latency_ms"].value, "estimated", "1000 / batch-1 latency")


def _describe(model: str, v: Variant, figs: dict[str, Figure], rows: list[Profile], torch_fp32: list[Profile],
              preset: Preset, evaluated: EvalResult | None = None) -> tuple[str, str]:
    """A variant other than the preset's own: (its size, measured speed-up, agreement and top-1 drop on labelled
    images, the command to measure it)."""
    cost = _accuracy_cost(evaluated) if v.precision == "int8" else None
    size = figs.get("memory_mb")
    size_text = f"{size.value:,.1f} MiB" if size else "size unknown"
    if v.runtime == "torch":
        return f"{size_text}, {v.dtype} weights", ""
    measure = f"vischoose profile --target {preset.name} --runtime {v.runtime} --precision {v.precision} {model}"
    if not rows:
        if v.precision == "int8":
            kind = size.source if size else "unknown"
            return f"{size_text} {kind} size; {cost or 'accuracy cost not measured'}", measure
        return f"{size_text} computed from parameters; torch fp32 figures stand in until measured", measure
    parts = [size_text if size and size.source == "measured" else f"{size_text} {size.source if size else ''}".strip()]
    if (speedup := _speedup(rows[0], torch_fp32)) is not None:
        parts.append(f"measured {speedup:.1f}x faster than torch fp32" if speedup >= 1
                     else f"measured {1 / speedup:.1f}x slower than torch fp32")
    row = rows[0]
    if v.precision == "int8" and row.agreement_top1 is not None:
        on = " on random inputs" if row.agreement_source == "random" else ""
        status = "" if row.variant_status == "ok" else f", {row.variant_status or 'unverified'}"
        parts.append(f"top-1 agreement {100 * row.agreement_top1:.1f}%{on}{status}")
    return ", ".join(parts + ([cost] if cost else [])), ""


def _accuracy_cost(ev: EvalResult | None) -> str | None:
    """'top-1 drop 0.5 points against fp32 on 50 held-out images, 2 layers in float': where labelled images say."""
    if ev is None or ev.fp32_top1 is None:
        return None
    drop = f"top-1 drop {ev.fp32_top1 - ev.top1:.1f} points against fp32 on {ev.images}"
    if ev.max_accuracy_drop is None:
        return f"{drop} images"
    return f"{drop} held-out images, {float_layers(ev)} in float (limit {ev.max_accuracy_drop:g})"


def _speedup(row: Profile, torch_fp32: list[Profile]) -> float | None:
    """torch fp32 batch-1 latency over the graph's, on the same device (medians where both have them)."""
    ref = next((p for p in torch_fp32 if p.device == row.device and p.latency_ms_p90 is not None), None)
    if ref is None or row.latency_ms_p90 is None:
        return None
    if ref.latency_ms_p50 and row.latency_ms_p50:
        return ref.latency_ms_p50 / row.latency_ms_p50
    return ref.latency_ms_p90 / row.latency_ms_p90


def _estimate_latency(entry: CatalogEntry, catalog: dict[str, CatalogEntry]) -> Figure | None:
    if entry.ref_cpu_latency_ms:
        return Figure(entry.ref_cpu_latency_ms, "published", entry.ref_cpu or "")
    ref = catalog.get(_ESTIMATE_REF.get(entry.family, ""))
    if not ref or not ref.ref_cpu_latency_ms:
        return None
    ms = ref.ref_cpu_latency_ms / ref.gmacs * entry.gmacs
    return Figure(ms, "estimated", f"GMACs-scaled from {ref.alias} {ref.ref_cpu_latency_ms} ms ({ref.ref_cpu})")


def _limits(figures: dict[str, Figure], preset: Preset, model: str,
            variant: Variant) -> tuple[tuple[str, ...], tuple[str, ...], float]:
    """(violated limits, limits without a figure to check, how far the worst violated limit is off)."""
    violations, missing, excess = [], [], 1.0
    for key, (fig_name, is_max, _flag, unit) in CONSTRAINTS.items():
        limit = getattr(preset.constraints, key)
        if limit is None:
            continue
        fig = figures.get(fig_name)
        if fig is None:
            how = "" if variant.runtime == "torch" else f"--runtime {variant.runtime} --precision {variant.precision} "
            what = "peak memory" if key == "max_memory_mb" and preset.constraints.memory_basis == "peak" else \
                _FIGURE_WORDS[fig_name]
            missing.append(f"not measured: no {what} figure to check the {_LABELS[key]} against "
                           f"(measure it: vischoose profile --target {preset.name} {how}{model})")
            continue
        bad = fig.value > limit if is_max else fig.value < limit
        if bad:
            sign = ">" if is_max else "<"
            violations.append(f"{fig.value:,.1f} {unit} {sign} {limit:,.6g} {unit} {_LABELS[key]}"
                              f" ({fig.source}{', ' + fig.note if fig.note else ''})")
            excess = max(excess, fig.value / limit if is_max else limit / max(fig.value, 1e-9))
    return tuple(violations), tuple(missing), excess


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
    rejected, unmeasured = [c for c in rejected if not unmeasured_only(c)], [c for c in rejected if unmeasured_only(c)]
    preferred = next((c for p in preset.prefer for c in fitting if c.model == p), None)
    if preferred:
        chosen = preferred
        reason = f"the selection guide's choice for '{preset.name}' and it meets every constraint"
    else:
        chosen = fitting[0]
        reason = f"best by {', '.join(preset.sort)} among the {len(fitting)} models that meet every constraint"
        misses = [c for p in preset.prefer for c in rejected + unmeasured if c.model == p]
        if misses:
            why = misses[0].reasons[0]
            verb = "was not measured" if unmeasured_only(misses[0]) else "was rejected"
            reason += f"; the guide's choice {misses[0].model} {verb}: {why}"
    notes = [f"{chosen.model}: {chosen.caveat}"] if chosen.caveat else []
    notes += dominance_note(chosen, fitting, reason)
    if any(f.source == "estimated" for c in cands for f in c.figures.values()):
        notes.append("estimated figures are fitted to the models of the same family, runtime and precision measured on "
                     "this machine where there are some, else are scaled from published ones: run vischoose profile "
                     f"--target {preset.name} (or recommend --measure) to measure them here")
    if any(c.variant.precision == "int8" and c.figures.get("memory_mb", Figure(0, "")).source == "estimated"
           for c in fitting):
        notes.append("int8 sizes marked E are estimated from the parameter count (bytes per parameter of the "
                     "family's measured int8 exports) and their accuracy cost is unknown: measure one with "
                     f"vischoose profile --target {preset.name} --runtime onnxruntime --precision int8 MODEL")
    return Recommendation(target=preset.name, chosen=chosen, reason=reason,
                          runners_up=[c for c in fitting if c is not chosen], rejected=rejected,
                          pareto=pareto_front(cands), preset=preset, notes=tuple(notes), unmeasured=unmeasured)


def unmeasured_only(cand: Candidate) -> bool:
    """A candidate that breaks no limit but lacks a figure only measuring gives: not measured, never rejected."""
    return bool(cand.missing) and not cand.violations


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


def dominance_note(chosen: Candidate, fitting: list[Candidate], reason: str) -> list[str]:
    """Say when the chosen model is dominated by another that meets every constraint, and why it is still chosen."""
    better = dominated_by(chosen, fitting)
    if not better:
        return []
    b = better[0]
    shaky = any(f.source == "estimated" for c in (b, chosen) for f in c.figures.values())
    return [("on estimated figures, " if shaky else "") + f"{chosen.model} is dominated by {b.model} (top-1 {b.value('top1'):.2f}% vs {chosen.value('top1'):.2f}%, "
            f"latency {b.value('latency_ms'):,.1f} vs {chosen.value('latency_ms'):,.1f} ms, memory "
            f"{b.value('memory_mb'):,.1f} vs {chosen.value('memory_mb'):,.1f} MiB), which also meets every constraint; "
            f"it is still chosen because it is {reason}"]


def _nothing_fits(rejected: list[Candidate], preset: Preset) -> NoModelFitsError:
    closest = [c for c in rejected if not c.missing][:3] or rejected[:3]
    parts = []
    for c in closest:
        needs = []
        for key, (fig_name, is_max, flag, unit) in CONSTRAINTS.items():
            limit, value = getattr(preset.constraints, key), c.value(fig_name)
            if limit is not None and value is not None and (value > limit if is_max else value < limit):
                needs.append(f"{flag} {_round_to_admit(value, is_max)}")
        needs += c.unusable[:1]  # the smaller graph that was rejected: relaxing the budget is not the only way
        parts.append(f"{c.model} ({', '.join(needs)})" if needs else f"{c.model} ({(c.reasons or ('?',))[0]})")
    unmeasured = [c.model for c in rejected if unmeasured_only(c)]
    if len(unmeasured) == len(rejected):  # nothing breaks a limit: nothing was measured that could
        return NoModelFitsError(f"No model is known to fit target '{preset.name}': {len(unmeasured)} candidate(s) "
                                f"not measured ({'; '.join(parts)}).",
                                hint="Measure them: vischoose recommend --measure (or --measure-all), or profile.")
    return NoModelFitsError(
        f"No model fits target '{preset.name}'; closest: {'; '.join(parts)}.",
        hint="Relax a constraint as shown, or add candidates with --models.")


def _round_to_admit(value: float, is_max: bool) -> str:
    import math

    return f"{math.ceil(value * 10) / 10:g}" if is_max else f"{math.floor(value * 10) / 10:g}"
