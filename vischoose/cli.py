"""The vischoose command line: parse, call the library, render. Nothing else."""

# no `from __future__ import annotations` here: typer would then eval every option's annotation string to build
# the commands, which costs each invocation tens of ms of start-up
import os
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Literal

import typer

from vischoose import errors
from vischoose.models import catalog
from vischoose.report import profile as report_profile
from vischoose.report import results as report_results
from vischoose.report import tables as report
from vischoose.runtimes import registry
from vischoose.runtimes.precision import PRECISIONS

app = typer.Typer(
    name="vischoose",
    help="Choose a pretrained vision backbone from figures measured on your own machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (with schema_version) instead of a table.")]
FORMATS = {r.format: r.name for r in registry.graph_runtimes() if r.format}  # export --format -> runtime
FormatName = Enum("FormatName", {f: f for f in FORMATS}, type=str)  # type: ignore[misc]
GraphPrecision = Enum("GraphPrecision", {p: p for p in dict.fromkeys(  # type: ignore[misc]
    p for r in registry.graph_runtimes() for p in r.precisions)}, type=str)
GRAPHS = ", ".join(f"{r.name} ({r.title})" for r in registry.graph_runtimes())
RuntimeOpt = Annotated[str | None, typer.Option(help="torch (eager, the default), or a deployment runtime running the "
                                                f"exported file on the CPU, checked against eager fp32: {GRAPHS}.")]
PrecisionOpt = Annotated[str | None, typer.Option(help=f"{', '.join(PRECISIONS)}: torch runs fp32/bf16/fp16; the "
                                                  "deployment runtimes fp32 and int8 (with the runtime's recipe for "
                                                  "the model's family), some bf16.")]
CalibrationOpt = Annotated[Path | None, typer.Option(help="Deployment runtimes: a folder of your images (a few dozen) "
                                                     "that calibrate int8 and check agreement with eager fp32.")]
ModelsArg = Annotated[list[str], typer.Argument(help="Catalog alias, timm name, hf-hub:org/name, or a model folder.")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="When another vischoose is timing on this machine, exit "
                                         f"with code {errors.EXIT_BUSY} instead of waiting for it (one timed "
                                         "measurement at a time per machine).")]


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
        from vischoose.models import inventory

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
        from vischoose.models import hub

        rows = []
        for text in models:
            ref = catalog.parse_model_ref(text)
            weights = hub.pull(ref, force=force)
            rows.append({"model": ref.display, "repo_id": weights.repo_id, "commit": weights.commit,
                         "file": weights.weights_file.name, "size_mb": weights.size_bytes / catalog.MIB,
                         "folder": str(weights.folder)})
    report.show_pulled(rows, as_json)


presets_app = typer.Typer(help="Deployment targets (presets/*.toml).", no_args_is_help=False,
                          invoke_without_command=True, rich_markup_mode=None)
app.add_typer(presets_app, name="presets")


@presets_app.callback()
def presets_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the presets (deployment targets)."""
    if ctx.invoked_subcommand is not None:
        return
    with reported_errors():
        from vischoose.recommendation.presets import list_presets

        found = list_presets()
    report.show_presets(found, as_json)


@presets_app.command("show")
def presets_show(name: Annotated[str, typer.Argument(help="Preset name or .toml file.")]) -> None:
    """Print one preset file."""
    with reported_errors():
        from vischoose.recommendation.presets import load_preset, to_toml

        text = to_toml(load_preset(name))
    typer.echo(text.rstrip())


@app.command("recommend")
def recommend_cmd(
    target: Annotated[str, typer.Option(help="Preset name (mobile, cloud, experimental, edge, server) or a .toml file.")] = "cloud",
    budget_mb: Annotated[float | None, typer.Option(help="Largest model memory, MiB (weights at the target dtype; see --memory-basis).")] = None,
    memory_basis: Annotated[str | None, typer.Option(help="What --budget-mb limits: 'weights' or measured 'peak' inference memory.")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="Largest batch-1 p90 latency, ms.")] = None,
    min_throughput: Annotated[float | None, typer.Option(help="Smallest throughput at the target batch size, img/s.")] = None,
    min_top1: Annotated[float | None, typer.Option(help="Smallest ImageNet top-1, %.")] = None,
    max_params_m: Annotated[float | None, typer.Option(help="Most parameters, millions.")] = None,
    device: Annotated[str | None, typer.Option(help="Device the figures must come from: cpu, cuda, cuda:N (default: the preset's).")] = None,
    models: Annotated[list[str] | None, typer.Option("--models", help="Candidates instead of the preset's families (repeatable).")] = None,
    results: Annotated[list[Path] | None, typer.Option("--results", help="Results exported from another machine (vischoose results export); repeatable.")] = None,
    measure: Annotated[bool, typer.Option("--measure", help="First measure here what can change the answer: candidates "
                                          "that fit without timing, in ranking order, until none unmeasured can win.")] = False,
    measure_all: Annotated[bool, typer.Option("--measure-all", help="Measure every candidate at every variant the "
                                              "target deploys (exhaustive, slow).")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="With --measure: measure again what this machine already "
                                        "measured under the target's protocol.")] = False,
    time_budget: Annotated[float | None, typer.Option(min=0.1, help="With --measure: seconds of timed runs per model (default 20).")] = None,
    data: Annotated[Path | None, typer.Option(help="Your labelled images (class folders or a path,label CSV, as for "
                                              "evaluate): rank on the top-1 each fitting model's deployed file reaches "
                                              "on them, with 95 % intervals.")] = None,
    labels: Annotated[Path | None, typer.Option(help="With --data: a file mapping folder names or CSV labels to "
                                                "classes, as for evaluate.")] = None,
    max_accuracy_drop: Annotated[float | None, typer.Option(help="With --data: int8 candidates ship accuracy-aware "
                                                            "int8 that loses at most this many top-1 points against "
                                                            "fp32 on your images (layers int8 hurts most kept in "
                                                            "float), measured on a held-out half; else rejected.")] = None,
    top: Annotated[int, typer.Option(min=1, help="How many models to show before the rejections.")] = 5,
    no_wait: NoWaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Recommend a model for a deployment target, with a reason for every rejection."""
    with reported_errors():
        from vischoose.recommendation import pipeline as advisor

        rec = advisor.advise(target, models=models, results=results, measure="all" if measure_all else measure,
                             device=device, show_progress=True, time_budget_s=time_budget, fresh=fresh,
                             data=data, labels=labels, max_accuracy_drop=max_accuracy_drop, wait=not no_wait,
                             max_memory_mb=budget_mb, memory_basis=memory_basis, max_latency_ms=max_latency_ms,
                             min_throughput=min_throughput, min_top1=min_top1, max_params_m=max_params_m)
    report.show_recommendation(rec, top=top, as_json=as_json)


# ---- predict and evaluate ----------------------------------------------------------------------------

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Catalog alias, timm name (arch.tag), hf-hub:org/name, "
                                       "or local-dir:PATH (config.json + model.safetensors).")]
CheckpointOpt = Annotated[str | None, typer.Option(help="Your weights file for --model's architecture "
                                                   "(safetensors, or a torch file that loads with weights_only).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or mps.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16.")]


@app.command("predict")
def predict_cmd(
    images: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    model: ModelOpt,
    checkpoint: CheckpointOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Classes to show per image.")] = 5,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 16,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    as_json: JsonOpt = False,
) -> None:
    """Classify images with a model's pretrained weights, preprocessed as the model was evaluated."""
    with reported_errors():
        from vischoose.inference.prediction import predict

        result = predict(images, model, top_k=top_k, device=device, dtype=dtype, batch_size=batch_size,
                         checkpoint=checkpoint)
    report.show_predictions(result, as_json)
    if result.failed:
        raise typer.Exit(errors.EXIT_USAGE)


@app.command("evaluate")
def evaluate_cmd(
    data: Annotated[str, typer.Argument(help="Folder of class sub-folders (ImageNet synset names such as "
                                        "n01440764), or a CSV file of path,label rows.")],
    model: ModelOpt,
    checkpoint: CheckpointOpt = None,
    labels: Annotated[str | None, typer.Option(help="File mapping folder names or CSV labels to a class index "
                                               "or name: 'name,class' lines or a JSON object.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N images (spread over the classes).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 32,
    workers: Annotated[int, typer.Option(min=0, help="Processes decoding images (0: in the main process).")] = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    runtime: RuntimeOpt = None,
    precision: PrecisionOpt = None,
    calibration: Annotated[Path | None, typer.Option(help="Folder of images calibrating int8 (default: up to 64 of "
                                                     "the evaluation images, noted in the result).")] = None,
    graph: Annotated[Path | None, typer.Option(help="An exported file (.onnx, .pte, .xml) to evaluate exactly as "
                                               "written, with --model's preprocessing; its runtime from the name's "
                                               "ending, its precision from the file.")] = None,
    no_save: Annotated[bool, typer.Option("--no-save", help="Do not add the result to the results store.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure top-1 / top-5 accuracy on labelled images; under torchrun, shards them over processes."""
    with reported_errors():
        from vischoose.inference import evaluation

        bar = report.ProgressBar("evaluating")
        try:
            outcome = evaluation.evaluate(data, model, labels=labels, limit=limit, batch_size=batch_size,
                                          workers=workers, device=device, dtype=dtype, checkpoint=checkpoint,
                                          progress=bar, runtime=runtime, precision=precision,
                                          calibration=calibration, graph=graph)
        finally:
            bar.close()
        if not outcome.is_main:
            return
        report.show_evaluation(outcome, as_json)
        if not no_save:
            report.show_saved(evaluation.save(outcome.result))
    if outcome.failed:
        raise typer.Exit(errors.EXIT_USAGE)


# ---- saved results ------------------------------------------------------------------------------------

results_app = typer.Typer(help="Saved results: list, show, export, import, remove, clear, plot, report.",
                          no_args_is_help=True, rich_markup_mode=None)
app.add_typer(results_app, name="results")
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


PlotX = Annotated[Literal["throughput", "latency"], typer.Option("--x", help="x axis: throughput (img/s) or batch-1 latency (ms).")]


@results_app.command("plot")
def results_plot(out: Annotated[Path, typer.Option("--out", help="Image file: .png or .svg.")],
                 x: PlotX = "throughput",
                 measured_top1: Annotated[bool, typer.Option("--measured-top1", help="Use top-1 from vischoose evaluate where stored (marked *).")] = False,
                 model: ModelFilter = None, device: DeviceFilter = None, machine: MachineFilter = None) -> None:
    """Plot top-1 against throughput or latency (log scale), marker area = memory, with the Pareto front."""
    with reported_errors():
        from vischoose.report import plots

        found = _stored_results(model, device, machine)
        top1 = {r.record.model: r.record.top1 for r in found if r.kind == "eval"} if measured_top1 else None
        plots.plot_pareto([r.record for r in found if r.kind == "profile"], out, x=x, top1=top1)
    typer.echo(f"Wrote {out}.", err=True)


@results_app.command("report")
def results_report(out: Annotated[Path, typer.Option("--out", help="Markdown file to write.")],
                   plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Also draw OUT-pareto.png and embed it.")] = True,
                   model: ModelFilter = None, device: DeviceFilter = None, machine: MachineFilter = None) -> None:
    """Write a Markdown report: machine, conditions, results, plot, and measured against published figures."""
    with reported_errors():
        plot_file = report_results.write_report(_stored_results(model, device, machine), out, plot)
    typer.echo(f"Wrote {out}" + (f" and {plot_file}." if plot_file else "."), err=True)


@app.command("profile")
def profile_cmd(
    models: Annotated[list[str] | None, typer.Argument(help="Models to measure (default: the article's resnet50, "
                                                       "vit_b16, r50_vit_b16).", show_default=False)] = None,
    device: Annotated[str | None, typer.Option(help="auto (a GPU if there is one, else cpu), cpu, cuda or cuda:N.")] = None,
    batch_size: Annotated[list[str] | None, typer.Option("--batch-size", "-b", help="Throughput batch size; repeat "
                                                         "or comma-separate for a sweep (default 8 on CPU, 64 on GPU).")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 (default), bfloat16 or float16.")] = None,
    runtime: RuntimeOpt = None,
    precision: PrecisionOpt = None,
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
    no_wait: NoWaitOpt = False,
) -> None:
    """Measure params, FLOPs, latency, throughput and peak memory on this machine, one child process per model."""
    with reported_errors(), report_profile.ProfileProgress() as progress:
        from vischoose.measure import options as protocol
        from vischoose.measure import runner

        output = report_profile.output_format(as_json, as_csv, as_markdown)
        options = protocol.resolve_options(
            target, device=device, batch_sizes=batch_size, dtype=dtype, channels_last=channels_last,
            compile=compile_, threads=threads, input_size=input_size, weights=weights, time_budget_s=time_budget,
            runtime=runtime, precision=precision, calibration=str(calibration) if calibration else None,
            min_agreement=min_agreement, optimize=optimize, wait=not no_wait)
        if optimize:
            _profile_optimized(models, options, time_budget, progress, not no_save, as_json)
            return
        runs = runner.profile_models(models, options, progress=progress, save=not no_save, debug=debug_enabled())
    report_profile.show_profiles(runs, output)
    with reported_errors():
        runner.failed(runs)


# ---- deployment runtimes ------------------------------------------------------------------------------

@app.command("export")
def export_cmd(
    model: Annotated[str, typer.Argument(help="Catalog alias, timm name (arch.tag), hf-hub:org/name or a model folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The file to write (replaced if it exists).")],
    format_: Annotated[FormatName, typer.Option("--format", help="File format: " + ", ".join(
        f"{f} ({registry.title(r)})" for f, r in FORMATS.items()))] = FormatName("onnx"),
    precision: Annotated[GraphPrecision, typer.Option(help="fp32, or int8 with the runtime's recipe for the model's "
                                                      "family (ONNX: static for CNNs, dynamic for transformers); "
                                                      "bf16 where the runtime has it.")] = GraphPrecision("fp32"),
    calibration: Annotated[Path | None, typer.Option(help="Folder of your images (a few dozen): calibrates int8 and "
                                                     "checks agreement. Without it, random data: int8 is unverified.")] = None,
    weights: Annotated[Literal["auto", "pretrained", "random"], typer.Option(help="pretrained, auto (cached "
                                                                            "pretrained, else random) or random (speed tests only).")] = "pretrained",
    input_size: Annotated[int | None, typer.Option(min=16, help="Square input side, px (default: the model's pretrained config).")] = None,
    opset: Annotated[int | None, typer.Option(min=1, help="ONNX opset (default: the exporter's).")] = None,
    min_agreement: Annotated[float, typer.Option(min=0.0, max=1.0, help="Reject an int8 graph whose top-1 agreement "
                                                 "with eager fp32 on your images is below this fraction.")] = 0.99,
    measure: Annotated[bool, typer.Option("--measure", help="Also time each graph at batch 1 (ONNX Runtime, 5 s each) "
                                          "and eager fp32.")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for --measure (default: one per core).")] = None,
    data: Annotated[Path | None, typer.Option(help="Labelled images (class sub-folders or a CSV) for "
                                              "--max-accuracy-drop: half choose the float layers, half measure.")] = None,
    max_accuracy_drop: Annotated[float | None, typer.Option(help="int8: the most top-1 points to lose against fp32 on "
                                                            "--data; the layers int8 hurts most go back to float "
                                                            "until it holds, else nothing is written.")] = None,
    labels: Annotated[Path | None, typer.Option(help="With --data: a file mapping folder names or CSV labels to "
                                                "classes, as for evaluate.")] = None,
    no_wait: NoWaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a model for deployment (ONNX, ExecuTorch or OpenVINO; fp32 or int8), checked against the eager model
    before writing."""
    with reported_errors():
        from vischoose.runtimes import export as exporting

        result = exporting.export_model(model, out, precision=precision.value, calibration=calibration, weights=weights,
                                        input_size=input_size, opset=opset, min_agreement=min_agreement,
                                        measure_s=5.0 if measure else 0.0, threads=threads, format=format_.value,
                                        data=data, max_accuracy_drop=max_accuracy_drop, labels=labels,
                                        wait=not no_wait, on_wait=report_profile.show_waiting)
    report_profile.show_export(result, as_json)
    with reported_errors():
        exporting.require_written(result)


def _profile_optimized(models: list[str] | None, options, budget_s: float | None, progress,
                       save: bool, as_json: bool) -> None:
    """vischoose profile --optimize: search, show, fail (exit 1) where no setting could be measured."""
    from vischoose.measure import optimize
    from vischoose.measure.runner import article_models

    found = optimize.optimize_models(models or article_models(), options, budget_s or optimize.DEFAULT_BUDGET_S,
                                     progress=progress, save=save)
    progress.close()
    report_profile.show_optimized(found, as_json)
    optimize.failed(found)


def main() -> None:
    """Console entry point: the one command asked for, when argv names one (see `only`), else the whole app."""
    import sys

    (only(sys.argv[1:2]) or app)()


def only(args: list[str]) -> typer.Typer | None:
    """An app holding just the command (or command group) `args[0]` names, None when it names none.

    Typer turns every registered command into a click command on each call, about 40 ms of start-up for sixteen
    commands; one is what `vischoose recommend ...` runs. The empty callback keeps it a group, as the full app is,
    so usage lines, help and errors read the same ("Usage: vischoose recommend [OPTIONS]").
    """
    name = args[0] if args else None
    commands = [c for c in app.registered_commands if c.name == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return None
    one = typer.Typer(name=app.info.name, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    one.registered_commands, one.registered_groups = commands, groups
    one.callback()(lambda: None)
    return one


if __name__ == "__main__":  # pragma: no cover
    main()
