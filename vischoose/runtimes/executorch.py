"""ExecuTorch with the XNNPACK delegate: the runtime a model ships in on a phone or an embedded board.

build: torch.export at the batch the caller asks for, `max_batch` (ExecuTorch plans every buffer ahead of time for
the largest shape it was exported with, so the batch has an upper bound and a larger one costs memory): a static
batch of 1 by default (a phone classifies one image at a time), else a dynamic batch of 1 to max_batch (profile
builds for the largest batch it measures, export for --max-batch); lowered with XnnpackPartitioner. int8 goes
through PT2E first (XNNPACKQuantizer, symmetric per-channel int8 weights and activations, calibrated on the user's
images; runtimes.pt2e). What XNNPACK did not take runs on ExecuTorch's portable CPU kernels, which are far slower:
the Artifact's facts say how much was delegated and which operators were left out. Accuracy-aware int8 (export
--max-accuracy-drop) ranks the conv and linear layers on PT2E's q/dq graph and builds again from the model with
the worst modules left unannotated (a .pte cannot be quantized again, so each step is a whole build).

Keeping a dynamic batch through XNNPACK takes two things (executorch 1.5.1, torch 2.14): lowering under torch's
`backed_size_oblivious`, with the export's upper bound given back before memory planning (`_planned_for`), because
re-tracing a convolution asks which conv backend a batch of 16 or more would use and that guard narrowed the batch to
2..15 in the planned program; and reshapes written with -1 for the batch (`_batch_inferred`), since XNNPACK takes no
reshape with a symbolic size but takes one inferred size. What XNNPACK still leaves out with a dynamic batch (a
ViT's q/k/v slices: XNNPACK slices no dynamic tensor) runs on the portable kernels and the facts list it; a batch-1
program has none of that. What the written program takes is read back from its own input metadata (`inspect`), not
assumed; tests run the file at several batch sizes.

session: ExecuTorch's Python runtime takes and returns torch tensors, so a session imports torch (only to wrap
numpy arrays; no torch kernel runs). A batch runs in one call up to the program's largest batch (a static batch-1
program: one call per image, and the rows say so). XNNPACK's thread count is ExecuTorch's process-wide threadpool,
set before the program is loaded.
"""

from __future__ import annotations

import operator
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from vischoose.errors import DeployError, opt
from vischoose.runtimes import files as artifacts
from vischoose.runtimes.base import Forward
from vischoose.runtimes.kinds import ExecuTorchKind
from vischoose.runtimes.quiet import quiet
from vischoose.runtimes.torchexport import exportable, lowering_error

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vischoose.models.loading import LoadedModel
    from vischoose.runtimes.artifact import Artifact, FileFacts
    from vischoose.runtimes.layers import LayerProfile

RECIPE = "xnnpack-pt2e-symmetric-per-channel"
RANDOM_CALIBRATION = 16  # random images calibrating int8 when the user gave none
DELEGATE_CALL = "executorch_call_delegate"
MAX_BATCH = 64  # the largest max_batch a build takes (its buffers are planned for max_batch images)
EXAMPLE_BATCH = 2  # the batch traced: torch.export specialises a dimension traced at 1
NOT_OPERATORS = ("sym_size",)  # shape queries a dynamic program makes: no computation, on no kernel
WARMUP_RUNS = 2
PORTABLE_PREFIX = "native_call_"  # an ETDump event of an operator run by a portable (or optimized) CPU kernel
WRAPPERS = ("OPERATOR_CALL", "DELEGATE_CALL", "Method::execute")  # ETDump events that wrap the operators' own


class ExecuTorch(ExecuTorchKind):
    """ExecuTorch programs (.pte) with every operator XNNPACK supports delegated to it."""

    reverts_layers: ClassVar[bool] = True  # a module-name filter on the quantizer keeps chosen layers in float
    build_revision: ClassVar[int] = 3  # 2: weight-standardised convs exported standardised; 3: a batch up to max_batch
    batch_bound: ClassVar[str] = "planned"  # buffers are planned ahead for the largest batch (build's max_batch)
    largest_batch: ClassVar[int | None] = MAX_BATCH

    def prepare_host(self, compiled: bool = False) -> str:
        """The pybindings (and torch, which they import) and the runtime's registry of backends and kernels."""
        with quiet():  # the runtime's start-up prints to stderr
            from executorch.runtime import Runtime as EtRuntime

            text = super().prepare_host()
            EtRuntime.get()
        return text

    def memory_plan(self, artifact: Artifact) -> dict[str, Any] | None:
        """The program's own memory plan (program_plan), from the build's facts or read from the file."""
        found = artifact.facts.get("memory_plan")
        return dict(found) if found else program_plan(Path(artifact.path).read_bytes())

    def version(self) -> str:
        """The installed executorch package's version (the module has no __version__)."""
        from importlib.metadata import version

        return version("executorch")

    def build(self, loaded: "LoadedModel", precision: str, out: Path, input_size: int,
              calibration: "np.ndarray | None", metadata: dict[str, str] | None = None,
              source: Artifact | None = None, max_batch: int = 1) -> Artifact:
        """Export, (quantize,) lower to XNNPACK and write the .pte program taking a batch of 1 to `max_batch` in one
        call (its buffers planned for `max_batch` images); see the module docstring.

        Raises:
            DeployError: export, quantization or lowering failed (naming the operator where ExecuTorch says), or
                `max_batch` outside 1..MAX_BATCH.
            UsageError: `out` cannot be written.
        """
        with quiet():
            return self._built(loaded, precision, out, input_size, calibration, max_batch=max_batch)

    def build_excluding(self, loaded: "LoadedModel", fp32: Artifact, out: Path, calibration: "np.ndarray | None",
                        exclude: Sequence[str]) -> Artifact:
        """int8 from the model (a .pte cannot be quantized again), the modules named in `exclude` left in float."""
        with quiet():
            return self._built(loaded, "int8", out, fp32.input_size, calibration, exclude, calls_batch(fp32.facts))

    def rank_layers(self, loaded: "LoadedModel", fp32: Artifact, int8: Artifact, images: "np.ndarray",
                    calibration: "np.ndarray | None") -> list[Any]:
        """The conv and linear layers int8 hurts most first, ranked on PT2E's q/dq graph of the calibration that
        built `int8` (runtimes.pt2e: a .pte does not expose its intermediate tensors)."""
        import torch

        from vischoose.runtimes import pt2e

        largest = calls_batch(int8.facts)
        with torch.no_grad(), exportable(loaded.model):  # the graph build_excluding quantizes, module names alike
            module = _export(loaded, _example(int8.input_size, largest), largest).module()
            try:
                return pt2e.rank_layers(pt2e.float_reference(module),
                                        pt2e.converted(module, _calibration(calibration, int8.input_size)[1]), images)
            except _errors() as err:
                raise _deploy_error(loaded, "ranking int8 layers (PT2E)", err) from err

    def _built(self, loaded: "LoadedModel", precision: str, out: Path, input_size: int,
               calibration: "np.ndarray | None", exclude: Sequence[str] = (), max_batch: int = 1) -> Artifact:
        import torch

        from vischoose.runtimes.artifact import Artifact

        self.require()
        out = Path(out)
        artifacts.check_writable(out)
        if precision not in self.precisions:
            raise DeployError(f"{self.title} builds fp32 or int8, not {precision}.")
        if not 1 <= max_batch <= MAX_BATCH:
            raise DeployError(f"{self.title} programs take 1 to {MAX_BATCH} images per call, not {max_batch}.")
        example = _example(input_size, max_batch)
        start = time.perf_counter()
        quantized: dict[str, Any] = {}
        with torch.no_grad(), exportable(loaded.model) as (unfused, std):
            program = _export(loaded, example, max_batch)
            if precision == "int8":
                program, quantized = _quantize(loaded, program, example, calibration, input_size, exclude, max_batch)
            buffer, lowered = _lowered(loaded, program, max_batch)
        lowered["memory_plan"] = program_plan(buffer)
        with artifacts.staging(out) as staged:
            staged.write_bytes(buffer)
            artifacts.publish(staged, out)
        facts = {**self._batch_facts(out), "executorch": self.version(), "unfused_attention_blocks": unfused,
                 "prestandardized_convs": std, **lowered}
        build_s = time.perf_counter() - start - quantized.get("quantize_s", 0.0)
        return Artifact(path=str(out), runtime=self.name, precision=precision, file_mb=artifacts.file_mb(out),
                        build_s=build_s, input_size=input_size, quantize_s=quantized.get("quantize_s"),
                        recipe=RECIPE if precision == "int8" else None,
                        calibration=quantized.get("calibration", "none"),
                        calibration_images=quantized.get("calibration_images", 0), note=_note(facts), facts=facts)

    def inspect(self, path: Path) -> FileFacts:
        """What the program says of itself: the batches and input side of its "forward" method (from its input
        tensor's planned sizes and shape dynamism), and its precision from what XNNPACK runs (executorch_files)."""
        from vischoose.runtimes import executorch_files
        from vischoose.runtimes.artifact import FileFacts

        try:
            with quiet():
                program = executorch_files.read_program(path)
                sizes, dynamic = executorch_files.input_sizes(program)
                found = executorch_files.precision(program)
        except executorch_files.UNREADABLE as err:
            raise DeployError(f"ExecuTorch {self.version()} cannot read {path}: {artifacts.first_line(err)}") from err
        largest = int(sizes[0]) if sizes else 1
        return FileFacts(precision=found,
                         input_size=int(sizes[-1]) if len(sizes) == 4 else None,
                         batch=(1 if dynamic else largest, largest), extra=_batch_extra(largest, dynamic))

    def max_call_batch(self, facts: dict[str, Any]) -> int | None:
        """The program's planned largest batch (1 for a static batch-1 program)."""
        return calls_batch(facts)

    def _batch_facts(self, path: Path) -> dict[str, Any]:
        """The batches the written program takes, read back from it (what the file says, not what was asked)."""
        found = self.inspect(path)
        return dict(found.extra)

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

        self.require()
        try:
            with quiet():  # the runtime's import and thread pool start-up print to stderr
                from executorch.extension.pybindings import portable_lib
                from executorch.runtime import Runtime as EtRuntime

                _set_threadpool(portable_lib, threads)
                program = EtRuntime.get().load_program(Path(artifact.path))
                method = program.load_method("forward")
            _loaded_a_method()
        except (RuntimeError, ValueError) as err:
            raise DeployError(f"ExecuTorch {self.version()} cannot load {artifact.path}: "
                              f"{artifacts.first_line(err)}") from err
        per_run = calls_batch(artifact.facts)

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

        from vischoose.runtimes.agreement import random_batch
        from vischoose.runtimes.layers import LayerProfile, median_layers

        self.require()
        with quiet():  # the runtime's import and thread pool start-up print to stderr
            from executorch.devtools import Inspector
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime as EtRuntime

            _set_threadpool(portable_lib, threads)
        # a dynamic program takes the batch asked (up to its planned largest); a static one only its own
        per_run = min(batch, calls_batch(artifact.facts)) if artifact.facts.get("batch") == "dynamic" else (
            calls_batch(artifact.facts))
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


def _batch_extra(largest: int, dynamic: bool) -> dict[str, Any]:
    """The facts a session needs: the largest batch one call takes, and whether smaller ones are taken too."""
    return {"batch": "dynamic" if dynamic else largest, "max_batch": largest}


def calls_batch(facts: dict[str, Any]) -> int:
    """The most images one call of the program takes: its planned largest batch (1 for a static batch-1 program,
    and for facts written before programs had a dynamic batch)."""
    if "max_batch" in facts:
        return int(facts["max_batch"])
    batch = facts.get("batch", 1)
    return int(batch) if isinstance(batch, int) else 1


def _set_threadpool(portable_lib: Any, threads: int | None) -> None:
    """Size ExecuTorch's process-wide threadpool to `threads` workers, while no loaded method holds the pool."""
    current = portable_lib._threadpool_get_thread_count()
    if not threads or threads == current:
        return
    if _METHOD_LOADED:
        raise DeployError(f"ExecuTorch's thread pool size is fixed at {current} in this process once a program "
                          f"has loaded (XNNPACK holds it); measure {threads} threads in a new process.")
    portable_lib._unsafe_reset_threadpool(threads)  # exactly `threads` workers (the default is one per core)


def program_plan(data: bytes) -> dict[str, Any]:
    """An ExecuTorch program's memory plan: the planned buffers of its "forward" method (what the C++ runtime's
    MethodMeta::memory_planned_buffer_size reports: activations and inputs that no delegate owns), its constant data
    (the weights, named or inline) and its delegate blobs, MiB. Read with exir's .pte reader: the Python bindings'
    MethodMeta does not expose the plan (executorch 1.5). XNNPACK's packed weights and its own intermediate tensors
    are outside the plan: XNNPACK plans those itself when the method loads."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    from vischoose.units import MIB

    pte = deserialize_pte_binary(data)
    program = pte.program
    plan = next((p for p in program.execution_plan if p.name == "forward"), program.execution_plan[0])
    planned = sum(plan.non_const_buffer_sizes[1:]) / MIB  # buffer 0 is reserved
    named = sum(len(getattr(b, "buffer", b)) for b in pte.named_data.buffers) if pte.named_data else 0
    constant = (named + sum(len(t.storage) for t in program.constant_buffer)) / MIB
    delegates = sum(len(d.data) for d in program.backend_delegate_data) / MIB
    total = planned + constant + delegates
    return {"planned_mb": planned, "constant_mb": constant, "delegate_mb": delegates, "total_mb": total,
            "note": f"ExecuTorch plan: {planned:,.2f} MiB planned buffers, {constant:,.1f} MiB constant data, "
                    f"{delegates:,.2f} MiB delegate blobs; XNNPACK's packed weights and its own intermediate tensors "
                    "are outside the plan"}


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
    if node.op != "call_function" or node.target is operator.getitem:
        return False
    return not str(getattr(node.target, "__name__", node.target)).startswith(NOT_OPERATORS)


def _note(facts: dict[str, Any]) -> str | None:
    left = facts["portable_ops"]
    if not left:
        return None
    ops = ", ".join(f"{name} x{count}" for name, count in left.items())
    return (f"partly delegated: XNNPACK runs {facts['delegated_nodes']} of {facts['operator_nodes']} operator "
            f"nodes; {ops} run on ExecuTorch's portable CPU kernels, which are much slower")


def _example(input_size: int, max_batch: int) -> tuple["torch.Tensor"]:
    """The input traced: batch 1 for a batch-1 program, else EXAMPLE_BATCH (torch.export specialises a dimension
    traced at 1, so a dynamic batch is traced at 2)."""
    import torch

    return (torch.zeros(1 if max_batch == 1 else EXAMPLE_BATCH, 3, input_size, input_size),)


def _export(loaded: "LoadedModel", example: tuple["torch.Tensor"], max_batch: int, module: Any = None) -> Any:
    """torch.export of the model (or of `module`, PT2E's converted graph): at a static batch of 1 for max_batch 1,
    else with a dynamic batch of 1 to max_batch."""
    import torch

    dynamic = None if max_batch == 1 else ({0: torch.export.Dim("batch", min=1, max=max_batch)},)
    try:
        return torch.export.export(loaded.model if module is None else module, example, dynamic_shapes=dynamic)
    except _errors() as err:
        raise _deploy_error(loaded, "torch.export", err) from err


def _largest_batch(program: Any, max_batch: int) -> int:
    """The largest batch the model's own code allows, as torch.export found it (max_batch unless it says less)."""
    uppers = [int(r.upper) for r in program.range_constraints.values() if str(r.upper).isdigit()]
    return min(uppers + [max_batch])


def _planned_for(program: Any, largest: int) -> None:
    """Give the batch back the upper bound export found, before memory planning reads it.

    Re-tracing the graph while lowering runs the fake convolution kernels, which pick a conv backend by asking
    whether the batch reaches 16: with one torch thread the question is a plain guard that the size-oblivious mode
    does not cover, and answered from the traced batch of 2 it narrowed the batch to 2..15 for good (a .pte planned
    for 15 images). That choice only sets the fake tensors' strides; the model's code ran at export, whose bound
    stands, so the upper bound is restored as export left it.
    """
    from torch.utils._sympy.value_ranges import ValueRanges

    for node in program.graph.nodes:
        shape = tuple(getattr(node.meta.get("val"), "shape", ())) if node.op == "placeholder" else ()
        sym = getattr(shape[0], "node", None) if shape else None
        if sym is not None and sym.expr in sym.shape_env.var_to_range:
            low = sym.shape_env.var_to_range[sym.expr].lower
            sym.shape_env.var_to_range[sym.expr] = ValueRanges(low, largest)


def _batch_inferred(graph_module: "torch.fx.GraphModule") -> None:
    """Write each reshape (edge dialect's view_copy) whose target has one symbolic size, the batch, with -1 there
    instead: the same reshape, which XNNPACK takes (it takes no symbolic size, and one inferred size). A transform
    pass of the lowering, so it sees the reshapes the decompositions made (flatten's)."""
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or "view_copy" not in str(node.target):
            continue
        shape = list(node.args[1])
        symbolic = [i for i, size in enumerate(shape) if not isinstance(size, int)]
        if len(symbolic) == 1 and -1 not in shape:
            shape[symbolic[0]] = -1
            node.args = (node.args[0], shape, *node.args[2:])
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()


def _calibration(calibration: "np.ndarray | None", input_size: int) -> tuple[str, "np.ndarray"]:
    """("images", the user's) or ("random", RANDOM_CALIBRATION seeded random images) when none were given."""
    if calibration is None or len(calibration) == 0:
        from vischoose.runtimes.agreement import SEED, random_batch

        return "random", random_batch(input_size, RANDOM_CALIBRATION, seed=SEED + 1)
    return "images", calibration


def _quantize(loaded: "LoadedModel", program: Any, example: tuple["torch.Tensor"], calibration: "np.ndarray | None",
              input_size: int, exclude: Sequence[str] = (), max_batch: int = 1) -> tuple[Any, dict[str, Any]]:
    """PT2E int8 (runtimes.pt2e: annotate for XNNPACK but the modules in `exclude`, observe the calibration images
    one at a time, convert), exported again."""

    from vischoose.runtimes import pt2e

    source, images = _calibration(calibration, input_size)
    start = time.perf_counter()
    try:
        module = pt2e.converted(program.module(), images, exclude)
    except _errors() as err:
        raise _deploy_error(loaded, "int8 quantization (PT2E, XNNPACKQuantizer)", err) from err
    converted = _export(loaded, example, max_batch, module)
    return converted, {"quantize_s": time.perf_counter() - start, "calibration": source,
                       "calibration_images": len(images) if source == "images" else 0}


def _lowered(loaded: "LoadedModel", program: Any, max_batch: int) -> tuple[bytes, dict[str, Any]]:
    """The program lowered to XNNPACK and serialised, and how much XNNPACK took (delegation).

    Both steps re-trace the graph under `backed_size_oblivious`: without it, a convolution's fake kernel asks
    whether the batch reaches 16 (NNPACK's threshold), answers from the traced batch of 2, and narrows the planned
    batch to 2..15 for good; a size-oblivious guard decides such questions without narrowing the batch.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower
    from torch.fx.experimental import _config as fx_config

    try:
        with fx_config.patch(backed_size_oblivious=True):
            edge = to_edge_transform_and_lower(program, transform_passes=[_batch_inferred],
                                               partitioner=[XnnpackPartitioner()])
            facts = delegation(edge.exported_program().graph_module)
            _planned_for(edge.exported_program(), _largest_batch(program, max_batch))
            return edge.to_executorch().buffer, facts
    except _errors() as err:
        raise _deploy_error(loaded, "lowering to XNNPACK", err) from err


def _errors() -> tuple[type[BaseException], ...]:
    """What torch.export, PT2E and ExecuTorch's lowering raise for a model they cannot handle."""
    from torch._export.verifier import SpecViolationError

    return (RuntimeError, ValueError, TypeError, NotImplementedError, AssertionError, SpecViolationError)


def _deploy_error(loaded: "LoadedModel", step: str, err: BaseException) -> DeployError:
    return lowering_error(loaded, step, err, "ExecuTorch", f"Ship another runtime ({opt('runtime')} onnxruntime), or "
                          "set VISCHOOSE_DEBUG=1 for the traceback.")
