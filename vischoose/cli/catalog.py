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
    family: Annotated[str | None, typer.Option(help="Only this family: resnet, vit or hybrid in the catalog; any "
                                               "family of the zoo (convnext, efficientnet, ...) shows the zoo.")] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="fnmatch pattern on alias or tag, e.g. 'vit_*'.")] = None,
    zoo: Annotated[bool, typer.Option("--zoo", help="Browse timm's zoo (every pretrained ImageNet-1k tag with "
                                      "published figures) instead of the curated catalog.")] = False,
    max_params_m: Annotated[float | None, typer.Option(help="Zoo: at most this many parameters, millions.")] = None,
    min_top1: Annotated[float | None, typer.Option(help="Zoo: at least this published top-1, %.")] = None,
    sort: Annotated[str | None, typer.Option(help="Zoo: top1 (default), params, gflops, cpu_ms, gpu_img_s or "
                                             "name, best first.")] = None,
    all_tags: Annotated[bool, typer.Option("--all-tags", help="Zoo: every tag, not only each architecture's best.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the model catalog with published figures and what is cached, or browse timm's zoo (--zoo)."""
    with reported_errors():
        from vischoose.models import inventory

        if inventory.wants_zoo(zoo, family, max_params_m, min_top1, sort, all_tags):
            rows = inventory.zoo_rows(family, filter_, max_params_m, min_top1, sort or "top1", all_tags)
            report.show_zoo(rows, as_json, all_tags, family)
            return
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
