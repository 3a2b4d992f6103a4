"""Rendering of profile, profile --optimize and export results."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

from vischoose import paths
from vischoose.errors import UsageError, named, opt
from vischoose.report import application
from vischoose.report.flags import echo, flag_of
from vischoose.report.progress import ProfileProgress
from vischoose.report.tables import (
    batch_text,
    emit_json,
    fmt,
    preprocessing_note,
    table,
)
from vischoose.runtimes import registry

# ---- vischoose profile ---------------------------------------------------------------------------------

OTHERS_LEGEND = ("others: cores of CPU time the rest of the machine took while the row's phases were timed (the most "
                 "of one phase; 1.0 = one core busy throughout), ! where a phase was contended or batch-1 img/s and "
                 "latency contradicted each other: such a row is kept but never reused by recommend as measured.")
PROFILE_HEADERS = ["model", "weights", "px", "batch", "params M", "MiB", "MiB fp32", "GFLOPs", "GMACs",
                   "p50 ms", "p90 ms", "p99 ms", "IQR ms", "img/s", "IQR img/s", "peak MiB", "eff %",
                   "top-1 %", "@px", "others", "error"]
PROFILE_FOOTER = ("latency: batch 1, median (p50)/p90/p99 and IQR of timed runs after warm-up, device synchronised, "
                  "no preprocessing; img/s: median at the batch size, measured first in a fresh process (as a "
                  "user's new serving process; peak memory and FLOPs are measured in a separate one); MiB = 2^20 bytes, weights at the run's dtype "
                  "and fp32; GFLOPs per image = 2 x GMACs (torch.utils.flop_counter, attention included); "
                  "peak MiB: CPU peak RSS of one forward over the process before loading the model (the baseline "
                  "line says what it held; freed heap given back first), GPU max allocated; "
                  "eff: achieved FLOP/s over this machine's measured peak (best of matmul and conv); top-1: published, at @px; "
                  + OTHERS_LEGEND)


def others_cell(p: Any) -> str:
    """'0.02', '0.85!' (flagged: contended or inconsistent) or '-' (not metered)."""
    return fmt(p.others_cpu_cores, 2) + ("!" if p.flagged else "")


def _profile_row(p: Any) -> list[str]:
    size = f"{p.input_size}*" if p.top1_size and p.input_size != p.top1_size else str(p.input_size or "-")
    row = [p.model, p.weights, size, batch_text(p), fmt(p.params_m, 2), fmt(p.weights_mb, 1),
           fmt(p.weights_mb_fp32, 1), fmt(p.gflops, 2), fmt(p.gmacs, 2), fmt(p.latency_ms_p50, 2),
           fmt(p.latency_ms_p90, 2), fmt(p.latency_ms_p99, 2), fmt(p.latency_ms_iqr, 2), fmt(p.throughput_img_s, 2),
           fmt(p.throughput_iqr, 2), fmt(p.peak_memory_mb, 1),
           fmt(None if p.efficiency is None else 100 * p.efficiency, 1), fmt(p.top1, 2), fmt(p.top1_size),
           others_cell(p), p.error or ""]
    if p.peak_reserved_mb is not None:
        row.insert(16, fmt(p.peak_reserved_mb, 1))
    return row


def _profile_conditions(profiles: Sequence[Any]) -> list[str]:
    def setting(p: Any) -> str:
        if registry.is_graph(p.runtime):
            return f"{p.runtime} {p.runtime_version or '?'} ({p.dtype} graph, {registry.get(p.runtime).runs_on})"
        return f"{p.runtime} {p.dtype}, {p.layout}, compile {fmt(p.compiled)}"
    seen = dict.fromkeys(
        f"{p.device} ({p.device_name or '?'}), threads {fmt(p.threads)}, {setting(p)}, "
        f"torch {p.torch_version or '?'}, timm {p.timm_version or '?'}, machine {p.machine}" for p in profiles)
    return [f"Conditions: {c}" for c in seen]


def graph_profile_footer(title: str, module: str) -> str:
    """The footer under a table whose rows all ran one graph runtime."""
    return (f"latency: batch 1, median (p50)/p90/p99 and IQR of timed {title} runs after warm-up, no "
            f"preprocessing; img/s: median at the batch size, measured first in a fresh process that imports "
            f"{module} but not torch (the graph was built and checked in another one); MiB = 2^20 bytes: "
            "the graph's file, and the model's fp32 weights; GFLOPs per image = 2 x GMACs of the eager model "
            "(torch.utils.flop_counter, attention included); eff: fp32 graphs only, achieved FLOP/s over "
            "this machine's measured fp32 peak; top-1: published, at @px; " + OTHERS_LEGEND)


GRAPH_HEADERS = ["model", "batch", "graph", "recipe", "file MiB", "plan MiB", "export s", "quant s", "checked on",
                 "top-1 agree %", "max |diff|", "cosine", "status"]
def graph_footer(titles: str, modules: str) -> str:
    """The footer under the graph table."""
    return (f"graph: the exported file {titles} ran (MiB above = its file size; peak MiB = peak RSS of one run over "
            f"a process with {modules}'s host binding loaded, as the baseline line says; plan MiB = the runtime's own "
            "accounting of the file, where it keeps one); agreement with the eager fp32 model on one "
            "fixed batch: share of images with the same top-1 class, largest |logit difference|, smallest "
            "per-image cosine of the logits. status: ok; rejected (below --min-agreement on your images: never "
            "recommended); unverified (random inputs or random weights: pass pretrained weights and "
            "--calibration DIR).")


def _graph_row(p: Any) -> list[str]:
    checked = f"{fmt(p.agreement_images)} {'images' if p.agreement_source == 'images' else 'random inputs'}"
    return [p.model, batch_text(p), {"float32": "fp32", "int8": "int8"}.get(p.dtype, p.dtype), p.recipe or "-",
            fmt(p.file_mb, 1), fmt(p.runtime_memory_mb, 1), fmt(p.export_s, 1), fmt(p.quantize_s, 1),
            checked if p.agreement_images else "",
            fmt(None if p.agreement_top1 is None else 100 * p.agreement_top1, 1),
            fmt(p.agreement_max_abs_diff, 3), fmt(p.agreement_cosine, 4), p.variant_status or ""]


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
        if p.noisy:
            lines.append(f"{p.model} batch {p.batch_size}: NOISY, {p.noisy} after measuring twice (another process "
                         "busy on these cores?): measure again on a quiet machine before trusting it.")
        lines += flag_lines(p)
    return list(dict.fromkeys(lines))


def flag_lines(p: Any) -> list[str]:
    """The CONTENDED and INCONSISTENT lines of a row."""
    lines = []
    if p.contended:
        lines.append(f"{p.model} batch {p.batch_size}: CONTENDED, {p.contended}, after a pause and a second "
                     "measurement: the figures are slower than this machine runs the model; kept, never reused by "
                     "recommend as measured.")
    if p.inconsistent:
        lines.append(f"{p.model} batch {p.batch_size}: INCONSISTENT, {p.inconsistent}: kept, never reused by "
                     "recommend as measured.")
    return lines


def show_waiting(holder: Any, waited_s: float) -> None:
    """The line export --measure prints while another vischoose is timing on this machine (about every 10 s)."""
    import sys

    if waited_s < 0.5 or waited_s % 10 < 0.5:
        who = f": {holder.describe()}" if holder else ""
        sys.stderr.write(f"waiting for another vischoose measurement{who} (waited {waited_s:.0f} s)\n")


def _profile_notes(runs: Sequence[Any]) -> list[str]:
    peaks = dict.fromkeys(f"{r.profile.device} {r.profile.dtype} threads {fmt(r.profile.threads)}: "
                          f"{r.detail['machine_peak_gflops_s']:,.1f} GFLOP/s ({r.detail.get('machine_peak_kernel')})"
                          for r in runs if r.detail.get("machine_peak_gflops_s"))
    notes = [f"Machine peak, best of dense kernels (cached for every home on this machine in {paths.peak_cache()}): "
             f"{'; '.join(peaks)}."] if peaks else []
    notes += list(dict.fromkeys(named(n, flag_of) for r in runs for n in r.notes))
    notes += list(dict.fromkeys(f"peak MiB baseline ({r.profile.runtime}): {r.profile.baseline_includes}."
                                for r in runs if r.profile.baseline_includes))
    notes += list(dict.fromkeys(f"{r.profile.model}: {r.profile.runtime_memory_note}." for r in runs
                                if r.profile.runtime_memory_note))
    notes += _efficiency_notes([r.profile for r in runs])
    if any(r.profile.call_batch and r.profile.call_batch < r.profile.batch_size for r in runs):
        notes.append("N x batch c: the file takes at most c images per call, so a batch of N ran as N / c calls; its "
                     "img/s is not a batch-N figure.")
    if any(r.profile.compiled for r in runs):
        notes.append("compile: peak MiB includes what torch.compile keeps resident (compiled code, compiler state).")
    if any(r.profile.top1_size and r.profile.input_size != r.profile.top1_size for r in runs):
        notes.append("px*: measured at another size than its published top-1 (@px).")
    return notes + _profile_quality(runs)


def _efficiency_notes(profiles: Sequence[Any]) -> list[str]:
    """Why eff % is blank, for each row where it is (one line per model, runtime, dtype and reason)."""
    return list(dict.fromkeys(
        f"{p.model} ({p.runtime} {p.dtype}): eff not shown: {p.efficiency_note}." for p in profiles
        if p.ok and p.efficiency is None and getattr(p, "efficiency_note", None)))


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], output: str) -> None:
    """A plain table, or GitHub Markdown for --markdown."""
    if output == "markdown":
        from tabulate import tabulate

        echo(tabulate(rows, headers=list(headers), tablefmt="github", disable_numparse=True))
    else:
        echo(table(headers, rows))


def _print_csv(profiles: Sequence[Any]) -> None:
    import csv
    import sys

    names = list(profiles[0].to_dict()) if profiles else []
    writer = csv.DictWriter(sys.stdout, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(p.to_dict() for p in profiles)


def show_profiles(runs: Sequence[Any], output: str = "table") -> None:
    """vischoose profile results: table, json, csv or markdown on stdout."""
    profiles = [r.profile for r in runs]
    if output == "json":
        emit_json("profile", {"profiles": [{**r.profile.to_dict(), "measurement": r.detail} for r in runs],
                              "notes": _profile_notes(runs)})
        return
    if output == "csv":
        _print_csv(profiles)
        return
    headers = list(PROFILE_HEADERS)
    if any(p.peak_reserved_mb is not None for p in profiles):
        headers.insert(16, "reserved MiB")
    _print_table(headers, [_profile_row(p) for p in profiles], output)
    graphs = [p for p in profiles if registry.is_graph(p.runtime) and p.variant_status]
    used = [registry.get(name) for name in dict.fromkeys(p.runtime for p in graphs)]
    one = used[0] if len(used) == 1 and len(graphs) == len(profiles) else None
    footers = [graph_profile_footer(one.title, one.module) if one else PROFILE_FOOTER]
    if graphs:
        echo("")
        _print_table(GRAPH_HEADERS, [_graph_row(p) for p in graphs], output)
        footers.append(graph_footer(" or ".join(r.title for r in used), ", ".join(r.module for r in used)))
    echo("")
    bullet = "- " if output == "markdown" else ""
    for line in _profile_conditions(profiles) + footers + _profile_notes(runs):
        echo(bullet + line)
    from vischoose.runtimes.layers import TOP

    application.show_application(profiles, output, TOP)  # cold start, end to end, layers


@contextlib.contextmanager
def phases(model: str) -> Iterator[Callable[[str], None]]:
    """A `phase(what)` callable showing 'model: what (N s)' on one updating stderr line (export, evaluate --graph),
    cleared afterwards; silent when stderr is not a terminal, as the evaluation's progress bar is (a script's stderr
    keeps only errors and warnings)."""
    import sys
    import time

    start = time.monotonic()
    if not sys.stderr.isatty():
        yield lambda what: None
        return
    with ProfileProgress() as shown:
        yield lambda what: shown(model, what, time.monotonic() - start)


def output_format(as_json: bool, as_csv: bool, as_markdown: bool) -> str:
    """'json', 'csv', 'markdown' or 'table' from the profile flags.

    Raises:
        UsageError: more than one of them.
    """
    if as_json + as_csv + as_markdown > 1:
        raise UsageError("Choose one of --json, --csv and --markdown.")
    return "json" if as_json else "csv" if as_csv else "markdown" if as_markdown else "table"


# ---- vischoose export ----------------------------------------------------------------------------------

EXPORT_HEADERS = ["variant", "runtime", "recipe", "file MiB", "build s", "top-1 agree %", "max |diff|", "cosine",
                  "status"]


def _export_row(v: Any, runtime: str, measured: bool) -> list[str]:
    a = v.agreement
    row = [v.precision, runtime, v.recipe, fmt(v.file_mb, 2), fmt(v.build_s, 1),
           fmt(100.0 * a.top1_agreement, 1), f"{a.max_abs_diff:.3g}", f"{a.cosine:.5f}", v.status]
    return row + [fmt(v.img_s_batch1, 1)] if measured else row


def _accuracy_note(aware: Any) -> str:
    """--max-accuracy-drop: the rule that decided, top-1 on the held-out images with each drop's interval, and the
    layers kept in float."""
    if aware.candidates:
        names = ", ".join(w.removesuffix(".weight") for w in aware.reverted_weights) or "none helped"
        layers = f"layers in float ({len(aware.reverted)} of {aware.candidates}, {len(aware.steps)} int8 builds): {names}"
    else:
        layers = "no layer in float: plain int8 met the limit on the choice images"
    return (f"accuracy: int8 is judged by `max_accuracy_drop` {aware.max_drop_pts:g} on the held-out images, not by "
            f"`min_agreement` (the agreement gate does not apply); top-1 on {aware.held_out_images} held-out images "
            f"(the layers were chosen on {aware.choice_images} others): fp32 {aware.fp32_top1:.1f}%, plain int8 "
            f"{aware.int8_top1:.1f}% (drop {_drop(aware.plain_drop_pts, aware.plain_drop_low, aware.plain_drop_high)}), "
            f"shipped int8 {aware.top1:.1f}% (drop {_drop(aware.drop_pts, aware.drop_low, aware.drop_high)}: "
            f"{aware.decided()} the limit of {aware.max_drop_pts:g}); {layers}.")


def _drop(value: float, low: float | None, high: float | None) -> str:
    """'2.70 points, 95 % CI -2.9 to 8.4 (paired)', or the points alone where no interval was taken."""
    if low is None or high is None:
        return f"{value:.2f} points"
    return f"{value:.2f} points, 95 % CI {low:.1f} to {high:.1f} (paired)"


def input_text(rep: Any) -> str:
    """The shipped file's input as the file itself declares it (read back after writing): its name where it has one,
    type, shape and the batches one call takes, e.g. "input 'input' float32 [N, 3, 224, 224], N from 1 up in one call
    (a dynamic batch)" or "input float32 [1, 3, 224, 224]: batch 1 only, memory planned for it (a batch of N runs as N
    calls; `max_batch` N builds for 1 to N)"."""
    name = "input 'input'" if rep.opset is not None else "input"  # ONNX names it
    head, side = f"{name} {rep.input_dtype}", f"3, {rep.input_size}, {rep.input_size}"
    planned = bool(rep.runtime) and registry.get(rep.runtime).batch_bound == "planned"
    if rep.input_batch is None:
        return f"{head} [N, {side}] (the file does not declare its batch)"
    low, high = rep.input_batch
    if high is None:
        return f"{head} [N, {side}], N from {low} up in one call (a dynamic batch)"
    if low != high:
        return (f"{head} [N, {side}], N from {low} to {high} in one call, memory planned for {high}"
                + (f" ({opt('max_batch')} sets it)" if planned else ""))
    calls = "N calls" if low == 1 else f"N / {low} calls"
    how = f"; {opt('max_batch')} N builds for 1 to N" if planned else ""
    return (f"{head} [{low}, {side}]: batch {low} only{', memory planned for it' if planned else ''} (a batch of N "
            f"runs as {calls}{how})")


def show_export(rep: Any, as_json: bool) -> None:
    """What vischoose export built: one row per variant, the check set, preprocessing; warnings on stderr."""
    if as_json:
        emit_json("export", rep.to_dict())
    else:
        measured = rep.eager_img_s_batch1 is not None
        echo(table(EXPORT_HEADERS + (["img/s b1"] if measured else []),
                         [_export_row(v, rep.runtime, measured) for v in rep.variants]))
        checked = (f"{rep.check_images} of your images" if rep.check_source == "images"
                   else f"{rep.check_images} random inputs (not images: agreement is unverified)")
        opset = f", opset {rep.opset}" if rep.opset is not None else ""
        echo(f"\n{rep.tag} ({rep.weights}), {rep.family} family{opset}; {input_text(rep)}.\n"
                   f"preprocessing: {preprocessing_note(rep.preprocessing)}.\n"
                   f"agreement: with eager fp32 on {checked}; build s = export or quantization time; "
                   f"MiB = 2^20 bytes.")
        if measured:
            threads = f"{rep.threads} threads" if rep.threads else "default threads (one per core)"
            busy = f"; CONTENDED: {rep.contended}, after a pause and a second measurement" if rep.contended else ""
            echo(f"img/s b1: {registry.title(rep.runtime)} CPU, batch 1, median, {threads}; eager fp32: "
                 f"{rep.eager_img_s_batch1:,.1f} img/s; others took {fmt(rep.others_cpu_cores, 2)} cores "
                 f"meanwhile{busy}.")
        for v in rep.variants:
            if v.note:
                echo(f"{v.precision}: {named(v.note, flag_of)}.")
        if rep.accuracy is not None:
            echo(_accuracy_note(rep.accuracy))
    for path, reason in rep.skipped:
        echo(f"Warning: {path}: {reason} (skipped).", err=True)
    if rep.out is not None:
        shipped = rep.shipped
        if shipped.status == "unverified":
            why = ("it was checked against random weights (pass --weights pretrained)" if rep.check_source == "images"
                   else "no real images checked it (pass --calibration DIR)")
            echo(f"Warning: the {shipped.precision} graph is unverified: {why}.", err=True)
        echo(f"Wrote {rep.out} ({shipped.precision}, {shipped.file_mb:,.2f} MiB).", err=True)


# ---- vischoose profile --optimize ---------------------------------------------------------------------

OPTIMIZE_HEADERS = ["setting", "img/s", "eff %", "compile s", "top-1 agree %", "max |diff|", "% of range", "trial s",
                    "status"]


def _trial_row(t: Any) -> list[str]:
    eff = t.run.profile.efficiency if t.run else None
    return [t.variant.label, fmt(t.img_s, 2), fmt(None if eff is None else 100 * eff, 1), fmt(t.compile_s, 1),
            fmt(None if t.top1_agreement is None else 100 * t.top1_agreement, 0),
            "" if t.max_abs_diff is None else f"{t.max_abs_diff:.3g}",
            fmt(None if t.rel_diff is None else 100 * t.rel_diff, 2), fmt(t.wall_s, 1), named(t.status, flag_of)]


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
            "best": trial(o.best) if o.best else None, "trials": [trial(t) for t in o.trials],
            "batch_notes": list(o.batch_notes)}


def show_optimized(found: Sequence[Any], as_json: bool) -> None:
    """vischoose profile --optimize: every setting tried per model, then the best against plain fp32."""
    if as_json:
        emit_json("profile-optimize", {"models": [_optimized_dict(o) for o in found]})
        return
    for o in found:
        echo(f"{o.model}")
        echo(table(OPTIMIZE_HEADERS, [_trial_row(t) for t in o.trials]))
        for note in o.batch_notes:
            echo(f"batch: {note}.")
        echo(_optimized_summary(o) + "\n")
    rows = [r.profile for o in found for r in (o.plain_run, o.best_run) if r]
    for line in _profile_conditions(rows):
        echo(line)
    echo("Each setting runs in a fresh process: img/s first (median at its batch size), then peak memory, "
               "agreement with fp32 on a fixed batch of 8 (top-1 class; max |logit diff|, also as % of fp32's logit "
               "range; a setting is rejected below 75% top-1 agreement, a switch between classes within 1% of the "
               "range counted as agreeing, or above 5% of the range), batch-1 latency (eager settings). "
               "bf16/fp16: weights cast once, forward under torch.autocast (fp32 input; softmax and norms in fp32); eff: FLOP/s over the machine's peak at the "
               f"same dtype. {', '.join(r.name for r in registry.graph_runtimes())} settings: the exported graph on "
               "its runtime (CPU), int8 with the runtime's recipe for the model's family; agreement with eager fp32 as "
               "in profile --runtime RUNTIME: int8 can only be "
               "the best when verified on your images (pretrained weights, --calibration DIR, --min-agreement). "
               "The plain and the best rows are saved (unless --no-save).")
