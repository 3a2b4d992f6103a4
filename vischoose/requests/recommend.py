"""RecommendRequest: which model for a target (`vischoose recommend`, `vischoose.recommend`), with the user's limits.

Checked when built; the target preset itself is read (and its constraints checked with these limits) by
recommendation.pipeline, which owns the files.
"""

from typing import Any, NamedTuple

from vischoose.errors import UsageError, opt
from vischoose.requests import fields as check
from vischoose.requests.fields import DEFAULT_SERVE_BUDGET_S

MEASURE_MODES = ("decision", "all")  # only what can change the answer, or every candidate at every variant
MEASURE_BUDGET_S = 20.0  # seconds of timed runs per model when recommend --measure profiles candidates
CONSTRAINT_FIELDS = ("max_memory_mb", "max_latency_ms", "min_throughput", "min_top1", "max_params_m",
                     "max_cold_start_ms")
SERVE_FIELDS = ("slo_ms", "target_qps", "price_per_hour")  # the preset's [serve], overridden


class _Fields(NamedTuple):
    """RecommendRequest's fields and defaults (a NamedTuple: it is built at every `recommend` start-up, and a
    dataclass of this many fields costs more to create than the rest of the request's module)."""

    target: str = "cloud"  # a preset name or a .toml file
    models: tuple[str, ...] = ()  # candidates instead of the preset's families; fnmatch globs pick from timm's zoo
    zoo: bool = False  # every architecture of the preset's families in timm's zoo, not only the curated catalog
    families: tuple[str, ...] = ()  # the zoo's architectures of these families instead ("convnext", or "all")
    all_tags: bool = False  # each published tag of an architecture a candidate (default: its best at its size)
    results: tuple[str, ...] = ()  # files from `vischoose results export` on the deployment machine
    measure: str = ""  # "", "decision" (what can change the answer) or "all"
    fresh: bool = False  # measure (and evaluate) again what this machine already measured
    time_budget_s: float | None = None  # None: MEASURE_BUDGET_S, or DEFAULT_SERVE_BUDGET_S per server search
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
    max_cold_start_ms: float | None = None  # a fresh process's file -> first answer, ms (Profile.cold_start_ms)
    latency_basis: str | None = None  # what max_latency_ms limits: "model" (batch-1 p90) or "end-to-end" (a photo)
    # judge each model as a service at the preset's [serve] p99 bound, ranked by cost per million images
    # (recommendation.serving); implied by any of the three below, which override the preset's [serve]
    serve: bool = False
    slo_ms: float | None = None
    target_qps: float | None = None
    price_per_hour: float | None = None
    machine: str | None = None  # answer for this kind of machine from its rows: a kind id, CPU words, or "all"
    cluster: str | None = None  # a Ray cluster's address (fleet): a section per kind of machine it has
    on: tuple[str, ...] = ()  # with cluster: only the nodes with these Ray labels (LABEL=VALUE)
    # measure: wait for another vischoose timing on this machine, or (False) stop with MeasurementBusyError
    wait: bool = True



class RecommendRequest(_Fields):
    """What `vischoose recommend` decides; see `vischoose recommend --help` for each option. Checked when built,
    like every request (requests/)."""

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> "RecommendRequest":
        self = super().__new__(cls, *args, **kwargs)
        return self._checked()

    def _checked(self) -> "RecommendRequest":
        """The request with its values normalised, or UsageError."""
        mode = {True: "decision", False: ""}.get(self.measure, self.measure)  # type: ignore[call-overload]
        if mode not in ("", *MEASURE_MODES):
            raise UsageError(f"Unknown {opt('measure')} mode '{mode}' (expected one of: "
                             f"{', '.join(MEASURE_MODES)}).", field="measure")
        given = {name: (v,) if isinstance(v, str) else tuple(v or ())
                 for name in ("models", "results", "families") for v in [getattr(self, name)]}
        if given["families"]:
            given["families"] = _families(given["families"])
        if self.time_budget_s is not None:
            check.seconds(self.time_budget_s)
        address, on = check.fleet(self.cluster, self.on, measure=bool(mode and self.machine))
        found = self._replace(measure=mode, cluster=address, on=on, **given)  # _replace checks nothing again
        found._check_kinds()
        check.labelled(found.data, found.labels, found.max_accuracy_drop)
        return found

    @property
    def per_kind(self) -> bool:
        """Whether the answer is one section per kind of machine (machine or cluster)."""
        return bool(self.machine or self.cluster)

    def but(self, **changes: Any) -> "RecommendRequest":
        """A copy with these fields changed (checked again)."""
        return type(self)(**{**self._asdict(), **changes})

    def _check_kinds(self) -> None:
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
        if self.serving:  # a server search measures on this machine, not on each kind's node
            raise UsageError(f"{opt('serve')} judges services on this machine's server rows; per kind of machine it "
                             "does not run yet.", hint=f"Measure profile {opt('scenario')} server on each kind and "
                             "import the rows, then recommend without the kind options.", field="serve")

    @property
    def constraints(self) -> dict[str, Any]:
        """The limits given (None: the preset's), as preset overrides."""
        return {name: getattr(self, name) for name in CONSTRAINT_FIELDS}

    @property
    def serving(self) -> bool:
        """Whether models are judged as services (serve, or any [serve] value given)."""
        return self.serve or any(getattr(self, name) is not None for name in SERVE_FIELDS)

    @property
    def budget_s(self) -> float:
        """Seconds per measurement with measure: timed runs per model, or a whole server search with serving."""
        if self.time_budget_s is not None:
            return self.time_budget_s
        return DEFAULT_SERVE_BUDGET_S if self.serving else MEASURE_BUDGET_S

    @property
    def overrides(self) -> dict[str, Any]:
        """The limits and [serve] values given (None: the preset's), as preset overrides."""
        return {**self.constraints, **{name: getattr(self, name) for name in SERVE_FIELDS}}


def _families(given: tuple[str, ...]) -> tuple[str, ...]:
    """Family names, repeated or comma-separated ('convnext,mobilenetv4'), checked against the family table (read
    only when some are given).

    Raises:
        UsageError: a name that is no family (the closest ones named), or none given.
    """
    names = tuple(dict.fromkeys(n.strip() for value in given for n in value.split(",") if n.strip()))
    if not names:
        raise UsageError(f"{opt('families')} names no family.", field="families",
                         hint="Give family names ('convnext,mobilenetv4') or 'all'; vischoose models --zoo lists them.")
    from vischoose.models import families

    families.resolve(names, field="families")
    return names
