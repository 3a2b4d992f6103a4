"""Measured figures next to the nearest published ones (catalog data); pure, no I/O, no torch."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

from vischoose.models import catalog
from vischoose.models.catalog import CatalogEntry
from vischoose.records import EvalResult, Profile
from vischoose.runtimes import registry
from vischoose.units import macs_to_flops

ARTICLE = "source article: 224 px, batch 64, hardware not stated"
TIMM_RESULTS = "timm results-imagenet.csv"
# conditions under which two profiles' figures may be divided by one another
_SAME_RUN = ("machine", "device", "dtype", "threads", "layout", "compiled", "runtime", "torch_version")


@dataclass(frozen=True)
class Comparison:
    """One measured figure against the nearest published figure for the same model."""

    model: str
    figure: str  # what is compared, with its unit
    measured: float
    published: float
    source: str  # where the published figure comes from and under which conditions
    caveat: str = ""  # how the measurement conditions differ from the published ones

    @property
    def ratio(self) -> float:
        """measured / published."""
        return self.measured / self.published

    @property
    def difference_pct(self) -> float:
        """(measured - published) / published, in %."""
        return 100.0 * (self.ratio - 1.0)


@dataclass(frozen=True)
class RatioComparison:
    """A ratio between two models measured on one machine against the same ratio published."""

    model_a: str
    model_b: str
    figure: str  # "latency" or "throughput"
    measured: float  # a / b
    published: float  # a / b
    source: str
    caveat: str = ""  # input sizes that differ from the published ones

    def sentence(self) -> str:
        """'resnet50 : vit_b16 latency ratio measured 0.45 vs published 0.48'."""
        return (f"{self.model_a} : {self.model_b} {self.figure} ratio measured {self.measured:.2f} "
                f"vs published {self.published:.2f}")


def entry_for(model: str, tag: str) -> CatalogEntry | None:
    """The catalog entry for a stored model name (alias) or its timm tag."""
    return catalog.load().get(model) or catalog.by_tag(tag)


def latest_ok(profiles: Sequence[Profile]) -> list[Profile]:
    """The newest successful profile per model, conditions and batch size (repeated runs collapse)."""
    latest: dict[tuple[object, ...], Profile] = {}
    for p in sorted((p for p in profiles if p.ok), key=lambda p: p.created_at):
        latest[(p.model, p.tag, p.batch_size, p.input_size, *(getattr(p, k) for k in _SAME_RUN))] = p
    return list(latest.values())


def _differences(p: Profile, device: str | None, dtype: str | None, batch: int | None,
                 size: int | None, of_the_run: bool = True) -> str:
    """How the row's conditions differ from the published figure's; of_the_run False for figures that do not depend
    on how the model ran (FLOPs: counted on the eager model whatever the runtime and dtype)."""
    graph = registry.is_graph(p.runtime) and of_the_run
    notes = [f"measured as the {p.dtype} graph on {p.runtime}"] if graph else []
    if device and not p.device.startswith(device):
        notes.append(f"measured on {p.device}")
    if dtype and p.dtype != dtype and not graph:
        notes.append(f"measured in {p.dtype}")
    if batch and p.batch_size != batch:
        notes.append(f"measured at batch {p.batch_size}, published at {batch}")
    if size and p.input_size != size:
        notes.append(f"measured at {p.input_size} px, published at {size} px")
    return "; ".join(notes)


def compare_profile(p: Profile, e: CatalogEntry) -> list[Comparison]:
    """Each of the profile's figures that has a published counterpart in the catalog."""
    out = []
    if p.latency_ms_p50 and e.ref_cpu_latency_ms:
        out.append(Comparison(p.model, "latency p50, ms (batch 1)", p.latency_ms_p50, e.ref_cpu_latency_ms,
                              e.ref_cpu or "timm CPU benchmark", _differences(p, "cpu", "float32", None,
                                                                                e.input_size)))
    if p.throughput_img_s and e.article_img_s:
        out.append(Comparison(p.model, "throughput, img/s", p.throughput_img_s, e.article_img_s, ARTICLE,
                              _differences(p, None, None, 64, e.article_input_size)))
    if p.gflops and e.gmacs:
        out.append(Comparison(p.model, "GFLOPs per image (2 per MAC), counted on the eager model", p.gflops,
                              macs_to_flops(e.gmacs), "timm benchmark GMACs x 2",
                              _differences(p, None, None, None, e.input_size, of_the_run=False)))
    if p.params_m and e.params:
        out.append(Comparison(p.model, "parameters, M", p.params_m, e.params_m, "timm create_model", ""))
    if p.weights_mb_fp32 and e.article_memory_mb:
        out.append(Comparison(p.model, "fp32 weights, MiB", p.weights_mb_fp32, e.article_memory_mb,
                              "source article 'memory' (about the fp32 weight size, MB)", ""))
    return out


def compare_eval(r: EvalResult, e: CatalogEntry) -> Comparison:
    """Measured top-1 against the published top-1 on ImageNet-1k val."""
    caveat = f"measured on {r.dataset} ({r.images} images), published on ImageNet-1k val (50,000)"
    if registry.is_graph(r.runtime):
        caveat += f"; measured on the {r.dtype} graph on {r.runtime}"
    if r.input_size and r.input_size != e.top1_size:
        caveat += f"; measured at {r.input_size} px, published at {e.top1_size} px"
    return Comparison(r.model, "top-1, %", r.top1, e.top1, f"{TIMM_RESULTS} @{e.top1_size} px", caveat)


def compare_all(profiles: Sequence[Profile], evals: Sequence[EvalResult] = ()) -> list[Comparison]:
    """Comparisons for every model that the catalog knows, newest run per conditions."""
    out = []
    for p in latest_ok(profiles):
        entry = entry_for(p.model, p.tag)
        if entry:
            out += compare_profile(p, entry)
    for r in evals:
        entry = entry_for(r.model, r.tag)
        if entry:
            out.append(compare_eval(r, entry))
    out = list(dict.fromkeys(out))  # a latency stored with each batch size's profile is shown once
    first = {m: i for i, m in reversed(list(enumerate(c.model for c in out)))}
    return sorted(out, key=lambda c: first[c.model])


def ratio_comparisons(profiles: Sequence[Profile]) -> list[RatioComparison]:
    """Between-model ratios measured in one run against the published ratios (hardware cancels out)."""
    groups: dict[tuple[object, ...], list[Profile]] = {}
    for p in latest_ok(profiles):
        groups.setdefault(tuple(getattr(p, k) for k in _SAME_RUN), []).append(p)
    out: list[RatioComparison] = []
    for members in groups.values():
        out += _ratios(members, "latency")
        for batch in sorted({p.batch_size for p in members}):
            out += _ratios([p for p in members if p.batch_size == batch], "throughput")
    return out


def _ratios(members: list[Profile], figure: str) -> list[RatioComparison]:
    rows: dict[str, tuple[float, float, str]] = {}
    order = list(catalog.load())
    for p in members:
        e = entry_for(p.model, p.tag)
        measured = p.latency_ms_p50 if figure == "latency" else p.throughput_img_s
        published = (e.ref_cpu_latency_ms if figure == "latency" else e.article_img_s) if e else None
        if e and measured and published:
            size = e.input_size if figure == "latency" else e.article_input_size
            note = f"{e.alias} measured at {p.input_size} px, published at {size} px" if size != p.input_size else ""
            rows[e.alias] = (measured, published, note)
    source = "timm CPU benchmark, i9-10940X, batch 1, fp32" if figure == "latency" else ARTICLE
    names = sorted(rows, key=order.index)
    return [RatioComparison(a, b, figure, rows[a][0] / rows[b][0], rows[a][1] / rows[b][1], source,
                            "; ".join(n for n in (rows[a][2], rows[b][2]) if n))
            for a, b in combinations(names, 2)]
