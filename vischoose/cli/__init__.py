"""The vischoose command line: parse, build a request, call the library, render. Nothing else.

One module per command group (catalog, recommend, measure, deploy, inference, results, fleet); `vischoose recommend ...`
imports and registers only the module of the command it names, so start-up pays for one command, not all of them.
`vischoose.cli.app` is the whole app (every command), as `vischoose --help` shows it.
"""

import gc
import importlib
import sys
from typing import Any

import typer

# command or group name -> the module that defines it (help lists them in this order)
COMMANDS = {"models": "catalog", "pull": "catalog", "presets": "catalog", "recommend": "recommend",
            "predict": "inference", "evaluate": "inference", "results": "results", "profile": "measure",
            "export": "deploy", "fleet": "fleet"}
HELP = "Choose a pretrained vision backbone from figures measured on your own machine."


def build(name: str | None = None) -> typer.Typer:
    """The app with every command, or with only the command (or group) `name`.

    A one-command app keeps an empty callback so it stays a group, as the whole app is: usage lines, help and errors
    read the same ("Usage: vischoose recommend [OPTIONS]").
    """
    app = typer.Typer(name="vischoose", help=HELP, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False, rich_markup_mode=None)
    modules = [COMMANDS[name]] if name else list(dict.fromkeys(COMMANDS.values()))
    for module in modules:
        importlib.import_module(f"vischoose.cli.{module}").commands.register(app, name)
    if name:
        app.callback()(lambda: None)
    return app


def only(args: list[str]) -> typer.Typer | None:
    """The one-command app for the command `args[0]` names, None when it names none."""
    name = args[0] if args else None
    return build(name) if name in COMMANDS else None


def main() -> None:
    """Console entry point: only the command argv names (see build), else the whole app.

    The process ends when this returns (or raises SystemExit, as the app does): every object is frozen out of the
    cyclic collector first (gc.freeze), so the interpreter's last collection at exit does not walk them all. That
    walk took 13 of the 105 ms of `recommend --zoo` here (its objects, typer's and click's); files and the results
    database are closed by the commands themselves, never left to it.
    """
    try:
        (only(sys.argv[1:2]) or build())()
    finally:
        gc.freeze()


def __getattr__(name: str) -> Any:
    """`app`: the whole app, built when first asked for."""
    if name == "app":
        globals()["app"] = found = build()
        return found
    raise AttributeError(f"module 'vischoose.cli' has no attribute '{name}'")
