"""vischoose recommend: which model for a target, with a reason for every rejection."""

from pathlib import Path
from typing import Annotated

import typer

from vischoose.cli.common import (
    Commands,
    JsonOpt,
    NoWaitOpt,
    OnOpt,
    PriceOpt,
    SloOpt,
    TargetQpsOpt,
    reported_errors,
)
from vischoose.report import tables as report
from vischoose.report.progress import ProfileProgress

commands = Commands()


@commands.command("recommend")
def recommend_cmd(
    target: Annotated[str, typer.Option(help="Preset name (mobile, cloud, experimental, edge, server) or a .toml file.")] = "cloud",
    budget_mb: Annotated[float | None, typer.Option(help="Largest model memory, MiB (weights at the target dtype; see --memory-basis).")] = None,
    memory_basis: Annotated[str | None, typer.Option(help="What --budget-mb limits: 'weights' or measured 'peak' inference memory.")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="Largest batch-1 p90 latency, ms.")] = None,
    min_throughput: Annotated[float | None, typer.Option(help="Smallest throughput at the target batch size, img/s.")] = None,
    min_top1: Annotated[float | None, typer.Option(help="Smallest ImageNet top-1, %.")] = None,
    max_params_m: Annotated[float | None, typer.Option(help="Most parameters, millions.")] = None,
    max_cold_start_ms: Annotated[float | None, typer.Option(help="Longest cold start, ms: a fresh process's file to "
                                                        "its first answer (measured by every profile).")] = None,
    latency_basis: Annotated[str | None, typer.Option(help="What --max-latency-ms limits: 'model' (batch-1 p90, "
                                                      "default) or 'end-to-end' (a photo's decode + preprocess + "
                                                      "model, profile --end-to-end).")] = None,
    device: Annotated[str | None, typer.Option(help="Device the figures must come from: cpu, cuda, cuda:N (default: the preset's).")] = None,
    models: Annotated[list[str] | None, typer.Option("--models", help="Candidates instead of the preset's families "
                                                     "(repeatable): aliases, timm names, hf-hub ids, folders, or globs "
                                                     "over timm's zoo ('resnet50*', 'vit_*_patch16_224.augreg*').")] = None,
    zoo: Annotated[bool, typer.Option("--zoo", help="Every architecture of the preset's families in timm's zoo "
                                      "(published results), not only the curated catalog.")] = False,
    families: Annotated[list[str] | None, typer.Option("--families", help="The zoo's architectures of these families "
                                                       "instead ('convnext,mobilenetv4', or 'all'); see vischoose "
                                                       "models --zoo.")] = None,
    all_tags: Annotated[bool, typer.Option("--all-tags", help="Every published tag of an architecture as its own "
                                           "candidate (default: its best top-1 at its deployed size).")] = False,
    results: Annotated[list[Path] | None, typer.Option("--results", help="Results exported from another machine (vischoose results export); repeatable.")] = None,
    measure: Annotated[bool, typer.Option("--measure", help="First measure here what can change the answer: candidates "
                                          "that fit without timing, in ranking order, until none unmeasured can win.")] = False,
    measure_all: Annotated[bool, typer.Option("--measure-all", help="Measure every candidate at every variant the "
                                              "target deploys (exhaustive, slow).")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="With --measure: measure again what this machine already "
                                        "measured under the target's protocol.")] = False,
    time_budget: Annotated[float | None, typer.Option(min=0.1, help="With --measure: seconds of timed runs per model "
                                                      "(default 20); with --serve, a whole server search's (default "
                                                      "180).")] = None,
    data: Annotated[Path | None, typer.Option(help="Your labelled images (class folders or a path,label CSV, as for "
                                              "evaluate): rank on the top-1 each fitting model's deployed file reaches "
                                              "on them, with 95 % intervals.")] = None,
    labels: Annotated[Path | None, typer.Option(help="With --data: a file mapping folder names or CSV labels to "
                                                "classes, as for evaluate.")] = None,
    max_accuracy_drop: Annotated[float | None, typer.Option(help="With --data: int8 candidates ship accuracy-aware "
                                                            "int8 that loses at most this many top-1 points against "
                                                            "fp32 on your images (layers int8 hurts most kept in "
                                                            "float), measured on a held-out half; else rejected.")] = None,
    serve: Annotated[bool, typer.Option("--serve", help="Judge each model as a service at the target's [serve] p99 "
                                        "bound (profile --scenario server rows; else estimated from offline img/s), "
                                        "ranked by cost per million images. Implied by the three options below.")] = False,
    slo_ms: SloOpt = None,
    target_qps: TargetQpsOpt = None,
    price_per_hour: PriceOpt = None,
    top: Annotated[int, typer.Option(min=1, help="How many models to show before the rejections.")] = 5,
    machine: Annotated[str | None, typer.Option("--machine", help="Answer for this kind of machine from the rows "
                                                "measured on it: a kind id (or its first digits), words of its CPU's "
                                                "name, or all (one section per kind).")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="One answer per kind of machine of a Ray cluster "
                                                "(HOST:PORT, ray://HOST:10001 or auto); with --measure, measured on "
                                                "each kind's node. Needs vischoose[fleet].")] = None,
    on: OnOpt = None,
    no_wait: NoWaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Recommend a model for a deployment target, with a reason for every rejection."""
    with reported_errors(), ProfileProgress() as progress:
        from vischoose.recommendation.pipeline import advise
        from vischoose.requests.recommend import RecommendRequest

        request = RecommendRequest(
            target=target, models=tuple(models or ()), zoo=zoo, families=tuple(families or ()), all_tags=all_tags,
            results=tuple(str(r) for r in results or ()),
            measure="all" if measure_all else "decision" if measure else "", fresh=fresh,
            time_budget_s=time_budget, device=device, memory_basis=memory_basis,
            data=str(data) if data else None, labels=str(labels) if labels else None,
            max_accuracy_drop=max_accuracy_drop, max_memory_mb=budget_mb, max_latency_ms=max_latency_ms,
            min_throughput=min_throughput, min_top1=min_top1, max_params_m=max_params_m, serve=serve,
            max_cold_start_ms=max_cold_start_ms, latency_basis=latency_basis,
            slo_ms=slo_ms, target_qps=target_qps, price_per_hour=price_per_hour, machine=machine,
            cluster=cluster, on=tuple(on or ()), wait=not no_wait)
        if request.per_kind:
            return _recommend_kinds(request, top, as_json)
        rec = advise(request, progress, report.ProgressBar)
    report.show_recommendation(rec, top=top, as_json=as_json)


def _recommend_kinds(request, top: int, as_json: bool) -> None:
    """recommend --machine / --cluster: a section per kind of machine; exit 4 when nothing fits on one of them."""
    from vischoose.fleet import advising, cluster
    from vischoose.report import fleet as report_fleet

    if request.cluster:
        with cluster.connect(request.cluster) as session:
            found = advising.advise_cluster(session, request)
    else:
        found = advising.advise_stored(request)
    report_fleet.show_kind_advice(found, top, as_json)
    advising.unfit(found)
