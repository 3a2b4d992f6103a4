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
