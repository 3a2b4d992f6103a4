"""The vischoose command line: parse, call the library, render. Nothing else."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Annotated, Iterator

import typer

from vischoose import catalog, errors, report

app = typer.Typer(
    name="vischoose",
    help="Choose a pretrained vision backbone from figures measured on your own machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (with schema_version) instead of a table.")]
ModelsArg = Annotated[list[str], typer.Argument(help="Catalog alias, timm name, hf-hub:org/name, or a model folder.")]


def debug_enabled() -> bool:
    """VISCHOOSE_DEBUG=1 lets tracebacks through."""
    return os.environ.get("VISCHOOSE_DEBUG", "") not in ("", "0")


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn VischooseError into 'Error: ...' on stderr and its exit code; Ctrl-C into exit 130."""
    try:
        yield
    except errors.VischooseError as err:
        if debug_enabled():
            raise
        typer.echo(f"Error: {err}", err=True)
        if err.hint:
            typer.echo(f"Hint: {err.hint}", err=True)
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        typer.echo("Interrupted: results finished so far are kept.", err=True)
        raise typer.Exit(errors.EXIT_INTERRUPTED) from None


@app.command("models")
def models_cmd(
    family: Annotated[str | None, typer.Option(help="Only this family: resnet, vit or hybrid.")] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="fnmatch pattern on alias or tag, e.g. 'vit_*'.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the model catalog with published figures and what is cached."""
    with reported_errors():
        from vischoose import inventory

        rows = inventory.catalog_rows(catalog.list_entries(family, filter_))
    report.show_models(rows, as_json)


@app.command("pull")
def pull_cmd(
    models: ModelsArg,
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Download pretrained weights into the Hugging Face cache (resumable; offline-aware)."""
    with reported_errors():
        from vischoose import hub

        rows = []
        for text in models:
            ref = catalog.parse_model_ref(text)
            weights = hub.pull(ref, force=force)
            rows.append({"model": ref.display, "repo_id": weights.repo_id, "commit": weights.commit,
                         "file": weights.weights_file.name, "size_mb": weights.size_bytes / catalog.MIB,
                         "folder": str(weights.folder)})
    report.show_pulled(rows, as_json)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
