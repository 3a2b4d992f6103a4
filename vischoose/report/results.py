"""Rendering of stored results: list, show, import, Markdown report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from vischoose.records import FIELD_UNITS, FRACTIONS
from vischoose.report.application import application_markdown
from vischoose.report.flags import echo
from vischoose.report.tables import batch_text, emit_json, fmt, interval_text, table

OTHERS_NOTE = ("others: cores of CPU time the rest of the machine took while the row was timed (the most of one "
               "phase; '-' where it was not metered), ! on a row flagged contended or inconsistent: recommend never "
               "uses it as a measured figure.")

_STORED_PROFILE_HEADERS = ["id", "model", "weights", "device", "runtime", "dtype", "verdict", "batch", "px",
                           "latency p50 ms", "p90 ms", "img/s", "peak MiB", "others", "GFLOPs", "top-1 % (published)",
                           "machine", "measured", "from"]
_STORED_EVAL_HEADERS = ["id", "model", "weights", "dataset", "data id", "images", "top-1 %", "95 % CI", "drop",
                        "drop 95 % CI", "verdict", "top-5 %", "device", "runtime", "dtype", "batch", "px", "img/s",
                        "machine", "measured", "from"]
PROFILE_LEGEND = ("latency: batch 1; img/s: at the batch shown (N x batch 1: a file that takes one image per call, "
                  "called N times); MiB = 2^20 bytes; GFLOPs = 2 x GMACs per image; verdict: a deployed file's "
                  "agreement with eager fp32 (ok, rejected, unverified: random weights or inputs); top-1: published, "
                  "for the pretrained fp32 model (n/a: not this row's accuracy, an int8 file not verified against it); "
                  "weights random: speed and size hold, accuracy does not.")
EVAL_LEGEND = ("95 % CI: Wilson interval of top-1 on those images; drop: eager fp32's top-1 on the same images minus "
               "this one's, in points (deployed graphs), with its paired 95 % interval (Newcombe); verdict: the file's "
               "agreement with eager fp32 over every evaluated image; data id: the image list and labels hashed (the "
               "same data set wherever it lives).")


def published_top1_text(p: Any) -> str:
    """The published top-1 where it stands for the row, 'n/a' where it does not (an unverified int8 file)."""
    if p.top1 is None:
        return "-"
    return fmt(p.top1, 2) if p.published_top1_applies else "n/a"


def _stored_profile_row(r: Any) -> list[str]:
    p = r.record
    row = [str(r.id), p.model, p.weights, p.device, p.runtime, p.dtype, p.variant_status or "-", batch_text(p),
           str(p.input_size), fmt(p.latency_ms_p50, 2), fmt(p.latency_ms_p90, 2), fmt(p.throughput_img_s, 1),
           fmt(p.peak_memory_mb, 1), fmt(p.others_cpu_cores, 2) + ("!" if p.flagged else ""), fmt(p.gflops, 2),
           published_top1_text(p), p.machine, p.created_at[:16].replace("T", " "), r.imported_from or "here"]
    if p.scenario == "server":  # the sustained rate under the bound in the img/s column (MLPerf LoadGen Server)
        row[1], row[11] = f"{p.model} (server, p99 <= {p.slo_ms:g} ms)", fmt(p.serve_qps, 1)
    if p.error:
        row[9:12] = ["FAILED", "-", "-"]
    return row


def _stored_eval_row(r: Any) -> list[str]:
    e = r.record
    drop = None if e.fp32_top1 is None else e.fp32_top1 - e.top1  # points of top-1 lost against eager fp32
    drop_ci = "-" if e.drop_low is None else f"{e.drop_low:.2f} to {e.drop_high:.2f}"
    return [str(r.id), e.model, e.weights, e.dataset, e.dataset_id or "-", str(e.images), fmt(e.top1, 2),
            interval_text(e), fmt(drop, 2), drop_ci, e.variant_status or "-", fmt(e.top5, 2), e.device, e.runtime,
            e.dtype, str(e.batch_size), fmt(e.input_size), fmt(e.images_per_s, 1), e.machine,
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
        echo("No stored results match.", err=True)
    if profiles:
        echo(table(_STORED_PROFILE_HEADERS, [_stored_profile_row(r) for r in profiles]))
        failed = [r for r in profiles if r.record.error]
        for r in failed:
            echo(f"  result {r.id} FAILED: {r.record.error}")
        echo(f"\n{PROFILE_LEGEND} {OTHERS_NOTE} Details: vischoose results show ID")
    if evals:
        body = [_stored_eval_row(r) for r in evals]
        echo(("\n" if profiles else "") + table(_STORED_EVAL_HEADERS, body))
        echo("\n" + EVAL_LEGEND)


SHOW_FOOTNOTE = ("Each number in its unit; fractions (agreement_top1, efficiency) are shown as percent, the scale of "
                 "top-1; sizes are MiB (2^20 bytes); --json gives the stored values, with their units.")


def show_stored_result(r: Any, as_json: bool) -> None:
    """vischoose results show ID: every field with its unit, one scale per kind (percent for shares)."""
    record = r.record.to_dict()
    if as_json:
        emit_json("result", {**_stored_dict(r), "units": {k: FIELD_UNITS[k] for k in record if k in FIELD_UNITS}})
        return
    rows = [["id", r.id, ""], ["kind", r.kind, ""], ["stored", r.stored_at, ""],
            ["from", r.imported_from or "measured here", ""]]
    rows += [[k, *_shown(k, v, r.record)] for k, v in record.items()]
    echo(table(["field", "value", "unit"], rows))
    notes = [SHOW_FOOTNOTE]
    if r.kind == "profile" and r.record.top1 is not None:
        notes.append(_top1_note(r.record))
    for line in notes:
        echo(line)


def _shown(key: str, value: Any, record: Any) -> list[str]:
    """The value as shown and its unit: a fraction as percent, the published top-1 said to be published."""
    unit = FIELD_UNITS.get(key, "")
    if key in FRACTIONS:
        return [fmt(100.0 * value, 2) if isinstance(value, (int, float)) else "-", "%"]
    if key == "top1" and hasattr(record, "published_top1_applies"):
        return [published_top1_text(record), "% (published, pretrained fp32 model)"]
    return [fmt(value, 4) if isinstance(value, float) else fmt(value), unit]


def _top1_note(p: Any) -> str:
    """What the published top-1 of a profile row is, and is not."""
    if not p.published_top1_applies:
        return (f"top1: the pretrained fp32 model's published {p.top1:.2f} % (timm) is not this {p.dtype} file's "
                f"accuracy: its verdict is {p.variant_status or 'unknown'} (measure it: vischoose evaluate --graph).")
    if p.weights == "random":
        return "top1: published for the pretrained model; this row ran random weights (speed and size hold)."
    return "top1: published for the pretrained fp32 model (timm), not measured in this row."


def show_imported(path: str, added: int, skipped: int, as_json: bool) -> None:
    """What vischoose results import added."""
    if as_json:
        emit_json("import", {"file": path, "added": added, "already_stored": skipped})
        return
    echo(f"Imported {added} results from {path}; {skipped} were already stored.")


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
                              disable_numparse=True) + "\n\n" + EVAL_LEGEND)
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
    lines += ["", "## Results", "", results_markdown(results).rstrip(), "", PROFILE_LEGEND]
    failed = [r for r in results if r.kind == "profile" and r.record.error]
    lines += [f"- result {r.id} ({r.record.model}) FAILED: {r.record.error}" for r in failed]
    flagged = [r for r in results if r.kind == "profile" and r.record.flagged]
    lines += ["", OTHERS_NOTE] if profiles else []
    lines += [f"- result {r.id} ({r.record.model}, batch {r.record.batch_size}): measured while the machine was not "
              f"free or self-contradicting: {r.record.flagged}" for r in flagged]
    lines += application_markdown([p for p in profiles if p.scenario is None])  # cold start, end to end, layers
    if plot_file:
        lines += ["", "## Accuracy against speed", "", f"![top-1 against throughput, Pareto front]({plot_file})"]
    lines += ["", "## Against published figures", "", *_comparisons_md(comparisons, ratios)]
    return "\n".join(lines) + "\n"


def write_report(found: Sequence[Any], out: Path, plot: bool) -> str | None:
    """Write the Markdown report of stored results to `out` (and its Pareto plot beside it, when asked and there are
    points); returns the plot's file name, or None."""
    from vischoose import machine
    from vischoose.records import now_iso
    from vischoose.report import plots
    from vischoose.results import exchange, published

    profiles = [r.record for r in found if r.kind == "profile"]
    evals = [r.record for r in found if r.kind == "eval"]
    plot_file = None
    if plot and plots.plot_points(profiles):
        plot_file = plots.plot_pareto(profiles, out.with_name(out.stem + "-pareto.png")).name
    text = results_report(found, machine.describe(), published.compare_all(profiles, evals),
                          published.ratio_comparisons(profiles), plot_file, now_iso())
    text += serving_section(profiles, out, plot)
    exchange.write_text(out, text)
    return plot_file


def serving_section(profiles: Sequence[Any], out: Path, plot: bool) -> str:
    """The report's serving section (server-scenario rows), with OUT-serving.png beside it when asked."""
    from vischoose.report import plots, serving

    serving_plot = None
    if plot and plots.serving_rows(profiles):
        serving_plot = plots.plot_serving(profiles, out.with_name(out.stem + "-serving.png")).name
    lines = serving.serving_markdown(profiles, serving_plot)
    return "\n".join(lines) + "\n" if lines else ""
