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
