"""Rendering of the server scenario and of costs: profile --scenario server's table (the sustained rate, the settings
that reached it, LoadGen's percentiles and verdicts), the cost lines (--price-per-hour, --target-qps, computed by
recommendation.cost), and the serving section of results report. Renders, never computes."""

from __future__ import annotations

from typing import Any, Sequence

from vischoose.report.flags import echo
from vischoose.report.tables import fmt, table

SERVER_HEADERS = ["model", "variant", "SLO p99 ms", "QPS", "instances x threads", "max batch", "wait ms", "p50 ms",
                  "p90 ms", "p99 ms", "LoadGen", "runs", "search s", "error"]
SERVER_FOOTER = ("QPS: the highest Poisson arrival rate whose MLPerf LoadGen Server run was VALID (LoadGen's scheduled "
                 "samples/s; p99 latency, counted from each query's scheduled arrival so queueing is included, under "
                 "the bound, and LoadGen's early stopping passed); p50/p90/p99: LoadGen's in that run; instances share "
                 "the cores (instances x threads <= cores); a batch closes at max batch or wait ms after its first "
                 "request; LoadGen: its verdict on the reported run (an INVALID run is never reported).")


def is_server(p: Any) -> bool:
    """A server-scenario row."""
    return getattr(p, "scenario", None) == "server"


def _variant(p: Any) -> str:
    return f"{p.runtime} {'fp32' if p.dtype == 'float32' else p.dtype}"


def server_row(p: Any) -> list[str]:
    """One server row of the table."""
    verdict = "VALID" if p.serve_valid else ("no VALID run" if p.serve_valid is False else "-")
    threads = f"{p.serve_instances} x {p.serve_threads}" if p.serve_instances else "-"
    return [p.model, _variant(p), fmt(p.slo_ms, 1), fmt(p.serve_qps, 1), threads, fmt(p.serve_max_batch),
            fmt(p.serve_max_wait_ms, 1), fmt(p.serve_p50_ms, 2), fmt(p.serve_p90_ms, 2), fmt(p.serve_p99_ms, 2),
            verdict, fmt(p.serve_runs), fmt(p.serve_search_s, 0), p.error or p.serve_note or ""]


def _print(headers: Sequence[str], rows: Sequence[Sequence[str]], output: str) -> None:
    if output == "markdown":
        from tabulate import tabulate

        echo(tabulate(rows, headers=list(headers), tablefmt="github", disable_numparse=True))
    else:
        echo(table(headers, rows))


def show_runs(runs: Sequence[Any], output: str, costs: Sequence[Any] = (), price_per_hour: float | None = None,
              target_qps: float | None = None) -> None:
    """profile's output: the server table for server rows (profile's own table otherwise), then the cost lines
    (recommendation.cost.costs of the rows, at that price and target rate)."""
    from vischoose.report import profile as report_profile

    if output in ("json", "csv") or not any(is_server(r.profile) for r in runs):
        report_profile.show_profiles(runs, output)
    else:
        _print(SERVER_HEADERS, [server_row(r.profile) for r in runs], output)
        bullet = "- " if output == "markdown" else ""
        echo("")
        for line in [SERVER_FOOTER, *dict.fromkeys(n for r in runs for n in r.notes), *verdict_lines(runs)]:
            echo(bullet + line)
    lines = cost_lines(costs, price_per_hour, target_qps)
    if lines and output not in ("json", "csv"):
        echo("")
        for line in lines:
            echo(("- " if output == "markdown" else "") + line)


def verdict_lines(runs: Sequence[Any]) -> list[str]:
    """LoadGen's verdict lines of each reported run (its summary, from 'Result is' to the early-stopping result)."""
    out = []
    for r in runs:
        text = r.profile.loadgen_summary or ""
        if "Result is" in text:
            block = text[text.index("Result is"):].split("\n\n")[0].split("=====")[0]
            out.append(f"{r.profile.model} LoadGen {r.profile.loadgen_version or ''} summary: "
                       + " | ".join(line.strip() for line in block.splitlines() if line.strip()))
    return out


def cost_lines(costs: Sequence[Any], price_per_hour: float | None, target_qps: float | None) -> list[str]:
    """One line per recommendation.cost.Cost: the rate, USD per million images, the machines a target needs."""
    lines = []
    for c in costs:
        how = f"QPS sustained at p99 <= {c.slo_ms:g} ms" if c.server else f"img/s offline (batch {c.batch_size})"
        parts = [f"{c.model} ({c.variant}): {c.rate:,.1f} {how}"]
        if c.per_million is not None:
            parts.append(f"USD {c.per_million:,.3f} per million images at USD {price_per_hour:g}/h")
        if c.fleet is not None:
            what = "at the bound" if c.server else "with no latency bound (offline)"
            parts.append(f"{target_qps:g} QPS {what} needs "
                         f"{c.fleet.text if price_per_hour is not None else c.fleet.machines}")
        lines.append("; ".join(parts))
    return lines


def serving_markdown(profiles: Sequence[Any], plot_file: str | None) -> list[str]:
    """results report's serving section: the server rows, LoadGen's verdicts and the latency-against-load plot."""
    from tabulate import tabulate

    rows = [p for p in profiles if is_server(p)]
    if not rows:
        return []
    out = ["", "## Serving (MLPerf LoadGen Server)", "",
           tabulate([server_row(p) for p in rows], SERVER_HEADERS, tablefmt="github", disable_numparse=True), "",
           SERVER_FOOTER]
    out += [f"- {p.model} ({_variant(p)}): {p.serve_min_queries} queries and {fmt(p.serve_min_duration_s)} s per "
            f"LoadGen run{' (MLPerf official)' if p.serve_official else ''}, LoadGen {p.loadgen_version or '?'}; "
            f"early stopping: {p.serve_early_stopping or '-'}" for p in rows]
    if plot_file:
        out += ["", f"![latency against offered load, SLO line, knee]({plot_file})"]
    return out
