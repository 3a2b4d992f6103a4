"""The one interface every deployment runtime implements (what it builds: runtimes.artifact).

A runtime is one module in this folder: a subclass of Runtime with its name, the precisions and devices it runs,
the pip extra that installs it, how it builds a deployable file from an eager timm model (export, lowering,
int8 quantization on the user's calibration images), and how a process that imports only the runtime (never
torch) runs that file on a batch. Measuring, evaluating, exporting and recommending ask the registry
(runtimes.registry) for it, never `if runtime == ...`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from vischoose.errors import MissingExtraError

if TYPE_CHECKING:
    import numpy as np

    from vischoose.models.loading import LoadedModel
    from vischoose.runtimes.artifact import Artifact, FileFacts
    from vischoose.runtimes.layers import LayerProfile

Forward = Callable[["np.ndarray"], "np.ndarray"]  # float32 NCHW batch -> float32 (batch x classes) logits


@functools.cache
def installed(module: str) -> bool:
    """Whether a top-level module can be imported here (looked up once a process: `recommend` asks for every
    candidate and variant)."""
    return importlib.util.find_spec(module) is not None


class Runtime:
    """What runs a model: its facts (name, precisions, devices, the extra that installs it) and whether it can run
    here. torch itself is one (runtimes.torch_eager); a runtime that runs an exported file is a GraphRuntime."""

    name: ClassVar[str]  # "onnxruntime": the only place this literal lives
    title: ClassVar[str]  # "ONNX Runtime", for sentences
    precisions: ClassVar[tuple[str, ...]]  # short names, as in --precision
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    runs_on: ClassVar[str] = "CPU"  # where it runs, for condition lines ("CPU execution provider")
    module: ClassVar[str]  # the Python module whose presence means the runtime is installed
    code: ClassVar[str]  # where the class that builds and runs its files lives: "module.Class" in vischoose.runtimes
    extra: ClassVar[str | None] = None  # the vischoose extra that installs it; None: a core dependency
    is_graph: ClassVar[bool] = False  # runs an exported file outside torch (GraphRuntime)
    suffix: ClassVar[str] = ""  # GraphRuntime: the file name ending of what build writes (".onnx")
    format: ClassVar[str | None] = None  # GraphRuntime: `vischoose export --format` value for its files
    reverts_layers: ClassVar[bool] = False  # GraphRuntime: int8 can keep chosen layers in float (--max-accuracy-drop)
    host_modules: ClassVar[tuple[str, ...]] = ()  # what the host binding imports beside `module`, before any model
    host_only: ClassVar[str | None] = None  # what the host binding loads that a deployed device would not have

    def prepare_host(self, compiled: bool = False) -> str:
        """Import and initialise what a process running this runtime loads before any model: its host binding and
        what that pulls in. A memory baseline taken afterwards charges the model only with what the model adds (its
        file or weights as the runtime holds them, packed copies, activations, the runtime's arenas). Returns what the
        baseline includes, for the row. compiled: torch.compile's compiler too (torch eager only)."""
        for name in (self.module, *self.host_modules):
            importlib.import_module(name)
        return self.baseline_text()

    def baseline_text(self) -> str:
        """'a process with onnxruntime imported' (and what the host binding adds that a device would not have)."""
        loaded = ", ".join(dict.fromkeys((self.module, *self.host_modules)))
        extra = f"; {self.host_only}, in the baseline" if self.host_only else ""
        return f"a process with {loaded} imported{extra}"

    def missing(self) -> str | None:
        """None when the runtime can run here, else why not (not installed, wrong CPU)."""
        return None if installed(self.module) else f"{self.title} is not installed"

    def require(self) -> None:
        """Raise MissingExtraError (exit 2, with the pip command) unless the runtime can run here."""
        why = self.missing()
        if why is not None:
            raise MissingExtraError(self.name, why, self.extra)

    def version(self) -> str:
        """The installed runtime's version."""
        module = importlib.import_module(self.module)
        return str(getattr(module, "__version__", "unknown"))

    def versions(self) -> dict[str, str]:
        """Versions that decide what the file is and how it runs (for reports): the runtime's own at least."""
        return {self.name: self.version()}

    def precision_supported(self, precision: str) -> str | None:
        """None when this machine can run `precision` on this runtime, else why not (bf16 without AVX-512 bf16)."""
        return None if precision in self.precisions else (
            f"{self.name} runs {', '.join(self.precisions)}, not {precision}")

    def layer_profile(self, artifact: Any, batch: int, threads: int | None, runs: int = 10) -> "LayerProfile":
        """One inference of `artifact` at `batch`, operator by operator, from the runtime's own profiler (`runs`
        profiled inferences after a warm-up; medians), the operators off its fast path named (runtimes.layers).

        Raises:
            DeployError: the runtime cannot load or run the artifact.
        """
        raise NotImplementedError


def _unread_note(title: str, precision: str | None) -> str:
    """What open_file says of a file whose operators do not show its precision."""
    from vischoose.errors import opt

    if precision:
        return f"the {title} file does not show its precision: labelled {precision} as {opt('precision')} says"
    return (f"the {title} file does not show its precision: labelled unknown (pass {opt('precision')} if you "
            "know it)")


class GraphRuntime(Runtime):
    """A deployment runtime that runs an exported file: it builds the file from an eager timm model (export, lowering,
    int8 quantization on the user's calibration images) and runs it in a process that imports only the runtime.
    Subclasses set the class attributes and implement build and session."""

    is_graph: ClassVar[bool] = True
    build_revision: ClassVar[int] = 1  # raised when how vischoose builds this runtime's file changes: cached builds go
    hints: ClassVar[tuple[str, ...]] = ()  # precisions set when the file is run, not when it is built (bf16 on fp32 IR)
    builds_from_fp32: ClassVar[bool] = False  # int8 is built from the fp32 file (build's `source`), not the model
    stores_metadata: ClassVar[bool] = False  # build writes its `metadata` into the file (else the file is the same
    # whatever metadata was passed, and the graph cache keys it without)
    batch_bound: ClassVar[str] = "any"  # what one call of a built file takes: "any" batch (a dynamic batch),
    # "planned" (1 to build's max_batch: the runtime plans every buffer ahead for the largest, so the bound costs
    # memory and the graph cache keys it) or "one" (a batch-1 file: a batch of N runs as N calls)
    largest_batch: ClassVar[int | None] = None  # "planned": the largest max_batch a build takes

    def memory_plan(self, artifact: "Artifact") -> dict[str, Any] | None:
        """The runtime's own accounting of the file's memory, where it keeps one: {"total_mb", "note", ...}; None
        where it keeps none. May import heavy modules: call it after the memory has been measured."""
        return None

    def inspect(self, path: Path) -> "FileFacts":
        """What a file built elsewhere says about itself (evaluate --graph): nothing, unless the runtime reads it.

        Raises:
            DeployError: the runtime cannot read the file.
        """
        from vischoose.runtimes.artifact import FileFacts

        return FileFacts()

    def open_file(self, path: str | Path, precision: str | None = None) -> Artifact:
        """The artifact for a file as written (evaluate --graph): its precision as the file's operators show it, else
        `precision` as the user gives it, else "unknown" (never a guess).

        Raises:
            UsageError: the file is missing, or `precision` contradicts what the file shows.
            DeployError: the runtime cannot read the file.
        """
        from vischoose.errors import UsageError, opt
        from vischoose.runtimes.artifact import Artifact
        from vischoose.runtimes.precision import UNKNOWN, is_known

        path = Path(path).expanduser()
        if not path.is_file():
            raise UsageError(f"Graph file '{path}' does not exist.", hint="Give the file vischoose export wrote.")
        self.require()
        facts = self.inspect(path)
        found = facts.precision if is_known(facts.precision) else None
        if precision and found and precision != found and precision not in self.hints:
            raise UsageError(f"{path.name} is an {found} {self.title} file, not {opt('precision')} "
                             f"{precision}.", hint=f"Drop {opt('precision')}: the file's own precision is used.",
                             field="precision")
        chosen = precision or found or UNKNOWN
        if chosen != UNKNOWN and chosen not in self.precisions:
            raise UsageError(f"{self.title} runs {', '.join(self.precisions)}, not {opt('precision')} {chosen}.",
                             field="precision")
        return Artifact(path=str(path.resolve()), runtime=self.name, precision=chosen, file_mb=self.file_mb(path),
                        build_s=0.0, input_size=facts.input_size or 0, facts={**facts.extra, "as_written": True},
                        note=None if found else _unread_note(self.title, precision))

    def max_call_batch(self, facts: dict[str, Any]) -> int | None:
        """The most images one call of a built file takes (its Artifact's facts); None: any batch in one call."""
        return None

    def file_mb(self, path: Path) -> float:
        """MiB on disk of a file this runtime reads, every file it needs included."""
        from vischoose.runtimes import files

        return files.file_mb(path)

    def build(self, loaded: "LoadedModel", precision: str, out: Path, input_size: int,
              calibration: "np.ndarray | None", metadata: dict[str, str] | None = None,
              source: Artifact | None = None, max_batch: int = 1) -> Artifact:
        """Export `loaded` (and quantize it for int8, calibrated on `calibration`, preprocessed float32 NCHW images;
        None: random data, marked as such) into the file `out`. Imports torch; runs in a build process.

        metadata: key/values to store in the file where its format has room; source: this model's fp32 artifact
        already built, which a quantizer may start from instead of exporting again; max_batch: the largest batch one
        call of the file must take, where the runtime plans memory for it (batch_bound "planned"; ignored by the
        others, whose files take any batch or batch 1).

        Raises:
            DeployError: export, lowering or quantization failed (the operator named where the runtime says).
        """
        raise NotImplementedError

    def session(self, artifact: Artifact, threads: int | None, interleaved: bool = False) -> Forward:
        """A function running the artifact on a batch with `threads` intra-op threads (None: the runtime's default).
        Imports only the runtime, never torch: a deployed process does not have it. interleaved: the caller does
        other work between runs (evaluation's eager check), so idle threads should not spin.

        Raises:
            DeployError: the runtime cannot load or run the file.
        """
        raise NotImplementedError

    def build_excluding(self, loaded: "LoadedModel", fp32: Artifact, out: Path, calibration: "np.ndarray | None",
                        exclude: Sequence[str]) -> Artifact:
        """int8 built from the fp32 artifact with the nodes named in `exclude` kept in float (reverts_layers only)."""
        raise NotImplementedError

    def rank_layers(self, loaded: "LoadedModel", fp32: Artifact, int8: Artifact, images: "np.ndarray",
                    calibration: "np.ndarray | None") -> list[Any]:
        """The quantizable layers, the ones int8 hurts most first (each with a `node` name; reverts_layers only).

        images: what the ranking runs on; calibration: what calibrated `int8` (for a runtime that ranks on a
        reconstruction of it rather than on the file).
        """
        raise NotImplementedError
