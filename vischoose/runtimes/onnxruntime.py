"""Deployment runtimes: ONNX export with a dynamic batch, int8 per model family, ONNX Runtime sessions,
and agreement of each graph with the eager fp32 model.

onnx, onnxruntime, onnxscript, torch and timm are imported inside functions, so `vischoose --help` never
loads them. Files are written to a temporary sibling first and renamed into place only once checked.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from vischoose.runtimes import files as artifacts
from vischoose.measure import stats
from vischoose.models.catalog import MIB
from vischoose.runtimes.verdict import (CHECK_BATCH, MIN_AGREEMENT, SEED, Agreement, agreement, eager_logits,
                                        fp32_matches, random_batch)
from vischoose.errors import DeployError, UsageError

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime
    import torch

    from vischoose.models.loading import LoadedModel

INPUT_NAME, OUTPUT_NAME = "input", "logits"
PROTOBUF_LIMIT = 2 * 1024**3  # larger ONNX models keep their weights in an external data file


@dataclass(frozen=True)
class Recipe:
    """How one model family is quantized to int8 with ONNX Runtime."""

    name: str
    static: bool  # static (calibrated QDQ) or dynamic (activations quantized at run time)
    description: str
    note: str | None = None  # what to watch for with this family


RECIPES = {
    "convolutional": Recipe("static-qdq-u8s8", True, "static QDQ, per-channel int8 weights, uint8 activations"),
    "depthwise": Recipe("static-qdq-u8s8", True, "static QDQ, per-channel int8 weights, uint8 activations",
                        note="depthwise convolutions often run no faster in int8 on CPU: measure before shipping"),
    "transformer": Recipe("dynamic-matmul-s8", False, "dynamic int8 MatMul/Gemm, per-channel weights"),
    "hybrid": Recipe("dynamic-matmul-s8", False, "dynamic int8 MatMul/Gemm, per-channel weights",
                     note="the convolutional stem stays fp32; only the transformer part is int8"),
    "mlp": Recipe("dynamic-matmul-s8", False, "dynamic int8 MatMul/Gemm, per-channel weights"),
}
FAMILIES = tuple(RECIPES)


@dataclass(frozen=True)
class ExportResult:
    """An fp32 ONNX graph written to disk and checked against the eager model."""

    path: Path
    opset: int
    input_size: int
    file_mb: float  # MiB on disk, external data included
    export_s: float
    agreement: Agreement


@dataclass(frozen=True)
class QuantResult:
    """An int8 ONNX graph written to disk."""

    path: Path
    family: str
    recipe: Recipe
    file_mb: float  # MiB on disk, external data included
    quantize_s: float
    calibration: str  # "images", "random" (static recipes without images) or "none" (dynamic recipes)
    calibration_images: int


def model_family(model: "torch.nn.Module") -> str:
    """The family that picks the int8 recipe: convolutional, depthwise, transformer, hybrid or mlp.

    Attention blocks (a module named *Attention* holding Linear or Conv2d layers) make a transformer; one
    with more convolutions than a patch embedding, holding at least 5% of the non-head weights, is a
    hybrid (a CNN stem feeding attention). Without attention: depthwise convolutions make a mobile-style
    depthwise net, else Linear weights outnumbering convolution weights an MLP (Mixer), else convolutional.
    """
    from torch import nn

    head = _classifier(model)
    attention = any(isinstance(m, nn.MultiheadAttention) or ("Attention" in type(m).__name__ and any(
        isinstance(c, (nn.Linear, nn.Conv2d)) for c in m.modules())) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m is not head]
    conv_params = sum(m.weight.numel() for m in convs)
    linear_params = sum(m.weight.numel() for m in linears)
    if attention:
        share = conv_params / max(1, conv_params + linear_params)
        return "hybrid" if len(convs) > 1 and share >= 0.05 else "transformer"
    if any(c.groups > 1 and c.groups == c.in_channels for c in convs):
        return "depthwise"
    return "mlp" if linear_params > conv_params else "convolutional"


def _classifier(model: "torch.nn.Module") -> Any:
    get = getattr(model, "get_classifier", None)
    return get() if callable(get) else None


def recipe_for(family: str) -> Recipe:
    """The int8 recipe of a family.

    Raises:
        UsageError: an unknown family.
    """
    if family not in RECIPES:
        raise UsageError(f"Unknown model family '{family}' (expected one of: {', '.join(FAMILIES)}).")
    return RECIPES[family]


def export_onnx(loaded: "LoadedModel", path: str | Path, input_size: int, opset: int | None = None,
                check_batch: "np.ndarray | None" = None, reference: "np.ndarray | None" = None,
                metadata: dict[str, str] | None = None) -> ExportResult:
    """Export a model to ONNX (torch.onnx.export, dynamo exporter) with a dynamic batch, checked against eager.

    The graph is compared with the eager model on check_batch (default: a fixed random batch; `reference`
    may hold the eager logits for it already) and only renamed into `path` when it matches.

    Raises:
        DeployError: the exporter failed, or the graph disagrees with the eager model.
        UsageError: `path` cannot be written.
    """
    path = Path(path)
    artifacts.check_writable(path)
    batch = random_batch(input_size) if check_batch is None else check_batch
    start = time.perf_counter()
    with artifacts.staging(path) as staged:
        program = _run_exporter(loaded, input_size, opset)
        program.model.metadata_props.update(metadata or {})
        _save_program(program, staged, _weight_bytes(loaded.model))
        export_s = time.perf_counter() - start
        reference = eager_logits(loaded.model, batch) if reference is None else reference
        found = agreement(reference, run_session(ort_session(staged), batch))
        if not fp32_matches(found, reference):
            raise DeployError(f"The ONNX graph of {loaded.tag} disagrees with the eager model on {found.n_images} "
                              f"inputs (max |logit diff| {found.max_abs_diff:.3g}, cosine {found.cosine:.6f}, "
                              f"top-1 agreement {found.top1_agreement:.0%}); nothing was written.",
                              hint="Try another --opset, or report the model to the torch.onnx exporter.")
        artifacts.publish(staged, path)
    return ExportResult(path=path, opset=_opset(program), input_size=input_size,
                        file_mb=artifacts.file_mb(path), export_s=export_s, agreement=found)


def _run_exporter(loaded: "LoadedModel", input_size: int, opset: int | None) -> Any:
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
        reason = f"{type(cause).__name__}: {artifacts.first_line(cause)}" if cause else artifacts.first_line(err)
        raise DeployError(f"Exporting {loaded.tag} to ONNX failed: {reason}",
                          hint="VISCHOOSE_DEBUG=1 shows the exporter's traceback.") from err


def _save_program(program: Any, path: Path, weight_bytes: int) -> None:
    # over 2 GiB a protobuf cannot hold the weights: they go to PATH.data beside it
    program.save(str(path), external_data=weight_bytes >= PROTOBUF_LIMIT)


def _weight_bytes(model: "torch.nn.Module") -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _opset(program: Any) -> int:
    return int(program.model.opset_imports.get("", 0))


def quantize_int8(onnx_path: str | Path, out_path: str | Path, family: str,
                  calibration: "Iterable[np.ndarray] | None" = None) -> QuantResult:
    """Quantize an fp32 ONNX graph to int8 with the family's recipe.

    Static recipes calibrate on `calibration` (batches of preprocessed NCHW float32 images); without it
    they calibrate on random data, and the result is marked as such. Dynamic recipes need no calibration.

    Raises:
        DeployError: ONNX Runtime's quantizer failed.
        UsageError: an unknown family, or `out_path` cannot be written.
    """
    recipe = recipe_for(family)
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise UsageError(f"{onnx_path} does not exist.", hint="Export the fp32 graph first (vischoose export).")
    artifacts.check_writable(out_path)
    batches = [] if calibration is None else [b[i:i + CHECK_BATCH] for b in calibration
                                              for i in range(0, len(b), CHECK_BATCH)]
    source = ("images" if batches else "random") if recipe.static else "none"
    start = time.perf_counter()
    with artifacts.staging(out_path) as staged, _quiet_quantizer():
        try:
            if recipe.static:
                _quantize_static(onnx_path, staged, batches)
            else:
                _quantize_dynamic(onnx_path, staged)
        except (ValueError, RuntimeError) + artifacts.onnx_errors() as err:
            raise DeployError(f"Quantizing {onnx_path.name} to int8 ({recipe.name}) failed: "
                              f"{artifacts.first_line(err)}", hint="Ship the fp32 graph, or set VISCHOOSE_DEBUG=1 "
                              "for the quantizer's traceback.") from err
        seconds = time.perf_counter() - start
        artifacts.publish(staged, out_path)
    n_images = sum(len(b) for b in batches) if source == "images" else 0
    return QuantResult(path=out_path, family=family, recipe=recipe, file_mb=artifacts.file_mb(out_path),
                       quantize_s=seconds, calibration=source, calibration_images=n_images)


def _quantize_static(source: Path, out: Path, batches: list["np.ndarray"]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = _input_name(source)
    if not batches:  # no images: calibrate on random data (the caller marks the result as such)
        batches = [random_batch(_input_side(source), seed=SEED + 1 + i) for i in range(2)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([{name: b} for b in batches])

        def get_next(self) -> dict[str, Any] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory(prefix="vischoose-quant-") as tmp:
        # fold BatchNorm into the convolutions first, so the quantizer sees the graph ORT will run
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), save_as_external_data=_is_big(source))
        # uint8 activations: with the default int8 ones ORT left many convolutions unfused in fp32
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        use_external_data_format=_is_big(source))


def _quantize_dynamic(source: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # MatMul/Gemm only: quantizing every op statically broke ViT outputs; per-channel weights keep the
    # logits' cosine with fp32 near 0.999 at the same speed as per-tensor
    quantize_dynamic(str(source), str(out), op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                     weight_type=QuantType.QInt8, use_external_data_format=_is_big(source))


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Silence the quantizer's advice logged on the root logger (it would interleave with the report)."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def _input_side(path: Path) -> int:
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return int(dims[-1].dim_value)


def _is_big(path: Path) -> bool:
    return artifacts.file_mb(path) * MIB >= PROTOBUF_LIMIT or Path(str(path) + ".data").exists()


def ort_session(path: str | Path, threads: int | None = None, spinning: bool = True) -> "onnxruntime.InferenceSession":
    """An ONNX Runtime CPU session with all graph optimisations and `threads` intra-op threads (None: ORT's).

    spinning=False stops idle threads busy-waiting after each run (for sessions interleaved with other work).

    Raises:
        DeployError: ONNX Runtime cannot load the file.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: ORT warns about every unused initializer
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except artifacts.onnx_errors() as err:
        raise DeployError(f"ONNX Runtime {ort.__version__} cannot load {path}: {artifacts.first_line(err)}") from err


def run_session(session: "onnxruntime.InferenceSession", batch: "np.ndarray") -> "np.ndarray":
    """The session's first output for a batch (float32 NCHW).

    Raises:
        DeployError: ONNX Runtime failed while running the graph.
    """
    name = session.get_inputs()[0].name
    try:
        return session.run(None, {name: batch})[0]
    except artifacts.onnx_errors() as err:
        raise DeployError(f"ONNX Runtime failed running the graph on a batch of {len(batch)}: "
                          f"{artifacts.first_line(err)}") from err


def time_session(session: "onnxruntime.InferenceSession", batch: "np.ndarray",
                 budget_s: float = 10.0) -> stats.Summary:
    """Seconds per run of a session on a batch: warm-up, then the profile engine's stop rules (vischoose.measure)."""
    from vischoose.measure.child import timed_phase

    name = session.get_inputs()[0].name
    samples, _ = timed_phase(lambda: session.run(None, {name: batch}), cpu_timer, budget_s, lambda n, w: None)
    return stats.summarize(samples)


def time_eager(model: "torch.nn.Module", batch: "np.ndarray", budget_s: float = 10.0, threads: int | None = None,
               bf16: bool = False) -> stats.Summary:
    """Seconds per eager forward pass on the CPU (bf16: under autocast), timed like time_session."""
    import torch

    from vischoose.measure.child import timed_phase

    if threads:
        torch.set_num_threads(threads)
    x = torch.from_numpy(batch)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)

    samples, _ = timed_phase(forward, cpu_timer, budget_s, lambda n, w: None)
    return stats.summarize(samples)


def cpu_timer(fn: Any) -> float:
    """Seconds one call of fn takes on the wall clock."""
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin
