"""LiteRT (formerly TensorFlow Lite) with its XNNPACK delegate: the runtime most Android apps ship a vision model in.

build: Google's litert-torch converts the model (torch.export, then its StableHLO lowering and the LiteRT converter)
into a .tflite flatbuffer at a static batch of 1, as ExecuTorch does: litert-torch 0.10 cannot lower a batch-dynamic
timm graph (the flatten before a ResNet's head and the class-token expand of a ViT take the batch as a traced size,
which its JAX lowering refuses), so a batch of N runs the batch-1 file N times, as an app classifying images one by
one would. It exports the model as ExecuTorch does (runtimes.torchexport.exportable: attention unfused, weight
standardisation done once) and keeps timm's same-size shortcut for position embeddings (torchexport.as_sized).

int8: PT2E with litert-torch's own PT2EQuantizer (int8 weights symmetric per channel, int8 activations per tensor,
static), calibrated on the user's images one at a time, converted with its QuantConfig so the converter builds int8
kernels: without that config it keeps float kernels between quantize/dequantize pairs, an "int8" file that is
float inside (and bigger). Every int8 file is read back, and one whose conv / fully-connected / matmul operators all
take float inputs is refused, named. The file's input and output are int8 with their scale and zero point: a session
quantizes the float images and dequantizes the logits, as an app does.

session: ai-edge-litert's Interpreter with the XNNPACK delegate it applies by default, `threads` threads (one pool
per interpreter). Imports only ai_edge_litert and numpy. inspect reads precision, input shape and layout, batch and
the int8 share from the file's tensors; what XNNPACK leaves to LiteRT's own kernels is read from a delegated
interpreter's node table at build time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vischoose.errors import DeployError, UsageError, opt
from vischoose.runtimes import files as artifacts
from vischoose.runtimes.base import Forward, installed
from vischoose.runtimes.kinds import LiteRTKind

if TYPE_CHECKING:
    import numpy as np

    from vischoose.models.loading import LoadedModel
    from vischoose.runtimes.artifact import Artifact, FileFacts
    from vischoose.runtimes.layers import LayerProfile

RECIPE = "litert-pt2e-symmetric-per-channel"
RANDOM_CALIBRATION = 16  # random images calibrating int8 when the user gave none
COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV")
LAYER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")  # one per conv / linear module
INT_TYPES = ("int8", "uint8", "int16")
DELEGATE = "DELEGATE"


class LiteRT(LiteRTKind):
    """LiteRT flatbuffers (.tflite) run by the ai-edge-litert interpreter with XNNPACK."""

    batch_bound: ClassVar[str] = "one"  # litert-torch lowers no dynamic batch of a timm graph: a batch-1 file

    def version(self) -> str:
        """The installed ai-edge-litert package's version (the interpreter's)."""
        from importlib.metadata import version

        return version("ai-edge-litert")

    def versions(self) -> dict[str, str]:
        """ai-edge-litert (runs the file) and litert-torch (wrote it)."""
        from importlib.metadata import version

        return {"ai-edge-litert": self.version(), "litert-torch": version("litert-torch")}

    def build(self, loaded: "LoadedModel", precision: str, out: Path, input_size: int,
              calibration: "np.ndarray | None", metadata: dict[str, str] | None = None,
              source: Artifact | None = None, max_batch: int = 1) -> Artifact:
        """Convert (int8: quantize with PT2E first) and write the batch-1 .tflite; see the module docstring.

        Raises:
            DeployError: conversion or quantization failed (naming the operator where the converter says), or int8
                came out float.
            UsageError: `out` cannot be written.
        """
        from vischoose.runtimes.artifact import Artifact

        self.require()
        if precision not in self.precisions:
            raise DeployError(f"{self.title} builds fp32 or int8, not {precision}.")
        out = Path(out)
        artifacts.check_writable(out)
        start = time.perf_counter()
        converted, quantized = _converted(loaded, precision, input_size, calibration)
        with artifacts.staging(out) as staged:
            with contextlib.redirect_stdout(sys.stderr):  # its progress lines: stdout is the report's
                converted.export(str(staged))
            facts = {**self.inspect(staged).extra, **_layers(loaded, staged), **delegation(staged)}
            if precision == "int8":
                _check_int8(loaded, facts)
            artifacts.publish(staged, out)
        build_s = time.perf_counter() - start - quantized.get("quantize_s", 0.0)
        return Artifact(path=str(out), runtime=self.name, precision=precision, file_mb=artifacts.file_mb(out),
                        build_s=build_s, input_size=input_size, quantize_s=quantized.get("quantize_s"),
                        recipe=RECIPE if precision == "int8" else None,
                        calibration=quantized.get("calibration", "none"),
                        calibration_images=quantized.get("calibration_images", 0), note=_note(facts), facts=facts)

    def inspect(self, path: Path) -> FileFacts:
        """Precision (int8 when conv / fully-connected / matmul operators take int8 inputs, fp32 when every tensor is
        float32 or integer indices, None when it holds anything else, such as float16 or int8 weights under float
        activations), the input side, layout and batch."""
        from vischoose.runtimes.artifact import FileFacts

        interpreter = _interpreter(path, delegate=False)
        tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
        compute = [op for op in interpreter._get_ops_details() if op["op_name"] in COMPUTE_OPS]
        int8 = [op for op in compute if _dtype(tensors, op["inputs"][0]) in INT_TYPES]
        floats = Counter(op["op_name"] for op in compute if op not in int8)
        kinds = {_dtype(tensors, index) for index in tensors}
        precision = "int8" if int8 else "fp32" if kinds <= {"float32", "int32", "int64", "bool"} else None
        io = read_io(interpreter)
        batch = (1, None) if io["batch"] == "dynamic" else (io["batch"], io["batch"])
        return FileFacts(precision=precision, input_size=io["side"], batch=batch, input_dtype=io["dtype"], extra={
            "batch": io["batch"], "layout": io["layout"], "io_dtype": io["dtype"], "compute_ops": len(compute),
            "int8_compute_ops": len(int8), "float_compute_ops": dict(sorted(floats.items())),
            "tensor_dtypes": sorted(kinds)})

    def open_file(self, path: str | Path, precision: str | None = None) -> Artifact:
        """The artifact for a .tflite as written; a file whose precision cannot be told needs --precision.

        Raises:
            UsageError: as Runtime.open_file, or the file's precision is unknown and --precision was not given.
        """
        artifact = super().open_file(path, precision)
        if precision is None and self.inspect(Path(artifact.path)).precision is None:
            raise UsageError(f"{Path(path).name} is neither float32 throughout nor int8 in its conv/matmul "
                             "operators (float16 or int8 weights under float activations?): its precision is unknown.",
                             hint=f"Pass {opt('precision')} to label it.", field="precision")
        return artifact

    def max_call_batch(self, facts: dict[str, Any]) -> int | None:
        """The file's own batch (1 for the files vischoose builds); None for a file with a dynamic batch."""
        batch = facts.get("batch")
        return batch if isinstance(batch, int) else None

    def session(self, artifact: Artifact, threads: int | None, interleaved: bool = False) -> Forward:
        """Run the file with `threads` XNNPACK threads (None: one per usable core; the interpreter's own default is
        1), its batch at a time (a batch-1 file image by image); int8 input and output are quantized and dequantized
        with their scales. `interleaved` changes nothing: the interpreter's Python API has no spin-wait setting.

        Raises:
            DeployError: the interpreter cannot load or run the file.
        """
        if not installed(self.module):
            self.require()
        interpreter = _interpreter(artifact.path, delegate=True, threads=threads or len(os.sched_getaffinity(0)))
        io = read_io(interpreter)

        def forward(batch: "np.ndarray") -> "np.ndarray":
            try:
                return run_batches(interpreter, io, batch)
            except (RuntimeError, ValueError) as err:
                raise DeployError(f"LiteRT failed running {artifact.path} on a batch of {len(batch)}: "
                                  f"{artifacts.first_line(err)}") from err

        return forward

    def layer_profile(self, artifact: Artifact, batch: int, threads: int | None, runs: int = 10) -> LayerProfile:
        """What ai-edge-litert lets Python see: no per-operator times (its Interpreter and CompiledModel bindings expose
        no profiler, and the wheel ships no benchmark_model with --enable_op_profiling), so the whole invoke's median
        and the operators XNNPACK left to LiteRT's own kernels (off the fast path), named without a time."""
        import time

        from vischoose.runtimes.agreement import random_batch
        from vischoose.runtimes.layers import LayerProfile

        forward = self.session(artifact, threads)
        x = random_batch(artifact.input_size, n=1)
        totals = []
        for i in range(2 + runs):
            start = time.perf_counter()
            forward(x)
            totals.append((time.perf_counter() - start) * 1e3)
        left = delegation(artifact.path)["litert_kernel_ops"]
        return LayerProfile(self.name, artifact.precision, f"LiteRT {self.version()}: whole invoke only", 1, threads,
                            runs, sorted(totals[2:])[runs // 2],
                            unprofiled=tuple(f"{op} x{count}: on LiteRT's own kernel, XNNPACK did not take it"
                                             for op, count in left.items()),
                            note=f"ai-edge-litert {self.version()} exposes no per-operator profiler to Python (its "
                                 "Interpreter and CompiledModel have none; the C++ benchmark_model "
                                 "--enable_op_profiling is not in the wheel): the whole invoke is timed and the "
                                 "operators XNNPACK left out are named from the delegated interpreter's node table")


def _interpreter(path: str | Path, delegate: bool, threads: int | None = None) -> Any:
    """The file in an interpreter, tensors allocated; XNNPACK applied (delegate) or only LiteRT's own kernels."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as err:
        raise DeployError(f"LiteRT {LiteRT().version()} cannot load {path}: {artifacts.first_line(err)}") from err
    return interpreter


def _dtype(tensors: dict[int, dict[str, Any]], index: int) -> str:
    return tensors[int(index)]["dtype"].__name__ if int(index) >= 0 else "none"


def read_io(interpreter: Any) -> dict[str, Any]:
    """The first input's layout (NCHW or NHWC), square side (None otherwise), batch (an int, or "dynamic"), dtype and
    quantization, and the first output's."""
    details, output = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    signature = [int(n) for n in details["shape_signature"]]
    layout = "NCHW" if len(signature) == 4 and signature[1] == 3 else "NHWC" if signature[-1:] == [3] else "other"
    height, width = (signature[2:4] if layout == "NCHW" else signature[1:3]) if layout != "other" else (0, 0)
    return {"index": details["index"], "layout": layout, "side": height if height == width and height > 0 else None,
            "batch": "dynamic" if signature[0] < 0 else signature[0], "dtype": details["dtype"].__name__,
            "numpy_dtype": details["dtype"], "quantization": details["quantization"],
            "output": output["index"], "output_quantization": output["quantization"]}


def run_batches(interpreter: Any, io: dict[str, Any], batch: "np.ndarray") -> "np.ndarray":
    """Logits (float32) of a float32 NCHW batch: in runs of the file's batch, or all at once for a dynamic batch."""
    import numpy as np

    x = np.ascontiguousarray(batch, dtype=np.float32)
    if io["layout"] == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    per_run = len(x) if io["batch"] == "dynamic" else io["batch"]
    if io["batch"] == "dynamic" and interpreter.get_input_details()[0]["shape"][0] != per_run:
        interpreter.resize_tensor_input(io["index"], [per_run, *x.shape[1:]])
        interpreter.allocate_tensors()
    outs = []
    for start in range(0, len(x), per_run):
        interpreter.set_tensor(io["index"], _quantized(x[start:start + per_run], io))
        interpreter.invoke()
        outs.append(_dequantized(interpreter.get_tensor(io["output"]), io["output_quantization"]))
    return np.concatenate(outs)


def _quantized(x: "np.ndarray", io: dict[str, Any]) -> "np.ndarray":
    """Images as the input tensor takes them: float32 as they are, an integer type through its scale and zero."""
    import numpy as np

    scale, zero = io["quantization"]
    if io["dtype"] not in INT_TYPES or not scale:
        return x
    limits = np.iinfo(io["numpy_dtype"])
    return np.clip(np.round(x / scale) + zero, limits.min, limits.max).astype(io["numpy_dtype"])


def _dequantized(y: "np.ndarray", quantization: tuple[float, int]) -> "np.ndarray":
    import numpy as np

    scale, zero = quantization
    return (y.astype(np.float32) - zero) * scale if scale else y.astype(np.float32, copy=True)


def delegation(path: str | Path) -> dict[str, Any]:
    """What XNNPACK runs of a file: its partitions, and the operators left to LiteRT's own kernels between them
    (the nodes that run, walked back from the outputs: a delegated node's output comes from its partition)."""
    interpreter = _interpreter(path, delegate=True, threads=1)
    nodes = interpreter._get_ops_details()
    producer: dict[int, dict[str, Any]] = {}
    for node in sorted(nodes, key=lambda n: n["op_name"] == DELEGATE):  # a partition's outputs win
        producer.update({int(t): node for t in node["outputs"]})
    seen: set[int] = set()
    left: Counter[str] = Counter()
    stack = [int(d["index"]) for d in interpreter.get_output_details()]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node["index"] in seen:
            continue
        seen.add(node["index"])
        left.update([node["op_name"]] if node["op_name"] != DELEGATE else [])
        stack.extend(int(t) for t in node["inputs"] if int(t) >= 0)
    operators = sum(1 for n in nodes if n["op_name"] != DELEGATE)
    return {"xnnpack_partitions": sum(1 for n in nodes if n["op_name"] == DELEGATE), "operators": operators,
            "xnnpack_operators": operators - sum(left.values()), "litert_kernel_ops": dict(sorted(left.items()))}


def _layers(loaded: "LoadedModel", path: Path) -> dict[str, int]:
    """The model's conv and linear modules, and the conv / fully-connected operators the file holds for them."""
    import torch

    modules = sum(1 for m in loaded.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    nodes = _interpreter(path, delegate=False)._get_ops_details()
    return {"model_layers": modules, "file_layers": sum(1 for n in nodes if n["op_name"] in LAYER_OPS)}


def _check_int8(loaded: "LoadedModel", facts: dict[str, Any]) -> None:
    """Refuse an int8 build whose conv / fully-connected / matmul operators all stayed float."""
    if facts["int8_compute_ops"] == 0:
        ops = ", ".join(f"{name} x{count}" for name, count in facts["float_compute_ops"].items())
        raise DeployError(f"int8 conversion of {loaded.tag} for LiteRT stayed float: none of its "
                          f"{facts['compute_ops']} conv/fully-connected/matmul operators takes int8 inputs ({ops}); "
                          "nothing was written.",
                          hint=f"Ship {opt('precision')} fp32, or set VISCHOOSE_DEBUG=1 and report it.")


def _note(facts: dict[str, Any]) -> str | None:
    """The batch-1 file, what stayed float in int8, what XNNPACK left out and layers the converter removed."""
    notes = ["a batch-1 file: a batch of N runs as N batch-1 inferences"]
    if facts["io_dtype"] in INT_TYPES:
        notes.append(f"{facts['io_dtype']} input and output: quantize the normalised image and dequantize the logits "
                     "with the scale and zero point the file gives them")
    if facts["int8_compute_ops"] and facts["float_compute_ops"]:
        ops = ", ".join(f"{name} x{count}" for name, count in facts["float_compute_ops"].items())
        notes.append(f"partly int8: {facts['int8_compute_ops']} of {facts['compute_ops']} conv/fully-connected/matmul "
                     f"operators run int8; {ops} stay float")
    if facts["litert_kernel_ops"]:
        ops = ", ".join(f"{name} x{count}" for name, count in facts["litert_kernel_ops"].items())
        notes.append(f"partly delegated: XNNPACK runs {facts['xnnpack_operators']} of {facts['operators']} "
                     f"operators in {facts['xnnpack_partitions']} partitions; {ops} run on LiteRT's own kernels")
    if facts["file_layers"] < facts["model_layers"]:
        notes.append(f"the converter removed {facts['model_layers'] - facts['file_layers']} of the model's "
                     f"{facts['model_layers']} conv/linear layers, whose outputs are always zero (random init "
                     "zero-initialises each residual block's last norm): smaller and faster than with trained weights")
    return "; ".join(notes)


def _converted(loaded: "LoadedModel", precision: str, input_size: int,
               calibration: "np.ndarray | None") -> tuple[Any, dict[str, Any]]:
    """litert-torch's model (fp32, or int8 through PT2E) and the quantization facts."""
    import litert_torch
    import torch

    from vischoose.runtimes.torchexport import as_sized, exportable

    example = (torch.zeros(1, 3, input_size, input_size),)
    quantized: dict[str, Any] = {}
    with torch.no_grad(), exportable(loaded.model), as_sized(), contextlib.redirect_stdout(sys.stderr):
        try:
            if precision == "fp32":
                return litert_torch.convert(loaded.model, example), quantized
            module, config, quantized = _quantized_module(loaded, example, calibration, input_size)
            return litert_torch.convert(module, example, quant_config=config), quantized
        except _errors() as err:
            raise _deploy_error(loaded, "int8 quantization and conversion" if precision == "int8" else "conversion",
                                err) from err


def _quantized_module(loaded: "LoadedModel", example: tuple[Any], calibration: "np.ndarray | None",
                      input_size: int) -> tuple[Any, Any, dict[str, Any]]:
    """The exported model through litert-torch's PT2EQuantizer, calibrated image by image, and its QuantConfig."""
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    source, images = "images", calibration
    if calibration is None or len(calibration) == 0:
        from vischoose.runtimes.agreement import SEED, random_batch

        source, images = "random", random_batch(input_size, RANDOM_CALIBRATION, seed=SEED + 1)
    start = time.perf_counter()
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(loaded.model, example).module(), quantizer)
    for image in images:
        prepared(torch.from_numpy(image[None].astype("float32", copy=False)))
    module = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
    module.training = False  # exported from the model in eval mode; the flag alone stays set (litert-torch warns)
    return module, QuantConfig(pt2e_quantizer=quantizer), {
        "quantize_s": time.perf_counter() - start, "calibration": source,
        "calibration_images": len(images) if source == "images" else 0}


def _errors() -> tuple[type[BaseException], ...]:
    """What torch.export, PT2E and litert-torch's lowering (through JAX) raise for a model they cannot convert."""
    return (RuntimeError, ValueError, TypeError, NotImplementedError, AssertionError, KeyError)


def _deploy_error(loaded: "LoadedModel", step: str, err: BaseException) -> DeployError:
    from vischoose.runtimes.torchexport import lowering_error

    return lowering_error(loaded, step, err, "LiteRT", f"Ship another runtime ({opt('runtime')} executorch or "
                          "onnxruntime), or set VISCHOOSE_DEBUG=1 for the converter's traceback.")
