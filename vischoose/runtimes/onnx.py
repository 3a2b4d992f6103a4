"""torch -> ONNX: the dynamo exporter with a dynamic batch, and helpers reading an ONNX file's input.

torch, onnx and onnxscript are imported inside functions. The graph is checked against the eager model by the
runtime that runs it (runtimes.ortbuild.export_onnx).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vischoose.errors import DeployError
from vischoose.runtimes import files
from vischoose.units import MIB

if TYPE_CHECKING:
    import torch

    from vischoose.models.loading import LoadedModel

INPUT_NAME, OUTPUT_NAME = "input", "logits"
PROTOBUF_LIMIT = 2 * 1024**3  # larger ONNX models keep their weights in an external data file


def run_exporter(loaded: "LoadedModel", input_size: int, opset: int | None) -> Any:
    import torch

    example = torch.randn(2, 3, input_size, input_size)  # batch 2: an example of 1 would be specialised
    batch = torch.export.Dim("batch", min=1, max=4096)
    chatter = io.StringIO()  # the exporter prints progress on stdout, which is the report's
    try:
        with contextlib.redirect_stdout(chatter):
            return torch.onnx.export(loaded.model, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                                     input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                                     optimize=True)
    except torch.onnx.OnnxExporterError as err:
        cause = err.__cause__  # the exporter's own message is a generic how-to; the cause says what broke
        reason = f"{type(cause).__name__}: {files.first_line(cause)}" if cause else files.first_line(err)
        raise DeployError(f"Exporting {loaded.tag} to ONNX failed: {reason}",
                          hint="VISCHOOSE_DEBUG=1 shows the exporter's traceback.") from err


def save_program(program: Any, path: Path, weight_bytes: int) -> None:
    # over 2 GiB a protobuf cannot hold the weights: they go to PATH.data beside it
    program.save(str(path), external_data=weight_bytes >= PROTOBUF_LIMIT)


def weight_bytes(model: "torch.nn.Module") -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def opset_of(program: Any) -> int:
    return int(program.model.opset_imports.get("", 0))


def input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def input_side(path: Path) -> int:
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return int(dims[-1].dim_value)


def is_big(path: Path) -> bool:
    return files.file_mb(path) * MIB >= PROTOBUF_LIMIT or Path(str(path) + ".data").exists()


