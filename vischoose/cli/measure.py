"""vischoose profile: measure models on this machine (--optimize: the fastest setting that agrees with fp32;
--cluster: on every kind of machine of a Ray cluster)."""

from pathlib import Path
from typing import Annotated

import typer

from vischoose.cli.common import (
    CalibrationOpt,
    Commands,
    JsonOpt,
    NoWaitOpt,
    OnOpt,
    PriceOpt,
    SloOpt,
    TargetQpsOpt,
    debug_enabled,
    precision_opt,
    reported_errors,
    runtime_opt,
)
from vischoose.report import profile as report_profile

commands = Commands()


@commands.command("profile")
def profile_cmd(
    models: Annotated[list[str] | None, typer.Argument(help="Models to measure (default: the article's resnet50, "
                                                       "vit_b16, r50_vit_b16).", show_default=False)] = None,
    device: Annotated[str | None, typer.Option(help="auto (a GPU if there is one, else cpu), cpu, cuda or cuda:N.")] = None,
    batch_size: Annotated[list[str] | None, typer.Option("--batch-size", "-b", help="Throughput batch size; repeat "
                                                         "or comma-separate for a sweep (default 8 on CPU, 64 on GPU).")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 (default), bfloat16 or float16.")] = None,
    runtime: Annotated[str | None, runtime_opt()] = None,
    precision: Annotated[str | None, precision_opt()] = None,
    calibration: CalibrationOpt = None,
    min_agreement: Annotated[float | None, typer.Option(help="Deployment runtimes, int8: reject a graph whose top-1 "
                                                        "agrees with eager fp32 on less than this share of your images "
                                                        "(default 0.99).")] = None,
    channels_last: Annotated[bool | None, typer.Option("--channels-last/--contiguous", help="Memory layout of "
                                                       "weights and input (default contiguous).")] = None,
    compile_: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile (inductor, weights frozen as constants) the model first.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: torch's, one per core).")] = None,
    input_size: Annotated[int | None, typer.Option(help="Square input side, px (default: the model's pretrained config).")] = None,
    weights: Annotated[str | None, typer.Option(help="auto (cached pretrained, else random init of the same "
                                                "architecture), pretrained or random. Speed and memory do not "
                                                "depend on the weight values.")] = None,
    target: Annotated[str | None, typer.Option(help="Take the protocol from a preset's [measure] section; "
                                               "explicit options override it.")] = None,
    time_budget: Annotated[float | None, typer.Option("--time-budget", help="Seconds of timed runs per model "
                                                      "(default 60); at least 3 runs per phase are made.")] = None,
    as_json: JsonOpt = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (every Profile field).")] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table.")] = False,
    no_save: Annotated[bool, typer.Option("--no-save", help="Do not write the results to the store.")] = False,
    optimize: Annotated[bool, typer.Option("--optimize", help="Search dtype, channels_last, threads, batch size and "
                                           "torch.compile for the fastest setting that agrees with fp32; "
                                           "--time-budget is then the whole search's per model (default 300 s).")] = False,
    scenario: Annotated[str | None, typer.Option(help="MLPerf LoadGen's scenario: single-stream (batch-1 latency) and "
                                                 "offline (img/s) are profile's usual figures; server finds the highest "
                                                 "Poisson rate whose LoadGen run is VALID under --slo-ms, searching "
                                                 "instances and dynamic batching (--time-budget: the search's, default "
                                                 "180 s per model; pip install 'vischoose[serve]').")] = None,
    slo_ms: SloOpt = None,
    official: Annotated[bool, typer.Option("--official", help="Server: MLPerf's minimum duration (600 s per LoadGen "
                                           "run) instead of vischoose's (662 queries and 5 s).")] = False,
    price_per_hour: PriceOpt = None,
    target_qps: TargetQpsOpt = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Measure on every kind of machine of a Ray cluster "
                                                "(one node of each, the whole node): HOST:PORT, ray://HOST:10001 or "
                                                "auto; rows stored here by machine. Needs vischoose[fleet].")] = None,
    on: OnOpt = None,
    every_node: Annotated[bool, typer.Option("--every-node", help="With --cluster: every node, not one per kind.")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="With --cluster: measure again what the store has for a kind "
                                        "of machine under the same protocol.")] = False,
    no_wait: NoWaitOpt = False,
    end_to_end: Annotated[bool, typer.Option("--end-to-end", help="Also time each photo from JPEG to logits: decode, "
                                             "the model's own preprocessing (timm data config), the model, at batch "
                                             "1 (p50/p90 of each); on --images, else on 12 MP phone-camera JPEGs "
                                             "made on the fly.")] = False,
    images: Annotated[Path | None, typer.Option("--images", help="Your photos for --end-to-end (a folder; implies "
                                                "it).")] = None,
    layers: Annotated[bool, typer.Option("--layers", help="Also profile one inference operator by operator with the "
                                         "runtime's own profiler, naming the operators off its fast path.")] = False,
    cold_start: Annotated[bool, typer.Option("--cold-start/--no-cold-start", help="Time a cold start in a fresh "
                                             "process: import, file to ready session, first inference, RSS (default "
                                             "on: one more child process per model).")] = True,
) -> None:
    """Measure params, FLOPs, latency, throughput, peak memory and a cold start on this machine, one child process
    per model (and, when asked, each photo's own cost and where the time goes)."""
    with reported_errors(), report_profile.ProfileProgress() as progress:
        from vischoose.requests.profile import ProfileRequest

        output = report_profile.output_format(as_json, as_csv, as_markdown)
        request = ProfileRequest.build(
            target, precision=precision, models=tuple(models or ()), device=device, batch_sizes=batch_size,
            dtype=dtype, channels_last=channels_last, compile=compile_, threads=threads, input_size=input_size,
            weights=weights, time_budget_s=time_budget, runtime=runtime, wait=not no_wait,
            calibration=str(calibration) if calibration else None, min_agreement=min_agreement, optimize=optimize,
            scenario=scenario, slo_ms=slo_ms, official=official, price_per_hour=price_per_hour, target_qps=target_qps,
            cluster=cluster, on=tuple(on or ()), every_node=every_node, fresh=fresh, cold_start=cold_start,
            end_to_end=end_to_end or None, images=str(images) if images else None, layers=layers or None)
        if request.cluster:
            return _profile_cluster(request, progress, not no_save, output)
        if optimize:
            return _profile_optimized(request, time_budget, progress, _keeper(no_save), as_json)
        runs = _measured(request, progress, _keeper(no_save))
    _show(runs, request, output)
    _failed(runs)


def _failed(runs: list) -> None:
    """Exit 1 (or 2 / 3) when rows failed, after the table has shown which and why."""
    from vischoose.measure import runner

    with reported_errors():
        runner.failed(runs)


def _measured(request, progress, keep) -> list:
    """profile's rows: the server search (scenario server) or the usual single-stream latency and offline img/s."""
    from vischoose.measure import runner, serving_runner
    from vischoose.requests.profile import SERVER

    measure = serving_runner.serve_models if request.scenario == SERVER else runner.profile_models
    return measure(request, progress=progress, debug=debug_enabled(), keep=keep)


def _show(runs: list, request, output: str) -> None:
    """The rows (the server table for server rows), then what they cost at the price and target rate asked."""
    from vischoose.recommendation import cost
    from vischoose.report import serving as report_serving

    price, target = request.price_per_hour, request.target_qps
    report_serving.show_runs(runs, output, cost.costs([r.profile for r in runs], price, target), price, target)


def _keeper(no_save: bool):
    """What stores each model's rows as they are measured (results.store.keep_profiles), or None with --no-save."""
    if no_save:
        return None
    from vischoose.results.store import keep_profiles

    return keep_profiles


def _profile_optimized(request, budget_s: float | None, progress, keep, as_json: bool) -> None:
    """vischoose profile --optimize: search, show, fail (exit 1) where no setting could be measured."""
    from vischoose.measure import optimize

    found = optimize.optimize_models(request, budget_s or optimize.DEFAULT_BUDGET_S, progress=progress, keep=keep)
    progress.close()
    report_profile.show_optimized(found, as_json)
    optimize.failed(found)


def _profile_cluster(request, progress, keep: bool, output: str) -> None:
    """profile --cluster: each kind's rows, then exit 1 with a summary when a row failed or a node was left out."""
    from vischoose.fleet import cluster, profiling
    from vischoose.report import fleet as report_fleet

    with cluster.connect(request.cluster) as session:
        result = profiling.profile_fleet(session, request, progress, keep)
    progress.close()
    report_fleet.show_fleet_profile(result, output)
    profiling.failed(result)
