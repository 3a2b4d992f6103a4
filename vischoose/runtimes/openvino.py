"""OpenVINO on the CPU: the runtime an x86 server or PC ships a model in.

build: openvino.convert_model with a dynamic batch, saved as IR (.xml graph + .bin weights, kept fp32: never
compressed to fp16); int8 is NNCF's post-training quantization of that IR, calibrated on the user's images (the
transformer model type for ViTs and hybrids, so their softmax/layer-norm paths stay in float), read back from the
fp32 IR when one was built, so its node names are the fp32 IR's. Accuracy-aware int8 (export --max-accuracy-drop)
ranks those nodes (runtimes.ovsensitivity) and keeps the worst in float with nncf.IgnoredScope. bf16 is the fp32 IR
run with OpenVINO's bf16 inference precision, which only pays (and is only offered) on CPUs with AVX-512 bf16 or
AMX.

session: the process's one openvino.Core compiles it with exactly `threads` inference threads, the latency hint
(one stream) and the precision asked for. fp32 and int8 ask for f32 explicitly: on AMX and AVX-512 bf16 CPUs
OpenVINO's default is bf16, which would silently measure another precision. Imports only openvino and numpy.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from vischoose import machine
from vischoose.errors import DeployError, UsageError, opt
from vischoose.runtimes import files as artifacts
from vischoose.runtimes.base import Forward
from vischoose.runtimes.kinds import OpenVinoKind
from vischoose.units import MIB

if TYPE_CHECKING:
    import numpy as np
    import openvino as ov

    from vischoose.models.loading import LoadedModel
    from vischoose.runtimes.artifact import Artifact, FileFacts
    from vischoose.runtimes.layers import LayerProfile

HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}  # int8: what stays unquantized runs in f32
RANDOM_CALIBRATION = 16  # random images calibrating int8 when the user gave none
OPERATOR = r"(?:aten|prim|torchvision)::[A-Za-z0-9_]+"  # compiled on first use (re caches it): start-up
COMPUTE = frozenset({"Convolution", "GroupConvolution", "MatMul", "FullyConnected", "FullyConnectedQuantizedLegacy",
                     "Deconvolution", "ScaledDotProductAttention"})  # their precision is the one the variant asks
RANK = {"i8": 0, "u8": 0, "bf16": 1, "f16": 1, "f32": 2}  # exec precisions, fastest first
WARMUP_RUNS = 2


class OpenVino(OpenVinoKind):
    """OpenVINO IR run by the CPU plugin at fp32, bf16 (on CPUs that have it) or int8 (NNCF)."""

    hints: ClassVar[tuple[str, ...]] = ("bf16",)  # an inference hint on an fp32 IR
    reverts_layers: ClassVar[bool] = True  # nncf.IgnoredScope keeps named nodes in float
    builds_from_fp32: ClassVar[bool] = True  # int8 quantizes the fp32 IR: its node names are the ones ranked

    def memory_plan(self, artifact: Artifact) -> dict[str, Any] | None:
        """The IR's constants (its .bin, as the CPU plugin reads them); the compiled model's own memory is not exposed
        by OpenVINO's API (no compiled-model property reports it)."""
        xml = Path(artifact.path)
        weights = xml.with_suffix(".bin").stat().st_size / MIB if xml.with_suffix(".bin").is_file() else 0.0
        return {"constant_mb": weights, "total_mb": weights,
                "note": f"OpenVINO: constants {weights:,.1f} MiB (the IR's .bin, which stays memory-mapped beside the "
                        "CPU plugin's repacked copy of the weights: both are resident); the compiled model's memory is "
                        "not exposed by its API; the CPU plugin (loaded with the first model) is counted in the peak"}

    def version(self) -> str:
        """The installed openvino package's version ("2026.4.1")."""
        from importlib.metadata import version

        return version("openvino")

    def versions(self) -> dict[str, str]:
        """openvino, and nncf (which quantizes int8) where it is installed."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"openvino": self.version(), "nncf": version("nncf")}
        except PackageNotFoundError:
            return {"openvino": self.version()}

    def precision_supported(self, precision: str) -> str | None:
        """bf16 needs avx512_bf16 or amx_bf16 in /proc/cpuinfo; fp32 and int8 run on any x86-64 CPU."""
        why = super().precision_supported(precision)
        if why is None and precision == "bf16" and not machine.has_bf16():
            return "bf16 on OpenVINO needs a CPU with AVX-512 bf16 or AMX (avx512_bf16, amx_bf16); this one has neither"
        return why

    def inspect(self, path: Path) -> FileFacts:
        """int8 when the IR holds FakeQuantize operations (NNCF's), fp32 when its float constants are all f32, else
        unknown (f16-compressed weights, ...); the input side when it is static, and the batches it takes."""
        from vischoose.runtimes.artifact import FileFacts

        try:
            model = core().read_model(str(path))
        except RuntimeError as err:
            raise DeployError(f"OpenVINO {self.version()} cannot read {path}: {artifacts.first_line(err)}") from err
        shape = model.inputs[0].get_partial_shape() if model.inputs else None
        last = shape[-1] if shape is not None else None
        return FileFacts(precision=_precision(model),
                         input_size=last.get_length() if last is not None and last.is_static else None,
                         batch=_batch(shape))

    def file_mb(self, path: Path) -> float:
        """The .xml graph plus the .bin weights beside it."""
        return ir_mb(path)

    def build(self, loaded: "LoadedModel", precision: str, out: Path, input_size: int,
              calibration: "np.ndarray | None", metadata: dict[str, str] | None = None,
              source: Artifact | None = None, max_batch: int = 1) -> Artifact:
        """Convert to IR with a dynamic batch (int8: quantize with NNCF, from `source`'s fp32 IR when given) and write
        out (.xml) with its .bin.

        Raises:
            DeployError: conversion or quantization failed (naming the operator where OpenVINO says).
            UsageError: `out` cannot be written.
        """
        self.require()
        if precision not in self.precisions:
            raise DeployError(f"{self.title} builds {', '.join(self.precisions)}, not {precision}.")
        core()  # loaded before NNCF's own Cores come and go: see core()
        out = Path(out)
        artifacts.check_writable(out)
        if precision == "int8" and source is not None:
            return self.build_excluding(loaded, source, out, calibration, ())
        start = time.perf_counter()
        model = _convert(loaded, input_size)
        build_s = time.perf_counter() - start
        quantized: dict[str, Any] = {}
        if precision == "int8":
            model, quantized = _quantize(loaded, model, calibration, input_size)
        return self._saved(model, out, precision, build_s, input_size, quantized)

    def build_excluding(self, loaded: "LoadedModel", fp32: Artifact, out: Path, calibration: "np.ndarray | None",
                        exclude: Sequence[str]) -> Artifact:
        """int8 quantized by NNCF from the fp32 IR, the nodes named in `exclude` (its friendly names) left in float.

        Raises:
            DeployError: the IR cannot be read, or NNCF failed (a name it does not know included).
        """
        self.require()
        out = Path(out)
        artifacts.check_writable(out)
        try:
            model = core().read_model(fp32.path)
        except RuntimeError as err:
            raise DeployError(f"OpenVINO {self.version()} cannot read {fp32.path}: {artifacts.first_line(err)}") from err
        model, quantized = _quantize(loaded, model, calibration, fp32.input_size, exclude)
        return self._saved(model, out, "int8", fp32.build_s, fp32.input_size, quantized)

    def rank_layers(self, loaded: "LoadedModel", fp32: Artifact, int8: Artifact, images: "np.ndarray",
                    calibration: "np.ndarray | None") -> list[Any]:
        """The int8 IR's quantized nodes, the ones int8 hurts most first (runtimes.ovsensitivity)."""
        from vischoose.runtimes import ovsensitivity

        return ovsensitivity.rank_layers(core(), fp32.path, int8.path, images)

    def _saved(self, model: Any, out: Path, precision: str, build_s: float, input_size: int,
               quantized: dict[str, Any]) -> Artifact:
        """The IR written to out (.xml, its .bin beside it) and its artifact."""
        import openvino as ov

        from vischoose.runtimes.artifact import Artifact

        with artifacts.staging(out) as staged:
            ov.save_model(model, str(staged), compress_to_fp16=False)
            os.replace(staged.with_suffix(".bin"), out.with_suffix(".bin"))
            os.replace(staged, out)
        facts = {"batch": "dynamic", "openvino": self.version(), "inference_precision": HINTS[precision]}
        if precision == "int8":
            facts.update(nncf=quantized["nncf"], model_type=quantized["model_type"])
        return Artifact(path=str(out), runtime=self.name, precision=precision, file_mb=ir_mb(out), build_s=build_s,
                        input_size=input_size, quantize_s=quantized.get("quantize_s"), recipe=quantized.get("recipe"),
                        calibration=quantized.get("calibration", "none"),
                        calibration_images=quantized.get("calibration_images", 0), facts=facts)

    def session(self, artifact: Artifact, threads: int | None, interleaved: bool = False) -> Forward:
        """Compile the IR for the CPU at the artifact's precision; the function runs a batch and returns logits.

        Raises:
            DeployError: OpenVINO cannot compile or run the IR.
            UsageError: bf16 on a CPU without it (OpenVINO would quietly run f32 instead).

        A file of unknown precision (evaluate --graph) runs with the f32 hint, which runs it as written.
        """
        import numpy as np

        from vischoose.runtimes.precision import is_known

        self.require()
        why = self.precision_supported(artifact.precision) if is_known(artifact.precision) else None
        if why is not None:
            raise UsageError(f"Cannot run {artifact.path} at {artifact.precision} here: {why}.")
        compiled = self._compiled(artifact, threads)
        request = compiled.create_infer_request()
        output = compiled.output(0)

        def forward(batch: "np.ndarray") -> "np.ndarray":
            try:
                result = request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_outputs=False)
            except RuntimeError as err:
                raise DeployError(f"OpenVINO failed running {artifact.path} on a batch of {len(batch)}: "
                                  f"{artifacts.first_line(err)}") from err
            return np.asarray(result[output], dtype=np.float32)

        return forward

    def _compiled(self, artifact: Artifact, threads: int | None, perf_count: bool = False) -> Any:
        """The IR compiled for the CPU: the latency hint, the artifact's precision, `threads` inference threads."""
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY",
                                  "INFERENCE_PRECISION_HINT": HINTS.get(artifact.precision, "f32")}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if perf_count:
            config["PERF_COUNT"] = True
        try:
            return core().compile_model(artifact.path, "CPU", config)
        except RuntimeError as err:
            raise DeployError(f"OpenVINO {self.version()} cannot compile {artifact.path}: "
                              f"{artifacts.first_line(err)}") from err

    def layer_profile(self, artifact: Artifact, batch: int, threads: int | None, runs: int = 10) -> LayerProfile:
        """OpenVINO's performance counters (PERF_COUNT): each executed layer of the compiled graph with the kernel
        that ran it, its mean over `runs` after WARMUP_RUNS (the counters average every inference since the compile,
        so the warm-up's share is taken out: (total x mean_all - warm-up x mean_warm-up) / runs); a reference kernel,
        or a conv/matmul executed in a slower precision than the variant's (f32 inside int8 or bf16), is off the fast
        path."""
        import time

        import numpy as np

        from vischoose.runtimes.agreement import random_batch
        from vischoose.runtimes.layers import LayerProfile, median_layers

        request = self._compiled(artifact, threads, perf_count=True).create_infer_request()
        x = np.ascontiguousarray(random_batch(artifact.input_size, n=batch))
        totals, warm = [], {}
        for i in range(WARMUP_RUNS + runs):
            start = time.perf_counter()
            request.infer({0: x})
            totals.append((time.perf_counter() - start) * 1e3)
            if i == WARMUP_RUNS - 1:
                warm = _counters(request.get_profiling_info(), artifact.precision)
        every = _counters(request.get_profiling_info(), artifact.precision)
        done = WARMUP_RUNS + runs
        own = {name: (op, max(0.0, (done * ms - WARMUP_RUNS * warm.get(name, (op, 0.0))[1]) / runs), kind, slow)
               for name, (op, ms, kind, slow) in every.items()}
        return LayerProfile(self.name, artifact.precision, f"OpenVINO {self.version()} performance counters", batch,
                            threads, runs, sorted(totals[WARMUP_RUNS:])[runs // 2], median_layers([own]),
                            note="layers of the compiled graph (the CPU plugin fuses and renames nodes), each its mean "
                                 "over the profiled runs; kernel = its exec type, with the precision it ran in")


def _counters(info: Any, precision: str) -> dict[str, tuple[str, float, str, str | None]]:
    """{layer: (type, ms: its mean since the compile, exec type, why off the fast path)} of the executed layers."""
    wanted = {"int8": "i8", "bf16": "bf16"}.get(precision, "f32")
    out = {}
    for item in info:
        if str(item.status).rsplit(".", 1)[-1] != "EXECUTED":
            continue
        kind, ran = item.exec_type, item.exec_type.rsplit("_", 1)[-1].lower().replace("fp32", "f32")
        slow = None
        if kind.startswith("ref"):
            slow = f"OpenVINO's reference implementation ({kind}), no optimised kernel"
        elif item.node_type in COMPUTE and RANK.get(ran, -1) > RANK[wanted]:
            slow = f"executed in {ran}, not {wanted} ({kind})"
        out[item.node_name] = (item.node_type, item.real_time.total_seconds() * 1e3, kind, slow)
    return out


@functools.cache
def core() -> "ov.Core":
    """The process's one OpenVINO Core, its CPU plugin loaded, kept until the process exits.

    OpenVINO 2026.4's CPU plugin, when it loads, gives the thread a larger signal stack and, when its Core goes, puts
    back the one it found. Two Cores freed in the order they were made put back a stack already unmapped, and the
    next signal the process handles kills it (SIGSEGV with no faulting address: it struck the test suite minutes
    later, in whatever test was running). A Core loaded first and never freed keeps every other (NNCF's) nested in it.
    """
    import openvino as ov

    made = ov.Core()
    made.get_property("CPU", "FULL_DEVICE_NAME")  # loads the plugin now, before any other Core's
    return made


def ir_mb(xml: str | Path) -> float:
    """MiB on disk of an IR: the .xml graph plus the .bin weights beside it."""
    xml = Path(xml)
    weights = xml.with_suffix(".bin")
    return (xml.stat().st_size + (weights.stat().st_size if weights.is_file() else 0)) / MIB


def _convert(loaded: "LoadedModel", input_size: int) -> Any:
    import openvino as ov
    import openvino.frontend as frontend
    import torch

    example = torch.zeros(2, 3, input_size, input_size)
    try:
        with torch.no_grad():
            return ov.convert_model(loaded.model, example_input=example, input=[-1, 3, input_size, input_size])
    except (frontend.OpConversionFailure, frontend.GeneralFailure, RuntimeError, TypeError) as err:
        found = [op for op in re.findall(OPERATOR, str(err)) if op != "prim::Constant"]  # constants feed the failed op
        operators = f" at operator {', '.join(dict.fromkeys(found))}" if found else ""
        raise DeployError(f"Converting {loaded.tag} to OpenVINO failed{operators}: {artifacts.first_line(err)}",
                          hint=f"Ship another runtime ({opt('runtime')} onnxruntime), or set VISCHOOSE_DEBUG=1 for the "
                               "converter's traceback.") from err


def _quantize(loaded: "LoadedModel", model: Any, calibration: "np.ndarray | None", input_size: int,
              exclude: Sequence[str] = ()) -> tuple[Any, dict[str, Any]]:
    """NNCF post-training int8, one calibration image per sample (NNCF's statistics assume batch 1); the nodes
    named in `exclude` stay in float."""
    import nncf

    from vischoose.models.family import model_family
    from vischoose.runtimes.agreement import SEED, random_batch

    family = model_family(loaded.model)
    transformer = family in ("transformer", "hybrid")
    source = "random" if calibration is None or len(calibration) == 0 else "images"
    images = random_batch(input_size, RANDOM_CALIBRATION, seed=SEED + 1) if source == "random" else calibration
    options: dict[str, Any] = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    if exclude:
        options["ignored_scope"] = nncf.IgnoredScope(names=list(exclude))
    start = time.perf_counter()
    try:  # NNCF draws progress bars on stdout, which is the report's (JSON with --json): they go to stderr
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(model, nncf.Dataset([image[None] for image in images]),
                                      subset_size=len(images), **options)
    except (RuntimeError, ValueError) as err:
        raise DeployError(f"Quantizing {loaded.tag} to int8 with NNCF failed: {artifacts.first_line(err)}",
                          hint="Ship the fp32 IR, or set VISCHOOSE_DEBUG=1 for NNCF's traceback.") from err
    return quantized, {"quantize_s": time.perf_counter() - start, "calibration": source,
                       "calibration_images": len(images) if source == "images" else 0,
                       "recipe": f"nncf-ptq-{'transformer' if transformer else 'default'}",
                       "model_type": "transformer" if transformer else "default", "nncf": nncf.__version__}


def _precision(model: Any) -> str:
    """int8 (FakeQuantize), fp32 (every floating-point constant f32) or unknown."""
    from vischoose.runtimes.precision import UNKNOWN

    ops = list(model.get_ops())
    if any(op.get_type_name() == "FakeQuantize" for op in ops):
        return "int8"
    floats = {op.get_element_type().get_type_name() for op in ops
              if op.get_type_name() == "Constant" and op.get_element_type().is_real()}
    return "fp32" if floats <= {"f32"} else UNKNOWN


def _batch(shape: Any) -> tuple[int, int | None] | None:
    """(smallest, largest) batch of the input's first dimension (largest None: no bound)."""
    if shape is None or shape.rank.is_dynamic or len(shape) == 0:
        return None
    first = shape[0]
    if first.is_static:
        return (first.get_length(), first.get_length())
    largest = first.get_max_length()
    return (max(first.get_min_length(), 1), None if largest < 0 else largest)
