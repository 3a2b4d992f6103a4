"""A candidate's figures at one deployed variant, each with where it comes from: measured here (the stored rows that
match the preset's protocol), published (timm's results and benchmarks), computed from the parameters, or estimated
(this machine's fit, else scaled from a published model). What is known of the catalog and the runtimes comes in as a
Known, built by the caller (recommendation.pipeline.known): no registry, catalog loading or I/O here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

from vischoose.models.catalog import CatalogEntry
from vischoose.presets import Preset
from vischoose.recommendation import wording
from vischoose.records import EvalResult, Profile
from vischoose.runtimes.precision import Variant, bytes_per_param
from vischoose.units import MIB

if TYPE_CHECKING:  # estimates is imported only where this machine measured something to estimate from
    from vischoose.models.zoo import Zoo
    from vischoose.recommendation import estimates


# timm's published CPU latency (i9-10940X, batch 1, fp32) used to estimate unmeasured models of a family
ESTIMATE_REF = {"resnet": "resnet50", "vit": "vit_b16", "hybrid": "vit_b16"}


# Bytes per parameter of an int8 ONNX file (runtimes.ortbuild.quantize_int8's recipes), measured on random-init exports:
# resnet18 1.01 (every convolution int8); vit_ti16 1.24, vit_s16 1.10, vit_b16 1.04 (patch embedding, position
# embeddings and norms stay fp32); r_vit_ti16 1.51, r50_vit_b16 1.43, r26_vit_s32 2.28 (the CNN stem stays fp32)
INT8_BYTES_PER_PARAM = {"resnet": 1.01, "vit": 1.10, "hybrid": 1.5}


INT8_BYTES_UNKNOWN = 1.5  # a model outside the catalog's families


TORCH = "torch"  # the eager reference every graph is checked against (runtimes.registry.TORCH)


TORCH_FP32 = Variant(TORCH, "fp32")


class Deployable(NamedTuple):
    """What the ranking needs to know of a runtime: facts of the runtime, not of this machine (except `missing`,
    which only words how to measure it)."""

    name: str
    title: str
    devices: tuple[str, ...]
    is_graph: bool
    extra: str | None = None  # the pip extra that installs it
    missing: str | None = None  # why it cannot run here (words only: it never changes the choice)


class Known(NamedTuple):
    """The catalog, the runtimes and timm's zoo, passed in by the caller (recommendation.pipeline.known). The ranking
    reads only the catalog and the runtimes; the zoo is what recommendation.selection picks candidates from, read when
    first called (a zoo flag, a glob, a name outside the catalog, a GPU target), never at start-up."""

    catalog: dict[str, CatalogEntry]
    runtimes: dict[str, Deployable]
    catalog_int8: str  # the runtime whose int8 file sizes the catalog lists
    zoo: Callable[[], Zoo] | None = None  # reads timm's zoo (models.zoo.load); None: no zoo to choose from

    def runtime(self, name: str) -> Deployable:
        """The facts of a runtime (an unknown name: a CPU-only graph runtime named as it is)."""
        return self.runtimes.get(name) or Deployable(name, name, ("cpu",), name != TORCH)


class Figure(NamedTuple):
    """A number with where it came from: measured, published, computed or estimated (a NamedTuple: see Variant)."""

    value: float
    source: str
    note: str = ""


def matching_profiles(profiles: list[Profile], model: str, tag: str, preset: Preset,
                      variant: Variant | None = None) -> list[Profile]:
    """Successful profiles of this model under the preset's protocol, newest first.

    Without a variant: torch at the preset's [measure] dtype; onnxruntime rows match on precision only (the
    graph's layout is its own). Server-scenario rows are not profiles of this protocol (recommendation.serving).
    """
    spec = preset.measure
    variant = variant or preset.plain
    rows = [p for p in profiles if p.ok and (p.model == model or p.tag == tag) and p.dtype == variant.dtype
            and p.runtime == variant.runtime and p.scenario is None  # server rows: recommendation.serving reads them
            and (variant.runtime != "torch" or (p.layout == "channels_last") == spec.channels_last)]
    if spec.device == "auto":
        gpu = [p for p in rows if p.device.startswith("cuda")]
        rows = gpu or [p for p in rows if p.device == "cpu"]
    else:
        rows = [p for p in rows if p.device.split(":")[0] == spec.device.split(":")[0]]
    return sorted(rows, key=lambda p: p.created_at, reverse=True)


def latest_eval(evals: list[EvalResult], variant: Variant) -> EvalResult | None:
    own = [e for e in evals if e.runtime == variant.runtime and (e.runtime == "torch" or e.dtype == variant.dtype)]
    return max(own, key=lambda e: e.created_at) if own else None


def local_points(catalog: dict[str, CatalogEntry], preset: Preset, profiles: list[Profile],
                 order: list[Variant]) -> dict[estimates.Group, list[estimates.Point]]:
    """The catalog models measured here per runtime, precision and family, from rows under the preset's protocol."""
    rows = [((v.runtime, v.dtype, e.family), e, p) for e in catalog.values() for v in {*order, TORCH_FP32}
            for p in matching_profiles(profiles, e.alias, e.tag, preset, v)[:1]]
    if not rows:
        return {}
    from vischoose.recommendation import estimates

    return estimates.points(rows)


def top1(figs: dict[str, Figure], entry: CatalogEntry | None, evals: list[EvalResult], variant: Variant,
          rows: list[Profile]) -> None:
    ev = latest_eval(evals, variant)
    if ev is not None:
        figs["top1"] = Figure(ev.top1, "measured", wording.measured_top1_note(ev, variant))
        if entry and entry.top1 is not None:
            figs["published_top1"] = Figure(entry.top1, "published", wording.published_top1_note(entry))
        return
    torch_evals = [e for e in evals if e.runtime == "torch"] if variant.runtime != "torch" else []
    if torch_evals:
        ev = max(torch_evals, key=lambda e: e.created_at)
        fig = Figure(ev.top1, "measured", f"on {ev.images} images of {ev.dataset}, torch {ev.dtype}")
    elif entry and entry.top1 is not None:
        fig = Figure(entry.top1, "published", wording.published_top1_note(entry))
    else:
        return  # top-1 unknown: ranked after the models with one (rank_key puts missing figures last)
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


def aware_size(figs: dict[str, Figure], ev: EvalResult | None, preset: Preset) -> None:
    """Accuracy-aware int8 ships a larger file than plain int8: its own size, where the limit is on the file."""
    if ev is None or ev.max_accuracy_drop is None or ev.file_mb is None or preset.constraints.memory_basis == "peak":
        return
    figs["memory_mb"] = Figure(ev.file_mb, "measured", f"accuracy-aware int8 file, "
                               f"{wording.float_layers(ev)} in float")


def size(figs: dict[str, Figure], entry: CatalogEntry | None, rows: list[Profile], stand_in: list[Profile],
          preset: Preset, variant: Variant, known: Known) -> None:
    params = entry.params / 1e6 if entry else next((p.params_m for p in rows + stand_in if p.params_m), None)
    if params is None:
        return
    figs["params_m"] = (Figure(params, "computed", entry.counted) if entry and entry.counted
                        else Figure(params, "published" if entry else "measured"))
    label = variant.dtype if variant.runtime == "torch" else variant.label
    if preset.constraints.memory_basis == "peak":
        peak = next((p for p in rows if p.peak_memory_mb is not None), None)
        if peak is not None:
            figs["memory_mb"] = Figure(peak.peak_memory_mb, "measured", f"peak inference memory, {label}")
        elif variant.precision == "fp32" and (borrowed := next((p for p in stand_in if p.peak_memory_mb), None)):
            figs["memory_mb"] = Figure(borrowed.peak_memory_mb, "measured",
                                       f"peak inference memory, torch float32, standing in for {variant.label}")
    elif filed := next((p for p in rows if p.file_mb), None):
        figs["memory_mb"] = Figure(filed.file_mb, "measured", f"{variant.label} file")
    elif variant.precision == "int8" and entry and entry.int8_mib:
        figs["memory_mb"] = Figure(entry.int8_mib, "computed", wording.catalog_int8_note(variant, known))
    elif variant.precision == "int8":
        per = (entry.int8_bytes_per_param if entry and entry.int8_bytes_per_param
               else INT8_BYTES_PER_PARAM.get(entry.family if entry else "", INT8_BYTES_UNKNOWN))
        figs["memory_mb"] = Figure(params * 1e6 * per / MIB, "estimated", f"{label} file, ~{per:g} bytes/param")
    else:
        figs["memory_mb"] = Figure(params * 1e6 * bytes_per_param(variant.dtype) / MIB, "computed",
                                   f"{variant.dtype} weights")
    if entry and entry.gmacs:
        how = f", {entry.gmacs_counted}" if entry.gmacs_counted else ""
        figs["gflops"] = Figure(entry.gflops, "computed" if entry.gmacs_counted else "published",
                                f"at {entry.input_size} px{how}")


def local_estimate(entry: CatalogEntry, variant: Variant,
                    local: dict[estimates.Group, list[estimates.Point]]) -> estimates.LocalEstimate | None:
    """The batch-1 p90 from the models measured here for the entry's runtime, precision and family (None: none)."""
    if not local:
        return None
    from vischoose.recommendation import estimates

    return estimates.estimate(entry, (variant.runtime, variant.dtype, entry.family), local)


def speed(figs: dict[str, Figure], entry: CatalogEntry | None, mine: list[Profile], preset: Preset,
           catalog: dict[str, CatalogEntry], variant: Variant, borrowed: bool,
           local: dict[estimates.Group, list[estimates.Point]]) -> None:
    spec, gpu = preset.measure, on_gpu_kind(preset, variant)
    runs = ("torch float32" if borrowed else variant.dtype if variant.runtime == "torch" else variant.label)
    instead = f", standing in for {variant.label}" if borrowed else ""
    lat = next((p for p in mine if p.latency_ms_p90 is not None), None)
    if lat:
        figs["latency_ms"] = Figure(lat.latency_ms_p90, "measured", f"batch-1 p90, {lat.device} {runs}{instead}")
    elif entry and (here := local_estimate(entry, variant, local)):
        figs["latency_ms"] = Figure(here.latency_ms, "estimated",
                                    here.note((variant.runtime, variant.dtype, entry.family)))
    elif entry and not (gpu and spec.device.startswith("cuda")) and (est := estimate_latency(entry, catalog)):
        figs["latency_ms"] = est  # published on a CPU: not for a GPU target ('auto' runs on this CPU without one)
    thr = next((p for p in mine if p.throughput_img_s and p.batch_size == spec.batch_size), None)
    if thr:
        where = "" if variant.runtime == "torch" else f" {runs}{instead}"
        figs["throughput"] = Figure(thr.throughput_img_s, "measured", f"batch {thr.batch_size}, {thr.device}{where}")
    elif gpu and entry and (published := gpu_throughput(entry, spec.dtype)):
        figs["throughput"] = published
    elif "latency_ms" in figs and not gpu:  # a CPU's batch-1 latency says nothing of a GPU's throughput
        figs["throughput"] = Figure(1000.0 / figs["latency_ms"].value, "estimated", "1000 / batch-1 latency")


def on_gpu_kind(preset: Preset, variant: Variant) -> bool:
    """Whether the target runs this variant on a GPU ('cuda', or 'auto': cuda where there is one): torch only, the
    deployment runtimes run their files on the CPU. Published GPU throughput is shown for such a variant, and a CPU
    latency never turned into its throughput."""
    return variant.runtime == TORCH and not preset.measure.device.startswith("cpu")


def gpu_throughput(entry: CatalogEntry, dtype: str) -> Figure | None:
    """The zoo's published throughput of a named GPU, at its own batch and precision, where the entry carries one
    (recommendation.selection gives a GPU target's candidates their published speeds)."""
    if not entry.speeds:
        return None
    from vischoose.models.zoo import (
        gpu_speed,  # a choice among the entry's speeds: nothing is read
    )

    s = gpu_speed(entry.speeds, dtype)
    return None if s is None else Figure(s.img_s, "published", wording.gpu_speed_note(s, entry, dtype))


def estimate_latency(entry: CatalogEntry, catalog: dict[str, CatalogEntry]) -> Figure | None:
    if entry.ref_cpu_latency_ms:
        return Figure(entry.ref_cpu_latency_ms, "published", entry.ref_cpu or "")
    ref = catalog.get(ESTIMATE_REF.get(entry.family, ""))
    if not ref or not ref.ref_cpu_latency_ms or not entry.gmacs:
        return None
    ms = ref.ref_cpu_latency_ms / ref.gmacs * entry.gmacs
    return Figure(ms, "estimated", f"GMACs-scaled from {ref.alias} {ref.ref_cpu_latency_ms} ms ({ref.ref_cpu})")


def cold_start(figs: dict[str, Figure], rows: list[Profile], variant: Variant) -> None:
    """A fresh process's file -> first answer, measured for this variant (another variant's never stands in: torch's
    cold start says nothing of a graph runtime's)."""
    row = next((p for p in rows if p.cold_start_ms is not None), None)
    if row is not None:
        figs["cold_start_ms"] = Figure(row.cold_start_ms, "measured", f"fresh process: load {row.cold_load_ms:,.0f} ms "
                                       f"+ first inference {row.cold_first_ms:,.0f} ms, {variant.label}")


def end_to_end(figs: dict[str, Figure], entry: CatalogEntry | None, mine: list[Profile], profiles: list[Profile],
               preset: Preset) -> None:
    """With the end-to-end latency basis, the latency figure is a photo's whole (decode + preprocess + model, p90):
    measured on this model's row, else its model latency plus the decode and preprocessing measured here on another
    model at the same input size (estimated), else none (the limit cannot be checked)."""
    if preset.constraints.latency_basis != "end-to-end" or "latency_ms" not in figs:
        return
    own = next((p for p in mine if p.e2e_ms_p90 is not None), None)
    if own is not None:
        figs["latency_ms"] = Figure(own.e2e_ms_p90, "measured", f"end to end p90 (decode {own.decode_ms_p50:,.0f} + "
                                    f"preprocess {own.preprocess_ms_p50:,.0f} + model {own.e2e_model_ms_p50:,.0f} ms "
                                    f"p50), {own.runtime} {own.dtype}, {own.decoder}")
        return
    size = mine[0].input_size if mine else entry.input_size if entry else None
    donor = next((p for p in sorted(profiles, key=lambda p: p.created_at, reverse=True)
                  if p.ok and p.e2e_ms_p90 is not None and p.input_size == size), None)
    model = figs.pop("latency_ms")
    if donor is not None:
        extra = donor.decode_ms_p50 + donor.preprocess_ms_p50
        figs["latency_ms"] = Figure(model.value + extra, "estimated", f"the model's {model.value:,.1f} ms ({model.source})"
                                    f" + decode and preprocess p50 {extra:,.0f} ms measured here on {donor.model} at "
                                    f"{size} px")
