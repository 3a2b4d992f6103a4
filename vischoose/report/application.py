"""Rendering of what the application sees: the cold start and end-to-end table under profile's rows, the layer table
of a variant (profile --layers, results report), and their Markdown for results report. Renders, never computes:
the figures are the rows' (measure.application), the layer profile the runtime's (runtimes.layers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from vischoose.report.flags import echo
from vischoose.report.tables import fmt, table

if TYPE_CHECKING:  # recommend's start-up imports this module: layers (json, dataclasses) only where a table is built
    from vischoose.runtimes.layers import LayerProfile

APP_HEADERS = ["model", "variant", "import ms", "load ms", "1st ms", "cold ms", "RSS MiB", "warm p50 ms", "e2e p50 ms",
               "e2e p90 ms", "decode p50", "preproc p50", "model p50", "model %"]
APP_FOOTER = ("cold: a fresh process that loaded nothing (never forked from a warm one): import ms = importing the runtime "
              "(torch eager: torch and timm), load ms = the file (torch: the cached weights) to a ready session "
              "(compile and graph preparation included), 1st ms = the first batch-1 inference after it, cold ms = load "
              "+ 1st, RSS MiB = the whole process right after it; one process, one reading, the file in the OS page "
              "cache (a first launch after a reboot also reads it from storage). warm p50 ms: the row's batch-1 "
              "median, on a preprocessed tensor.")
E2E_FOOTER = ("e2e: each photo from its file to the logits at batch 1, one at a time: decode (file -> 8-bit RGB, "
              "EXIF orientation) + preproc (the model's timm data config: resize, centre crop, normalise) + model; "
              "p50/p90 of each part over the same images (parts add up per image, their percentiles need not); model "
              "%: the model's mean time over the whole's mean.")
LAYER_HEADERS = ["operator", "type", "kernel", "ms", "%", "off the fast path"]


def _variant(p: Any) -> str:
    return f"{p.runtime} {'fp32' if p.dtype == 'float32' else p.dtype}"


def _distinct(profiles: Sequence[Any]) -> list[Any]:
    """One row per model and variant (the batch sizes of one profile share their application figures)."""
    seen: dict[tuple[str, str, str], Any] = {}
    for p in profiles:
        seen.setdefault((p.model, p.runtime, p.dtype), p)
    return list(seen.values())


def app_row(p: Any) -> list[str]:
    """One row of the application table."""
    share = None if p.e2e_model_share is None else 100 * p.e2e_model_share
    return [p.model, _variant(p), fmt(p.cold_import_ms, 0), fmt(p.cold_load_ms, 1), fmt(p.cold_first_ms, 1),
            fmt(p.cold_start_ms, 1), fmt(p.cold_rss_mb, 0), fmt(p.latency_ms_p50, 2), fmt(p.e2e_ms_p50, 1),
            fmt(p.e2e_ms_p90, 1), fmt(p.decode_ms_p50, 1), fmt(p.preprocess_ms_p50, 1), fmt(p.e2e_model_ms_p50, 1),
            fmt(share, 0)]


def app_lines(profiles: Sequence[Any]) -> tuple[list[list[str]], list[str]]:
    """The application table's rows and the lines under it (None when no row has a cold start or end to end)."""
    rows = [p for p in _distinct(profiles) if p.cold_start_ms is not None or p.e2e_ms_p50 is not None]
    if not rows:
        return [], []
    lines = [APP_FOOTER]
    if any(p.e2e_ms_p50 is not None for p in rows):
        lines.append(E2E_FOOTER)
        lines += list(dict.fromkeys(f"photos: {p.e2e_photos}; decoded by {p.decoder}" for p in rows if p.e2e_photos))
    return [app_row(p) for p in rows], lines


def layer_rows(lp: LayerProfile, n: int) -> list[list[str]]:
    """The n slowest operators."""
    return [[layer.name, layer.op, layer.kernel, fmt(layer.ms, 3),
             fmt(None if lp.share(layer) is None else 100 * lp.share(layer), 1), layer.slow or ""]
            for layer in lp.top(n)]


def layer_lines(p: Any, lp: LayerProfile) -> tuple[str, list[str]]:
    """A variant's layer profile: its title line, and the lines under its table (what is off the fast path, how to
    read the times)."""
    title = (f"{p.model} {_variant(p)}: where one batch-{lp.batch} inference's time goes ({lp.profiler}; {lp.runs} "
             f"profiled runs, {fmt(lp.threads)} threads)")
    slow = lp.off_fast_path
    lines = []
    if lp.layers:
        rest = ("the rest is the profiler's own cost and what runs between operators" if lp.total_ms is None
                or lp.accounted_ms <= lp.total_ms else "each operator's typical time, which need not add up to the "
                "whole's median")
        lines.append(f"{len(lp.layers)} operators, adding up to {lp.accounted_ms:,.2f} ms of a {fmt(lp.total_ms, 2)} ms "
                     f"profiled inference ({rest}); read the times as shares beside the row's latency.")
    if slow:
        share = sum(layer.ms for layer in slow) / lp.accounted_ms if lp.accounted_ms else 0.0
        lines.append(f"Off the fast path: {len(slow)} operators, {100 * share:.1f}% of the operators' time:")
        lines += [f"  {kind.op} x{kind.calls} ({kind.kernel}): {kind.ms:,.3f} ms, {100 * (lp.share(kind) or 0):.1f}%: "
                  f"{_slowest(slow, kind)}" for kind in lp.slow_kinds]
    if lp.unprofiled:
        lines.append("Off the fast path (no time of their own): " + "; ".join(lp.unprofiled) + ".")
    if not slow and not lp.unprofiled:
        lines.append("Off the fast path: none.")
    if lp.note:
        lines.append(f"Note: {lp.note}.")
    return title, lines


def _slowest(slow: list[Any], kind: Any) -> str:
    """The slowest operator of a kind off the fast path, and why: 'stem_nchwc: Conv left in float (...)'."""
    first = next(layer for layer in slow if layer.op == kind.op and layer.kernel == kind.kernel)
    return f"{first.slow} (the slowest: {first.name})"


def show_application(profiles: Sequence[Any], output: str, n: int) -> None:
    """The application table and, for rows with one, each variant's layer table (text or Markdown)."""
    rows, lines = app_lines(profiles)
    bullet = "- " if output == "markdown" else ""
    if rows:
        echo("")
        _print(APP_HEADERS, rows, output)
        echo("")
        for line in lines:
            echo(bullet + line)
    for p in _distinct(profiles):
        if p.layer_profile:
            from vischoose.runtimes.layers import LayerProfile

            lp = LayerProfile.from_json(p.layer_profile)
            title, under = layer_lines(p, lp)
            echo("\n" + title)
            if lp.layers:
                _print(LAYER_HEADERS, layer_rows(lp, n), output)
            for line in under:
                echo(_bulleted(line, bullet))


def _print(headers: Sequence[str], rows: Sequence[Sequence[str]], output: str) -> None:
    if output == "markdown":
        from tabulate import tabulate

        echo(tabulate(rows, headers=list(headers), tablefmt="github", disable_numparse=True))
    else:
        echo(table(headers, rows))


def application_markdown(profiles: Sequence[Any], n: int = 10) -> list[str]:
    """results report's sections: what the application sees, and where the time goes for each variant with a layer
    profile (the newest row of each model and variant)."""
    from tabulate import tabulate

    newest = _distinct(sorted(profiles, key=lambda p: p.created_at, reverse=True))
    rows, lines = app_lines(newest)
    out: list[str] = []
    if rows:
        out += ["", "## What the application sees", "", tabulate(rows, APP_HEADERS, tablefmt="github",
                                                                  disable_numparse=True), ""]
        out += [f"- {line}" for line in lines]
    profiled = [p for p in newest if p.layer_profile]
    if profiled:
        out += ["", "## Where the time goes"]
    from vischoose.runtimes.layers import LayerProfile

    for p in profiled:
        lp = LayerProfile.from_json(p.layer_profile)
        title, under = layer_lines(p, lp)
        out += ["", f"### {title}", ""]
        if lp.layers:
            out += [tabulate(layer_rows(lp, n), LAYER_HEADERS, tablefmt="github", disable_numparse=True), ""]
        out += [_bulleted(line, "- ") for line in under]
    return out


def _bulleted(line: str, bullet: str) -> str:
    """A line under a layer table as a list item; an indented one (a kind off the fast path) nested under the last."""
    if not bullet:
        return line
    return f"  {bullet}{line.strip()}" if line.startswith("  ") else bullet + line
