"""Tables and JSON for people and scripts; no computation beyond formatting."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from vischoose.errors import named
from vischoose.report.flags import echo, flag_of
from vischoose.report.progress import ProgressBar
from vischoose.runtimes import registry

SCHEMA_VERSION = 1


def fmt(value: Any, digits: int = 1) -> str:
    """A number with fixed digits, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def batch_text(p: Any) -> str:
    """'8', or '8 (8 x batch 1)' where the file took fewer images per call than the batch (a batch-1 program)."""
    calls = getattr(p, "call_batch", None)
    if calls and calls < p.batch_size:
        return f"{p.batch_size} ({-(-p.batch_size // calls)} x batch {calls})"
    return str(p.batch_size)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain text table, laid out as tabulate's "simple" format (cells as text, left-aligned, columns at least
    two wider than their header). Written out here because importing tabulate 0.10 reads package metadata, about
    15 ms that `recommend` and `--help` should not pay; Markdown tables still come from tabulate."""
    heads = [str(h) for h in headers]
    body = [["" if cell is None else str(cell).strip() for cell in row] for row in rows]
    widths = [max([len(h) + 2] + [len(r[i]) for r in body if i < len(r)]) for i, h in enumerate(heads)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()

    return "\n".join([line(heads), "  ".join("-" * w for w in widths), *(line(r) for r in body)])


def emit_json(kind: str, payload: Any) -> None:
    """Print a JSON envelope with schema_version to stdout (request fields named in its texts written as flags)."""
    import json  # here: a table needs no json, and recommend's start-up counts every module

    text = json.dumps({"schema_version": SCHEMA_VERSION, "kind": kind, "data": payload}, indent=2, default=str)
    echo(named(text, flag_of))


def show_models(rows: list[dict[str, Any]], as_json: bool) -> None:
    """The catalog table (vischoose models)."""
    if as_json:
        emit_json("models", rows)
        return
    headers = ["alias", "family", "timm tag", "top-1 %", "@px", "params M", "GMACs", "GFLOPs",
               "input px", "fp32 MiB", "cached", "on disk MiB"]
    body = [[r["alias"], r["family"], r["tag"], fmt(r["top1"], 2), r["top1_size"], fmt(r["params_m"], 2),
             fmt(r["gmacs"], 2), fmt(r["gflops"], 2), r["input_size"], fmt(r["weights_mb_fp32"], 1),
             fmt(r["cached"]), fmt(r["cached_mb"], 1)] for r in rows]
    echo(table(headers, body))
    echo("\ntop-1: timm results-imagenet.csv at @px; GMACs = multiply-accumulates per image, "
               "GFLOPs = 2 x GMACs; MiB = 2^20 bytes.")


def show_zoo(rows: list[dict[str, Any]], as_json: bool, all_tags: bool, family: str | None) -> None:
    """timm's zoo (vischoose models --zoo), clearly apart from the curated catalog."""
    if as_json:
        emit_json("zoo", rows)
        return
    headers = ["timm tag", "alias", "family", "top-1 %", "@px", "test-size top-1", "params M", "GFLOPs", "fp32 MiB",
               "CPU ms", "GPU img/s"]
    body = [[r["tag"], r["alias"] or "", r["family"], fmt(r["top1"], 2), r["top1_size"],
             f"{r['top1_test']:.2f} @{r['top1_test_size']}" if r["top1_test"] is not None else "-",
             fmt(r["params_m"], 2), fmt(r["gflops"], 2), fmt(r["weights_mb_fp32"], 1), fmt(r["cpu_ms"], 1),
             fmt(r["gpu_img_s"], 0)] for r in rows]
    echo(table(headers, body))
    source = rows[0]["source"] if rows else "timm results"
    which = ("every tag" if all_tags
             else "one row per architecture: its best top-1 at its deployed size (--all-tags: every tag)")
    echo(f"\ntimm's zoo ({source}, Apache-2.0), not the curated catalog (vischoose models): {len(rows)} rows, "
               f"{which}.\ntop-1: ImageNet-1k at @px, the size the tag is deployed at (timm's input_size); test-size "
               "top-1 at timm's larger test size, not deployed. GFLOPs = 2 x GMACs (timm benchmark). CPU ms: batch 1, "
               "float32, Intel Core i9-10940X with torch.compile (the i7-12700H where the i9 has no figure); GPU img/s: "
               "float16 AMP at the benchmark's batch, NVIDIA GeForce RTX 5090 (another GPU where it has none); --json "
               "names each figure's machine, batch and precision, and adds ReaL and ImageNetV2 top-1 and the "
               "pretraining data timm lists per architecture (a tag's own name says more: _in21k_ft_in1k ...).")
    if family is None and not all_tags:
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["family"]] = counts.get(r["family"], 0) + 1
        echo("families (architectures): " + ", ".join(f"{f} {n}" for f, n in
                                                            sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))


def show_pulled(rows: list[dict[str, Any]], as_json: bool) -> None:
    """What vischoose pull fetched."""
    if as_json:
        emit_json("pull", rows)
        return
    echo(table(["model", "repo", "commit", "file", "MiB", "folder"],
                     [[r["model"], r["repo_id"], r["commit"], r["file"], fmt(r["size_mb"], 1), r["folder"]]
                      for r in rows]))


# ---- recommend and presets -------------------------------------------------------------------------

_SOURCE_MARK = {"measured": "M", "published": "P", "computed": "C", "estimated": "E"}
_CANDIDATE_COLUMNS = [("top1", "top-1 %", 2), ("memory_mb", "memory MiB", 1), ("latency_ms", "latency ms", 1),
                      ("throughput", "img/s", 1), ("params_m", "params M", 1)]
# recommend --serve (recommendation.serving): sustained rate at the p99 bound, its cost, the machines a target needs
_SERVE_COLUMNS = [("serve_qps", "QPS at SLO", 1), ("cost_per_million", "USD per 1M img", 3), ("machines", "machines", 0)]


def _figure_cell(cand, name: str, digits: int) -> str:
    """'30.9 P~' (a figure standing in for another precision, runtime or batch), '8.1 E+-31%' (an estimate and its
    expected error), '8.1 E?' (an estimate whose error nobody measured)."""
    fig = cand.figures.get(name)
    if fig is None:
        return "-"
    mark = _SOURCE_MARK.get(fig.source, "?")
    if fig.source == "estimated":
        mark += "?" if fig.error is None else f"+-{100 * fig.error:.0f}%"
    return f"{fig.value:,.{digits}f} {mark}{'~' if fig.stands_in else ''}"


def _columns(cands) -> list[tuple[str, str, int]]:
    """The candidate columns, with the published top-1 beside the measured one once a top-1 was measured on data."""
    published = any("published_top1" in c.figures for c in cands)
    serving = [col for col in _SERVE_COLUMNS if any(col[0] in c.figures for c in cands)]
    cold = [("cold_start_ms", "cold start ms", 0)] if any("cold_start_ms" in c.figures for c in cands) else []
    return _CANDIDATE_COLUMNS[:1] + ([("published_top1", "published top-1 %", 2)] if published else []) + \
        _CANDIDATE_COLUMNS[1:] + cold + serving


def _candidate_row(cand, pareto, deployed: bool = False, columns=_CANDIDATE_COLUMNS) -> list[str]:
    return [cand.model, *([cand.variant.label] if deployed else []),
            *[_figure_cell(cand, n, d) for n, _, d in columns], "*" if cand.model in pareto else ""]


def _variant_text(cand, todo: bool = True) -> str:
    """'onnxruntime int8 (90.8 MiB estimated size; accuracy cost not measured: vischoose profile ...)'."""
    return f"{cand.variant.label} ({cand.variant_note}{': ' + cand.variant_todo if todo and cand.variant_todo else ''})"


def _figure_dict(f) -> dict[str, Any]:
    """A figure for --json: value, source and note, and what stands in, its error and spread where known."""
    out = {"value": f.value, "source": f.source, "note": f.note}
    for key in ("stands_in", "error", "spread"):
        if getattr(f, key):
            out[key] = getattr(f, key)
    return out


def recommendation_dict(rec) -> dict[str, Any]:
    """The recommendation as plain data for --json."""
    def cand(c) -> dict[str, Any]:
        return {"model": c.model, "tag": c.tag, "family": c.family, "fits": c.fits, "pareto": c.model in rec.pareto,
                "figures": {k: _figure_dict(f) for k, f in c.figures.items()},
                "variant": {"runtime": c.variant.runtime, "precision": c.variant.precision, "plain": c.plain,
                            "verified": c.verified, "note": c.variant_note, "measure_with": c.variant_todo or None},
                "rejected_because": list(c.reasons)}

    spec = rec.preset.measure
    return {"target": rec.target, "description": rec.preset.description, "chosen": cand(rec.chosen),
            "reason": rec.reason, "runners_up": [cand(c) for c in rec.runners_up],
            "rejected": [cand(c) for c in rec.rejected], "pareto": sorted(rec.pareto),
            "not_measured": [{**cand(c), "why_not_measured": _not_measured_why(rec, c)} for c in rec.unmeasured],
            "constraints": {k: v for k, v in rec.preset.constraints._asdict().items() if v is not None},
            "conditions": {"device": spec.device, "dtype": spec.dtype, "batch_size": spec.batch_size,
                           "threads": spec.threads, "channels_last": spec.channels_last,
                           "deploy": [v.label for v in rec.preset.variants]},
            "serve": {k: v for k, v in rec.preset.serve._asdict().items() if v is not None},
            "notes": rec.notes, "measure_log": rec.measure_log}


def flagged(rec):
    """The recommendation with the request fields its words name written as this CLI's flags."""
    def cand(c):
        figures = {k: f._replace(note=named(f.note, flag_of)) for k, f in c.figures.items()}
        return c._replace(figures=figures, violations=tuple(named(v, flag_of) for v in c.violations),
                          missing=tuple(named(v, flag_of) for v in c.missing),
                          unusable=tuple(named(v, flag_of) for v in c.unusable),
                          variant_note=named(c.variant_note, flag_of))

    return rec._replace(chosen=cand(rec.chosen), runners_up=[cand(c) for c in rec.runners_up],
                        rejected=[cand(c) for c in rec.rejected], reason=named(rec.reason, flag_of),
                        notes=tuple(named(n, flag_of) for n in rec.notes),
                        measure_log=tuple(named(n, flag_of) for n in rec.measure_log),
                        unmeasured=tuple(cand(c) for c in rec.unmeasured),
                        unmeasured_why=tuple((m, named(w, flag_of)) for m, w in rec.unmeasured_why))


REJECTED_SHOWN = 15  # rejections listed one per line; the rest are counted by the limit they break
PARETO_SHOWN = 20


def _why_kind(reason: str) -> str:
    """A rejection reason without its figures, to count alike ones: '295.8 MiB > 150 MiB budget (computed, ...)' ->
    'over the 150 MiB budget'."""
    head = reason.split(" (")[0]
    for sign, word in ((" > ", "over the "), (" < ", "under the ")):
        if sign in head:
            return word + head.split(sign, 1)[1]
    return head


def _show_rejected(rec) -> None:
    """The rejected models one per line; beyond REJECTED_SHOWN, those that break a limit first (then those missing a
    figure) and the rest counted by the limit they break."""
    more = len(rec.rejected) > REJECTED_SHOWN
    ordered = sorted(rec.rejected, key=lambda r: not r.violations) if more else rec.rejected
    if ordered:
        echo(f"\nRejected ({len(ordered)}; the first {REJECTED_SHOWN}, --json lists each):" if more
                   else "\nRejected:")
        echo(table(["model", "why"], [[r.model, ("" if r.plain else f"as {r.variant.label}: ")
                                             + "; ".join(r.reasons)] for r in ordered[:REJECTED_SHOWN]]))
        if more:
            counts: dict[str, int] = {}
            for r in ordered[REJECTED_SHOWN:]:
                kind = _why_kind((r.reasons or ("not deployable",))[0])
                counts[kind] = counts.get(kind, 0) + 1
            echo(f"  ... and {len(ordered) - REJECTED_SHOWN} more: " + ", ".join(
                f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1])))


def _show_pareto(rec) -> None:
    """The Pareto front, its first PARETO_SHOWN names."""
    front = sorted(rec.pareto)
    more_front = f" and {len(front) - PARETO_SHOWN} more (--json lists each)" if len(front) > PARETO_SHOWN else ""
    echo(f"\nPareto front (top-1 vs latency vs memory, over every candidate, rejected ones included): "
               f"{', '.join(front[:PARETO_SHOWN]) or '-'}{more_front}")


def _show_chosen(rec, columns) -> None:
    """The chosen model: why, how it is deployed, each figure with where it comes from, what the target runs."""
    c, spec = rec.chosen, rec.preset.measure
    tag = "" if c.tag == c.model else f" ({c.tag})"  # a zoo model is named by its tag already
    echo(f"Recommended for '{rec.target}': {c.model}{tag}{'' if c.plain else ' at ' + c.variant.label}")
    echo(f"  why: {rec.reason}")
    if not c.plain:
        echo(f"  deployed as: {_variant_text(c)}")
    for name, label, digits in columns:
        fig = c.figures.get(name)
        if fig:
            said = fig.stands_in and "standing in" not in fig.note and fig.stands_in not in fig.note
            extra = "".join(f"; {w}" for w in (fig.note, f"standing in: {fig.stands_in}" if said else "") if w)
            echo(f"  {label}: {fig.value:,.{digits}f} ({fig.source}{extra})")
    runs = c.variant.label if not c.plain or c.variant.runtime != "torch" else f"torch {spec.dtype}"
    here = f" ({rec.runs_here})" if rec.runs_here else ""
    echo(f"  target runs: {spec.device}{here}, {runs}, batch {spec.batch_size}"
         f"{', channels_last' if spec.channels_last else ''}")
    if "serve_qps" in c.figures:
        echo(f"  target serves: {_serve_text(rec.preset.serve)}")


def show_recommendation(rec, top: int, as_json: bool) -> None:
    """The recommendation, the runners-up, every rejection with its reason, and the Pareto front."""
    more = [r.model for r in rec.runners_up[top - 1:]]  # they fit too: named, never dropped silently
    rec = flagged(rec._replace(runners_up=rec.runners_up[:top - 1]))  # --top counts the chosen model
    if as_json:
        emit_json("recommendation", {**recommendation_dict(rec), "more_fitting": more})
        return
    c, columns = rec.chosen, _columns([rec.chosen, *rec.runners_up])
    _show_chosen(rec, columns)
    shown = rec.runners_up
    deployed = not all(r.plain for r in [c, *shown])  # a "deployed as" column once a preset has [deploy]
    headers = ["model", *(["deployed as"] if deployed else []), *[h for _, h, _ in columns], "pareto"]
    if rec.runners_up:
        echo("\nRunners-up (meet every constraint), best first:")
        echo(table(headers, [_candidate_row(r, rec.pareto, deployed, columns) for r in shown]))
        for r in shown:
            if not r.plain and r.variant != c.variant:
                echo(f"  {r.model} fits at {_variant_text(r, todo=False)}")
    if more:
        echo(f"  {len(more)} more meet every constraint: {', '.join(more[:10])}{' ...' if len(more) > 10 else ''} "
             f"(--top {top + len(more)} shows them)")
    _show_rejected(rec)
    _show_unmeasured(rec)
    _show_pareto(rec)
    basis = ("latency is a photo's end to end p90 (decode + preprocess + model, batch 1)"
             if rec.preset.constraints.latency_basis == "end-to-end" else "latency is batch-1 p90")
    echo("Sources: M measured here, P published, C computed from parameters, E estimated (+-N%: its expected error "
         "measured here; ?: error unknown); ~ another precision, runtime or batch standing in (the note says which). "
         f"Memory in MiB (2^20 bytes); {basis}.")
    for note in rec.notes:
        echo(f"Note: {note}")
    for line in rec.measure_log:
        echo(f"Measured for this answer: {line}")


def _serve_text(serve) -> str:
    """'p99 <= 100 ms, 200 QPS, USD 0.68 per machine-hour'."""
    parts = [f"p99 <= {serve.slo_ms:g} ms"]
    parts += [f"{serve.target_qps:g} QPS"] if serve.target_qps else []
    parts += [f"USD {serve.price_per_hour:g} per machine-hour"] if serve.price_per_hour else []
    return ", ".join(parts)


def _show_unmeasured(rec) -> None:
    """The candidates that lack a figure only measuring gives: listed apart from the rejected, with why."""
    if rec.unmeasured:
        echo("\nNot measured (no figure yet for a limit only measuring checks; not rejected):")
        echo(table(["model", "missing", "why not measured"],
                         [[r.model, ("" if r.plain else f"as {r.variant.label}: ")
                           + "; ".join(why.removeprefix("not measured: ") for why in r.reasons),
                           _not_measured_why(rec, r)] for r in rec.unmeasured]))


def _not_measured_why(rec, cand) -> str:
    """Why a candidate has no figure: what recommend --measure said when it stopped, else how to measure it."""
    said = dict(rec.unmeasured_why).get(cand.model)
    return said or ("not measured here yet: recommend --measure measures what can change the answer, --measure-all "
                    "every candidate")


def show_presets(presets, as_json: bool) -> None:
    """The list of presets."""
    if as_json:
        emit_json("presets", [{"name": p.name, "description": p.description, "path": str(p.path),
                               "deploys": [{"runtime": v.runtime, "precision": v.precision} for v in p.variants]}
                              for p in presets])
        return
    echo(table(["name", "prefers", "device", "dtype", "batch", "deploys", "description"],
                     [[p.name, ", ".join(p.prefer) or "-", p.measure.device, p.measure.dtype,
                       ",".join(map(str, p.measure.batch_sizes)), ", ".join(v.label for v in p.variants),
                       p.description] for p in presets]))


# ---- predict and evaluate ----------------------------------------------------------------------------

def preprocessing_note(config: dict[str, Any]) -> str:
    size = config.get("input_size", [0, 0, 0])
    return (f"{size[-2]}x{size[-1]} px, {config.get('interpolation')} resize, crop_pct {config.get('crop_pct')} "
            f"({config.get('crop_mode', 'center')}), mean {tuple(config.get('mean', ()))}, "
            f"std {tuple(config.get('std', ()))}")


def show_image_errors(failed: Sequence[tuple[str, str]], total: int, what: str) -> None:
    """One 'Error: PATH: reason' line per unreadable image on stderr, then a count."""
    for path, reason in failed:
        echo(f"Error: {path}: {reason}", err=True)
    if failed:
        echo(f"Error: {len(failed)} of {total} images {what}.", err=True)


def show_predictions(result, as_json: bool) -> None:
    """Top-k classes per image (vischoose predict); unreadable images on stderr."""
    from dataclasses import asdict

    if as_json:
        emit_json("predictions", asdict(result))
    else:
        rows = []
        for item in result.images:
            for rank, p in enumerate(item.predictions, start=1):
                rows.append([item.path if rank == 1 else "", rank, p.label, p.class_id or p.index,
                             fmt(100.0 * p.probability, 2)])
        if rows:
            echo(table(["image", "#", "class", "id", "prob %"], rows))
            echo(f"\n{result.tag} ({result.weights}) on {result.device}, {result.dtype}; "
                       f"preprocessing: {preprocessing_note(result.preprocessing)}.")
    show_image_errors([(i.path, i.error) for i in result.failed], len(result.images), "could not be classified")


def show_evaluation(outcome, as_json: bool) -> None:
    """Top-1 / top-5 accuracy and speed (vischoose evaluate); unreadable images on stderr."""
    r, deployed = outcome.result, outcome.deployed
    if as_json:
        emit_json("evaluation", {**r.to_dict(), "workers": outcome.workers,
                                 "failed": [{"path": p, "error": e} for p, e in outcome.failed],
                                 **({"deployed": deployed.to_dict()} if deployed else {})})
    else:
        echo(table(["model", "weights", "images", "top-1 %", "95 % CI", "top-5 %", "img/s", "device", "dtype",
                          "batch", "px", "processes"],
                         [[r.model, r.weights, r.images, fmt(r.top1, 2), interval_text(r), fmt(r.top5, 2),
                           fmt(r.images_per_s, 1), r.device, r.dtype, r.batch_size, r.input_size, r.world_size]]))
        if deployed:
            echo(f"\ndata: {r.dataset}\n" + _deployed_text(r, deployed))
        else:
            echo(f"\ndata: {r.dataset}\nmodel: {r.tag}; img/s is end to end (decode, preprocess, forward) "
                       f"over {r.world_size} process(es), {outcome.workers} loader worker(s) each.")
    show_image_errors(list(outcome.failed), r.images + len(outcome.failed),
                      f"could not be read; the accuracy covers the other {r.images}")


def interval_text(r) -> str:
    """'76.0-85.6' (a stored result's 95 % Wilson interval of top-1), or '-' for results stored without one."""
    return "-" if r.top1_low is None or r.top1_high is None else f"{r.top1_low:.1f}-{r.top1_high:.1f}"


def _deployed_text(r, d) -> str:
    """The graph evaluated on its runtime, its agreement with eager fp32, the verdict, the top-1 drop with its paired
    interval, and the notes."""
    a = d.agreement
    built = f"{d.recipe}, {d.family} family" if d.recipe else f"{d.family} family"
    title = registry.title(d.runtime)
    what = f"the file {d.graph}, as written," if d.graph else "an exported graph"
    graph = (f"model: {r.tag} as {what} on {title} {d.runtime_version}: {d.precision} ({built}), "
             f"{fmt(d.file_mb, 1)} MiB; img/s is end to end (decode, preprocess, {title}), without the eager "
             f"fp32 forward passes of the agreement check (forward passes alone: this file "
             f"{fmt(d.graph_images_per_s, 1)} img/s, eager fp32 {fmt(d.eager_images_per_s, 1)} img/s).")
    agreement = (f"agreement with eager fp32: same top-1 class on {d.agreeing} of {a.n_images} images "
                 f"({100 * a.top1_agreement:.1f} %); max |logit diff| {a.max_abs_diff:.3g}, min cosine {a.cosine:.4f}.")
    lines = [graph, agreement]
    if r.variant_status:
        lines.append(f"verdict: {named(verdict_text(r), flag_of)} (on the agreement over all {a.n_images} evaluated "
                     "images).")
    if r.fp32_top1 is not None:
        interval = "" if r.drop_low is None else f", 95 % CI {r.drop_low:.2f} to {r.drop_high:.2f} (paired, Newcombe)"
        lines.append(f"top-1 drop from eager fp32 on the same images: {r.fp32_top1 - r.top1:.2f} points{interval} "
                     f"(eager fp32 {r.fp32_top1:.2f} %, this file {r.top1:.2f} %).")
    return "\n".join(lines + [f"note: {named(n, flag_of)}" for n in d.notes])


def verdict_text(r: Any) -> str:
    """A stored verdict in deploy.verdict's one wording ('rejected: top-1 agreement 95.0% < 99.0% on 37 images')."""
    from vischoose.deploy.verdict import Verdict, describe

    return describe(Verdict(r.variant_status, getattr(r, "verdict_note", None))) if r.variant_status else "-"


def show_saved(result_id: int) -> None:
    """Where a result was saved (stderr)."""
    echo(f"Saved to the results store as #{result_id}.", err=True)


progress_bar = ProgressBar  # `with report.progress_bar("evaluating") as bar:` closes the line whatever happens


# -- saved results (vischoose results ...) -------------------------------------------------------------
