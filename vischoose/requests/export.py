"""ExportRequest: the file a user ships (`vischoose export`), in a runtime's format at a precision.

Checked when built: the format names a graph runtime that is installed and runs the precision here; accuracy-aware
int8 (data + max_accuracy_drop) only where the runtime can keep layers in float.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vischoose.errors import UsageError, opt
from vischoose.requests import fields as check
from vischoose.runtimes.base import GraphRuntime
from vischoose.runtimes.registry import formats

MAX_REVERT_STEPS = 8  # quantizations after the plain one: 1, 2, 4, ..., 64 layers, or all of them sooner
EXPORT_MEASURE_S = 5.0  # seconds per variant timing batch 1 when asked to measure


@dataclass(frozen=True)
class ExportRequest:
    """What `vischoose export` builds and checks; see `vischoose export --help` for each option."""

    model: str
    out: str
    format: str = "onnx"
    precision: str = "fp32"
    calibration: str | None = None
    weights: str = "pretrained"
    input_size: int | None = None
    opset: int | None = None  # ONNX files only
    min_agreement: float = 0.99
    measure: bool = False  # also time each variant and eager fp32 at batch 1 (EXPORT_MEASURE_S each)
    threads: int | None = None
    data: str | None = None  # labelled images for max_accuracy_drop
    labels: str | None = None
    max_accuracy_drop: float | None = None
    max_revert_steps: int = MAX_REVERT_STEPS
    wait: bool = True  # measure: wait for another vischoose timing on this machine, or (False) MeasurementBusyError
    max_batch: int | None = None  # the largest batch one call of the file takes, where the runtime plans memory for
    # it (batch_bound "planned"; None: 1, as a phone app classifies); others' files take any batch, or batch 1

    def __post_init__(self) -> None:
        chosen = self.runtime
        check.graph_precision(chosen, check.precision(self.precision), via="format")
        check.min_agreement(self.min_agreement)
        check.input_size(self.input_size)
        check.at_least(self.threads, 1, "threads")
        check.at_least(self.opset, 1, "opset")
        check.weights(self.weights)
        if self.opset is not None and not hasattr(chosen, "opset"):
            raise UsageError(f"{opt('opset')} applies to ONNX files, not to {opt('format')} {self.format}.",
                             field="opset")
        check.at_least(self.max_batch, 1, "max_batch")
        self._check_batch(chosen)
        check.folder(self.calibration, "calibration")
        check.labelled(self.data, self.labels, self.max_accuracy_drop, data_needs_drop=True)
        if self.max_accuracy_drop is not None:
            self._check_accuracy(chosen)

    @property
    def runtime(self) -> GraphRuntime:
        """The graph runtime whose file format this is."""
        found = formats()
        if self.format not in found:
            raise UsageError(f"Unknown format '{self.format}' (expected one of: {', '.join(found)}).",
                             field="format")
        return found[self.format]

    @property
    def measure_s(self) -> float:
        """Seconds of batch-1 timing per variant (0: not measured)."""
        return EXPORT_MEASURE_S if self.measure else 0.0

    @property
    def call_bound(self) -> int:
        """The largest batch one call of the built file takes (max_batch, else 1)."""
        return self.max_batch or 1

    def _check_batch(self, chosen: GraphRuntime) -> None:
        """max_batch only where it changes the file: a runtime that plans memory for its largest batch, within its
        limit (the others' files take any batch in one call, or batch 1 only: saying so, not ignoring it)."""
        if self.max_batch is None or (chosen.batch_bound == "one" and self.max_batch == 1):
            return
        planned = ", ".join(f"{opt('format')} {f} ({r.title})" for f, r in formats().items()
                            if r.batch_bound == "planned")
        if chosen.batch_bound == "planned":
            if chosen.largest_batch is not None and self.max_batch > chosen.largest_batch:
                raise UsageError(f"{chosen.title} files take at most {chosen.largest_batch} images per call, not "
                                 f"{opt('max_batch')} {self.max_batch}.", field="max_batch")
            return
        takes = "any batch in one call (a dynamic batch)" if chosen.batch_bound == "any" else "batch 1 only"
        raise UsageError(f"{chosen.title} files take {takes}: {opt('max_batch')} sets the largest batch where the "
                         f"runtime plans memory for it ({planned or 'no installed format'}).",
                         hint=f"Drop {opt('max_batch')}.", field="max_batch")

    def _check_accuracy(self, chosen: GraphRuntime) -> None:
        if self.precision != "int8":
            raise UsageError(f"{opt('max_accuracy_drop')} applies to {opt('precision')} int8, not "
                             f"{opt('precision')} {self.precision}.", field="max_accuracy_drop")
        if not chosen.reverts_layers:
            able = ", ".join(f"{opt('format')} {f} ({r.title})" for f, r in formats().items() if r.reverts_layers)
            raise UsageError(f"{opt('max_accuracy_drop')} works with {able} only for now, not {opt('format')} "
                             f"{self.format}.", field="max_accuracy_drop")

    @property
    def out_path(self) -> Path:
        """Where the file goes."""
        return Path(self.out)
