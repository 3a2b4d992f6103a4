"""ProfileRequest: what `vischoose profile` (and `vischoose.profile`, recommend --measure, the fleet) asks to measure.

Every option, its default, its range and its one message live here; the request is checked when it is built, so a
measuring child receives one that is valid. Runtime rules come from the registry (the devices and precisions each
runtime runs), never from a runtime's name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from vischoose.errors import MissingExtraError, UsageError, opt
from vischoose.presets import Preset, load_preset
from vischoose.requests import fields as check
from vischoose.requests.fields import DEFAULT_SERVE_BUDGET_S
from vischoose.runtimes import precision as precisions
from vischoose.runtimes import registry

DEFAULT_BATCH_SIZES = {"cpu": (8,), "cuda": (64,)}  # 64: the article's batch; 8 keeps CPU runs short
DEFAULT_TIME_BUDGET_S = 60.0
SERVER = "server"  # MLPerf LoadGen's Server scenario: the highest Poisson rate sustained under a p99 bound
SCENARIOS = ("single-stream", "offline", SERVER)  # LoadGen's names; the first two are profile's usual figures
LOADGEN_MODULE = "mlperf_loadgen"  # MLPerf's LoadGen (PyPI mlcommons-loadgen), the `serve` extra
SERVE_EXTRA = "serve"


@dataclass(frozen=True)
class ProfileRequest:
    """The measurement protocol; see `vischoose profile --help` for each option."""

    models: tuple[str, ...] = ()  # () : the source article's three
    device: str = "auto"
    batch_sizes: tuple[int, ...] | None = None  # None: DEFAULT_BATCH_SIZES for the device
    dtype: str = "float32"
    channels_last: bool = False
    compile: bool = False
    autocast: bool = False  # run the forward under torch.autocast at dtype (weights at dtype, input fp32)
    threads: int | None = None  # asked for; measured at most at the usable cores (measure.process)
    input_size: int | None = None  # None: the model's pretrained config
    weights: str = "auto"
    time_budget_s: float = DEFAULT_TIME_BUDGET_S
    runtime: str = registry.TORCH  # or a graph runtime: the exported file run by that runtime, CPU
    calibration: str | None = None  # graph runtimes: a folder of images to calibrate int8 and check agreement on
    min_agreement: float = 0.99  # graph runtimes, int8: top-1 agreement with eager fp32 below which it is rejected
    threads_from: str = "threads"  # who asked for the threads (the field, or a preset's name): the cap's note
    optimize: bool = False  # search settings for the fastest that agrees with fp32 (measure.optimize)
    # the scenario (MLPerf LoadGen's names): None, single-stream or offline are the usual batch-1 latency and img/s;
    # server searches the highest Poisson rate whose LoadGen run is VALID under slo_ms (measure.serving_runner;
    # time_budget_s is then the whole search's per model: build() defaults it to DEFAULT_SERVE_BUDGET_S)
    scenario: str | None = None
    slo_ms: float | None = None  # server: the p99 latency bound, counted from each request's scheduled arrival
    official: bool = False  # server: MLPerf's minimum duration and query count per LoadGen run
    price_per_hour: float | None = None  # USD per machine-hour: cost per million images at the best rates
    target_qps: float | None = None  # requests per second to serve: the machines needed
    cluster: str | None = None  # a Ray cluster's address (fleet): measure on each kind of machine it has
    on: tuple[str, ...] = ()  # with cluster: only the nodes with these Ray labels (LABEL=VALUE)
    every_node: bool = False  # with cluster: every node, not one per kind
    fresh: bool = False  # with cluster: measure again what the store has for a kind under the same protocol
    # another vischoose timing on this machine (measure.lock): wait for it, or (False) stop with MeasurementBusyError
    wait: bool = True
    # what the application sees (measure.application; a cold start is measured for every profile unless cold_start is
    # False): each photo's own cost from JPEG to logits, on `images` or, without, phone-camera JPEGs made on the fly;
    # and where the time goes
    end_to_end: bool = False  # decode + the model's preprocessing + the model, per image (implied by images)
    images: str | None = None  # a folder of the user's photos for end_to_end
    layers: bool = False  # one inference operator by operator, through the runtime's own profiler
    cold_start: bool = True  # a fresh process's import, load and first inference (one more child per model)

    def __post_init__(self) -> None:
        self._check_fleet()
        check.device(self.device)
        chosen = check.runtime(self.runtime)
        if chosen.is_graph:
            self._check_graph(chosen)
        elif self.dtype not in precisions.TORCH_DTYPES:
            self._not_torch()
        check.weights(self.weights)
        if self.batch_sizes is not None:
            object.__setattr__(self, "batch_sizes", check.batch_sizes(self.batch_sizes))
        check.at_least(self.threads, 1, "threads")
        check.input_size(self.input_size)
        check.seconds(self.time_budget_s)
        check.min_agreement(self.min_agreement)
        check.folder(self.calibration, "calibration")
        if self.calibration is not None and not chosen.is_graph and not self.optimize:
            raise UsageError(f"{opt('calibration')} is for a deployment {opt('runtime')} "
                             f"({', '.join(r.name for r in registry.graph_runtimes())}) or {opt('optimize')} "
                             "(int8 calibration and its agreement check).", field="calibration")
        self._check_scenario()
        self._check_application()

    @property
    def local(self) -> "ProfileRequest":
        """The request a fleet's node runs: this one without the cluster options."""
        return self.but(cluster=None, on=(), every_node=False, fresh=False)

    @property
    def precision(self) -> str:
        """The dtype as a short name (float32 -> fp32)."""
        return precisions.precision_of(self.dtype)

    def _check_scenario(self) -> None:
        if self.scenario is not None and self.scenario not in SCENARIOS:
            raise UsageError(f"Unknown scenario '{self.scenario}' (expected one of: {', '.join(SCENARIOS)}).",
                             field="scenario")
        for name in ("slo_ms", "price_per_hour", "target_qps"):
            check.positive(getattr(self, name), name)
        if self.scenario != SERVER and (self.slo_ms is not None or self.official):
            name = "slo_ms" if self.slo_ms is not None else "official"
            raise UsageError(f"{opt(name)} is for {opt('scenario')} {SERVER} (LoadGen's Server runs).",
                             hint=f"Add {opt('scenario')} {SERVER}, or drop it: single-stream and offline are "
                             "profile's own figures.", field=name)
        if self.scenario != SERVER:
            return
        if self.slo_ms is None:
            raise UsageError(f"{opt('scenario')} {SERVER} needs a p99 latency bound: {opt('slo_ms')} MS.",
                             hint=f"e.g. {opt('slo_ms')} 100 (MLPerf's ResNet-50 bound is 15 ms).", field="slo_ms")
        if self.optimize:
            raise UsageError(f"{opt('optimize')} searches the single-stream and offline settings; {opt('scenario')} "
                             f"{SERVER} searches its own (instances, dynamic batching).", hint="Give one of them.",
                             field="optimize")
        require_loadgen()

    def _check_application(self) -> None:
        check.folder(self.images, "images")
        if self.images is not None:
            from vischoose.inference.images import images_in_folder

            if not images_in_folder(Path(self.images)):
                raise UsageError(f"{opt('images')} {self.images} holds no images.", field="images",
                                 hint=f"Give a folder of photos (.jpg, .png, ...), or drop {opt('images')} for "
                                      f"phone-camera JPEGs made on the fly ({opt('end_to_end')}).")
            object.__setattr__(self, "end_to_end", True)
        asked = [name for name in ("end_to_end", "layers") if getattr(self, name)]
        for other, why in (("scenario", self.scenario == SERVER), ("optimize", self.optimize)):
            if asked and why:
                raise UsageError(f"{opt(asked[0])} times profile's own single-stream rows; it does not run with "
                                 f"{opt(other)}{' ' + SERVER if other == 'scenario' else ''}.",
                                 hint=f"Drop {opt(asked[0])}, or {opt(other)}.", field=asked[0])

    def _check_fleet(self) -> None:
        address, on = check.fleet(self.cluster, self.on, every_node=self.every_node, fresh=self.fresh)
        object.__setattr__(self, "cluster", address)
        object.__setattr__(self, "on", on)
        if address is not None and self.optimize:
            raise UsageError(f"{opt('optimize')} searches on this machine; it does not run with {opt('cluster')}.",
                             hint=f"Drop {opt('optimize')}, or {opt('cluster')}.", field="optimize")
        if address is not None and self.scenario == SERVER:  # the nodes run the usual profile, not the search
            raise UsageError(f"{opt('scenario')} {SERVER} searches on this machine; it does not run with "
                             f"{opt('cluster')} yet.", hint="Run it on each serving machine and import the rows "
                             "(vischoose results export / import).", field="scenario")

    def _not_torch(self) -> None:
        graphs = [r for r in registry.graph_runtimes() if self.precision in r.precisions]
        if self.precision in precisions.PRECISIONS and graphs:
            raise UsageError(f"{self.precision} runs as an {graphs[0].title} graph, not in torch eager.",
                             hint=f"Add {opt('runtime')} {graphs[0].name}.", field="precision")
        raise UsageError(f"Unknown dtype '{self.dtype}' (expected one of: {', '.join(precisions.TORCH_DTYPES)}).",
                         field="dtype")

    def _check_graph(self, chosen: Any) -> None:
        if self.device not in ("auto", *chosen.devices):
            raise UsageError(f"{opt('runtime')} {chosen.name} runs on the CPU here, not on '{self.device}'.",
                             hint=f"Use {opt('device')} cpu ({chosen.title} on the CPU).", field="device")
        settings = [f for f in ("channels_last", "compile", "autocast") if getattr(self, f)]
        if settings:
            named = ", ".join(opt(s) for s in settings)
            raise UsageError(f"{named} {'apply' if len(settings) > 1 else 'applies'} to torch, not to "
                             f"{opt('runtime')} {chosen.name}.", hint=f"{chosen.title} optimises the graph itself: "
                             f"drop {'them' if len(settings) > 1 else 'it'}.", field=settings[0])
        check.graph_precision(chosen, self.precision)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON): what a measuring child or another machine receives."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProfileRequest":
        """The request to_dict wrote (lists back to tuples)."""
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    @classmethod
    def build(cls, target: "str | Preset | None" = None, precision: str | None = None,
              **given: Any) -> "ProfileRequest":
        """Defaults, then the target preset's [measure] section, then the values given (None means not given);
        `precision` (fp32, int8, ...) stands for the dtype it names.

        Raises:
            PresetError, UsageError (exit 2), MissingExtraError (a runtime whose extra is not installed).
        """
        unknown = set(given) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown profile options: {', '.join(sorted(unknown))}")
        if precision is not None:
            dtype = precisions.dtype_of(check.precision(precision))
            if given.get("dtype") not in (None, dtype):
                raise UsageError(f"{opt('precision')} {precision} and {opt('dtype')} {given['dtype']} disagree.",
                                 hint="Give one of them.", field="precision")
            given["dtype"] = dtype
        base = {} if target is None else _from_preset(target if isinstance(target, Preset) else load_preset(target),
                                                      given.get("scenario"))
        explicit = {k: v for k, v in given.items() if v is not None}
        if explicit.get("scenario") == SERVER:
            explicit.setdefault("time_budget_s", DEFAULT_SERVE_BUDGET_S)
        if "threads" in explicit and "threads_from" not in explicit:
            explicit["threads_from"] = "threads"
        if isinstance(explicit.get("models"), str):
            explicit["models"] = (explicit["models"],)
        return cls(**{**base, **{k: tuple(v) if isinstance(v, list) else v for k, v in explicit.items()}})

    def but(self, **changes: Any) -> "ProfileRequest":
        """A copy with these fields changed (checked again)."""
        return replace(self, **changes)


def _from_preset(preset: Preset, scenario: str | None) -> dict[str, Any]:
    """A preset's [measure] protocol, its [serve] price and target rate, and (the server scenario) its p99 bound."""
    spec, serve = preset.measure, preset.serve
    base = {"device": spec.device, "threads": spec.threads, "batch_sizes": spec.batch_sizes, "dtype": spec.dtype,
            "channels_last": spec.channels_last, "threads_from": preset.name,
            "price_per_hour": serve.price_per_hour, "target_qps": serve.target_qps}
    return {**base, "slo_ms": serve.slo_ms} if scenario == SERVER else base


def loadgen_missing() -> bool:
    """Whether MLPerf's LoadGen cannot be imported here."""
    import importlib.util

    return importlib.util.find_spec(LOADGEN_MODULE) is None


def require_loadgen(scenario: str = SERVER) -> None:
    """Raise MissingExtraError (exit 2, with the pip command) when LoadGen is not installed."""
    if loadgen_missing():
        raise MissingExtraError(scenario, "it runs MLPerf's LoadGen (mlcommons-loadgen), which is not installed",
                                SERVE_EXTRA, field="scenario")
