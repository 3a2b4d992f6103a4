"""Profile rows from what a model's child processes left behind: figures, conditions, how well each is known,
and the notes the table shows beside them. Pure Python, no torch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from vischoose.measure.application import app_fields
from vischoose.measure.peak import peak_key, read_cache, write_cache
from vischoose.measure.protocol import Job
from vischoose.models import catalog
from vischoose.models.catalog import ModelRef
from vischoose.records import Profile
from vischoose.requests.profile import ProfileRequest
from vischoose.runtimes import registry
from vischoose.runtimes.precision import bytes_per_param
from vischoose.units import MIB, flops_to_macs


def efficiency(gflops: float | None, img_s: float | None,
               peak_gflops_s: float | None) -> tuple[float | None, str | None]:
    """Achieved FLOP/s over the machine peak (0-1), or None and why: a figure above the peak is not a share of it."""
    if not gflops:
        return None, "no FLOP count for this model"
    if not img_s:
        return None, "no img/s measured"
    if not peak_gflops_s:
        return None, "no machine peak measured at this dtype and thread count"
    achieved = gflops * img_s
    if achieved > peak_gflops_s:
        return None, (f"not comparable: {achieved:,.0f} GFLOP/s is above the machine peak of {peak_gflops_s:,.0f} "
                      "(torch's best dense kernel): a peak measured while the machine was busy, or a runtime's "
                      "kernels faster than torch's")
    return achieved / peak_gflops_s, None


def entry(ref: ModelRef, result: dict[str, Any]) -> catalog.CatalogEntry | None:
    """The model's catalog entry, by alias or by the tag the child loaded."""
    return ref.entry or catalog.by_tag(result.get("model", {}).get("tag", ""))


def profile_row(ref: ModelRef, job: Job, result: dict[str, Any], batch: int,
                error: str | None) -> Profile:
    """The Profile of one batch size."""
    model, cond, known = result.get("model", {}), result.get("conditions", {}), entry(ref, result)
    options = job.request
    lat = result.get("latency") or {}
    thr = result["throughput"].get(str(batch)) or {}
    mem = result["memory"].get(str(batch)) or {}
    params, flops, peak = model.get("params"), result.get("flops_per_image"), result.get("peak_gflops_s")
    gflops = flops / 1e9 if flops else None
    tput = thr.get("median")
    eff, eff_note = efficiency(gflops, tput, peak)
    row = Profile(
        model=ref.display, tag=model.get("tag") or ref.timm_name or ref.name,
        device=job.device, dtype=options.dtype, batch_size=batch, call_batch=batch,
        input_size=model.get("input_size") or options.input_size or (known.input_size if known else 0),
        family=known.family if known else None, weights=model.get("weights", options.weights),
        device_name=cond.get("device_name", ""), machine=job.machine, machine_kind=job.machine_kind,
        threads=cond.get("threads", job.threads), threads_requested=job.threads_requested,
        layout="channels_last" if options.channels_last else "contiguous", compiled=options.compile,
        torch_version=cond.get("torch_version", ""), timm_version=cond.get("timm_version", ""),
        params_m=params / 1e6 if params else None,
        runtime=f"{registry.TORCH} autocast" if options.autocast else registry.TORCH,
        weights_mb=params * bytes_per_param(options.dtype) / MIB if params else None,
        weights_mb_fp32=params * bytes_per_param("float32") / MIB if params else None,
        gflops=gflops, gmacs=flops_to_macs(gflops) if gflops else None,
        latency_ms_p50=lat.get("median"), latency_ms_p90=lat.get("p90"), latency_ms_p99=lat.get("p99"),
        latency_ms_iqr=lat.get("iqr"), throughput_img_s=tput, throughput_iqr=thr.get("iqr"),
        peak_memory_mb=mem.get("peak_mb"), peak_reserved_mb=mem.get("reserved_mb"), **memory_basis(result, mem),
        efficiency=eff, efficiency_note=eff_note, noisy=noise_text(lat, thr), **machine_load(result, lat, thr),
        top1=known.top1 if known else None, top1_size=known.top1_size if known else None, error=error)
    row = graph_fields(row, options, result) if registry.get(options.runtime).is_graph else row
    return app_fields(row, result)  # cold start, end to end, layers (measure.application)


def noise_text(latency: dict[str, Any], throughput: dict[str, Any]) -> str | None:
    """'latency: p90 2.1x the median' where a phase stayed too spread after its second measurement."""
    parts = [f"{what}: {summary['noisy']}" for what, summary in (("latency", latency), ("img/s", throughput))
             if summary.get("noisy")]
    return "; ".join(parts) or None


def memory_basis(result: dict[str, Any], memory: dict[str, Any]) -> dict[str, Any]:
    """What the peak's baseline included (CPU peaks), and the runtime's own accounting of its file where it has one."""
    plan = result.get("runtime_memory") or {}
    cpu = "peak_mb" in memory and "reserved_mb" not in memory
    return {"baseline_includes": result.get("baseline_includes") if cpu else None,
            "runtime_memory_mb": plan.get("total_mb"), "runtime_memory_note": plan.get("note")}


def machine_load(result: dict[str, Any], latency: dict[str, Any], throughput: dict[str, Any]) -> dict[str, Any]:
    """What others took during the row's phases (the most of its batch-1 latency and its throughput, in cores), the
    phases still contended after a second measurement, and the batch-1 contradiction (measure.timing)."""
    phases = (("latency", latency), ("img/s", throughput))
    taken = [s["others_cores"] for _, s in phases if s.get("others_cores") is not None]
    contended = "; ".join(f"{what}: {s['contended']}" for what, s in phases if s.get("contended"))
    return {"others_cpu_cores": max(taken) if taken else None, "contended": contended or None,
            "inconsistent": result.get("inconsistent")}


def graph_fields(row: Profile, options: ProfileRequest, result: dict[str, Any]) -> Profile:
    """An exported graph's row: its runtime, file, build times and agreement with eager fp32."""
    graph = result.get("graph_facts", {})
    agree = graph.get("agreement") or {}
    most = registry.get(options.runtime).max_call_batch((result.get("artifact") or {}).get("facts") or {})
    return replace(row, runtime=options.runtime, call_batch=min(row.batch_size, most or row.batch_size),
                   runtime_version=result.get("runtime_version"),
                   weights_mb=graph.get("file_mb"), file_mb=graph.get("file_mb"),
                   export_s=graph.get("export_s"), quantize_s=graph.get("quantize_s"), recipe=graph.get("recipe"),
                   agreement_top1=agree.get("top1_agreement"), agreement_max_abs_diff=agree.get("max_abs_diff"),
                   agreement_cosine=agree.get("cosine"), agreement_images=agree.get("n_images"),
                   agreement_source=graph.get("check_source"), variant_status=graph.get("status"),
                   peak_reserved_mb=None, **graph_efficiency(row, options.dtype))


def graph_efficiency(row: Profile, dtype: str) -> dict[str, Any]:
    """A graph row's efficiency: against the fp32 peak for fp32 files; no int8 peak is measured."""
    if dtype == "float32":
        return {}
    return {"efficiency": None, "efficiency_note": f"no {dtype} peak is measured: efficiency is against the peak of "
                                                   "the row's own dtype"}


def row_error(result: dict[str, Any], batch: int, error: str | None) -> str | None:
    """The row's own error (out of memory at this batch), else the model's, else 'not measured' if incomplete."""
    own = (result["memory"].get(str(batch)) or {}).get("error") or \
        (result["throughput"].get(str(batch)) or {}).get("error")
    if own:
        return own
    done = "median" in (result["throughput"].get(str(batch)) or {}) and "median" in (result.get("latency") or {})
    return None if done else (error or "not measured")


def detail(result: dict[str, Any], batch: int) -> dict[str, Any]:
    """How well the figures are known: samples, warm-up runs, the median's CI, the matmul peak."""
    def quality(summary: dict[str, Any] | None) -> dict[str, Any] | None:
        if not summary or "median" not in summary:
            return None
        width = summary.get("rel_halfwidth")
        return {"samples": summary["n"], "warmup_runs": summary["warmup"], "settled": summary["settled"],
                "median_ci_pct": None if width is None else round(100 * width, 2), "noisy": summary.get("noisy")}
    return {"setup_exit_code": result.get("exit_code"), "latency": quality(result.get("latency")),
            "throughput": quality(result["throughput"].get(str(batch))),
            "machine_peak_gflops_s": result.get("peak_gflops_s"), "machine_peak_kernel": result.get("peak_kernel"),
            "baseline_rss_mb": result.get("baseline_rss_mb")}


def size_notes(ref: ModelRef, result: dict[str, Any]) -> tuple[str, ...]:
    """Say where the input size differs from the published top-1's or the article's."""
    model, known, name = result.get("model"), entry(ref, result), ref.display
    if not model:
        return ()
    size, notes = model["input_size"], []
    if size != model["pretrained_input_size"]:
        notes.append(f"{name}: measured at {size} px (--input-size); its pretrained config says "
                     f"{model['pretrained_input_size']} px.")
    if known and size != known.top1_size:
        notes.append(f"{name}: measured at {size} px, but its published top-1 ({known.top1:.2f}%) is at "
                     f"{known.top1_size} px.")
    if known and known.article_input_size and known.article_input_size != size:
        notes.append(f"{name}: the article's figures are at {known.article_input_size} px; timm's "
                     f"{model['tag']} runs at {size} px.")
    return tuple(notes)


def stale_peak(ref: ModelRef, job: Job, dtype: str, result: dict[str, Any],
               batches: list[int]) -> tuple[str, ...]:
    """Drop a cached machine peak that this model beat (it was measured on a busy machine); say so."""
    peak, flops = result.get("peak_gflops_s"), result.get("flops_per_image")
    rates = [flops / 1e9 * (result["throughput"].get(str(b)) or {}).get("median", 0) for b in batches] if flops else []
    if not peak or not rates or max(rates) <= peak:
        return ()
    cond = result.get("conditions", {})
    key = peak_key(job.machine, job.device, cond.get("device_name", ""), dtype, cond.get("threads"))
    path = Path(job.peak_cache)
    cache = read_cache(path)
    if cache.pop(key, None) is not None:
        write_cache(path, cache)
    return (f"{ref.display}: reached {max(rates):,.0f} GFLOP/s, above the cached machine peak of {peak:,.0f} "
            "(measured while the machine was busy?): eff is not shown and the peak is measured again next run.",)
