"""The flag each request field is shown as on the command line: library errors and notes name fields
(errors.field), and the CLI and its reports write them as flags."""

from __future__ import annotations

from vischoose.errors import named

# fields whose flag is not the field name with dashes
_FLAGS = {"batch_sizes": "--batch-size", "time_budget_s": "--time-budget", "max_memory_mb": "--budget-mb",
          "threads_from": "--threads", "autocast": "autocast", "wait": "--no-wait"}


def flag_of(name: str) -> str:
    """'--labels' for the field labels, '--batch-size' for batch_sizes."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def echo(text: object = "", err: bool = False, nl: bool = True) -> None:
    """typer.echo, with the request fields the text names (errors.opt) written as the CLI's flags."""
    import typer

    typer.echo(named(str(text), flag_of), err=err, nl=nl)
