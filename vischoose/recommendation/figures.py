"""A candidate's figures at one deployed variant, each with where it comes from: measured here (the stored rows that
match the preset's protocol), published (timm's results and benchmarks), computed from the parameters, or estimated
(this machine's fit, else scaled from a published model). What is known of the catalog and the runtimes comes in as a
Known, built by the caller (recommendation.pipeline.known): no registry, catalog loading or I/O here."""

from typing import TYPE_CHECKING, Callable, NamedTuple

from vischoose.models.catalog import CatalogEntry
from vischoose.presets import Preset
from vischoose.recommendation import memory, wording
from vischoose.runtimes.precision import Variant, bytes_per_param
from vischoose.units import MIB

if TYPE_CHECKING:
    from vischoose.records import EvalResult, Profile

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
    host_only: str | None = None  # what its host binding loads that a deployed device would not have (Runtime)


class Known(NamedTuple):
    """The catalog, the runtimes and timm's zoo, passed in by the caller (recommendation.pipeline.known). The ranking
    reads only the catalog and the runtimes; the zoo is what recommendation.selection picks candidates from, read when
    first called (a zoo flag, a glob, a name outside the catalog, a GPU target), never at start-up."""

    catalog: dict[str, CatalogEntry]
    runtimes: dict[str, Deployable]
    catalog_int8: str  # the runtime whose int8 file sizes the catalog lists
    zoo: "Callable[[], Zoo] | None" = None  # reads timm's zoo (models.zoo.load); None: no zoo to choose from

    def runtime(self, name: str) -> Deployable:
        """The facts of a runtime (an unknown name: a CPU-only graph runtime named as it is)."""
        return self.runtimes.get(name) or Deployable(name, name, ("cpu",), name != TORCH)


class Figure(NamedTuple):
    """A number with where it came from: measured, published, computed or estimated (a NamedTuple: see Variant)."""

    value: float
    source: str
    note: str = ""
    stands_in: str = ""  # what the figure is of when it is not of this variant ("torch float32", "fp32", "batch 1")
    error: float | None = None  # estimates: the expected relative error measured here (None: unknown)
    spread: float | None = None  # measured timings: the relative spread (IQR / median) of the runs


def matching_profiles(profiles: "list[Profile]", model: str, tag: str, preset: Preset,
                      variant: Variant | None = None, flagged: bool = False) -> "list[Profile]":
    """Successful profiles of this model under the preset's protocol, newest first; never a flagged one (contended,
    or batch-1 figures that contradict each other: Profile.flagged) unless `flagged` asks for those too.

    Without a variant: torch at the preset's [measure] dtype; onnxruntime rows match on precision only (the
    graph's layout is its own). Server-scenario rows are not profiles of this protocol (recommendation.serving).
    """
    if not profiles:  # most zoo candidates: nothing measured
        return []
    spec = preset.measure
    variant = variant or preset.plain
    rows = [p for p in profiles if p.ok and (flagged or not p.flagged) and (p.model == model or p.tag == tag)
            and p.dtype == variant.dtype
            and p.runtime == variant.runtime and p.scenario is None  # server rows: recommendation.serving reads them
            and (variant.runtime != "torch" or (p.layout == "channels_last") == spec.channels_last)]
    if spec.device == "auto":
        gpu = [p for p in rows if p.device.startswith("cuda")]
        rows = gpu or [p for p in rows if p.device == "cpu"]
    else:
        rows = [p for p in rows if p.device.split(":")[0] == spec.device.split(":")[0]]
    return sorted(rows, key=lambda p: p.created_at, reverse=True)


def latest_eval(evals: "list[EvalResult]", variant: Variant) -> "EvalResult | None":
    own = [e for e in evals if e.runtime == variant.runtime and (e.runtime == "torch" or e.dtype == variant.dtype)]
    return max(own, key=lambda e: e.created_at) if own else None


def local_points(catalog: dict[str, CatalogEntry], preset: Preset, profiles: "list[Profile]",
                 order: list[Variant]) -> "dict[estimates.Group, list[estimates.Point]]":
    """The catalog models measured here per runtime, precision and family, from rows under the preset's protocol."""
    rows = [((v.runtime, v.dtype, e.family), e, p) for e in catalog.values() for v in {*order, TORCH_FP32}
            for p in matching_profiles(profiles, e.alias, e.tag, preset, v)[:1]]
    if not rows:
        return {}
    from vischoose.recommendation import estimates

    return estimates.points(rows)


def top1(figs: dict[str, Figure], entry: CatalogEntry | None, evals: "list[EvalResult]", variant: Variant,
          rows: "list[Profile]") -> None:
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
        fig = fig._replace(note=f"{fig.note}; the fp32 model's figure, {cost}", stands_in="fp32")
    figs["top1"] = fig


def aware_size(figs: dict[str, Figure], ev: "EvalResult | None", preset: Preset) -> None:
    """Accuracy-aware int8 ships a larger file than plain int8: its own size, where the limit is on the file."""
    if ev is None or ev.max_accuracy_drop is None or ev.file_mb is None or preset.constraints.memory_basis == "peak":
        return
    figs["memory_mb"] = Figure(ev.file_mb, "measured", f"accuracy-aware int8 file, "
                               f"{wording.float_layers(ev)} in float")


def peak_peers(catalog: dict[str, CatalogEntry], preset: Preset, profiles: "list[Profile]", order: list[Variant],
               known: Known) -> dict[memory.Group, list[memory.Peer]]:
    """The catalog models measured here with a usable peak, per runtime, dtype and family (--memory-basis peak)."""
    if preset.constraints.memory_basis != "peak":
        return {}
    return memory.group_peers([((v.runtime, v.dtype, e.family), p) for e in catalog.values()
                               for v in {*order, TORCH_FP32}
                               for p in matching_profiles(profiles, e.alias, e.tag, preset, v)], known)


def peak(figs: dict[str, Figure], entry: CatalogEntry | None, rows: "list[Profile]", stand_in: "list[Profile]",
         variant: Variant, params: float, known: Known, peaks: dict[memory.Group, list[memory.Peer]]) -> None:
    """--memory-basis peak: the measured peak (recommendation.memory: the on-device one), torch fp32's standing in
    for an unmeasured fp32 graph, or an estimate from the models of the family measured here; else none (the model
    is then listed as not measured, not rejected)."""
    label = variant.dtype if variant.runtime == "torch" else variant.label
    found = memory.peak_figure(rows, variant, label, known)
    borrowed = next((p for p in stand_in if memory.usable(p, known)), None) if variant.precision == "fp32" else None
    if found is None and borrowed is not None:
        found = (borrowed.peak_memory_mb, "measured", f"peak inference memory, torch float32, standing in for "
                                                      f"{variant.label}", "torch float32")
    if found is None and entry is not None:
        per = INT8_BYTES_PER_PARAM.get(entry.family, INT8_BYTES_UNKNOWN) if variant.precision == "int8" else \
            bytes_per_param(variant.dtype)
        found = memory.estimate(entry.alias, params * 1e6 * per / MIB, (variant.runtime, variant.dtype, entry.family),
                                peaks)
    if found is not None:
        figs["memory_mb"] = Figure(*found)


def size(figs: dict[str, Figure], entry: CatalogEntry | None, rows: "list[Profile]", stand_in: "list[Profile]",
         preset: Preset, variant: Variant, known: Known,
         peaks: dict[memory.Group, list[memory.Peer]] | None = None) -> None:
    params = entry.params / 1e6 if entry else next((p.params_m for p in rows + stand_in if p.params_m), None)
    if params is None:
        return
    figs["params_m"] = (Figure(params, "computed", entry.counted) if entry and entry.counted
                        else Figure(params, "published" if entry else "measured"))
    label = variant.dtype if variant.runtime == "torch" else variant.label
    if preset.constraints.memory_basis == "peak":
        peak(figs, entry, rows, stand_in, variant, params, known, peaks or {})
    elif filed := next((p for p in rows if p.file_mb), None):
        figs["memory_mb"] = Figure(filed.file_mb, "measured", f"{variant.label} file")
    elif variant.precision == "int8" and entry and entry.int8_mib:
        other = "" if variant.runtime == known.catalog_int8 else f"{known.runtime(known.catalog_int8).title} int8"
        figs["memory_mb"] = Figure(entry.int8_mib, "computed", wording.catalog_int8_note(variant, known), other)
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
                    local: "dict[estimates.Group, list[estimates.Point]]") -> "estimates.LocalEstimate | None":
    """The batch-1 p90 from the models measured here for the entry's runtime, precision and family (None: none)."""
    if not local:
        return None
    from vischoose.recommendation import estimates

    return estimates.estimate(entry, (variant.runtime, variant.dtype, entry.family), local)


def speed(figs: dict[str, Figure], entry: CatalogEntry | None, mine: "list[Profile]", preset: Preset,
           catalog: dict[str, CatalogEntry], variant: Variant, borrowed: bool,
           local: "dict[estimates.Group, list[estimates.Point]]") -> None:
    spec, gpu = preset.measure, on_gpu_kind(preset, variant)
    lat = next((p for p in mine if p.latency_ms_p90 is not None), None) if mine else None
    thr = next((p for p in mine if p.throughput_img_s and p.batch_size == spec.batch_size), None) if mine else None
    if lat or thr:  # words for measured figures (most candidates of a zoo have none)
        runs = ("torch float32" if borrowed else variant.dtype if variant.runtime == "torch" else variant.label)
        instead = f", standing in for {variant.label}" if borrowed else ""
        stand = "torch float32" if borrowed else ""
    if lat:
        figs["latency_ms"] = Figure(lat.latency_ms_p90, "measured", f"batch-1 p90, {lat.device} {runs}{instead}",
                                    stand, spread=_spread(lat.latency_ms_iqr, lat.latency_ms_p50))
    elif entry and (here := local_estimate(entry, variant, local)):
        figs["latency_ms"] = Figure(here.latency_ms, "estimated",
                                    here.note((variant.runtime, variant.dtype, entry.family)), error=here.loo_error)
    elif entry and not (gpu and spec.device.startswith("cuda")) and (est := estimate_latency(entry, catalog)):
        # published on a CPU (not for a GPU target; 'auto' runs on this CPU without one), in fp32 on torch
        figs["latency_ms"] = est._replace(stands_in="" if variant == TORCH_FP32 else "torch fp32")
    if thr:
        where = "" if variant.runtime == "torch" else f" {runs}{instead}"
        figs["throughput"] = Figure(thr.throughput_img_s, "measured", f"batch {thr.batch_size}, {thr.device}{where}",
                                    stand, spread=_spread(thr.throughput_iqr, thr.throughput_img_s))
    elif gpu and entry and (published := gpu_throughput(entry, spec.dtype, spec.batch_size)):
        figs["throughput"] = published
    elif "latency_ms" in figs and not gpu:  # a CPU's batch-1 latency says nothing of a GPU's throughput
        fig = figs["latency_ms"]
        batch = f"batch 1, not {spec.batch_size}" if spec.batch_size != 1 else ""
        figs["throughput"] = Figure(1000.0 / fig.value, "estimated", "1000 / batch-1 latency"
                                    + (f" (a batch-1 rate standing in for batch {spec.batch_size})" if batch else ""),
                                    ", ".join(s for s in (fig.stands_in, batch) if s), fig.error)


def _spread(iqr: float | None, median: float | None) -> float | None:
    """A measured figure's relative spread: its runs' interquartile range over their median."""
    return iqr / median if iqr is not None and median else None


def on_gpu_kind(preset: Preset, variant: Variant) -> bool:
    """Whether the target runs this variant on a GPU ('cuda', or 'auto': cuda where there is one): torch only, the
    deployment runtimes run their files on the CPU. Published GPU throughput is shown for such a variant, and a CPU
    latency never turned into its throughput."""
    return variant.runtime == TORCH and not preset.measure.device.startswith("cpu")


def gpu_throughput(entry: CatalogEntry, dtype: str, batch: int) -> Figure | None:
    """The zoo's published throughput of a named GPU, at its own batch and precision, where the entry carries one
    (recommendation.selection gives a GPU target's candidates their published speeds)."""
    if not entry.speeds:
        return None
    from vischoose.models.zoo import (
        gpu_speed,  # a choice among the entry's speeds: nothing is read
    )

    s = gpu_speed(entry.speeds, dtype)
    if s is None:
        return None
    other = f"{s.device} at batch {s.batch}" if s.batch != batch else s.device  # another GPU, often another batch
    return Figure(s.img_s, "published", wording.gpu_speed_note(s, entry, dtype), other)


def estimate_latency(entry: CatalogEntry, catalog: dict[str, CatalogEntry]) -> Figure | None:
    if entry.ref_cpu_latency_ms:
        return Figure(entry.ref_cpu_latency_ms, "published", entry.ref_cpu or "")
    ref = catalog.get(ESTIMATE_REF.get(entry.family, ""))
    if not ref or not ref.ref_cpu_latency_ms or not entry.gmacs:
        return None
    ms = ref.ref_cpu_latency_ms / ref.gmacs * entry.gmacs
    return Figure(ms, "estimated", f"GMACs-scaled from {ref.alias} {ref.ref_cpu_latency_ms} ms ({ref.ref_cpu}); error "
                                   "unknown (nothing of its family timed on this machine yet)")


def cold_start(figs: dict[str, Figure], rows: "list[Profile]", variant: Variant) -> None:
    """A fresh process's file -> first answer, measured for this variant (another variant's never stands in: torch's
    cold start says nothing of a graph runtime's)."""
    row = next((p for p in rows if p.cold_start_ms is not None), None)
    if row is not None:
        figs["cold_start_ms"] = Figure(row.cold_start_ms, "measured", f"fresh process: load {row.cold_load_ms:,.0f} ms "
                                       f"+ first inference {row.cold_first_ms:,.0f} ms, {variant.label}")


def end_to_end(figs: dict[str, Figure], entry: CatalogEntry | None, mine: "list[Profile]", profiles: "list[Profile]",
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
