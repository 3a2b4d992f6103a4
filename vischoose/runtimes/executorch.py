"""ExecuTorch with the XNNPACK delegate: the runtime a model ships in on a phone or an embedded board.

build: torch.export at a static batch of 1 (a phone classifies one image at a time, and ExecuTorch plans every
buffer ahead of time for the shapes it was exported with), lowered with XnnpackPartitioner; int8 goes through
PT2E first (XNNPACKQuantizer, symmetric per-channel int8 weights and activations, calibrated on the user's
images; runtimes.pt2e). What XNNPACK did not take runs on ExecuTorch's portable CPU kernels, which are far slower:
the Artifact's facts say how much was delegated and which operators were left out. Accuracy-aware int8 (export
--max-accuracy-drop) ranks the conv and linear layers on PT2E's q/dq graph and builds again from the model with
the worst modules left unannotated (a .pte cannot be quantized again, so each step is a whole build).

session: ExecuTorch's Python runtime takes and returns torch tensors, so a session imports torch (only to wrap
numpy arrays; no torch kernel runs). A batch of N runs the batch-1 program N times, as the deployed app would.
XNNPACK's thread count is ExecuTorch's process-wide threadpool, set before the program is loaded.
"""

from __future__ import annotations

import operator
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from vischoose.errors import DeployError, opt
from vischoose.runtimes import files as artifacts
from vischoose.runtimes.base import Forward, GraphRuntime
from vischoose.runtimes.torchexport import exportable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vischoose.models.loading import LoadedModel
    from vischoose.runtimes.artifact import Artifact, FileFacts
    from vischoose.runtimes.layers import LayerProfile

RECIPE = "xnnpack-pt2e-symmetric-per-channel"
RANDOM_CALIBRATION = 16  # random images calibrating int8 when the user gave none
OPERATOR = r"aten(?:::|\.)[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?"  # compiled on first use (re caches it): start-up
DELEGATE_CALL = "executorch_call_delegate"
WARMUP_RUNS = 2
PORTABLE_PREFIX = "native_call_"  # an ETDump event of an operator run by a portable (or optimized) CPU kernel
WRAPPERS = ("OPERATOR_CALL", "DELEGATE_CALL", "Method::execute")  # ETDump events that wrap the operators' own


class ExecuTorch(GraphRuntime):
    """ExecuTorch programs (.pte) with every operator XNNPACK supports delegated to it."""

    name: ClassVar[str] = "executorch"
    title: ClassVar[str] = "ExecuTorch (XNNPACK)"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8")
    module: ClassVar[str] = "executorch"
    extra: ClassVar[str | None] = "mobile"
    suffix: ClassVar[str] = ".pte"
    format: ClassVar[str | None] = "pte"
    reverts_layers: ClassVar[bool] = True  # a module-name filter on the quantizer keeps chosen layers in float
    build_revision: ClassVar[int] = 2  # 2: weight-standardised convolutions exported with their weight standardised
    # the Python bindings (and torch, which they import) and the runtime's registry: what a process loads before a model
    host_modules: ClassVar[tuple[str, ...]] = ("executorch.extension.pybindings.portable_lib", "executorch.runtime")

    def version(self) -> str:
        """The installed executorch package's version (the module has no __version__)."""
        from importlib.metadata import version

        return version("executorch")

    def build(self, loaded: "LoadedModel", precision: str, out: Path, input_size: int,
              calibration: "np.ndarray | None", metadata: dict[str, str] | None = None,
              source: Artifact | None = None) -> Artifact:
        """Export, (quantize,) lower to XNNPACK and write the .pte program; see the module docstring.

        Raises:
            DeployError: export, quantization or lowering failed (naming the operator where ExecuTorch says).
            UsageError: `out` cannot be written.
        """
        return self._built(loaded, precision, out, input_size, calibration)

    def build_excluding(self, loaded: "LoadedModel", fp32: Artifact, out: Path, calibration: "np.ndarray | None",
                        exclude: Sequence[str]) -> Artifact:
        """int8 from the model (a .pte cannot be quantized again), the modules named in `exclude` left in float."""
        return self._built(loaded, "int8", out, fp32.input_size, calibration, exclude)

    def rank_layers(self, loaded: "LoadedModel", fp32: Artifact, int8: Artifact, images: "np.ndarray",
                    calibration: "np.ndarray | None") -> list[Any]:
        """The conv and linear layers int8 hurts most first, ranked on PT2E's q/dq graph of the calibration that
        built `int8` (runtimes.pt2e: a .pte does not expose its intermediate tensors)."""
        import torch

        from vischoose.runtimes import pt2e

        example = (torch.zeros(1, 3, int8.input_size, int8.input_size),)
        with torch.no_grad(), exportable(loaded.model):  # the graph build_excluding quantizes, module names alike
            module = _export(loaded, example).module()
            try:
                return pt2e.rank_layers(pt2e.float_reference(module),
                                        pt2e.converted(module, _calibration(calibration, int8.input_size)[1]), images)
            except _errors() as err:
                raise _deploy_error(loaded, "ranking int8 layers (PT2E)", err) from err

    def _built(self, loaded: "LoadedModel", precision: str, out: Path, input_size: int,
               calibration: "np.ndarray | None", exclude: Sequence[str] = ()) -> Artifact:
        import torch

        from vischoose.runtimes.artifact import Artifact

        self.require()
        out = Path(out)
        artifacts.check_writable(out)
        example = (torch.zeros(1, 3, input_size, input_size),)
        start = time.perf_counter()
        quantized: dict[str, Any] = {}
        with torch.no_grad(), exportable(loaded.model) as (unfused, std):
            program = _export(loaded, example)
            if precision == "int8":
                program, quantized = _quantize(loaded, program, example, calibration, input_size, exclude)
            elif precision != "fp32":
                raise DeployError(f"{self.title} builds fp32 or int8, not {precision}.")
            edge = _lower(loaded, program)
        facts = {"batch": 1, "executorch": self.version(), "unfused_attention_blocks": unfused,
                 "prestandardized_convs": std,
                 **delegation(edge.exported_program().graph_module)}
        with artifacts.staging(out) as staged:
            staged.write_bytes(edge.to_executorch().buffer)
            artifacts.publish(staged, out)
        build_s = time.perf_counter() - start - quantized.get("quantize_s", 0.0)
        return Artifact(path=str(out), runtime=self.name, precision=precision, file_mb=artifacts.file_mb(out),
                        build_s=build_s, input_size=input_size, quantize_s=quantized.get("quantize_s"),
                        recipe=RECIPE if precision == "int8" else None,
                        calibration=quantized.get("calibration", "none"),
                        calibration_images=quantized.get("calibration_images", 0), note=_note(facts), facts=facts)

    def inspect(self, path: Path) -> FileFacts:
        """The batch and input side of the program's "forward" method (a .pte does not record its precision)."""
        from executorch.runtime import Runtime as EtRuntime

        from vischoose.runtimes.artifact import FileFacts

        try:
            # the program stays referenced while its metadata is read: MethodMeta points into the program's memory,
            # and reading it after the program was freed (a temporary) corrupted the heap, crashing later at random
            program = EtRuntime.get().load_program(path)
            meta = program.metadata("forward")
            sizes = tuple(int(n) for n in meta.input_tensor_meta(0).sizes())
            del meta, program
        except (RuntimeError, ValueError) as err:
            raise DeployError(f"ExecuTorch {self.version()} cannot read {path}: {artifacts.first_line(err)}") from err
        return FileFacts(input_size=int(sizes[-1]) if len(sizes) == 4 else None,
                         extra={"batch": int(sizes[0]) if sizes else 1})

    def session(self, artifact: Artifact, threads: int | None, interleaved: bool = False) -> Forward:
        """Run the program's "forward" method image by image with `threads` XNNPACK threads (None: one per core).

        The threadpool is process-wide and XNNPACK keeps a pointer to it in every method it loads, so its size
        is fixed once a method has loaded in this process: None takes the pool as it is, and another thread count
        than the pool's is refused (resizing it would free the pool under the loaded methods: a use-after-free
        that corrupted the heap and crashed the process later, anywhere). One process measures one thread count.

        Raises:
            DeployError: ExecuTorch cannot load or run the program, or the pool is already fixed at another size.
        """
        import numpy as np
        import torch  # ExecuTorch's Python runtime exchanges torch tensors; no torch kernel runs here
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime as EtRuntime

        self.require()
        _set_threadpool(portable_lib, threads)
        try:
            program = EtRuntime.get().load_program(Path(artifact.path))
            method = program.load_method("forward")
            _loaded_a_method()
        except (RuntimeError, ValueError) as err:
            raise DeployError(f"ExecuTorch {self.version()} cannot load {artifact.path}: "
                              f"{artifacts.first_line(err)}") from err
        per_run = int(artifact.facts.get("batch", 1))

        def forward(batch: "np.ndarray") -> "np.ndarray":
            outs = []
            for start in range(0, len(batch), per_run):
                x = torch.from_numpy(np.ascontiguousarray(batch[start:start + per_run], dtype=np.float32))
                try:
                    outs.append(method.execute([x])[0].numpy().copy())
                except RuntimeError as err:
                    raise DeployError(f"ExecuTorch failed running {artifact.path}: "
                                      f"{artifacts.first_line(err)}") from err
            return np.concatenate(outs)

        forward.program = program  # type: ignore[attr-defined]  # the method runs in the program's memory
        return forward


    def layer_profile(self, artifact: Artifact, batch: int, threads: int | None, runs: int = 10) -> LayerProfile:
        """ExecuTorch's ETDump (the program loaded with enable_etdump) read by its devtools Inspector: each XNNPACK
        operator inside each delegate call (XNNPACK's own per-operator profiler) and each operator a portable CPU kernel
        ran, which is off the fast path; medians over `runs` program calls after WARMUP_RUNS, at the file's batch."""
        import tempfile

        import torch  # ExecuTorch's Python runtime exchanges torch tensors; no torch kernel runs here
        from executorch.devtools import Inspector
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime as EtRuntime

        from vischoose.runtimes.agreement import random_batch
        from vischoose.runtimes.layers import LayerProfile, median_layers

        self.require()
        _set_threadpool(portable_lib, threads)
        per_run = int(artifact.facts.get("batch", 1))
        x = torch.from_numpy(random_batch(artifact.input_size, n=per_run))
        with tempfile.TemporaryDirectory(prefix="vischoose-etdump-") as tmp:
            try:
                program = EtRuntime.get().load_program(Path(artifact.path), enable_etdump=True)
                method = program.load_method("forward")
                _loaded_a_method()
                for _ in range(WARMUP_RUNS + runs):
                    method.execute([x])
                program.write_etdump_result_to_file(f"{tmp}/run.etdp", None)
            except (RuntimeError, ValueError) as err:
                raise DeployError(f"ExecuTorch {self.version()} cannot profile {artifact.path}: "
                                  f"{artifacts.first_line(err)}") from err
            blocks = Inspector(etdump_path=f"{tmp}/run.etdp").event_blocks
        events = [e for b in blocks if b.name == "Execute" for e in b.events]
        total = next((e for e in events if e.name == "Method::execute"), None)
        return LayerProfile(self.name, artifact.precision, f"ExecuTorch {self.version()} ETDump (devtools Inspector)",
                            per_run, threads, runs, None if total is None else _timed(total)[1],
                            median_layers(_etdump_runs(events, runs)),
                            note="XNNPACK operators are named per delegate call ([call N]); a portable kernel runs "
                                 "outside XNNPACK, converting layouts at each boundary")


def _loaded_a_method() -> None:
    global _METHOD_LOADED
    _METHOD_LOADED = True


def _timed(event: Any) -> tuple[list[float], float]:
    """An ETDump event's per-call milliseconds (warm-up calls dropped) and their median."""
    import statistics

    raw = list(event.perf_data.raw)[WARMUP_RUNS:] if event.perf_data is not None else []
    return raw, statistics.median(raw) if raw else 0.0


def _etdump_runs(events: list[Any], runs: int) -> list[dict[str, tuple[str, float, str, str | None]]]:
    """Per program call, {operator: (type, ms, kernel, why off the fast path)}: XNNPACK's operators numbered by the
    delegate call they ran in, portable kernels by their place in the program."""
    per_run: list[dict[str, tuple[str, float, str, str | None]]] = [{} for _ in range(runs)]
    call = 1
    for event in events:
        if event.name == "DELEGATE_CALL":
            call += 1
        if event.name in WRAPPERS or event.perf_data is None:
            continue
        raw, _ = _timed(event)
        if event.is_delegated_op:
            name = f"{event.name} [call {call}]"
            fact = (event.name.split(" (")[0].split(" #")[0], "XNNPACK", None)
        else:
            op = event.name.removeprefix(PORTABLE_PREFIX)
            name = f"{op} [after call {call - 1}]"
            fact = (op.split(".")[0], "portable kernel",
                    "on ExecuTorch's portable CPU kernel: XNNPACK did not take it")
        for i, ms in enumerate(raw[:runs]):
            per_run[i][name] = (fact[0], ms, fact[1], fact[2])
    return per_run


_METHOD_LOADED = False  # True once a method has loaded in this process: the threadpool's size is then fixed


def _set_threadpool(portable_lib: Any, threads: int | None) -> None:
    """Size ExecuTorch's process-wide threadpool to `threads` workers, while no loaded method holds the pool."""
    current = portable_lib._threadpool_get_thread_count()
    if not threads or threads == current:
        return
    if _METHOD_LOADED:
        raise DeployError(f"ExecuTorch's thread pool size is fixed at {current} in this process once a program "
                          f"has loaded (XNNPACK holds it); measure {threads} threads in a new process.")
    portable_lib._unsafe_reset_threadpool(threads)  # exactly `threads` workers (the default is one per core)


def delegation(graph_module: "torch.fx.GraphModule") -> dict[str, Any]:
    """How much of a lowered program XNNPACK runs: operator nodes delegated, in all, and those left behind."""
    delegated = 0
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module_"):
            inner = getattr(graph_module, node.target).original_module.graph.nodes
            delegated += sum(1 for n in inner if _is_operator(n))
    left: dict[str, int] = {}
    for node in graph_module.graph.nodes:
        if _is_operator(node) and DELEGATE_CALL not in str(node.target):
            name = getattr(node.target, "__name__", str(node.target))
            left[name] = left.get(name, 0) + 1
    total = delegated + sum(left.values())
    subgraphs = sum(1 for n in graph_module.graph.nodes if _is_operator(n) and DELEGATE_CALL in str(n.target))
    return {"delegated_nodes": delegated, "operator_nodes": total, "delegated_share": delegated / max(1, total),
            "delegated_subgraphs": subgraphs, "portable_ops": dict(sorted(left.items()))}


def _is_operator(node: Any) -> bool:
    return node.op == "call_function" and node.target is not operator.getitem


def _note(facts: dict[str, Any]) -> str | None:
    left = facts["portable_ops"]
    if not left:
        return None
    ops = ", ".join(f"{name} x{count}" for name, count in left.items())
    return (f"partly delegated: XNNPACK runs {facts['delegated_nodes']} of {facts['operator_nodes']} operator "
            f"nodes; {ops} run on ExecuTorch's portable CPU kernels, which are much slower")


def _export(loaded: "LoadedModel", example: tuple["torch.Tensor"]) -> Any:
    import torch

    try:
        return torch.export.export(loaded.model, example)
    except _errors() as err:
        raise _deploy_error(loaded, "torch.export", err) from err


def _calibration(calibration: "np.ndarray | None", input_size: int) -> tuple[str, "np.ndarray"]:
    """("images", the user's) or ("random", RANDOM_CALIBRATION seeded random images) when none were given."""
    if calibration is None or len(calibration) == 0:
        from vischoose.runtimes.agreement import SEED, random_batch

        return "random", random_batch(input_size, RANDOM_CALIBRATION, seed=SEED + 1)
    return "images", calibration


def _quantize(loaded: "LoadedModel", program: Any, example: tuple["torch.Tensor"], calibration: "np.ndarray | None",
              input_size: int, exclude: Sequence[str] = ()) -> tuple[Any, dict[str, Any]]:
    """PT2E int8 (runtimes.pt2e: annotate for XNNPACK but the modules in `exclude`, observe the calibration images
    one at a time, convert), exported again."""
    import torch

    from vischoose.runtimes import pt2e

    source, images = _calibration(calibration, input_size)
    start = time.perf_counter()
    try:
        converted = torch.export.export(pt2e.converted(program.module(), images, exclude), example)
    except _errors() as err:
        raise _deploy_error(loaded, "int8 quantization (PT2E, XNNPACKQuantizer)", err) from err
    return converted, {"quantize_s": time.perf_counter() - start, "calibration": source,
                       "calibration_images": len(images) if source == "images" else 0}


def _lower(loaded: "LoadedModel", program: Any) -> Any:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower

    try:
        return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    except _errors() as err:
        raise _deploy_error(loaded, "lowering to XNNPACK", err) from err


def _errors() -> tuple[type[BaseException], ...]:
    """What torch.export, PT2E and ExecuTorch's lowering raise for a model they cannot handle."""
    from torch._export.verifier import SpecViolationError

    return (RuntimeError, ValueError, TypeError, NotImplementedError, AssertionError, SpecViolationError)


def _deploy_error(loaded: "LoadedModel", step: str, err: BaseException) -> DeployError:
    found = re.search(OPERATOR, str(err))
    operator_part = f" at operator {found.group(0)}" if found else ""
    return DeployError(f"{step} of {loaded.tag} for ExecuTorch failed{operator_part}: {artifacts.first_line(err)}",
                       hint=f"Ship another runtime ({opt('runtime')} onnxruntime), or set VISCHOOSE_DEBUG=1 for the traceback.")
