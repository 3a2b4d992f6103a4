"""Profile models: each in two child processes of its own (vischoose.measure: peak memory and FLOPs, then
timings from a fresh process, throughput first), results as records.Profile.

The parent never imports timm and imports torch only to resolve --device auto/cuda. A crash, kill or
out-of-memory of one child becomes that model's row error; the other models go on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from vischoose.models import catalog
from vischoose.models.catalog import MIB, ModelRef
from vischoose.errors import ProfilingError, UsageError
from vischoose.measure.child import peak_key
from vischoose.results.records import Profile

DEFAULT_BATCH_SIZES = {"cpu": (8,), "cuda": (64,)}  # 64: the article's batch; 8 keeps CPU runs short
DEFAULT_TIME_BUDGET_S = 60.0
PEAK_CACHE_FILE = "machine_peak.json"
RUNTIMES = ("torch", "onnxruntime")
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}  # --precision -> dtype
ORT_DTYPES = ("float32", "int8")

LineSink = Callable[[str], None]
Runner = Callable[[list[str], dict[str, str], LineSink], int]
Progress = Callable[[str, str, float], None]  # (model, what it is doing, seconds since the model started)


@dataclass(frozen=True)
class ProfileOptions:
    """The measurement protocol; see `vischoose profile --help` for each option."""

    device: str = "auto"
    batch_sizes: tuple[int, ...] | None = None  # None: DEFAULT_BATCH_SIZES for the device
    dtype: str = "float32"
    channels_last: bool = False
    compile: bool = False
    autocast: bool = False  # run the forward under torch.autocast at dtype (weights at dtype, input fp32)
    threads: int | None = None
    input_size: int | None = None  # None: the model's pretrained config
    weights: str = "auto"
    time_budget_s: float = DEFAULT_TIME_BUDGET_S
    runtime: str = "torch"  # or "onnxruntime": the exported graph (dtype float32 or int8) on ONNX Runtime, CPU
    calibration: str | None = None  # onnxruntime: a folder of images to calibrate int8 and check agreement on
    min_agreement: float = 0.99  # onnxruntime int8: top-1 agreement with eager fp32 below which it is rejected


@dataclass(frozen=True)
class ProfileRun:
    """One Profile with what the table shows beside it: notes and how well each figure is known."""

    profile: Profile
    notes: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    saveable: bool = True  # False for setup failures (weights unavailable): no fact about the model here


def article_models() -> list[str]:
    """The source article's models (catalog entries with article figures)."""
    return [e.alias for e in catalog.list_entries() if e.article_top1 is not None]


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
    precision = given.pop("precision", None)
    if precision is not None:
        dtype = precision_dtype(precision)
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

        spec = load_preset(target).measure
        options = replace(options, device=spec.device, threads=spec.threads, batch_sizes=spec.batch_sizes,
                          dtype=spec.dtype, channels_last=spec.channels_last)
    explicit = {k: v for k, v in given.items() if v is not None}
    if "batch_sizes" in explicit:
        explicit["batch_sizes"] = parse_batch_sizes(explicit["batch_sizes"])
    options = replace(options, **explicit)
    validate(options)
    return options


def precision_dtype(precision: str) -> str:
    """The dtype of a --precision value (fp32 -> float32, ..., int8 -> int8).

    Raises:
        UsageError: an unknown precision.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"Unknown precision '{precision}' (expected one of: {', '.join(PRECISIONS)}).")
    return PRECISIONS[precision]


def validate(options: ProfileOptions) -> None:
    """Reject option values no measurement can use (UsageError, exit code 2)."""
    from vischoose.models.loading import WEIGHT_MODES
    from vischoose.recommendation.presets import DTYPES

    device = options.device
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise UsageError(f"Unknown device '{device}' (expected auto, cpu, cuda or cuda:N).")
    if options.runtime not in RUNTIMES:
        raise UsageError(f"Unknown runtime '{options.runtime}' (expected one of: {', '.join(RUNTIMES)}).")
    if options.runtime == "onnxruntime":
        _validate_ort(options)
    elif options.dtype == "int8":
        raise UsageError("int8 runs as an ONNX Runtime graph, not in torch eager.",
                         hint="Add --runtime onnxruntime.")
    elif options.dtype not in DTYPES:
        raise UsageError(f"Unknown dtype '{options.dtype}' (expected one of: {', '.join(DTYPES)}).")
    if options.weights not in WEIGHT_MODES:
        raise UsageError(f"Unknown weights mode '{options.weights}' (expected one of: {', '.join(WEIGHT_MODES)}).")
    if options.batch_sizes is not None:
        parse_batch_sizes(options.batch_sizes)
    for name, value, least in (("threads", options.threads, 1), ("input size", options.input_size, 8)):
        if value is not None and value < least:
            raise UsageError(f"Invalid {name} {value}: it must be at least {least}.")
    if not options.time_budget_s > 0:
        raise UsageError(f"Invalid time budget {options.time_budget_s} s: it must be more than 0 seconds.")


def _validate_ort(options: ProfileOptions) -> None:
    if options.device not in ("auto", "cpu"):
        raise UsageError(f"--runtime onnxruntime runs on the CPU here, not on '{options.device}'.",
                         hint="Use --device cpu (ONNX Runtime's CPU execution provider).")
    if options.dtype not in ORT_DTYPES:
        raise UsageError(f"--runtime onnxruntime runs fp32 or int8 graphs, not {options.dtype}.",
                         hint="Use --precision fp32 or --precision int8.")
    settings = [name for name, on in (("--channels-last", options.channels_last), ("--compile", options.compile),
                                      ("autocast", options.autocast)) if on]
    if settings:
        raise UsageError(f"{', '.join(settings)} {'apply' if len(settings) > 1 else 'applies'} to torch, not to "
                         "--runtime onnxruntime.", hint="ONNX Runtime optimises the graph itself: drop "
                         f"{'them' if len(settings) > 1 else 'it'}.")
    if not 0.0 <= options.min_agreement <= 1.0:
        raise UsageError(f"--min-agreement must be between 0 and 1 (got {options.min_agreement}).")
    if options.calibration is not None and not Path(options.calibration).is_dir():
        why = "is not a folder" if Path(options.calibration).exists() else "does not exist"
        raise UsageError(f"Calibration folder {options.calibration} {why}.",
                         hint="Give a folder of your own images (a few dozen).")


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


def run_child(cmd: list[str], env: dict[str, str], on_line: LineSink) -> int:
    """Run a child to the end, passing each line of its output on; returns its exit status (-N: signal N)."""
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
        return proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: do not leave the child running
            proc.kill()
            proc.wait()


def profile_models(models: Iterable[str] | None, options: ProfileOptions, progress: Progress | None = None,
                   runner: Runner = run_child, save: bool = True, debug: bool = False) -> list[ProfileRun]:
    """Measure each model in its own child process; one ProfileRun per model per batch size.

    Raises:
        UnknownModelError, UsageError, ProfilingError (device missing), StoreError.
    """
    names = [models] if isinstance(models, str) else list(models or [])
    refs = [catalog.parse_model_ref(m) for m in names or article_models()]
    check_models(refs)
    device = "cpu" if options.runtime == "onnxruntime" else resolve_device(options.device)
    sizes = tuple(sorted(set(options.batch_sizes or DEFAULT_BATCH_SIZES[device.split(":")[0]])))
    job = child_job(options, device)
    runs: list[ProfileRun] = []
    try:
        with tempfile.TemporaryDirectory(prefix="vischoose-profile-") as tmp:
            kind = _ChildJob
            if options.runtime == "onnxruntime":
                from vischoose.runtimes.ort_measure import OrtJob as kind
            for i, ref in enumerate(refs):
                child = kind(ref, {**job, "batch_sizes": list(sizes)}, Path(tmp) / str(i), options)
                runs += child.run(runner, progress, debug)
    finally:  # on Ctrl-C too: what finished is kept
        if save:
            save_runs(runs)
    return runs


def child_job(options: ProfileOptions, device: str) -> dict[str, Any]:
    """The protocol part of a child's job file (the child adds the model, mode and batch sizes)."""
    from vischoose.measure import machine
    from vischoose.results.store import home

    return {"device": device, "dtype": options.dtype, "channels_last": options.channels_last,
            "compile": options.compile, "autocast": options.autocast, "threads": options.threads,
            "input_size": options.input_size, "weights": options.weights, "time_budget_s": options.time_budget_s,
            "machine": machine.fingerprint(), "peak_cache": str(home() / PEAK_CACHE_FILE)}


def save_runs(runs: list[ProfileRun]) -> None:
    """Write the measured rows to the results store."""
    rows = [r.profile for r in runs if r.saveable]
    if rows:
        from vischoose.results.store import open_store

        with open_store() as store:
            store.add_profiles(rows)


def profile(models: Iterable[str] | None = None, *, target: str | None = None, save: bool = True,
            progress: Progress | None = None, runner: Runner = run_child, **options: Any) -> list[Profile]:
    """Profile models (default: the article's three) on this machine; see ProfileOptions for the options."""
    resolved = resolve_options(target, **options)
    return [r.profile for r in profile_models(models, resolved, progress=progress, runner=runner, save=save)]


def failed(runs: list[ProfileRun]) -> None:
    """Raise when any row failed (after the table has shown which and why): ProfilingError (exit 1), or, when
    every failure is the same setup error (weights not cached: 3, a model timm cannot build: 2), that error's kind."""
    from vischoose.errors import EXIT_USAGE, EXIT_WEIGHTS, WeightsUnavailableError

    bad = [r for r in runs if not r.profile.ok]
    if not bad:
        return
    names = ", ".join(dict.fromkeys(r.profile.model for r in bad))
    message = f"{len(bad)} of {len(runs)} profile rows failed ({names}); the error column says why."
    codes = {r.detail.get("setup_exit_code") for r in bad}
    kind = {EXIT_WEIGHTS: WeightsUnavailableError, EXIT_USAGE: UsageError}.get(codes.pop()) if len(codes) == 1 else None
    raise (kind or ProfilingError)(message)


def describe_exit(status: int) -> str:
    """'signal 9 (SIGKILL)' or 'exit code 1'."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = "unknown"
        return f"signal {-status} ({name})"
    return f"exit code {status}"


def _efficiency(gflops: float | None, img_s: float | None, peak_gflops_s: float | None) -> float | None:
    """Achieved FLOP/s over the machine peak; None where unknown or where the cached peak was beaten (stale)."""
    if not (gflops and img_s and peak_gflops_s):
        return None
    share = gflops * img_s / peak_gflops_s
    return share if share <= 1.0 else None


class _ChildJob:
    """One model's two child processes: memory + FLOPs (run again for the smaller batch sizes if it dies), then
    timings for the batch sizes that fit, in a process of its own so that it starts as fresh as a user's."""

    child_module = "vischoose.measure.child"  # run as python -m child_module JOB.json

    def __init__(self, ref: ModelRef, job: dict[str, Any], folder: Path, options: ProfileOptions) -> None:
        self.ref, self.job, self.folder, self.options = ref, job, folder, options

    def run(self, runner: Runner, progress: Progress | None, debug: bool) -> list[ProfileRun]:
        """The model's rows, one per batch size."""
        batches, errors = list(self.job["batch_sizes"]), {}
        result = self._memory(batches, errors, runner, progress, debug)
        fitting = [b for b in batches if b not in errors and "peak_mb" in (result["memory"].get(str(b)) or {})]
        if fitting and result.get("status") == "done":
            timing, status, tail = self._attempt("timing", fitting, runner, progress, debug)
            crash = self._crash(timing, status, tail)
            for key in ("conditions", "latency", "peak_gflops_s", "peak_kernel"):
                if key in timing:
                    result[key] = timing[key]
            result["throughput"] = timing.get("throughput", {})
            result["notes"] = list(dict.fromkeys(result.get("notes", []) + timing.get("notes", [])))
            general = crash or (timing.get("error") if timing.get("status") == "failed" else None)
        else:
            general = result.get("error")
        notes = tuple(result.get("notes", [])) + self._size_notes(result) + self._stale_peak(result, batches)
        saveable = result.get("error_kind") != "setup"
        return [ProfileRun(self._profile(result, b, self._row_error(result, b, errors.get(b) or general)), notes,
                           self._detail(result, b), saveable) for b in batches]

    def _memory(self, pending: list[int], errors: dict[int, str], runner: Runner, progress: Progress | None,
                debug: bool) -> dict[str, Any]:
        """Run the memory child until each batch size is measured or has its error; returns the merged result."""
        merged: dict[str, Any] = {}
        while pending:
            result, status, tail = self._attempt("memory", pending, runner, progress, debug)
            merged = {**merged, **result, "memory": {**merged.get("memory", {}), **result.get("memory", {})}}
            crash, retry = self._crash(result, status, tail), []
            if crash:
                at = result.get("batch_size")
                if result["phase"] == "memory" and at:
                    retry = [b for b in pending if b < at]  # the smaller ones may fit
                errors.update({b: crash for b in pending if b not in retry})
            pending = retry
        merged.setdefault("throughput", {})
        return merged

    def _attempt(self, mode: str, pending: list[int], runner: Runner, progress: Progress | None,
                 debug: bool) -> tuple[dict[str, Any], int, deque[str]]:
        from vischoose.measure.child import PROGRESS_PREFIX

        self.folder.mkdir(parents=True, exist_ok=True)
        result_path = self.folder / f"result-{mode}-{len(pending)}.json"
        job_path = self.folder / f"job-{mode}-{len(pending)}.json"
        job_path.write_text(json.dumps({**self.job, "model": self.ref.text, "batch_sizes": pending, "mode": mode,
                                        "result_path": str(result_path)}))
        env = dict(os.environ)
        if self.options.threads:  # the OpenMP pool is sized at import, before torch.set_num_threads
            env["OMP_NUM_THREADS"] = str(self.options.threads)
        tail: deque[str] = deque(maxlen=20)
        start, doing = time.monotonic(), ["starting"]

        def on_line(line: str) -> None:
            if not line.startswith(PROGRESS_PREFIX):
                tail.append(line)
                if debug:
                    sys.stderr.write(line + "\n")
                return
            event = json.loads(line[len(PROGRESS_PREFIX):])
            if event["event"] == "phase":
                doing[0] = event["phase"] + (f" batch {event['batch_size']}" if event.get("batch_size") else "")
                what = doing[0]
            else:
                ci = f", median +-{event['ci_pct']:.1f}%" if event.get("ci_pct") is not None else ""
                what = f"{doing[0]}: {event['n']} runs{ci}"
            if progress:
                progress(self.ref.display, what, time.monotonic() - start)

        status = runner([sys.executable, "-m", self.child_module, str(job_path)], env, on_line)
        if result_path.is_file():
            return json.loads(result_path.read_text()), status, tail
        return {"phase": "starting", "batch_size": None, "memory": {}, "throughput": {}, "notes": []}, status, tail

    @staticmethod
    def _crash(result: dict[str, Any], status: int, tail: deque[str]) -> str | None:
        """Why a child stopped before finishing ('crashed: signal 9 ... during latency at batch 1'), or None."""
        if result.get("status") in ("done", "failed", "measured"):  # measured: only the machine peak is missing
            return None
        at = result.get("batch_size")
        error = f"crashed: {describe_exit(status)}" + (" (killed: out of memory?)" if status == -9 else "")
        error += f" during {result['phase']}" + (f" at batch {at}" if at else "")
        last = next((line.strip() for line in reversed(tail) if line.strip()), "")
        return error + (f" ({last[:160]})" if status > 0 and last else "")

    @staticmethod
    def _row_error(result: dict[str, Any], batch: int, error: str | None) -> str | None:
        own = (result["memory"].get(str(batch)) or {}).get("error") or \
            (result["throughput"].get(str(batch)) or {}).get("error")
        if own:
            return own
        done = "median" in (result["throughput"].get(str(batch)) or {}) and "median" in (result.get("latency") or {})
        return None if done else (error or "not measured")

    def _stale_peak(self, result: dict[str, Any], batches: list[int]) -> tuple[str, ...]:
        """Drop a cached machine peak that this model beat (it was measured on a busy machine); say so."""
        peak, flops = result.get("peak_gflops_s"), result.get("flops_per_image")
        rates = [flops / 1e9 * (result["throughput"].get(str(b)) or {}).get("median", 0) for b in batches] if flops else []
        if not peak or not rates or max(rates) <= peak:
            return ()
        cond = result.get("conditions", {})
        key = peak_key(self.job["machine"], self.job["device"], cond.get("device_name", ""), self.options.dtype,
                       cond.get("threads"))
        path = Path(self.job["peak_cache"])
        cache = json.loads(path.read_text()) if path.is_file() else {}
        if cache.pop(key, None) is not None:
            path.write_text(json.dumps(cache, indent=2))
        return (f"{self.ref.display}: reached {max(rates):,.0f} GFLOP/s, above the cached machine peak of {peak:,.0f} "
                "(measured while the machine was busy?): eff is not shown and the peak is measured again next run.",)

    def _entry(self, result: dict[str, Any]) -> catalog.CatalogEntry | None:
        return self.ref.entry or catalog.by_tag(result.get("model", {}).get("tag", ""))

    def _size_notes(self, result: dict[str, Any]) -> tuple[str, ...]:
        """Say where the input size differs from the published top-1's or the article's."""
        model, entry, name = result.get("model"), self._entry(result), self.ref.display
        if not model:
            return ()
        size, notes = model["input_size"], []
        if size != model["pretrained_input_size"]:
            notes.append(f"{name}: measured at {size} px (--input-size); its pretrained config says "
                         f"{model['pretrained_input_size']} px.")
        if entry and size != entry.top1_size:
            notes.append(f"{name}: measured at {size} px, but its published top-1 ({entry.top1:.2f}%) is at "
                         f"{entry.top1_size} px.")
        if entry and entry.article_input_size and entry.article_input_size != size:
            notes.append(f"{name}: the article's figures are at {entry.article_input_size} px; timm's "
                         f"{model['tag']} runs at {size} px.")
        return tuple(notes)

    def _profile(self, result: dict[str, Any], batch: int, error: str | None) -> Profile:
        from vischoose.recommendation.presets import bytes_per_param

        model, cond, entry = result.get("model", {}), result.get("conditions", {}), self._entry(result)
        lat = result.get("latency") or {}
        thr = result["throughput"].get(str(batch)) or {}
        mem = result["memory"].get(str(batch)) or {}
        params, flops, peak = model.get("params"), result.get("flops_per_image"), result.get("peak_gflops_s")
        gflops = flops / 1e9 if flops else None
        tput = thr.get("median")
        return Profile(
            model=self.ref.display, tag=model.get("tag") or self.ref.timm_name or self.ref.name,
            device=self.job["device"], dtype=self.options.dtype, batch_size=batch,
            input_size=model.get("input_size") or self.options.input_size or (entry.input_size if entry else 0),
            family=entry.family if entry else None, weights=model.get("weights", self.options.weights),
            device_name=cond.get("device_name", ""), machine=self.job["machine"],
            threads=cond.get("threads", self.options.threads),
            layout="channels_last" if self.options.channels_last else "contiguous", compiled=self.options.compile,
            torch_version=cond.get("torch_version", ""), timm_version=cond.get("timm_version", ""),
            params_m=params / 1e6 if params else None,
            runtime="torch autocast" if self.options.autocast else "torch",
            weights_mb=params * bytes_per_param(self.options.dtype) / MIB if params else None,
            weights_mb_fp32=params * bytes_per_param("float32") / MIB if params else None,
            gflops=gflops, gmacs=catalog.flops_to_macs(gflops) if gflops else None,
            latency_ms_p50=lat.get("median"), latency_ms_p90=lat.get("p90"), latency_ms_p99=lat.get("p99"),
            latency_ms_iqr=lat.get("iqr"), throughput_img_s=tput, throughput_iqr=thr.get("iqr"),
            peak_memory_mb=mem.get("peak_mb"), peak_reserved_mb=mem.get("reserved_mb"),
            efficiency=_efficiency(gflops, tput, peak),
            top1=entry.top1 if entry else None, top1_size=entry.top1_size if entry else None, error=error)

    @staticmethod
    def _detail(result: dict[str, Any], batch: int) -> dict[str, Any]:
        """How well the figures are known: samples, warm-up runs, the median's CI, the matmul peak."""
        def quality(summary: dict[str, Any] | None) -> dict[str, Any] | None:
            if not summary or "median" not in summary:
                return None
            width = summary.get("rel_halfwidth")
            return {"samples": summary["n"], "warmup_runs": summary["warmup"], "settled": summary["settled"],
                    "median_ci_pct": None if width is None else round(100 * width, 2)}
        return {"setup_exit_code": result.get("exit_code"), "latency": quality(result.get("latency")),
                "throughput": quality(result["throughput"].get(str(batch))),
                "machine_peak_gflops_s": result.get("peak_gflops_s"), "machine_peak_kernel": result.get("peak_kernel"),
                "baseline_rss_mb": result.get("baseline_rss_mb")}
