"""RecommendRequest: which model for a target (`vischoose recommend`, `vischoose.recommend`), with the user's limits.

Checked when built; the target preset itself is read (and its constraints checked with these limits) by
recommendation.pipeline, which owns the files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from vischoose.errors import UsageError, opt
from vischoose.requests import fields as check

MEASURE_MODES = ("decision", "all")  # only what can change the answer, or every candidate at every variant
MEASURE_BUDGET_S = 20.0  # seconds of timed runs per model when recommend --measure profiles candidates
CONSTRAINT_FIELDS = ("max_memory_mb", "max_latency_ms", "min_throughput", "min_top1", "max_params_m")


@dataclass(frozen=True)
class RecommendRequest:
    """What `vischoose recommend` decides; see `vischoose recommend --help` for each option."""

    target: str = "cloud"  # a preset name or a .toml file
    models: tuple[str, ...] = ()  # candidates instead of the preset's families
    results: tuple[str, ...] = ()  # files from `vischoose results export` on the deployment machine
    measure: str = ""  # "", "decision" (what can change the answer) or "all"
    fresh: bool = False  # measure (and evaluate) again what this machine already measured
    time_budget_s: float = MEASURE_BUDGET_S
    device: str | None = None
    memory_basis: str | None = None  # what max_memory_mb limits: "weights" or measured "peak"
    data: str | None = None  # labelled images: rank on the top-1 each fitting model's deployed file reaches
    labels: str | None = None
    max_accuracy_drop: float | None = None
    max_memory_mb: float | None = None
    max_latency_ms: float | None = None
    min_throughput: float | None = None
    min_top1: float | None = None
    max_params_m: float | None = None
    machine: str | None = None  # answer for this kind of machine from its rows: a kind id, CPU words, or "all"
    cluster: str | None = None  # a Ray cluster's address (fleet): a section per kind of machine it has
    on: tuple[str, ...] = ()  # with cluster: only the nodes with these Ray labels (LABEL=VALUE)

    def __post_init__(self) -> None:
        mode = {True: "decision", False: ""}.get(self.measure, self.measure)  # type: ignore[call-overload]
        if mode not in ("", *MEASURE_MODES):
            raise UsageError(f"Unknown {opt('measure')} mode '{mode}' (expected one of: "
                             f"{', '.join(MEASURE_MODES)}).", field="measure")
        object.__setattr__(self, "measure", mode)
        for name in ("models", "results"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value or ()))
        check.seconds(self.time_budget_s)
        self._check_kinds()
        check.labelled(self.data, self.labels, self.max_accuracy_drop)

    @property
    def per_kind(self) -> bool:
        """Whether the answer is one section per kind of machine (machine or cluster)."""
        return bool(self.machine or self.cluster)

    def but(self, **changes: Any) -> "RecommendRequest":
        """A copy with these fields changed (checked again)."""
        return replace(self, **changes)

    def _check_kinds(self) -> None:
        address, on = check.fleet(self.cluster, self.on, measure=bool(self.measure and self.machine))
        object.__setattr__(self, "cluster", address)
        object.__setattr__(self, "on", on)
        if not self.per_kind:
            return
        if self.results:
            raise UsageError(f"{opt('results')} and {opt('machine')}/{opt('cluster')} both say where the figures "
                             "come from.", hint=f"Give one: {opt('results')} FILE, or {opt('machine')} KIND (rows "
                             f"stored here) / {opt('cluster')}.", field="results")
        if self.data is not None:
            raise UsageError(f"{opt('data')} evaluates the candidates on this machine; per kind of machine it does "
                             "not run.", hint=f"Drop {opt('data')}, or recommend for this machine without "
                             f"{opt('machine')}/{opt('cluster')}.", field="data")

    @property
    def constraints(self) -> dict[str, Any]:
        """The limits given (None: the preset's), as preset overrides."""
        return {name: getattr(self, name) for name in CONSTRAINT_FIELDS}
