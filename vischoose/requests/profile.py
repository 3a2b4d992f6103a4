"""ProfileRequest: what `vischoose profile` (and `vischoose.profile`, recommend --measure, the fleet) asks to measure.

Every option, its default, its range and its one message live here; the request is checked when it is built, so a
measuring child receives one that is valid. Runtime rules come from the registry (the devices and precisions each
runtime runs), never from a runtime's name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from vischoose.errors import UsageError, opt
from vischoose.presets import Preset, load_preset
from vischoose.requests import fields as check
from vischoose.runtimes import precision as precisions
from vischoose.runtimes import registry

DEFAULT_BATCH_SIZES = {"cpu": (8,), "cuda": (64,)}  # 64: the article's batch; 8 keeps CPU runs short
DEFAULT_TIME_BUDGET_S = 60.0


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
    cluster: str | None = None  # a Ray cluster's address (fleet): measure on each kind of machine it has
    on: tuple[str, ...] = ()  # with cluster: only the nodes with these Ray labels (LABEL=VALUE)
    every_node: bool = False  # with cluster: every node, not one per kind
    fresh: bool = False  # with cluster: measure again what the store has for a kind under the same protocol

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

    @property
    def local(self) -> "ProfileRequest":
        """The request a fleet's node runs: this one without the cluster options."""
        return self.but(cluster=None, on=(), every_node=False, fresh=False)

    @property
    def precision(self) -> str:
        """The dtype as a short name (float32 -> fp32)."""
        return precisions.precision_of(self.dtype)

    def _check_fleet(self) -> None:
        address, on = check.fleet(self.cluster, self.on, every_node=self.every_node, fresh=self.fresh)
        object.__setattr__(self, "cluster", address)
        object.__setattr__(self, "on", on)
        if address is not None and self.optimize:
            raise UsageError(f"{opt('optimize')} searches on this machine; it does not run with {opt('cluster')}.",
                             hint=f"Drop {opt('optimize')}, or {opt('cluster')}.", field="optimize")

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
        base: dict[str, Any] = {}
        if target is not None:
            preset = target if isinstance(target, Preset) else load_preset(target)
            spec = preset.measure
            base = {"device": spec.device, "threads": spec.threads, "batch_sizes": spec.batch_sizes,
                    "dtype": spec.dtype, "channels_last": spec.channels_last, "threads_from": preset.name}
        explicit = {k: v for k, v in given.items() if v is not None}
        if "threads" in explicit and "threads_from" not in explicit:
            explicit["threads_from"] = "threads"
        if isinstance(explicit.get("models"), str):
            explicit["models"] = (explicit["models"],)
        return cls(**{**base, **{k: tuple(v) if isinstance(v, list) else v for k, v in explicit.items()}})

    def but(self, **changes: Any) -> "ProfileRequest":
        """A copy with these fields changed (checked again)."""
        return replace(self, **changes)
