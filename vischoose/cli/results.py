"""vischoose results: what was measured here and elsewhere: list, show, export, import, remove, clear, plot, report."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from vischoose import errors
from vischoose.cli.common import Commands, JsonOpt, reported_errors, sub_app
from vischoose.report import results as report_results

commands = Commands()
results_app = commands.group("results", sub_app("Saved results: list, show, export, import, remove, clear, plot, "
                                                "report."))
ModelFilter = Annotated[str | None, typer.Option("--model", help="Only this model (alias or timm tag).")]
DeviceFilter = Annotated[str | None, typer.Option("--device", help="Only this device (cuda matches cuda:0).")]
MachineFilter = Annotated[str | None, typer.Option("--machine", help="Only this machine fingerprint (a prefix will do).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _stored_results(model: str | None, device: str | None, machine: str | None) -> list:
    """Stored results matching the filters."""
    from vischoose.results import store

    with store.open_store() as db:
        return db.results(model=model, device=device, machine=machine)


def _confirm(question: str, yes: bool) -> None:
    """Ask on stderr unless --yes; no answer (or no terminal) means no."""
    if yes:
        return
    try:
        agreed = typer.confirm(question, default=False, err=True)
    except typer.Abort:
        agreed = False
    if not agreed:
        raise errors.VischooseError("Nothing was removed: not confirmed.", hint="Pass --yes to skip the question.")


@results_app.command("list")
def results_list(model: ModelFilter = None, device: DeviceFilter = None, machine: MachineFilter = None,
                 as_json: JsonOpt = False) -> None:
    """List stored profiles and evaluations, oldest first."""
    with reported_errors():
        found = _stored_results(model, device, machine)
    report_results.show_results_list(found, as_json)


@results_app.command("show")
def results_show(result_id: Annotated[int, typer.Argument(metavar="ID", help="A result id from results list.")],
                 as_json: JsonOpt = False) -> None:
    """Show every field of one stored result."""
    with reported_errors():
        from vischoose.results import store

        with store.open_store() as db:
            found = db.get(result_id)
    report_results.show_stored_result(found, as_json)


@results_app.command("export")
def results_export(
    format_: Annotated[Literal["json", "csv", "markdown"], typer.Option("--format", help="json and csv can be imported elsewhere.")] = "json",
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
    model: ModelFilter = None, device: DeviceFilter = None, machine: MachineFilter = None,
) -> None:
    """Export stored results (every field) for another machine, a spreadsheet or a document."""
    with reported_errors():
        from vischoose.results import exchange

        found = _stored_results(model, device, machine)
        writers = {"json": exchange.to_json, "csv": exchange.to_csv, "markdown": report_results.results_markdown}
        text = writers[format_](found)
        if out is not None:
            exchange.write_text(out, text)
    if out is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"Wrote {len(found)} results to {out}.", err=True)


@results_app.command("import")
def results_import(file: Annotated[Path, typer.Argument(help="A .json or .csv file from vischoose results export.")],
                   as_json: JsonOpt = False) -> None:
    """Add results exported on another machine; duplicates are skipped, machines kept apart by fingerprint."""
    with reported_errors():
        from vischoose.results import exchange, store

        records = exchange.read_results_file(file)
        with store.open_store() as db:
            added, skipped = db.import_results(records, source=file.name)
    report_results.show_imported(str(file), added, skipped, as_json)


@results_app.command("remove")
def results_remove(ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Result ids from results list.")],
                   yes: YesOpt = False) -> None:
    """Delete stored results by id (asks first)."""
    with reported_errors():
        from vischoose.results import store

        with store.open_store() as db:
            db.require_ids(ids)
            _confirm(f"Remove {len(set(ids))} stored results (id {', '.join(map(str, sorted(set(ids))))})?", yes)
            removed = db.remove(ids)
    typer.echo(f"Removed {removed} results.", err=True)


@results_app.command("clear")
def results_clear(yes: YesOpt = False) -> None:
    """Delete every stored result (asks first)."""
    with reported_errors():
        from vischoose.results import store

        with store.open_store() as db:
            count = db.count()
            if count:
                _confirm(f"Remove all {count} stored results from {db.path}?", yes)
            removed = db.clear()
    typer.echo(f"Removed {removed} results.", err=True)


PlotX = Annotated[Literal["throughput", "latency", "load"], typer.Option("--x", help="x axis: throughput (img/s) or batch-1 latency (ms) against top-1; load: server-scenario latency against offered load (QPS), SLO line, knee.")]


@results_app.command("plot")
def results_plot(out: Annotated[Path, typer.Option("--out", help="Image file: .png or .svg.")],
                 x: PlotX = "throughput",
                 measured_top1: Annotated[bool, typer.Option("--measured-top1", help="Use top-1 from vischoose evaluate where stored for the same runtime and dtype (marked *).")] = False,
                 model: ModelFilter = None, device: DeviceFilter = None, machine: MachineFilter = None) -> None:
    """Plot top-1 against throughput or latency (log scale), marker area = memory, with the Pareto front; or (--x
    load) server-scenario latency against offered load."""
    with reported_errors():
        from vischoose.report import plots

        found = _stored_results(model, device, machine)
        top1 = ({(r.record.model, r.record.runtime, r.record.dtype): r.record.top1 for r in found if r.kind == "eval"}
                if measured_top1 else None)
        profiles = [r.record for r in found if r.kind == "profile"]
        plots.plot_serving(profiles, out) if x == "load" else plots.plot_pareto(profiles, out, x=x, top1=top1)
    typer.echo(f"Wrote {out}.", err=True)


@results_app.command("report")
def results_report(out: Annotated[Path, typer.Option("--out", help="Markdown file to write.")],
                   plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Also draw OUT-pareto.png and embed it.")] = True,
                   model: ModelFilter = None, device: DeviceFilter = None, machine: MachineFilter = None) -> None:
    """Write a Markdown report: machine, conditions, results, plot, and measured against published figures."""
    with reported_errors():
        plot_file = report_results.write_report(_stored_results(model, device, machine), out, plot)
    typer.echo(f"Wrote {out}" + (f" and {plot_file}." if plot_file else "."), err=True)
