"""ONNX Runtime (CPU execution provider) as a deployment runtime: fp32 graphs, and int8 with the recipe of the model's
family. The build pipeline and the sessions live in `runtimes.ortbuild`, imported only when a file is built, read or
run: the registry imports this module for every `vischoose` command, `recommend` included.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from vischoose.errors import DeployError
from vischoose.runtimes import files
from vischoose.runtimes.base import Forward
from vischoose.runtimes.kinds import OnnxRuntimeKind

if TYPE_CHECKING:
    import numpy as np

    from vischoose.models.loading import LoadedModel
    from vischoose.runtimes.artifact import Artifact, FileFacts
    from vischoose.runtimes.layers import LayerProfile

INT8_OPS = frozenset({"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearConv",
                      "QLinearMatMul"})  # any of these: an int8 graph
FLOAT_COMPUTE = frozenset({"Conv", "FusedConv", "ConvTranspose", "MatMul", "FusedMatMul", "Gemm", "FusedGemm",
                           "Attention", "MultiHeadAttention"})  # their float kernels: off the fast path in int8
WARMUP_RUNS = 2


class OnnxRuntime(OnnxRuntimeKind):
    """ONNX Runtime on the CPU: fp32 graphs, and int8 with the recipe of the model's family."""

    reverts_layers: ClassVar[bool] = True
    builds_from_fp32: ClassVar[bool] = True
    stores_metadata: ClassVar[bool] = True  # vischoose.* metadata_props

    def prepare_host(self, compiled: bool = False) -> str:
        """onnxruntime and numpy, and the providers listed (the CPU execution provider is in the core library, loaded
        with it; the ORT environment is made with the first session, as in any process that runs a model)."""
        import onnxruntime

        text = super().prepare_host()
        return f"{text} (providers: {', '.join(onnxruntime.get_available_providers())})"

    def memory_plan(self, artifact: Artifact) -> dict[str, Any] | None:
        """The initializers' bytes as the file holds them (the weights ONNX Runtime loads; its CPU kernels may keep
        prepacked copies beside them). Its arena, which holds the activations, is not exposed by its Python API."""
        weights = artifact.facts.get("initializer_mb") or _initializer_mb(artifact.path)  # built before: read it
        return {"constant_mb": weights, "total_mb": weights,
                "note": f"ONNX Runtime: initializers {weights:,.1f} MiB; its arena (activations) is not exposed by its "
                        "Python API"}

    def __init__(self, opset: int | None = None) -> None:
        self.opset = opset  # None: the exporter's default

    def versions(self) -> dict[str, str]:
        """onnx (the file format) and onnxruntime."""
        import onnx
        import onnxruntime

        return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}

    def build(self, loaded: "LoadedModel", precision: str, out: Path, input_size: int,
              calibration: "np.ndarray | None", metadata: dict[str, str] | None = None,
              source: Artifact | None = None, max_batch: int = 1) -> Artifact:
        """Export (checked against eager fp32) and, for int8, quantize with the family's recipe."""
        from vischoose.runtimes.artifact import Artifact
        from vischoose.runtimes.ortbuild import export_onnx

        out = Path(out)
        if precision != "fp32" and source is not None:
            return self._quantized(loaded, Path(source.path), out, calibration, source)
        fp32_path = out if precision == "fp32" else out.with_name(out.stem + "-fp32" + out.suffix)
        exported = export_onnx(loaded, fp32_path, input_size, self.opset, metadata=metadata)
        fp32 = Artifact(str(fp32_path), self.name, "fp32", exported.file_mb, exported.export_s, input_size,
                        facts={"opset": exported.opset, "initializer_mb": _initializer_mb(fp32_path)})
        if precision == "fp32":
            return fp32
        try:
            return self._quantized(loaded, fp32_path, out, calibration, fp32)
        finally:
            files.remove(fp32_path)

    def build_excluding(self, loaded: "LoadedModel", fp32: Artifact, out: Path, calibration: "np.ndarray | None",
                        exclude: Sequence[str]) -> Artifact:
        """int8 from the fp32 artifact with the family's recipe, the nodes named in `exclude` left in float."""
        return self._quantized(loaded, Path(fp32.path), Path(out), calibration, fp32, exclude)

    def rank_layers(self, loaded: "LoadedModel", fp32: Artifact, int8: Artifact, images: "np.ndarray",
                    calibration: "np.ndarray | None") -> list[Any]:
        """The fp32 graph's quantizable nodes, the ones int8 hurts most first (runtimes.sensitivity)."""
        from vischoose.runtimes import sensitivity

        return sensitivity.rank_layers(fp32.path, int8.path, images)

    def _quantized(self, loaded: "LoadedModel", fp32_path: Path, out: Path, calibration: "np.ndarray | None",
                   fp32: Artifact, exclude: Sequence[str] = ()) -> Artifact:
        from vischoose.models.family import model_family
        from vischoose.runtimes.artifact import Artifact
        from vischoose.runtimes.ortbuild import quantize_int8

        family = model_family(loaded.model)
        quant = quantize_int8(fp32_path, out, family, None if calibration is None else [calibration], exclude)
        return Artifact(str(out), self.name, "int8", quant.file_mb, fp32.build_s, fp32.input_size,
                        quantize_s=quant.quantize_s, recipe=quant.recipe.name, calibration=quant.calibration,
                        calibration_images=quant.calibration_images, note=quant.recipe.note,
                        facts={**fp32.facts, "family": family, "initializer_mb": _initializer_mb(out),
                               "speed_caveat": quant.recipe.note if quant.recipe.speed_caveat else None})

    def inspect(self, path: Path) -> FileFacts:
        """int8 when the graph holds quantized operators (QDQ or integer MatMul/Conv), fp32 when its float inputs and
        weights are all float32, else unknown; the input side and batches and, for vischoose's own files, the model
        from the metadata."""
        import onnx as onnx_lib

        from vischoose.runtimes.artifact import FileFacts

        try:
            proto = onnx_lib.load(str(path), load_external_data=False)
        except Exception as err:  # onnx raises DecodeError, ValueError, ...: any means "not an ONNX file"
            raise DeployError(f"{path} is not an ONNX file onnx {onnx_lib.__version__} can read: "
                              f"{files.first_line(err)}") from err
        dims = list(proto.graph.input[0].type.tensor_type.shape.dim) if proto.graph.input else []
        side = dims[-1].dim_value if dims else 0
        meta = {p.key: p.value for p in proto.metadata_props}
        return FileFacts(precision=_precision(proto), input_size=int(side) or None, batch=_batch(dims),
                         model=meta.get("vischoose.tag"))

    def session(self, artifact: Artifact, threads: int | None, interleaved: bool = False) -> Forward:
        """The graph on ONNX Runtime's CPU execution provider with `threads` intra-op threads."""
        from vischoose.runtimes.ortbuild import ort_session, run_session

        session = ort_session(artifact.path, threads, spinning=not interleaved)
        return lambda batch: run_session(session, batch)

    def layer_profile(self, artifact: Artifact, batch: int, threads: int | None, runs: int = 10) -> LayerProfile:
        """ONNX Runtime's session profiling: each node's kernel time per run (the optimised graph's nodes, as they
        ran), medians over `runs` after WARMUP_RUNS; in an int8 graph a Conv/MatMul/Gemm that takes float input is
        off the fast path (left in float)."""
        import json
        import tempfile

        import onnxruntime as ort

        from vischoose.runtimes.agreement import random_batch
        from vischoose.runtimes.layers import LayerProfile, median_layers
        from vischoose.runtimes.ortbuild import ort_session, run_session

        x = random_batch(artifact.input_size, n=batch)
        with tempfile.TemporaryDirectory(prefix="vischoose-ortprof-") as tmp:
            session = ort_session(artifact.path, threads, profile_prefix=str(Path(tmp) / "profile"))
            for _ in range(WARMUP_RUNS + runs):
                run_session(session, x)
            events = json.loads(Path(session.end_profiling()).read_text())
        timed = _runs(events)[WARMUP_RUNS:]
        per_run = [_node_times(nodes, artifact.precision == "int8") for _, nodes in timed]
        total = sorted(dur for dur, _ in timed)[len(timed) // 2] / 1e3 if timed else None
        return LayerProfile(self.name, artifact.precision, f"ONNX Runtime {ort.__version__} session profiling",
                            batch, threads, len(timed), total, median_layers(per_run),
                            note="nodes of the graph as ONNX Runtime optimised it (fused nodes carry one name)")


def _runs(events: list[dict[str, Any]]) -> list[tuple[float, list[dict[str, Any]]]]:
    """Each model_run of a profile (its microseconds) with the node kernel events inside it, in order."""
    spans = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    nodes = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    return [(end - start, [n for n in nodes if start <= n["ts"] <= end]) for start, end in spans]


def _node_times(nodes: list[dict[str, Any]], int8: bool) -> dict[str, tuple[str, float, str, str | None]]:
    """{node: (op, ms, provider, why it is off the fast path)} for one run's kernel events."""
    out = {}
    for event in nodes:
        args = event.get("args", {})
        op = args.get("op_name", "?")
        inputs = [next(iter(t.items()), ("", [])) for t in args.get("input_type_shape", []) if isinstance(t, dict)]
        slow = (f"{op} left in float ({inputs[0][0]} input {inputs[0][1]}) inside the int8 graph"
                if int8 and op in FLOAT_COMPUTE and inputs and inputs[0][0] in ("float", "double") else None)
        name = str(event["name"]).removesuffix("_kernel_time")
        out[name] = (op, event["dur"] / 1e3, str(args.get("provider", "")).removesuffix("ExecutionProvider"), slow)
    return out


def _initializer_mb(path: str | Path) -> float:
    """The file's initializers, MiB (read when it is built, where the whole file is loaded anyway)."""
    from vischoose.runtimes.ortbuild import initializer_bytes

    return initializer_bytes(path) / files.MIB


FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}  # onnx.TensorProto's float element types


def _precision(proto: Any) -> str:
    """int8 (quantized operators), fp32 (every float input and initializer float32) or unknown (fp16 weights, ...)."""
    from vischoose.runtimes.precision import UNKNOWN

    if any(n.op_type in INT8_OPS for n in proto.graph.node):
        return "int8"
    floats = {FLOAT_TYPES[t.data_type] for t in proto.graph.initializer if t.data_type in FLOAT_TYPES}
    floats |= {FLOAT_TYPES[i.type.tensor_type.elem_type] for i in proto.graph.input
               if i.type.tensor_type.elem_type in FLOAT_TYPES}
    return "fp32" if floats == {"float32"} else UNKNOWN


def _batch(dims: list[Any]) -> tuple[int, int | None] | None:
    """(smallest, largest) batch of the first input: a named or missing size is dynamic, a number is fixed."""
    if not dims:
        return None
    first = dims[0]
    return (int(first.dim_value), int(first.dim_value)) if first.dim_value > 0 else (1, None)
