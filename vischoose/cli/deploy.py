"""vischoose export: the file a user ships, checked against the eager model before it is written."""

from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

import typer

from vischoose.cli.common import Commands, JsonOpt, NoWaitOpt, reported_errors
from vischoose.report import profile as report_profile
from vischoose.runtimes import registry

commands = Commands()
FormatName = Enum("FormatName", {f: f for f in registry.formats()}, type=str)  # type: ignore[misc]
MAX_BATCH_HELP = ("The most images one call of the file takes, where its runtime plans memory for it ("
                  + ", ".join(f for f, r in registry.formats().items() if r.batch_bound == "planned")
                  + "; default 1, as a phone app classifies; a larger bound costs memory). "
                  + "; ".join(f"{f} files take " + ("any batch" if r.batch_bound == "any" else "batch 1")
                              for f, r in registry.formats().items() if r.batch_bound != "planned") + ".")
GraphPrecision = Enum("GraphPrecision", {p: p for p in dict.fromkeys(  # type: ignore[misc]
    p for r in registry.graph_runtimes() for p in r.precisions)}, type=str)


@commands.command("export")
def export_cmd(
    model: Annotated[str, typer.Argument(help="Catalog alias, timm name (arch.tag), hf-hub:org/name or a model folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The file to write (replaced if it exists).")],
    format_: Annotated[FormatName, typer.Option("--format", help="File format: " + ", ".join(
        f"{f} ({r.title})" for f, r in registry.formats().items()))] = FormatName("onnx"),
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
    max_batch: Annotated[int | None, typer.Option(min=1, help=MAX_BATCH_HELP)] = None,
    no_wait: NoWaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a model for deployment (ONNX, ExecuTorch, LiteRT or OpenVINO; fp32 or int8), checked against the eager
    model before writing."""
    with reported_errors():
        from vischoose.deploy import export as exporting
        from vischoose.requests.export import ExportRequest

        request = ExportRequest(model=model, out=str(out), format=format_.value, precision=precision.value,
                                calibration=str(calibration) if calibration else None, weights=weights,
                                input_size=input_size, opset=opset, min_agreement=min_agreement, measure=measure,
                                threads=threads, data=str(data) if data else None,
                                labels=str(labels) if labels else None, max_accuracy_drop=max_accuracy_drop,
                                wait=not no_wait, max_batch=max_batch)
        with report_profile.phases(model) as phase:
            result = exporting.export_model(request, _timer(measure), phase=phase)
    report_profile.show_export(result, as_json)
    with reported_errors():
        exporting.require_written(result)


def _timer(measure: bool):
    """measure.timing's timer for export --measure: it holds the machine while timing, and says whom it waits for."""
    if not measure:
        return None
    from vischoose.measure.timing import MachineTimer

    return MachineTimer(on_wait=report_profile.show_waiting)
