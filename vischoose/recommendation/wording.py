"""How the recommendation says what it found: the notes beside a variant, a rejected graph or accuracy limit, the
reasons for a choice. Words only: every figure and decision comes in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vischoose.errors import opt
from vischoose.presets import Preset
from vischoose.runtimes.precision import Variant

if TYPE_CHECKING:
    from vischoose.models.catalog import CatalogEntry
    from vischoose.models.zoo import Speed
    from vischoose.recommendation.candidates import Candidate
    from vischoose.recommendation.choose import Recommendation
    from vischoose.recommendation.figures import Deployable, Figure, Known
    from vischoose.records import EvalResult, Profile

OTHER_TAGS = 3  # other tags of the chosen architecture named in a note
UNKNOWN_SHOWN = 5  # the chosen model and runners-up checked for an unknown top-1


def catalog_int8_note(variant: Variant, known: Known) -> str:
    """Where a catalog int8 size comes from: the catalog lists one runtime's files, standing in for the others."""
    if variant.runtime == known.catalog_int8:
        return f"{variant.label} file of this architecture, from the catalog"
    return (f"{known.runtime(known.catalog_int8).title} int8 file of this architecture, from the catalog, standing in "
            f"for {variant.label} until measured")


def rejected_graph(variant: Variant, row: Profile) -> str:
    agree = f"top-1 agreement {100 * row.agreement_top1:.1f}%" if row.agreement_top1 is not None else "agreement"
    return f"{variant.label} not used: its graph was rejected ({agree} with eager fp32, {row.created_at[:10]})"


def missed_accuracy(variant: Variant, ev: EvalResult) -> str:
    return f"{variant.label} not used: {missed_limit(ev)}"


def float_layers(ev: EvalResult) -> str:
    """'3 of 52 layers' (or '3 layers' where the count of quantizable layers is not known)."""
    layers = len(ev.reverted_layers or [])
    return f"{layers} of {ev.quantizable_layers} layers" if ev.quantizable_layers else f"{layers} layers"


def missed_limit(ev: EvalResult) -> str:
    """Why accuracy-aware int8 was rejected, with the best drop it reached: on the images that chose the float layers
    (where the search judged it) and on the held-out ones."""
    limit = f"{opt('max_accuracy_drop')} {ev.max_accuracy_drop:g}"
    if ev.float_only:
        return (f"int8 keeps {limit} on {ev.dataset} only with all {ev.quantizable_layers} quantizable layers in "
                "float, which is the fp32 graph")
    drops = []
    if ev.choice_drop_pts is not None:
        drops.append(f"{ev.choice_drop_pts:.1f} top-1 points on the images that chose the layers")
    if ev.drop_pts is not None:
        drops.append(f"{ev.drop_pts:.1f} top-1 points on {ev.images} held-out images{drop_interval(ev)}")
    lost = " and ".join(drops) or "top-1 points"
    return f"int8 loses {lost} of {ev.dataset} even with {float_layers(ev)} in float ({limit}){undecided(ev)}"


def drop_interval(ev: EvalResult) -> str:
    """' (95 % CI 0.4 to 2.9, paired)' where the held-out drop's interval is known."""
    return "" if ev.drop_low is None or ev.drop_high is None else (
        f" (95 % CI {ev.drop_low:.1f} to {ev.drop_high:.1f}, paired)")


def undecided(ev: EvalResult) -> str:
    """'; indistinguishable from the limit at this sample size' when the held-out drop's 95 % interval holds values
    on both sides of max_accuracy_drop: more images would decide it (deploy.accuracy.AccuracyAware.decided)."""
    low, high, limit = ev.drop_low, ev.drop_high, ev.max_accuracy_drop
    if low is None or high is None or limit is None or not low <= limit < high:
        return ""
    return f"; indistinguishable from the limit at this sample size ({ev.images} held-out images)"


def measured_top1_note(ev: EvalResult, variant: Variant) -> str:
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


def describe_variant(model: str, v: Variant, figs: dict[str, Figure], rows: list[Profile], torch_fp32: list[Profile],
              preset: Preset, evaluated: EvalResult | None, runtime: Deployable) -> tuple[str, str]:
    """A variant other than the preset's own: (its size, measured speed-up, agreement and top-1 drop on labelled
    images, the command to measure it)."""
    cost = accuracy_cost(evaluated) if v.precision == "int8" else None
    size = figs.get("memory_mb")
    size_text = f"{size.value:,.1f} MiB" if size else "size unknown"
    if v.runtime == "torch":
        return f"{size_text}, {v.dtype} weights", ""
    measure = f"vischoose profile --target {preset.name} --runtime {v.runtime} --precision {v.precision} {model}"
    if runtime.missing:  # the choice stands on stand-in figures; measuring it needs the runtime first
        measure = f"{runtime.missing} here: pip install 'vischoose[{runtime.extra}]', then {measure}"
    if not rows:
        if v.precision == "int8":
            kind = size.source if size else "unknown"
            return f"{size_text} {kind} size; {cost or 'accuracy cost not measured'}", measure
        return f"{size_text} computed from parameters; torch fp32 figures stand in until measured", measure
    parts = [size_text if size and size.source == "measured" else f"{size_text} {size.source if size else ''}".strip()]
    if (faster := speedup(rows[0], torch_fp32)) is not None:
        parts.append(f"measured {faster:.1f}x faster than torch fp32" if faster >= 1
                     else f"measured {1 / faster:.1f}x slower than torch fp32")
    row = rows[0]
    if v.precision == "int8" and row.agreement_top1 is not None:
        on = " on random inputs" if row.agreement_source == "random" else ""
        status = "" if row.variant_status == "ok" else f", {row.variant_status or 'unverified'}"
        parts.append(f"top-1 agreement {100 * row.agreement_top1:.1f}%{on}{status}")
    return ", ".join(parts + ([cost] if cost else [])), ""


def accuracy_cost(ev: EvalResult | None) -> str | None:
    """'top-1 drop 0.5 points against fp32 on 50 held-out images, 2 layers in float': where labelled images say."""
    if ev is None or ev.fp32_top1 is None:
        return None
    drop = f"top-1 drop {ev.fp32_top1 - ev.top1:.1f} points against fp32 on {ev.images}"
    if ev.max_accuracy_drop is None:
        return f"{drop} images"
    return f"{drop} held-out images, {float_layers(ev)} in float (limit {ev.max_accuracy_drop:g})"


def speedup(row: Profile, torch_fp32: list[Profile]) -> float | None:
    """torch fp32 batch-1 latency over the graph's, on the same device (medians where both have them)."""
    ref = next((p for p in torch_fp32 if p.device == row.device and p.latency_ms_p90 is not None), None)
    if ref is None or row.latency_ms_p90 is None:
        return None
    if ref.latency_ms_p50 and row.latency_ms_p50:
        return ref.latency_ms_p50 / row.latency_ms_p50
    return ref.latency_ms_p90 / row.latency_ms_p90


def dominance_note(chosen: "Candidate", better: "list[Candidate]", reason: str) -> list[str]:
    """Say when the chosen model is dominated by another that meets every constraint (`better`, choose.dominated_by),
    and why it is still chosen. Where the two latencies come from different places (one measured, the other published
    for another machine), the note says so: the comparison is then no measurement of one machine."""
    if not better:
        return []
    b = better[0]
    shaky = any(c.figures[k].source == "estimated" for c in (b, chosen) for k in ("top1", "latency_ms", "memory_mb"))
    theirs, mine = b.figures["latency_ms"].source, chosen.figures["latency_ms"].source
    if theirs == mine:
        latency = f"latency {b.value('latency_ms'):,.1f} vs {chosen.value('latency_ms'):,.1f} ms"
    else:
        latency = (f"latency {b.value('latency_ms'):,.1f} ms {_LATENCY_FROM.get(theirs, theirs)} vs "
                   f"{chosen.value('latency_ms'):,.1f} ms {_LATENCY_FROM.get(mine, mine)}")
    return [("on estimated figures, " if shaky else "") + f"{chosen.model} is dominated by {b.model} (top-1 "
            f"{b.value('top1'):.2f}% vs {chosen.value('top1'):.2f}%, {latency}, memory {b.value('memory_mb'):,.1f} vs "
            f"{chosen.value('memory_mb'):,.1f} MiB), which also meets every constraint; it is still chosen because it "
            f"is {reason}"]


_LATENCY_FROM = {"measured": "measured", "published": "published for another machine", "estimated": "estimated"}


def not_measured(fig_name: str, what: str, limit: str, preset: Preset, model: str, variant: Variant) -> str:
    """A limit with no figure to check it against: not measured (the candidate is listed apart, never rejected for
    it), and the command that gets the figure: evaluate for a top-1 nobody published, else profile. With
    --memory-basis peak the memory figure is the peak's."""
    if fig_name == "top1":  # nobody published one: evaluate gives it, profile does not
        return (f"not measured: top-1 unknown, so the {limit} cannot be checked (evaluate it: vischoose evaluate DATA "
                f"--model {model})")
    if what == "memory" and preset.constraints.memory_basis == "peak":
        what = "peak memory"
    how = "" if variant.runtime == "torch" else f"--runtime {variant.runtime} --precision {variant.precision} "
    if fig_name == "latency_ms" and preset.constraints.latency_basis == "end-to-end":
        how += "--end-to-end "
    return (f"not measured: no {what} figure to check the {limit} against (measure it: vischoose profile --target "
            f"{preset.name} {how}{model})")


def guide_reason(preset: Preset) -> str:
    """Why the selection guide's model was chosen."""
    return f"the selection guide's choice for '{preset.name}' and it meets every constraint"


def ranked_reason(preset: Preset, fitting: int, missed: "Candidate | None", unmeasured: bool = False) -> str:
    """Why the best-ranked model was chosen (and why the guide's model was not, when it was a candidate: rejected, or
    not measured)."""
    reason = f"best by {', '.join(preset.sort)} among the {fitting} models that meet every constraint"
    if missed is not None:
        verb = "was not measured" if unmeasured else "was rejected"
        reason += f"; the guide's choice {missed.model} {verb}: {missed.reasons[0]}"
    return reason


def spread_note(chosen: "Candidate", other: "Candidate", sort: tuple[str, ...]) -> str:
    """The chosen model and the next one are within their measured runs' spread on the first rank key, so their order
    was decided by the next keys (choose.separated): say so, and how to separate them."""
    key = sort[0].lstrip("-")
    a, b = chosen.figures[key], other.figures[key]
    return (f"{chosen.model} and {other.model} are within their runs' spread on {key} ({a.value:,.1f} +-"
            f"{100 * a.spread:.0f}% vs {b.value:,.1f} +-{100 * b.spread:.0f}%, IQR over median): their order is decided "
            f"by {', '.join(sort[1:]) or 'name'}; measure longer (--time-budget) to separate them")


def no_gpu_note(preset: Preset) -> str:
    """A GPU target judged on a machine without one."""
    return (f"this machine has no CUDA device: '{preset.name}' runs on a GPU ({preset.measure.device}), so its speeds "
            "are published figures of a named GPU (or, for 'auto', this CPU's); measure them on the GPU machine "
            f"(vischoose profile --target {preset.name}, then vischoose results export / import)")


def estimates_note(preset: Preset) -> str:
    """What an estimated figure is fitted to, and how to measure it instead."""
    return ("estimated figures are fitted to the models of the same family, runtime and precision measured on this "
            "machine where there are some, else are scaled from published ones: run vischoose profile --target "
            f"{preset.name} (or recommend --measure) to measure them here")


def int8_estimate_note(preset: Preset) -> str:
    """What an estimated int8 size is, and how to measure one."""
    return ("int8 sizes marked E are estimated from the parameter count (bytes per parameter of the family's "
            "measured int8 exports) and their accuracy cost is unknown: measure one with vischoose profile --target "
            f"{preset.name} --runtime onnxruntime --precision int8 MODEL")


def published_top1_note(entry: CatalogEntry) -> str:
    """'ImageNet-1k at 224 px (timm results)', saying so where the model is deployed at another size."""
    note = f"ImageNet-1k at {entry.top1_size} px (timm results)"
    return note if entry.top1_size == entry.input_size else f"{note}; deployed at {entry.input_size} px"


def gpu_speed_note(s: Speed, entry: CatalogEntry, dtype: str) -> str:
    """Where a published GPU throughput comes from, and the target's precision where it ran at another."""
    differs = "" if s.matches(dtype) else f"; the target runs {dtype}"
    return s.describe(entry.input_size) + differs


def selection_notes(rec: Recommendation, others: dict[str, tuple[str, ...]]) -> list[str]:
    """The other tags of the chosen model's architecture (recommendation.selection judges each architecture by its
    best), and the models shown without a published top-1 (how to get one)."""
    out = []
    mine = others.get(rec.chosen.model)
    if mine:
        more = f" and {len(mine) - OTHER_TAGS} more" if len(mine) > OTHER_TAGS else ""
        out.append(f"{rec.chosen.model} is the best published top-1 of {len(mine) + 1} tags of its architecture at "
                   f"their deployed sizes; the others: {', '.join(mine[:OTHER_TAGS])}{more} "
                   f"({opt('all_tags')} ranks each)")
    unknown = [c.model for c in [rec.chosen, *rec.runners_up[:UNKNOWN_SHOWN - 1]] if c.value("top1") is None]
    if unknown:
        out.append(f"top-1 unknown for {', '.join(unknown)}: nobody published one, so they rank after the models "
                   f"with one (evaluate it: vischoose evaluate DATA --model {unknown[0]})")
    return out
