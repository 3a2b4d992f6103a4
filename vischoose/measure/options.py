"""The measurement protocol: ProfileOptions, their defaults, a preset's [measure] section, and their validation.
Runtime rules come from the registry (the devices and precisions each runtime runs), never from a runtime's name."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable

from vischoose.errors import UsageError
from vischoose.models.catalog import ModelRef
from vischoose.models.loading import WEIGHT_MODES
from vischoose.runtimes import precision as precisions
from vischoose.runtimes import registry

DEFAULT_BATCH_SIZES = {"cpu": (8,), "cuda": (64,)}  # 64: the article's batch; 8 keeps CPU runs short
DEFAULT_TIME_BUDGET_S = 60.0


@dataclass(frozen=True)
class ProfileOptions:
    """The measurement protocol; see `vischoose profile --help` for each option."""

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
    threads_from: str = "--threads"  # who asked for the threads, for the note when they are capped
    wait: bool = True  # False (--no-wait): stop with MeasurementBusyError when another measurement holds the machine

    @property
    def precision(self) -> str:
        """The dtype as a short name (float32 -> fp32)."""
        return precisions.precision_of(self.dtype)


def parse_batch_sizes(values: Iterable[str | int]) -> tuple[int, ...]:
    """Batch sizes from repeated and/or comma-separated values, e.g. ['1,8', '64'].

    Raises:
        UsageError: a value that is not a whole number of at least 1.
    """
    sizes: list[int] = []
    for value in values:
        for part in str(value).split(","):
            text = part.strip()
            if not text.lstrip("-").isdigit() or int(text) < 1:
                raise UsageError(f"Invalid batch size '{text}': it must be a whole number of at least 1.",
                                 hint="Give --batch-size 1,8,64 or repeat --batch-size.")
            sizes.append(int(text))
    return tuple(sorted(set(sizes)))


def resolve_options(target: str | None = None, **given: Any) -> ProfileOptions:
    """Defaults, then the preset's [measure] section, then the values given (None means not given).

    Raises:
        PresetError, UsageError.
    """
    precision, optimize = given.pop("precision", None), given.pop("optimize", False)
    if precision is not None:
        dtype = precisions.dtype_of(precision)
        if given.get("dtype") not in (None, dtype):
            raise UsageError(f"--precision {precision} and --dtype {given['dtype']} disagree.",
                             hint="Give one of them.")
        given["dtype"] = dtype
    unknown = set(given) - {f.name for f in fields(ProfileOptions)}
    if unknown:
        raise TypeError(f"unknown profiling options: {', '.join(sorted(unknown))}")
    options = ProfileOptions()
    if target:
        from vischoose.recommendation.presets import load_preset

        preset = load_preset(target)
        spec = preset.measure
        options = replace(options, device=spec.device, threads=spec.threads, batch_sizes=spec.batch_sizes,
                          dtype=spec.dtype, channels_last=spec.channels_last, threads_from=preset.name)
    explicit = {k: v for k, v in given.items() if v is not None}
    if "batch_sizes" in explicit:
        explicit["batch_sizes"] = parse_batch_sizes(explicit["batch_sizes"])
    if "threads" in explicit and "threads_from" not in explicit:
        explicit["threads_from"] = "--threads"
    options = replace(options, **explicit)
    validate(options)
    if options.calibration is not None and not registry.get(options.runtime).is_graph and not optimize:
        first = registry.graph_runtimes()[0].name
        raise UsageError(f"--calibration is for --runtime {first} (or another deployment runtime) or --optimize "
                         "(int8 calibration and its agreement check).")
    return options


def validate(options: ProfileOptions) -> None:
    """Reject option values no measurement can use (UsageError, exit code 2)."""
    device = options.device
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise UsageError(f"Unknown device '{device}' (expected auto, cpu, cuda or cuda:N).")
    runtime = registry.get(options.runtime)
    if runtime.is_graph:
        _validate_graph(options, runtime)
    elif options.dtype not in precisions.TORCH_DTYPES:
        graphs = [r for r in registry.graph_runtimes() if options.precision in r.precisions]
        if options.precision in precisions.PRECISIONS and graphs:
            raise UsageError(f"{options.precision} runs as an {graphs[0].title} graph, not in torch eager.",
                             hint=f"Add --runtime {graphs[0].name}.")
        raise UsageError(f"Unknown dtype '{options.dtype}' (expected one of: {', '.join(precisions.TORCH_DTYPES)}).")
    if options.weights not in WEIGHT_MODES:
        raise UsageError(f"Unknown weights mode '{options.weights}' (expected one of: {', '.join(WEIGHT_MODES)}).")
    if options.batch_sizes is not None:
        parse_batch_sizes(options.batch_sizes)
    for name, value, least in (("threads", options.threads, 1), ("input size", options.input_size, 8)):
        if value is not None and value < least:
            raise UsageError(f"Invalid {name} {value}: it must be at least {least}.")
    if not options.time_budget_s > 0:
        raise UsageError(f"Invalid time budget {options.time_budget_s} s: it must be more than 0 seconds.")


def _validate_graph(options: ProfileOptions, runtime: Any) -> None:
    flag = f"--runtime {runtime.name}"
    if options.device not in ("auto", *runtime.devices):
        raise UsageError(f"{flag} runs on the CPU here, not on '{options.device}'.",
                         hint=f"Use --device cpu ({runtime.title} on the CPU).")
    if options.precision not in runtime.precisions:
        listed = " or ".join(runtime.precisions)
        raise UsageError(f"{flag} runs {listed} graphs, not {options.dtype}.",
                         hint=f"Use --precision {' or --precision '.join(runtime.precisions)}.")
    settings = [name for name, on in (("--channels-last", options.channels_last), ("--compile", options.compile),
                                      ("autocast", options.autocast)) if on]
    if settings:
        raise UsageError(f"{', '.join(settings)} {'apply' if len(settings) > 1 else 'applies'} to torch, not to "
                         f"{flag}.", hint=f"{runtime.title} optimises the graph itself: drop "
                         f"{'them' if len(settings) > 1 else 'it'}.")
    if not 0.0 <= options.min_agreement <= 1.0:
        raise UsageError(f"--min-agreement must be between 0 and 1 (got {options.min_agreement}).")
    if options.calibration is not None and not Path(options.calibration).is_dir():
        why = "is not a folder" if Path(options.calibration).exists() else "does not exist"
        raise UsageError(f"Calibration folder {options.calibration} {why}.",
                         hint="Give a folder of your own images (a few dozen).")
    runtime.require()
    why = runtime.precision_supported(options.precision)
    if why:
        raise UsageError(f"{flag} --precision {options.precision} cannot run here: {why}.")


def resolve_device(device: str) -> str:
    """'cpu' or 'cuda:N' for a valid device option, checking that the GPU exists.

    Raises:
        UsageError: a CUDA device that this machine does not have (bad input, as in predict).
    """
    if device == "cpu":
        return "cpu"
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        return "cuda:0" if count else "cpu"
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        seen = f"sees {count} CUDA device(s)" if count else "sees no CUDA device"
        raise UsageError(f"Device '{device}' is not available: torch {torch.__version__} {seen} on this "
                         "machine.", hint="Use --device cpu, or --device auto to take a GPU when there is one.")
    return f"cuda:{index}"


def check_models(refs: list[ModelRef]) -> None:
    """Fail fast on timm names that timm does not know, before any child starts."""
    names = [r.timm_name for r in refs if r.kind == "timm" and r.entry is None and r.timm_name]
    if names:
        from vischoose.models.loading import check_timm_name

        for name in names:
            check_timm_name(name)
