"""What every command module shares: the errors-to-exit-codes context, the flag each request field is shown as, the
options several commands take, and the collector a module registers its commands with."""

# no `from __future__ import annotations` in the command modules: typer would then eval every option's annotation
# string to build the commands, which costs each invocation tens of ms of start-up
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator

import typer

from vischoose import errors
from vischoose.report.flags import flag_of

EXIT_INTERRUPTED = 130

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (with schema_version) instead of a table.")]
ModelsArg = Annotated[list[str], typer.Argument(help="Catalog alias, timm name, hf-hub:org/name, or a model folder.")]
CalibrationOpt = Annotated[Path | None, typer.Option(help="Deployment runtimes: a folder of your images (a few dozen) "
                                                     "that calibrate int8 and check agreement with eager fp32.")]
SloOpt = Annotated[float | None, typer.Option("--slo-ms", help="Serving: the p99 latency bound, ms (MLPerf Server; "
                                              "latency counted from each request's scheduled arrival).")]
TargetQpsOpt = Annotated[float | None, typer.Option("--target-qps", help="Serving: the requests per second to sustain: "
                                                    "machines needed and what they cost.")]
PriceOpt = Annotated[float | None, typer.Option("--price-per-hour", help="USD per machine-hour: cost per million images "
                                                "at the sustained (server) or best offline rate (default: the "
                                                "target's [serve]).")]
OnOpt = Annotated[list[str] | None, typer.Option("--on", help="With --cluster: only the nodes with this Ray label, "
                                                 "LABEL=VALUE (repeatable).")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="When another vischoose is timing on this machine, exit "
                                         f"with code {errors.EXIT_BUSY} instead of waiting for it (one timed "
                                         "measurement at a time per machine).")]


def runtime_opt() -> Any:
    """--runtime's option, its help listing the graph runtimes of the registry."""
    from vischoose.runtimes import registry

    graphs = ", ".join(f"{r.name} ({r.title})" for r in registry.KINDS.values() if r.is_graph)
    return typer.Option(help=f"torch (eager, the default), or a deployment runtime running the exported file on the "
                             f"CPU, checked against eager fp32: {graphs}.")


def precision_opt() -> Any:
    """--precision's option."""
    from vischoose.runtimes.precision import PRECISIONS

    return typer.Option(help=f"{', '.join(PRECISIONS)}: torch runs fp32/bf16/fp16; the deployment runtimes fp32 and "
                             "int8 (with the runtime's recipe for the model's family), some bf16.")


def debug_enabled() -> bool:
    """VISCHOOSE_DEBUG=1 lets tracebacks through."""
    return os.environ.get("VISCHOOSE_DEBUG", "") not in ("", "0")


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn VischooseError into 'Error: ...' on stderr (fields named as their flags) and its exit code; Ctrl-C into
    exit 130."""
    try:
        yield
    except errors.VischooseError as err:
        if debug_enabled():
            raise
        message, hint = err.render(flag_of)
        typer.echo(f"Error: {message}", err=True)
        if hint:
            typer.echo(f"Hint: {hint}", err=True)
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        typer.echo("Interrupted: results finished so far are kept.", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


class Commands:
    """A command module's commands and command groups, registered onto an app only when that module is imported."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, Callable[..., Any]]] = []
        self.groups: list[tuple[str, typer.Typer]] = []

    def command(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: a command called `name`."""
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.commands.append((name, fn))
            return fn
        return add

    def group(self, name: str, group: typer.Typer) -> typer.Typer:
        """A command group called `name` (its own commands registered on it)."""
        self.groups.append((name, group))
        return group

    def names(self) -> list[str]:
        """Every command and group name, in registration order."""
        return [n for n, _ in self.commands] + [n for n, _ in self.groups]

    def register(self, app: typer.Typer, only: str | None = None) -> None:
        """Add the commands (only the one called `only`, if given) to app."""
        for name, fn in self.commands:
            if only in (None, name):
                app.command(name)(fn)
        for name, group in self.groups:
            if only in (None, name):
                app.add_typer(group, name=name)


def sub_app(help: str, **options: Any) -> typer.Typer:
    """A command group's Typer, set up as the main app is."""
    return typer.Typer(help=help, rich_markup_mode=None, **{"no_args_is_help": True, **options})
