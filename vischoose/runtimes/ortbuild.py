"""ONNX Runtime's build pipeline: the dynamo-exported ONNX graph with a dynamic batch, checked against the eager
model; int8 with the recipe of the model's family (static QDQ for convolutional nets, dynamic MatMul/Gemm for
transformers and hybrids); and the CPU sessions that run them. `runtimes.onnxruntime` (the Runtime the registry
lists) imports this module only when it builds or runs a file, so `recommend` never does.

onnx, onnxruntime, onnxscript, torch and timm are imported inside functions, so importing this module loads none
of them. Files are written to a temporary sibling first and renamed into place only once checked.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from vischoose import machine
from vischoose.errors import DeployError, UsageError, opt
from vischoose.models.family import FAMILIES
from vischoose.runtimes import files, onnx
from vischoose.runtimes.agreement import (
    CHECK_BATCH,
    SEED,
    Agreement,
    compare,
    eager_logits,
    fp32_matches,
    random_batch,
)

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime

    from vischoose.models.loading import LoadedModel


@dataclass(frozen=True)
class Recipe:
    """How one model family is quantized to int8 with ONNX Runtime."""

    name: str
    static: bool  # static (calibrated QDQ) or dynamic (activations quantized at run time)
    description: str
    note: str | None = None  # what to watch for with this family
    speed_caveat: bool = False  # the note doubts int8's speed: shown only where no measurement says otherwise
    reduce_range: bool = False  # 7-bit weights, for x86 CPUs without VNNI (machine.int8_saturates)


RECIPES = {
    "convolutional": Recipe("static-qdq-u8s8", True, "static QDQ, per-channel int8 weights, uint8 activations"),
    "depthwise": Recipe("static-qdq-u8s8", True, "static QDQ, per-channel int8 weights, uint8 activations",
                        note="depthwise convolutions often run no faster in int8 on CPU: measure before shipping",
                        speed_caveat=True),
    "transformer": Recipe("dynamic-matmul-s8", False, "dynamic int8 MatMul/Gemm, per-channel weights"),
    "hybrid": Recipe("dynamic-matmul-s8", False, "dynamic int8 MatMul/Gemm, per-channel weights",
                     note="the convolutional stem stays fp32; only the transformer part is int8"),
    "mlp": Recipe("dynamic-matmul-s8", False, "dynamic int8 MatMul/Gemm, per-channel weights"),
}
# On x86 without VNNI the static recipe keeps weights to 7 bits, as ONNX Runtime advises: with 8-bit weights
# EfficientNet-Lite0's int8 logits kept cosine 0.82 with fp32 on 9 real photos (2-core AMD EPYC, AVX2 only), with
# 7-bit weights 0.975 (0.994 with 8-bit weights on AVX-512 VNNI CPUs)
REDUCED_RANGE = {"static-qdq-u8s8": ("static-qdq-u8s7", "static QDQ, per-channel 7-bit weights (this CPU has no "
                                     "VNNI: 8-bit ones saturate its int8 kernels), uint8 activations")}


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


def recipe_for(family: str) -> Recipe:
    """The int8 recipe of a family.

    Raises:
        UsageError: an unknown family.
    """
    if family not in RECIPES:
        raise UsageError(f"Unknown model family '{family}' (expected one of: {', '.join(FAMILIES)}).")
    recipe = RECIPES[family]
    if recipe.name in REDUCED_RANGE and machine.int8_saturates():
        name, description = REDUCED_RANGE[recipe.name]
        return replace(recipe, name=name, description=description, reduce_range=True)
    return recipe


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
    files.check_writable(path)
    batch = random_batch(input_size) if check_batch is None else check_batch
    start = time.perf_counter()
    with files.staging(path) as staged:
        program = onnx.run_exporter(loaded, input_size, opset)
        program.model.metadata_props.update(metadata or {})
        onnx.save_program(program, staged, onnx.weight_bytes(loaded.model))
        export_s = time.perf_counter() - start
        reference = eager_logits(loaded.model, batch) if reference is None else reference
        found = compare(reference, run_session(ort_session(staged), batch))
        if not fp32_matches(found, reference):
            raise DeployError(f"The ONNX graph of {loaded.tag} disagrees with the eager model on {found.n_images} "
                              f"inputs (max |logit diff| {found.max_abs_diff:.3g}, cosine {found.cosine:.6f}, "
                              f"top-1 agreement {found.top1_agreement:.0%}); nothing was written.",
                              hint=f"Try another {opt('opset')}, or report the model to the torch.onnx exporter.")
        files.publish(staged, path)
    return ExportResult(path=path, opset=onnx.opset_of(program), input_size=input_size,
                        file_mb=files.file_mb(path), export_s=export_s, agreement=found)


def quantize_int8(onnx_path: str | Path, out_path: str | Path, family: str,
                  calibration: "Iterable[np.ndarray] | None" = None, exclude: Sequence[str] = ()) -> QuantResult:
    """Quantize an fp32 ONNX graph to int8 with the family's recipe, leaving the nodes named in `exclude` in float.

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
    files.check_writable(out_path)
    batches = [] if calibration is None else [b[i:i + CHECK_BATCH] for b in calibration
                                              for i in range(0, len(b), CHECK_BATCH)]
    source = ("images" if batches else "random") if recipe.static else "none"
    start = time.perf_counter()
    with files.staging(out_path) as staged, _quiet_quantizer():
        try:
            if recipe.static:
                _quantize_static(onnx_path, staged, batches, list(exclude), recipe.reduce_range)
            else:
                _quantize_dynamic(onnx_path, staged, list(exclude))
        except (ValueError, RuntimeError) + files.onnx_errors() as err:
            raise DeployError(f"Quantizing {onnx_path.name} to int8 ({recipe.name}) failed: "
                              f"{files.first_line(err)}", hint="Ship the fp32 graph, or set VISCHOOSE_DEBUG=1 "
                              "for the quantizer's traceback.") from err
        seconds = time.perf_counter() - start
        files.publish(staged, out_path)
    n_images = sum(len(b) for b in batches) if source == "images" else 0
    return QuantResult(path=out_path, family=family, recipe=recipe, file_mb=files.file_mb(out_path),
                       quantize_s=seconds, calibration=source, calibration_images=n_images)


def _quantize_static(source: Path, out: Path, batches: list["np.ndarray"], exclude: list[str],
                     reduce_range: bool) -> None:
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.input_name(source)
    if not batches:  # no images: calibrate on random data (the caller marks the result as such)
        batches = [random_batch(onnx.input_side(source), seed=SEED + 1 + i) for i in range(2)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([{name: b} for b in batches])

        def get_next(self) -> dict[str, Any] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory(prefix="vischoose-quant-") as tmp:
        # fold BatchNorm into the convolutions first, so the quantizer sees the graph ORT will run
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), save_as_external_data=onnx.is_big(source))
        # uint8 activations: with the default int8 ones ORT left many convolutions unfused in fp32
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                        reduce_range=reduce_range, use_external_data_format=onnx.is_big(source))


def _quantize_dynamic(source: Path, out: Path, exclude: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # MatMul/Gemm only: quantizing every op statically broke ViT outputs; per-channel weights keep the
    # logits' cosine with fp32 near 0.999 at the same speed as per-tensor
    quantize_dynamic(str(source), str(out), op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                     weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                     use_external_data_format=onnx.is_big(source))


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Silence the quantizer's advice logged on the root logger (it would interleave with the report)."""
    import logging

    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def ort_session(path: str | Path, threads: int | None = None, spinning: bool = True,
                profile_prefix: str | None = None) -> "onnxruntime.InferenceSession":
    """An ONNX Runtime CPU session with all graph optimisations and `threads` intra-op threads (None: ORT's).

    spinning=False stops idle threads busy-waiting after each run (for sessions interleaved with other work);
    profile_prefix: ONNX Runtime's session profiling on, its JSON written there by end_profiling().

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
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except files.onnx_errors() as err:
        raise DeployError(f"ONNX Runtime {ort.__version__} cannot load {path}: {files.first_line(err)}") from err


def run_session(session: "onnxruntime.InferenceSession", batch: "np.ndarray") -> "np.ndarray":
    """The session's first output for a batch (float32 NCHW).

    Raises:
        DeployError: ONNX Runtime failed while running the graph.
    """
    name = session.get_inputs()[0].name
    try:
        return session.run(None, {name: batch})[0]
    except files.onnx_errors() as err:
        raise DeployError(f"ONNX Runtime failed running the graph on a batch of {len(batch)}: "
                          f"{files.first_line(err)}") from err


def initializer_bytes(path: str | Path) -> int:
    """Bytes of the graph's initializers (its weights) as the file stores them, external data included: each
    tensor's element count times its element size, read without loading the data."""
    import math

    import onnx as onnx_lib
    from onnx.helper import tensor_dtype_to_np_dtype

    proto = onnx_lib.load(str(path), load_external_data=False)
    total = 0
    for tensor in proto.graph.initializer:
        total += math.prod(tensor.dims) * tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return total
