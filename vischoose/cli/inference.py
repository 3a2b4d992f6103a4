"""vischoose predict and evaluate: classes for images, accuracy on labelled images (eager or as deployed)."""

from pathlib import Path
from typing import Annotated

import typer

from vischoose.cli.common import (
    Commands,
    JsonOpt,
    OnOpt,
    precision_opt,
    reported_errors,
    runtime_opt,
)
from vischoose.errors import EXIT_USAGE
from vischoose.report import profile as report_profile
from vischoose.report import tables as report

commands = Commands()

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Catalog alias, timm name (arch.tag), hf-hub:org/name, "
                                       "or local-dir:PATH (config.json + model.safetensors).")]
CheckpointOpt = Annotated[str | None, typer.Option(help="Your weights file for --model's architecture "
                                                   "(safetensors, or a torch file that loads with weights_only).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or mps.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16.")]


@commands.command("predict")
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
        raise typer.Exit(EXIT_USAGE)


@commands.command("evaluate")
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
    runtime: Annotated[str | None, runtime_opt()] = None,
    precision: Annotated[str | None, precision_opt()] = None,
    calibration: Annotated[Path | None, typer.Option(help="Folder of images calibrating int8 (default: up to 64 of "
                                                     "the evaluation images, noted in the result).")] = None,
    graph: Annotated[Path | None, typer.Option(help="An exported file (.onnx, .pte, .tflite, .xml) to evaluate "
                                               "exactly as written, with --model's preprocessing; its runtime from "
                                               "the name's ending, its precision from the file.")] = None,
    no_save: Annotated[bool, typer.Option("--no-save", help="Do not add the result to the results store.")] = False,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Shard the images over a Ray cluster's nodes "
                                                "(the same images at the same path on each): HOST:PORT, "
                                                "ray://HOST:10001 or auto; needs vischoose[fleet].")] = None,
    on: OnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure top-1 / top-5 accuracy on labelled images; under torchrun or on a Ray cluster, shards them."""
    with reported_errors():
        from vischoose.requests.evaluate import EvaluateRequest

        request = EvaluateRequest(data=data, model=model, labels=labels, limit=limit, batch_size=batch_size,
                                  workers=workers, device=device, dtype=dtype, checkpoint=checkpoint,
                                  runtime=runtime or "torch", precision=precision,
                                  calibration=str(calibration) if calibration else None,
                                  graph=str(graph) if graph else None, cluster=cluster, on=tuple(on or ()))
        outcome = _evaluate_cluster(request) if request.cluster else _evaluate_here(request, model)
        if outcome.is_main:
            _report(outcome, as_json, no_save)


def _evaluate_here(request, model: str):
    """evaluate in this process (sharded under torchrun), with each step of a graph's evaluation and a progress bar."""
    from vischoose.deploy.evaluate import evaluate

    with report_profile.phases(model) as phase, report.progress_bar("evaluating") as bar:
        return evaluate(request, progress=bar, phase=phase)


def _evaluate_cluster(request):
    """evaluate --cluster: the images sharded over the cluster's nodes, merged into one result."""
    from vischoose.fleet import cluster, evaluating

    with cluster.connect(request.cluster) as session:
        return evaluating.evaluate_fleet(session, request)


def _report(outcome, as_json: bool, no_save: bool) -> None:
    """The evaluation's table or JSON, stored unless asked not to; exit 2 when images could not be read."""
    report.show_evaluation(outcome, as_json)
    if not no_save:
        from vischoose.results.store import keep_eval

        report.show_saved(keep_eval(outcome.result))
    if outcome.failed:
        raise typer.Exit(EXIT_USAGE)
