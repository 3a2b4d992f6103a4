"""Tables and JSON for people and scripts; no computation beyond formatting."""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import typer

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


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain text table."""
    from tabulate import tabulate

    return tabulate(list(rows), headers=list(headers), tablefmt="simple", disable_numparse=True)


def emit_json(kind: str, payload: Any) -> None:
    """Print a JSON envelope with schema_version to stdout."""
    typer.echo(json.dumps({"schema_version": SCHEMA_VERSION, "kind": kind, "data": payload}, indent=2, default=str))


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
    typer.echo(table(headers, body))
    typer.echo("\ntop-1: timm results-imagenet.csv at @px; GMACs = multiply-accumulates per image, "
               "GFLOPs = 2 x GMACs; MiB = 2^20 bytes.")


def show_pulled(rows: list[dict[str, Any]], as_json: bool) -> None:
    """What vischoose pull fetched."""
    if as_json:
        emit_json("pull", rows)
        return
    typer.echo(table(["model", "repo", "commit", "file", "MiB", "folder"],
                     [[r["model"], r["repo_id"], r["commit"], r["file"], fmt(r["size_mb"], 1), r["folder"]]
                      for r in rows]))


# ---- recommend and presets -------------------------------------------------------------------------

_SOURCE_MARK = {"measured": "M", "published": "P", "computed": "C", "estimated": "E"}
_CANDIDATE_COLUMNS = [("top1", "top-1 %", 2), ("memory_mb", "memory MiB", 1), ("latency_ms", "latency ms", 1),
                      ("throughput", "img/s", 1), ("params_m", "params M", 1)]


def _figure_cell(cand, name: str, digits: int) -> str:
    fig = cand.figures.get(name)
    return "-" if fig is None else f"{fig.value:,.{digits}f} {_SOURCE_MARK.get(fig.source, '?')}"


def _candidate_row(cand, pareto) -> list[str]:
    return [cand.model, *[_figure_cell(cand, n, d) for n, _, d in _CANDIDATE_COLUMNS],
            "*" if cand.model in pareto else ""]


def recommendation_dict(rec) -> dict[str, Any]:
    """The recommendation as plain data for --json."""
    def cand(c) -> dict[str, Any]:
        return {"model": c.model, "tag": c.tag, "family": c.family, "fits": c.fits, "pareto": c.model in rec.pareto,
                "figures": {k: {"value": f.value, "source": f.source, "note": f.note} for k, f in c.figures.items()},
                "rejected_because": list(c.violations) + list(c.missing)}

    spec = rec.preset.measure
    return {"target": rec.target, "description": rec.preset.description, "chosen": cand(rec.chosen),
            "reason": rec.reason, "runners_up": [cand(c) for c in rec.runners_up],
            "rejected": [cand(c) for c in rec.rejected], "pareto": sorted(rec.pareto),
            "constraints": {k: v for k, v in vars(rec.preset.constraints).items() if v is not None},
            "conditions": {"device": spec.device, "dtype": spec.dtype, "batch_size": spec.batch_size,
                           "threads": spec.threads, "channels_last": spec.channels_last},
            "notes": rec.notes}


def show_recommendation(rec, top: int, as_json: bool) -> None:
    """The recommendation, the runners-up, every rejection with its reason, and the Pareto front."""
    if as_json:
        emit_json("recommendation", recommendation_dict(rec))
        return
    c, spec = rec.chosen, rec.preset.measure
    typer.echo(f"Recommended for '{rec.target}': {c.model} ({c.tag})")
    typer.echo(f"  why: {rec.reason}")
    for name, label, digits in _CANDIDATE_COLUMNS:
        fig = c.figures.get(name)
        if fig:
            typer.echo(f"  {label}: {fig.value:,.{digits}f} ({fig.source}{'; ' + fig.note if fig.note else ''})")
    typer.echo(f"  conditions: {spec.device}, {spec.dtype}, batch {spec.batch_size}"
               f"{', channels_last' if spec.channels_last else ''}")
    headers = ["model", *[h for _, h, _ in _CANDIDATE_COLUMNS], "pareto"]
    if rec.runners_up:
        typer.echo(f"\nRunners-up (meet every constraint), best first:")
        typer.echo(table(headers, [_candidate_row(r, rec.pareto) for r in rec.runners_up[:max(top - 1, 0) or None]]))
    if rec.rejected:
        typer.echo("\nRejected:")
        typer.echo(table(["model", "why"], [[r.model, "; ".join(r.violations + r.missing)] for r in rec.rejected]))
    typer.echo(f"\nPareto front (top-1 vs latency vs memory): {', '.join(sorted(rec.pareto)) or '-'}")
    typer.echo("Sources: M measured here, P published, C computed from parameters, E estimated. "
               "Memory in MiB (2^20 bytes); latency is batch-1 p90.")
    for note in rec.notes:
        typer.echo(f"Note: {note}")


def show_presets(presets, as_json: bool) -> None:
    """The list of presets."""
    if as_json:
        emit_json("presets", [{"name": p.name, "description": p.description, "path": str(p.path)} for p in presets])
        return
    typer.echo(table(["name", "prefers", "device", "dtype", "batch", "description"],
                     [[p.name, ", ".join(p.prefer) or "-", p.measure.device, p.measure.dtype,
                       ",".join(map(str, p.measure.batch_sizes)), p.description] for p in presets]))


# ---- predict and evaluate ----------------------------------------------------------------------------

def _preprocessing_note(config: dict[str, Any]) -> str:
    size = config.get("input_size", [0, 0, 0])
    return (f"{size[-2]}x{size[-1]} px, {config.get('interpolation')} resize, crop_pct {config.get('crop_pct')} "
            f"({config.get('crop_mode', 'center')}), mean {tuple(config.get('mean', ()))}, "
            f"std {tuple(config.get('std', ()))}")


def show_image_errors(failed: Sequence[tuple[str, str]], total: int, what: str) -> None:
    """One 'Error: PATH: reason' line per unreadable image on stderr, then a count."""
    for path, reason in failed:
        typer.echo(f"Error: {path}: {reason}", err=True)
    if failed:
        typer.echo(f"Error: {len(failed)} of {total} images {what}.", err=True)


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
            typer.echo(table(["image", "#", "class", "id", "prob %"], rows))
            typer.echo(f"\n{result.tag} ({result.weights}) on {result.device}, {result.dtype}; "
                       f"preprocessing: {_preprocessing_note(result.preprocessing)}.")
    show_image_errors([(i.path, i.error) for i in result.failed], len(result.images), "could not be classified")


def show_evaluation(outcome, as_json: bool) -> None:
    """Top-1 / top-5 accuracy and speed (vischoose evaluate); unreadable images on stderr."""
    r = outcome.result
    if as_json:
        emit_json("evaluation", {**r.to_dict(), "workers": outcome.workers,
                                 "failed": [{"path": p, "error": e} for p, e in outcome.failed]})
    else:
        typer.echo(table(["model", "weights", "images", "top-1 %", "top-5 %", "img/s", "device", "dtype", "batch",
                          "px", "processes"],
                         [[r.model, r.weights, r.images, fmt(r.top1, 2), fmt(r.top5, 2), fmt(r.images_per_s, 1),
                           r.device, r.dtype, r.batch_size, r.input_size, r.world_size]]))
        typer.echo(f"\ndata: {r.dataset}\nmodel: {r.tag}; img/s is end to end (decode, preprocess, forward) "
                   f"over {r.world_size} process(es), {outcome.workers} loader worker(s) each.")
    show_image_errors(list(outcome.failed), r.images + len(outcome.failed),
                      f"could not be read; the accuracy covers the other {r.images}")


def show_saved(result_id: int) -> None:
    """Where a result was saved (stderr)."""
    typer.echo(f"Saved to the results store as #{result_id}.", err=True)


class ProgressBar:
    """A one-line progress bar with a rate on stderr; silent when stderr is not a terminal."""

    def __init__(self, label: str, width: int = 30) -> None:
        import sys
        import time

        self.label, self.width, self.stream = label, width, sys.stderr
        self.enabled = self.stream.isatty()
        self.start, self.drawn = time.perf_counter(), False

    def __call__(self, done: int, total: int) -> None:
        """Redraw for `done` of `total` items."""
        import time

        if not self.enabled or total <= 0:
            return
        if done == 0:  # the work starts now (model loading is over): time the rate from here
            self.start = time.perf_counter()
        filled = int(self.width * done / total)
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
                          f"{rate:,.1f} img/s")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the bar's line."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


# -- saved results (vischoose results ...) -------------------------------------------------------------

_STORED_PROFILE_HEADERS = ["id", "model", "device", "dtype", "batch", "px", "latency p50 ms", "p90 ms", "img/s",
                    "peak MiB", "GFLOPs", "top-1 %", "machine", "measured", "from"]
_STORED_EVAL_HEADERS = ["id", "model", "dataset", "images", "top-1 %", "top-5 %", "device", "dtype", "batch", "px",
                 "img/s", "machine", "measured", "from"]


def _stored_profile_row(r: Any) -> list[str]:
    p = r.record
    row = [str(r.id), p.model, p.device, p.dtype, str(p.batch_size), str(p.input_size), fmt(p.latency_ms_p50, 2),
           fmt(p.latency_ms_p90, 2), fmt(p.throughput_img_s, 1), fmt(p.peak_memory_mb, 1), fmt(p.gflops, 2),
           fmt(p.top1, 2), p.machine, p.created_at[:16].replace("T", " "), r.imported_from or "here"]
    if p.error:
        row[6:9] = ["FAILED", "-", "-"]
    return row


def _stored_eval_row(r: Any) -> list[str]:
    e = r.record
    return [str(r.id), e.model, e.dataset, str(e.images), fmt(e.top1, 2), fmt(e.top5, 2), e.device, e.dtype,
            str(e.batch_size), fmt(e.input_size), fmt(e.images_per_s, 1), e.machine,
            e.created_at[:16].replace("T", " "), r.imported_from or "here"]


def _stored_dict(r: Any) -> dict[str, Any]:
    return {"id": r.id, "kind": r.kind, "imported_from": r.imported_from, "stored_at": r.stored_at,
            "record": r.record.to_dict()}


def show_results_list(results: Sequence[Any], as_json: bool) -> None:
    """vischoose results list: profiles, then evaluations, one table each."""
    if as_json:
        emit_json("results", [_stored_dict(r) for r in results])
        return
    profiles = [r for r in results if r.kind == "profile"]
    evals = [r for r in results if r.kind == "eval"]
    if not results:
        typer.echo("No stored results match.", err=True)
    if profiles:
        typer.echo(table(_STORED_PROFILE_HEADERS, [_stored_profile_row(r) for r in profiles]))
        failed = [r for r in profiles if r.record.error]
        for r in failed:
            typer.echo(f"  result {r.id} FAILED: {r.record.error}")
        typer.echo("\nlatency: batch 1; img/s: at the batch shown; MiB = 2^20 bytes; GFLOPs = 2 x GMACs per image; "
                   "top-1: published. Details: vischoose results show ID")
    if evals:
        body = [_stored_eval_row(r) for r in evals]
        typer.echo(("\n" if profiles else "") + table(_STORED_EVAL_HEADERS, body))


def show_stored_result(r: Any, as_json: bool) -> None:
    """vischoose results show ID: every field."""
    if as_json:
        emit_json("result", _stored_dict(r))
        return
    rows = [["id", r.id], ["kind", r.kind], ["stored", r.stored_at], ["from", r.imported_from or "measured here"]]
    rows += [[k, fmt(v, 4) if isinstance(v, float) else fmt(v)] for k, v in r.record.to_dict().items()]
    typer.echo(table(["field", "value"], rows))


def show_imported(path: str, added: int, skipped: int, as_json: bool) -> None:
    """What vischoose results import added."""
    if as_json:
        emit_json("import", {"file": path, "added": added, "already_stored": skipped})
        return
    typer.echo(f"Imported {added} results from {path}; {skipped} were already stored.")


def results_markdown(results: Sequence[Any]) -> str:
    """Markdown tables of stored results (vischoose results export --format markdown)."""
    from tabulate import tabulate

    parts = []
    profiles = [r for r in results if r.kind == "profile"]
    evals = [r for r in results if r.kind == "eval"]
    if profiles:
        parts.append(tabulate([_stored_profile_row(r) for r in profiles], _STORED_PROFILE_HEADERS,
                              tablefmt="github", disable_numparse=True))
    if evals:
        parts.append(tabulate([_stored_eval_row(r) for r in evals], _STORED_EVAL_HEADERS, tablefmt="github",
                              disable_numparse=True))
    return "\n\n".join(parts) + "\n"


def _conditions_md(profiles: Sequence[Any]) -> str:
    from tabulate import tabulate

    keys = ["machine", "device", "device_name", "dtype", "threads", "layout", "compiled", "runtime", "batch_size",
            "input_size", "torch_version", "timm_version"]
    counts: dict[tuple[Any, ...], int] = {}
    for p in profiles:
        row = tuple(fmt(getattr(p, k)) for k in keys)
        counts[row] = counts.get(row, 0) + 1
    return tabulate([[*row, n] for row, n in counts.items()], [*keys, "results"], tablefmt="github",
                    disable_numparse=True)


def _comparisons_md(comparisons: Sequence[Any], ratios: Sequence[Any]) -> list[str]:
    from tabulate import tabulate

    if not comparisons and not ratios:
        return ["No measured model has a published counterpart in the catalog."]
    rows = [[c.model, c.figure, fmt(c.measured, 2), fmt(c.published, 2), f"x{c.ratio:.2f}",
             f"{c.difference_pct:+.0f}%", c.source, c.caveat or "-"] for c in comparisons]
    out = [tabulate(rows, ["model", "figure", "measured", "published", "measured/published", "difference",
                           "published under", "conditions differ"], tablefmt="github", disable_numparse=True)]
    if ratios:
        out += ["", "Ratios between models cancel most of the hardware difference:", ""]
        out += [f"- {r.sentence()} ({r.source}{'; ' + r.caveat if r.caveat else ''})" for r in ratios]
    return out


def results_report(results: Sequence[Any], machine_info: dict[str, Any], comparisons: Sequence[Any],
                   ratios: Sequence[Any], plot_file: str | None, generated_at: str) -> str:
    """The Markdown report: machine, conditions, results, plot, and measured against published figures."""
    profiles = [r.record for r in results if r.kind == "profile"]
    lines = ["# vischoose results report", "", f"Generated {generated_at}; {len(results)} results.", "",
             "## This machine", ""]
    lines += [f"- {k}: {v}" for k, v in machine_info.items()]
    machines = sorted({r.record.machine for r in results} - {machine_info.get("machine")})
    if machines:
        lines += [f"- results from other machines (kept apart by fingerprint): {', '.join(machines)}"]
    if profiles:
        lines += ["", "## Conditions", "", _conditions_md(profiles)]
    lines += ["", "## Results", "", results_markdown(results).rstrip(), "",
              "latency: p50 at batch 1; img/s: at the batch shown; MiB = 2^20 bytes; GFLOPs = 2 x GMACs per image; "
              "top-1: published (timm results-imagenet.csv)."]
    failed = [r for r in results if r.kind == "profile" and r.record.error]
    lines += [f"- result {r.id} ({r.record.model}) FAILED: {r.record.error}" for r in failed]
    if plot_file:
        lines += ["", "## Accuracy against speed", "", f"![top-1 against throughput, Pareto front]({plot_file})"]
    lines += ["", "## Against published figures", "", *_comparisons_md(comparisons, ratios)]
    return "\n".join(lines) + "\n"


# ---- vischoose profile ---------------------------------------------------------------------------------

PROFILE_HEADERS = ["model", "weights", "px", "batch", "params M", "MiB", "MiB fp32", "GFLOPs", "GMACs",
                   "p50 ms", "p90 ms", "p99 ms", "IQR ms", "img/s", "IQR img/s", "peak MiB", "eff %",
                   "top-1 %", "@px", "error"]
PROFILE_FOOTER = ("latency: batch 1, median (p50)/p90/p99 and IQR of timed runs after warm-up, device synchronised, "
                  "no preprocessing; img/s: median at the batch size, measured first in a fresh process (as a "
                  "user's new serving process; peak memory and FLOPs are measured in a separate one); MiB = 2^20 bytes, weights at the run's dtype "
                  "and fp32; GFLOPs per image = 2 x GMACs (torch.utils.flop_counter, attention included); "
                  "peak MiB: CPU peak RSS over the idle process after importing torch, GPU max allocated; "
                  "eff: achieved FLOP/s over this machine's measured peak (best of matmul and conv); top-1: published, at @px.")


def _profile_row(p: Any) -> list[str]:
    size = f"{p.input_size}*" if p.top1_size and p.input_size != p.top1_size else str(p.input_size)
    row = [p.model, p.weights, size, str(p.batch_size), fmt(p.params_m, 2), fmt(p.weights_mb, 1),
           fmt(p.weights_mb_fp32, 1), fmt(p.gflops, 2), fmt(p.gmacs, 2), fmt(p.latency_ms_p50, 2),
           fmt(p.latency_ms_p90, 2), fmt(p.latency_ms_p99, 2), fmt(p.latency_ms_iqr, 2), fmt(p.throughput_img_s, 2),
           fmt(p.throughput_iqr, 2), fmt(p.peak_memory_mb, 1),
           fmt(None if p.efficiency is None else 100 * p.efficiency, 1), fmt(p.top1, 2), fmt(p.top1_size),
           p.error or ""]
    if p.peak_reserved_mb is not None:
        row.insert(16, fmt(p.peak_reserved_mb, 1))
    return row


def _profile_conditions(profiles: Sequence[Any]) -> list[str]:
    seen = dict.fromkeys(
        f"{p.device} ({p.device_name or '?'}), threads {fmt(p.threads)}, {p.dtype}, {p.layout}, "
        f"compile {fmt(p.compiled)}, torch {p.torch_version or '?'}, timm {p.timm_version or '?'}, "
        f"machine {p.machine}" for p in profiles)
    return [f"Conditions: {c}" for c in seen]


def _profile_quality(runs: Sequence[Any]) -> list[str]:
    """Say which medians the time budget left wider than +-2%."""
    lines: list[str] = []
    for run in runs:
        p = run.profile
        for what, batch, q in (("latency", 1, run.detail.get("latency")),
                               ("img/s", p.batch_size, run.detail.get("throughput"))):
            if q and not q["settled"]:
                known = f"median known to +-{q['median_ci_pct']:.2f}%" if q["median_ci_pct"] is not None else \
                    "too few for a 95% CI of the median (6 needed)"
                lines.append(f"{p.model} batch {batch}: {what} from {q['samples']} runs, {known}: the time budget "
                             "ran out before +-2%; raise --time-budget.")
    return list(dict.fromkeys(lines))


def _profile_notes(runs: Sequence[Any]) -> list[str]:
    peaks = dict.fromkeys(f"{r.profile.device} {r.profile.dtype} threads {fmt(r.profile.threads)}: "
                          f"{r.detail['machine_peak_gflops_s']:,.1f} GFLOP/s ({r.detail.get('machine_peak_kernel')})"
                          for r in runs if r.detail.get("machine_peak_gflops_s"))
    notes = [f"Machine peak, best of dense kernels (cached under VISCHOOSE_HOME): {'; '.join(peaks)}."] if peaks else []
    notes += list(dict.fromkeys(n for r in runs for n in r.notes))
    if any(r.profile.compiled for r in runs):
        notes.append("compile: peak MiB includes what torch.compile keeps resident (compiled code, compiler state).")
    if any((r.profile.efficiency or 0) > 1 for r in runs):
        notes.append("eff above 100%: the cached machine peak looks low (measured while the machine was busy?); "
                     "delete machine_peak.json under VISCHOOSE_HOME to measure it again.")
    if any(r.profile.top1_size and r.profile.input_size != r.profile.top1_size for r in runs):
        notes.append("px*: measured at another size than its published top-1 (@px).")
    return notes + _profile_quality(runs)


def show_profiles(runs: Sequence[Any], output: str = "table") -> None:
    """vischoose profile results: table, json, csv or markdown on stdout."""
    profiles = [r.profile for r in runs]
    if output == "json":
        emit_json("profile", {"profiles": [{**r.profile.to_dict(), "measurement": r.detail} for r in runs],
                              "notes": _profile_notes(runs)})
        return
    if output == "csv":
        import csv
        import sys

        names = list(profiles[0].to_dict()) if profiles else []
        writer = csv.DictWriter(sys.stdout, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(p.to_dict() for p in profiles)
        return
    headers = list(PROFILE_HEADERS)
    if any(p.peak_reserved_mb is not None for p in profiles):
        headers.insert(16, "reserved MiB")
    body = [_profile_row(p) for p in profiles]
    if output == "markdown":
        from tabulate import tabulate

        typer.echo(tabulate(body, headers=headers, tablefmt="github", disable_numparse=True))
        bullet = "- "
    else:
        typer.echo(table(headers, body))
        bullet = ""
    typer.echo("")
    for line in _profile_conditions(profiles) + [PROFILE_FOOTER] + _profile_notes(runs):
        typer.echo(bullet + line)


class ProfileProgress:
    """Progress on stderr (model, phase, elapsed): one updating line on a terminal, a line per phase otherwise."""

    def __init__(self) -> None:
        import sys

        self.stream = sys.stderr
        self.tty = self.stream.isatty()
        self.last = ""

    def __call__(self, model: str, what: str, elapsed_s: float) -> None:
        """Show what the profiler is doing."""
        text = f"{model}: {what} ({elapsed_s:.0f} s)"
        if self.tty:
            self.stream.write("\r\033[K" + text)
        elif f"{model}: {what.split(':')[0]}" != self.last:
            self.stream.write(text + "\n")
        self.last = f"{model}: {what.split(':')[0]}"
        self.stream.flush()

    def close(self) -> None:
        """Clear the progress line."""
        if self.tty and self.last:
            self.stream.write("\r\033[K")
            self.stream.flush()


# ---- vischoose export ----------------------------------------------------------------------------------

EXPORT_HEADERS = ["variant", "runtime", "recipe", "file MiB", "build s", "top-1 agree %", "max |diff|", "cosine",
                  "status"]


def _export_row(v: Any, measured: bool) -> list[str]:
    a = v.agreement
    row = [v.precision, "onnxruntime", v.recipe, fmt(v.file_mb, 2), fmt(v.build_s, 1),
           fmt(100.0 * a.top1_agreement, 1), f"{a.max_abs_diff:.3g}", f"{a.cosine:.5f}", v.status]
    return row + [fmt(v.img_s_batch1, 1)] if measured else row


def show_export(rep: Any, as_json: bool) -> None:
    """What vischoose export built: one row per variant, the check set, preprocessing; warnings on stderr."""
    if as_json:
        emit_json("export", rep.to_dict())
    else:
        measured = rep.eager_img_s_batch1 is not None
        typer.echo(table(EXPORT_HEADERS + (["img/s b1"] if measured else []),
                         [_export_row(v, measured) for v in rep.variants]))
        checked = (f"{rep.check_images} of your images" if rep.check_source == "images"
                   else f"{rep.check_images} random inputs (not images: agreement is unverified)")
        typer.echo(f"\n{rep.tag} ({rep.weights}), {rep.family} family, opset {rep.opset}; input 'input' "
                   f"float32 [batch, 3, {rep.input_size}, {rep.input_size}], batch dynamic.\n"
                   f"preprocessing: {_preprocessing_note(rep.preprocessing)}.\n"
                   f"agreement: with eager fp32 on {checked}; build s = export or quantization time; "
                   f"MiB = 2^20 bytes.")
        if measured:
            typer.echo(f"img/s b1: ONNX Runtime CPU, batch 1, median, threads {fmt(rep.threads)}; eager fp32: "
                       f"{rep.eager_img_s_batch1:,.1f} img/s.")
        for v in rep.variants:
            if v.note:
                typer.echo(f"{v.precision}: {v.note}.")
    for path, reason in rep.skipped:
        typer.echo(f"Warning: {path}: {reason} (skipped).", err=True)
    if rep.out is not None:
        shipped = rep.shipped
        if shipped.status == "unverified":
            typer.echo(f"Warning: the {shipped.precision} graph is unverified: no real images checked it "
                       "(pass --calibration DIR).", err=True)
        typer.echo(f"Wrote {rep.out} ({shipped.precision}, {shipped.file_mb:,.2f} MiB).", err=True)


# ---- vischoose profile --optimize ---------------------------------------------------------------------

OPTIMIZE_HEADERS = ["setting", "img/s", "eff %", "compile s", "top-1 agree %", "max |diff|", "% of range", "trial s",
                    "status"]


def _trial_row(t: Any) -> list[str]:
    eff = t.run.profile.efficiency if t.run else None
    return [t.variant.label, fmt(t.img_s, 2), fmt(None if eff is None else 100 * eff, 1), fmt(t.compile_s, 1),
            fmt(None if t.top1_agreement is None else 100 * t.top1_agreement, 0),
            "" if t.max_abs_diff is None else f"{t.max_abs_diff:.3g}",
            fmt(None if t.rel_diff is None else 100 * t.rel_diff, 2), fmt(t.wall_s, 1), t.status]


def _optimized_summary(o: Any) -> str:
    if o.best is None or o.plain_run is None or o.best_run is None:
        return f"{o.model}: no setting could be measured."
    plain, best = o.plain_run.profile, o.best_run.profile
    eff = "" if best.efficiency is None else f", {100 * best.efficiency:.0f}% of this machine's {best.dtype} peak"
    return (f"{o.model}: best {o.best.variant.label}: {best.throughput_img_s:,.2f} img/s{eff}; plain fp32 "
            f"{plain.throughput_img_s:,.2f} img/s at batch {plain.batch_size}: x{o.speedup:.2f}. "
            f"Search {o.elapsed_s:.0f} s of {o.budget_s:.0f} s.")


def _optimized_dict(o: Any) -> dict[str, Any]:
    def trial(t: Any) -> dict[str, Any]:
        return {"setting": t.variant.label, **t.variant.__dict__, "img_s": t.img_s, "compile_s": t.compile_s,
                "top1_agreement": t.top1_agreement, "max_abs_diff": t.max_abs_diff, "status": t.status,
                "top1_agreement_near_ties_aside": t.decisive_agreement, "rel_diff": t.rel_diff,
                "trial_s": t.wall_s, "profile": t.run.profile.to_dict() if t.run else None}
    return {"model": o.model, "budget_s": o.budget_s, "elapsed_s": o.elapsed_s, "speedup": o.speedup,
            "best": trial(o.best) if o.best else None, "trials": [trial(t) for t in o.trials]}


def show_optimized(found: Sequence[Any], as_json: bool) -> None:
    """vischoose profile --optimize: every setting tried per model, then the best against plain fp32."""
    if as_json:
        emit_json("profile-optimize", {"models": [_optimized_dict(o) for o in found]})
        return
    for o in found:
        typer.echo(f"{o.model}")
        typer.echo(table(OPTIMIZE_HEADERS, [_trial_row(t) for t in o.trials]))
        typer.echo(_optimized_summary(o) + "\n")
    rows = [r.profile for o in found for r in (o.plain_run, o.best_run) if r]
    for line in _profile_conditions(rows):
        typer.echo(line)
    typer.echo("Each setting runs in a fresh process: img/s first (median at its batch size), then peak memory, "
               "agreement with fp32 on a fixed batch of 8 (top-1 class; max |logit diff|, also as % of fp32's logit "
               "range; a setting is rejected below 75% top-1 agreement, a switch between classes within 1% of the "
               "range counted as agreeing, or above 5% of the range), batch-1 latency (eager settings). "
               "bf16/fp16: weights cast once, forward under torch.autocast (fp32 input; softmax and norms in fp32); eff: FLOP/s over the machine's peak at the "
               "same dtype. The plain and the best rows are saved (unless --no-save).")
