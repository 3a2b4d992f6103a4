"""Where the time goes: one inference broken down by operator, as a runtime's own profiler reports it (LayerProfile),
and the operators that ran off the runtime's fast path (a kernel slower than the one the rest of the graph got).

Each runtime fills it from its profiler in its own module (Runtime.layer_profile): torch.profiler, ONNX Runtime's
session profiling, OpenVINO's performance counters, ExecuTorch's ETDump read by its devtools Inspector. Plain values,
JSON-able: a profile row keeps one (records.Profile.layer_profile) and the report renders it. No runtime is imported
here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Iterable

TOP = 10  # operators a table shows by default (those off the fast path are summed per type below it)


@dataclass(frozen=True)
class Layer:
    """One operator (a node of the graph, or an op kind where the profiler only names kinds) in one inference."""

    name: str  # the node, module or event name the profiler gives
    op: str  # its operator type ("QLinearConv", "Convolution", "aten::addmm", "avg_pool2d")
    ms: float  # median milliseconds per inference over the profiled runs
    kernel: str = ""  # what executed it, as the runtime says ("brgconv_avx512_amx_I8", "XNNPACK", "portable kernel")
    slow: str | None = None  # why it is off the runtime's fast path, or None
    calls: int = 1  # times it ran per inference (an op kind counts its nodes)


@dataclass(frozen=True)
class LayerProfile:
    """One variant's inference, operator by operator (slowest first), from its runtime's own profiler."""

    runtime: str
    precision: str
    profiler: str  # which profiler, with its version ("ONNX Runtime 1.32.0 session profiling")
    batch: int
    threads: int | None
    runs: int  # profiled inferences (after warm-up) the medians are over
    total_ms: float | None  # median wall time of one profiled inference (profiling adds some overhead)
    layers: tuple[Layer, ...] = ()
    note: str | None = None  # what the profiler cannot see, or how the figures are to be read
    unprofiled: tuple[str, ...] = field(default_factory=tuple)  # operators named off the fast path without a time

    @property
    def accounted_ms(self) -> float:
        """The operators' times added up (below total_ms: what runs between them, the profiler's own cost)."""
        return sum(layer.ms for layer in self.layers)

    @property
    def off_fast_path(self) -> list[Layer]:
        """The operators that ran off the fast path, slowest first."""
        return [layer for layer in self.layers if layer.slow]

    def top(self, n: int = TOP) -> list[Layer]:
        """The n slowest operators."""
        return list(self.layers[:n])

    @property
    def slow_kinds(self) -> tuple[Layer, ...]:
        """The operators off the fast path summed per type and kernel ('native_layer_norm x25'), slowest first."""
        return by_kind(self.off_fast_path)

    def share(self, layer: Layer) -> float | None:
        """A layer's share of the operators' time (0-1)."""
        total = self.accounted_ms
        return layer.ms / total if total > 0 else None

    def to_json(self) -> str:
        """The text a profile row keeps."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "LayerProfile":
        """The profile to_json wrote."""
        data = json.loads(text)
        data["layers"] = tuple(Layer(**layer) for layer in data.get("layers", ()))
        data["unprofiled"] = tuple(data.get("unprofiled", ()))
        return cls(**data)


def median_layers(runs: Iterable[dict[str, tuple[str, float, str, str | None]]]) -> tuple[Layer, ...]:
    """Layers from several profiled runs, each {name: (op, ms, kernel, slow)}: each name's median over the runs it
    appears in (a node the first run timed and later runs skipped keeps its own median), slowest first."""
    import statistics

    times: dict[str, list[float]] = {}
    facts: dict[str, tuple[str, str, str | None]] = {}
    for run in runs:
        for name, (op, ms, kernel, slow) in run.items():
            times.setdefault(name, []).append(ms)
            facts[name] = (op, kernel, slow)
    layers = [Layer(name, facts[name][0], statistics.median(ms), facts[name][1], facts[name][2])
              for name, ms in times.items()]
    return tuple(sorted(layers, key=lambda layer: -layer.ms))


def by_kind(layers: Iterable[Layer]) -> tuple[Layer, ...]:
    """Layers summed per operator type and kernel (one row per kind: 'QLinearConv x20'), slowest first; a kind is
    off the fast path when any of its layers is."""
    kinds: dict[tuple[str, str], list[Layer]] = {}
    for layer in layers:
        kinds.setdefault((layer.op, layer.kernel), []).append(layer)
    out = [Layer(op, op, sum(x.ms for x in group), kernel, next((x.slow for x in group if x.slow), None),
                 sum(x.calls for x in group)) for (op, kernel), group in kinds.items()]
    return tuple(sorted(out, key=lambda layer: -layer.ms))
