"""vischoose models, pull, presets: what there is to choose from."""

from typing import Annotated

import typer

from vischoose.cli.common import Commands, JsonOpt, ModelsArg, reported_errors, sub_app
from vischoose.models import catalog
from vischoose.report import tables as report
from vischoose.units import MIB

commands = Commands()

@commands.command("models")
def models_cmd(
    family: Annotated[str | None, typer.Option(help="Only this family: resnet, vit or hybrid.")] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="fnmatch pattern on alias or tag, e.g. 'vit_*'.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the model catalog with published figures and what is cached."""
    with reported_errors():
        from vischoose.models import inventory

        rows = inventory.catalog_rows(catalog.list_entries(family, filter_))
    report.show_models(rows, as_json)


@commands.command("pull")
def pull_cmd(
    models: ModelsArg,
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Download pretrained weights into the Hugging Face cache (resumable; offline-aware)."""
    with reported_errors():
        from vischoose.models import hub

        rows = []
        for text in models:
            ref = catalog.parse_model_ref(text)
            weights = hub.pull(ref, force=force)
            rows.append({"model": ref.display, "repo_id": weights.repo_id, "commit": weights.commit,
                         "file": weights.weights_file.name, "size_mb": weights.size_bytes / MIB,
                         "folder": str(weights.folder)})
    report.show_pulled(rows, as_json)


presets_app = commands.group("presets", sub_app("Deployment targets (presets/*.toml).", no_args_is_help=False,
                                                invoke_without_command=True))


@presets_app.callback()
def presets_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the presets (deployment targets)."""
    if ctx.invoked_subcommand is not None:
        return
    with reported_errors():
        from vischoose.presets import list_presets

        found = list_presets()
    report.show_presets(found, as_json)


@presets_app.command("show")
def presets_show(name: Annotated[str, typer.Argument(help="Preset name or .toml file.")]) -> None:
    """Print one preset file."""
    with reported_errors():
        from vischoose.presets import load_preset, to_toml

        text = to_toml(load_preset(name))
    typer.echo(text.rstrip())
