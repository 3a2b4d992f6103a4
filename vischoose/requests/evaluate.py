"""EvaluateRequest: top-1 / top-5 of a model on labelled images, in torch eager or as a runtime's deployed file.

Checked when built: the runtime, precision, device and dtype agree, a file given as written (graph) names its
runtime by its ending, calibration only where int8 is built. Whether torchrun's processes can share the work is
checked when it runs (deploy.evaluate), where the world size is known.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vischoose.errors import UsageError, opt
from vischoose.inference.images import MAX_PIXELS
from vischoose.requests import fields as check
from vischoose.runtimes import registry


@dataclass(frozen=True)
class EvaluateRequest:
    """What `vischoose evaluate` measures; see `vischoose evaluate --help` for each option."""

    data: str  # a folder of class sub-folders or a CSV of path,label rows
    model: str
    labels: str | None = None
    limit: int | None = None  # only the first N images, spread over the classes
    batch_size: int = 32
    workers: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    checkpoint: str | None = None
    runtime: str = registry.TORCH  # a graph runtime evaluates the file it would deploy
    precision: str | None = None  # None: fp32, or for a graph, what the file says
    calibration: str | None = None
    graph: str | None = None  # a file built elsewhere, evaluated as written (its runtime from its ending)
    max_pixels: int = MAX_PIXELS
    cluster: str | None = None  # a Ray cluster's address (fleet): the images sharded over its nodes
    on: tuple[str, ...] = ()  # with cluster: only the nodes with these Ray labels (LABEL=VALUE)
    shard: tuple[int, int] | None = None  # (index, count): only every count-th image from index (a node's share)

    def __post_init__(self) -> None:
        address, on = check.fleet(self.cluster, self.on)
        object.__setattr__(self, "cluster", address)
        object.__setattr__(self, "on", on)
        if self.shard is not None:
            self._check_shard()
        check.at_least(self.limit, 1, "limit")
        check.at_least(self.batch_size, 1, "batch_size")
        check.at_least(self.workers, 0, "workers")
        check.device(self.device, ("cpu", "cuda", "mps"))
        if self.precision is not None:
            check.precision(self.precision)
        if self.graph is not None:
            self._check_file()
        chosen = check.runtime(self.runtime)
        if chosen.is_graph:
            self._check_graph(chosen)
        else:
            self._check_torch()
        if self.cluster is None:  # on a cluster, the nodes read the images (at the same path on each)
            check.folder(self.calibration, "calibration")
            check.labelled(self.data, self.labels, None)

    def but(self, **changes: Any) -> "EvaluateRequest":
        """A copy with these fields changed (checked again)."""
        return replace(self, **changes)

    @property
    def evaluated_precision(self) -> str:
        """The precision a built graph is evaluated at (fp32 unless asked)."""
        return self.precision or "fp32"

    def _check_shard(self) -> None:
        index, count = self.shard
        if not 0 <= index < count:
            raise UsageError(f"{opt('shard')} ({index}, {count}) is not (index, count) with 0 <= index < count.",
                             field="shard")
        object.__setattr__(self, "shard", (int(index), int(count)))

    def _check_file(self) -> None:
        chosen = registry.for_file(self.graph)
        if self.runtime not in (registry.TORCH, chosen.name):
            raise UsageError(f"{opt('graph')} {Path(self.graph).name} is a {chosen.title} file, not one "
                             f"{opt('runtime')} {self.runtime} runs.",
                             hint=f"Drop {opt('runtime')}: the file's name says which runtime runs it.",
                             field="runtime")
        if self.calibration is not None:
            raise UsageError(f"{opt('calibration')} calibrates an int8 graph vischoose builds; {opt('graph')} "
                             "evaluates a file as written.", hint=f"Drop {opt('calibration')}.", field="calibration")
        object.__setattr__(self, "runtime", chosen.name)

    def _check_graph(self, chosen) -> None:
        runtime = f"{opt('runtime')} {chosen.name}"
        if self.precision is not None and self.precision not in chosen.precisions:
            raise UsageError(f"{runtime} runs {', '.join(chosen.precisions)}, not {opt('precision')} "
                             f"{self.precision}.", field="precision")
        if self.device != "cpu":
            raise UsageError(f"{runtime} evaluates on the CPU only (got {opt('device')} {self.device}).",
                             hint=f"Drop {opt('device')}, or evaluate on the GPU with {opt('runtime')} torch.",
                             field="device")
        if self.dtype != "float32":
            raise UsageError(f"{runtime} evaluates a float32 or int8 graph, not {opt('dtype')} {self.dtype}.",
                             hint=f"Use {opt('precision')} fp32 or {opt('precision')} int8 instead of "
                                  f"{opt('dtype')}.", field="dtype")
        if self.calibration is not None and self.evaluated_precision != "int8":
            raise UsageError(f"{opt('calibration')} calibrates int8 graphs: it needs {opt('precision')} int8.",
                             field="calibration")
        chosen.require()

    def _check_torch(self) -> None:
        int8 = next(r.name for r in registry.graph_runtimes() if "int8" in r.precisions)
        if self.precision == "int8":
            raise UsageError(f"{opt('precision')} int8 needs {opt('runtime')} {int8}: torch evaluates the model "
                             f"at {opt('dtype')}.", hint=f"Add {opt('runtime')} {int8} to evaluate the int8 graph "
                             "you would deploy.", field="precision")
        if self.precision not in (None, "fp32") or (self.precision == "fp32" and self.dtype != "float32"):
            raise UsageError(f"{opt('precision')} {self.precision} contradicts {opt('dtype')} {self.dtype}.",
                             hint="Give one of the two.", field="precision")
        if self.calibration is not None:
            raise UsageError(f"{opt('calibration')} calibrates int8 graphs: it needs {opt('runtime')} {int8} "
                             f"{opt('precision')} int8.", field="calibration")
