"""The values vischoose measures and stores: plain frozen dataclasses, no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any


def now_iso() -> str:
    """Current UTC time, ISO 8601, seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Profile:
    """One model measured under one set of conditions (one throughput batch size).

    Latency is always batch 1; throughput is at ``batch_size``. Sizes are MiB (2^20 bytes).
    FLOPs count 2 per multiply-accumulate; ``gmacs`` counts multiply-accumulates.
    """

    model: str  # the alias or reference the user gave
    tag: str  # resolved timm arch.tag (or hub id / folder)
    device: str  # "cpu", "cuda:0"
    dtype: str  # "float32", "bfloat16", "float16"
    batch_size: int
    input_size: int  # pixels, square side actually used
    call_batch: int | None = None  # images per call of the model or file: batch_size, or fewer where the file takes
    # no larger batch (a batch-1 program run N times: "N x batch 1"); None: stored before this was recorded
    family: str | None = None
    weights: str = "random"  # "pretrained@<sha12>", "pretrained (local)" or "random"
    device_name: str = ""  # CPU model or GPU name
    machine: str = ""  # machine fingerprint
    machine_kind: str = ""  # the hardware without the host (machine.kind): every node of a kind shares it
    threads: int | None = None  # what the run used: at most the cores this process may use
    threads_requested: int | None = None  # what the preset or --threads asked for, when it was more than that
    layout: str = "contiguous"  # or "channels_last"
    compiled: bool = False
    runtime: str = "torch"
    torch_version: str = ""
    timm_version: str = ""
    params_m: float | None = None
    weights_mb: float | None = None  # at the run's dtype
    weights_mb_fp32: float | None = None
    gflops: float | None = None  # per image
    gmacs: float | None = None  # per image
    latency_ms_p50: float | None = None  # batch 1
    latency_ms_p90: float | None = None
    latency_ms_p99: float | None = None
    latency_ms_iqr: float | None = None
    throughput_img_s: float | None = None  # at batch_size
    throughput_iqr: float | None = None
    peak_memory_mb: float | None = None  # over the idle process baseline (CPU) or max allocated (GPU)
    baseline_includes: str | None = None  # CPU: what the baseline process had loaded (None: stored before it was said)
    runtime_memory_mb: float | None = None  # the runtime's own accounting of its file (ExecuTorch's memory plan, ...)
    runtime_memory_note: str | None = None  # what that accounting covers and what it leaves out
    peak_reserved_mb: float | None = None  # GPU only
    efficiency: float | None = None  # 0-1: achieved FLOP/s over this machine's measured dense peak (never above 1)
    efficiency_note: str | None = None  # why efficiency is blank, or not comparable with the peak, when it is
    noisy: str | None = None  # a timing phase still too spread after measuring it twice (why), else None
    # what the rest of the machine took while this row's phases (its throughput, batch-1 latency) were timed: the most
    # of one phase, in cores (mean CPU-seconds per second on the cores the measurement could use; 1.0 = one core
    # kept busy by others throughout), steal time included; None: not metered (measured before vischoose metered it)
    others_cpu_cores: float | None = None
    contended: str | None = None  # a phase others took too much of, still after a pause and a second measurement
    inconsistent: str | None = None  # batch-1 img/s and 1000 / p50 disagreed, still after measuring both again
    top1: float | None = None  # published top-1 %
    top1_size: int | None = None  # the size the published top-1 was measured at
    error: str | None = None  # why this row failed (OOM, crash), else None
    # deployment runtimes (runtime "onnxruntime", dtype "float32" or "int8"): the shipped graph and how closely
    # it follows the eager fp32 model on a fixed batch
    runtime_version: str | None = None  # onnxruntime's version, for onnxruntime rows
    file_mb: float | None = None  # the graph on disk, MiB (external data included)
    export_s: float | None = None  # torch.onnx.export, seconds
    quantize_s: float | None = None  # int8 quantization, seconds
    recipe: str | None = None  # the int8 recipe (e.g. static-qdq-u8s8, dynamic-matmul-s8)
    agreement_top1: float | None = None  # 0-1: share of the check batch whose top-1 matches eager fp32
    agreement_max_abs_diff: float | None = None  # largest |logit difference| from eager fp32
    agreement_cosine: float | None = None  # smallest per-image cosine of the logits with eager fp32's
    agreement_images: int | None = None  # images in the check batch
    agreement_source: str | None = None  # "images" (real photos) or "random" (random inputs)
    variant_status: str | None = None  # "ok", "rejected" (below the agreement threshold) or "unverified"
    # the server scenario (MLPerf LoadGen Server: Poisson arrivals, latency from each query's scheduled arrival);
    # None: the row's figures are single-stream batch-1 latency and offline img/s, as above
    scenario: str | None = None  # "server"
    slo_ms: float | None = None  # the p99 latency bound
    serve_qps: float | None = None  # highest rate whose LoadGen run was VALID (LoadGen's scheduled samples/s)
    serve_target_qps: float | None = None  # the Poisson rate that run was asked for
    serve_p50_ms: float | None = None  # LoadGen's latencies in that run
    serve_p90_ms: float | None = None
    serve_p99_ms: float | None = None
    serve_valid: bool | None = None  # LoadGen's verdict on the reported run (never an INVALID one)
    serve_early_stopping: str | None = None  # LoadGen's early-stopping verdict on it
    serve_note: str | None = None  # why no rate was sustained (serve_qps None, serve_valid False)
    serve_instances: int | None = None  # model instances sharing the cores
    serve_threads: int | None = None  # intra-op threads per instance (instances x threads <= cores)
    serve_max_batch: int | None = None  # dynamic batching: largest batch (1: none)
    serve_max_wait_ms: float | None = None  # dynamic batching: longest wait after a batch's first request
    serve_min_queries: int | None = None  # each LoadGen run: at least this many queries ...
    serve_min_duration_s: float | None = None  # ... and this many seconds
    serve_official: bool | None = None  # MLPerf's minimum duration and query count (--official)
    serve_runs: int | None = None  # LoadGen runs the search made
    serve_search_s: float | None = None  # wall time of the whole search
    serve_curve: str | None = None  # JSON: every LoadGen run and the queueing model's curve (results plot)
    loadgen_version: str | None = None
    loadgen_summary: str | None = None  # mlperf_log_summary.txt of the reported run
    # what an application sees (measure.application): a cold start in a fresh process, batch 1
    cold_import_ms: float | None = None  # importing the runtime (and what its host binding loads), before any model
    cold_load_ms: float | None = None  # file -> session ready: load, compile, the runtime's graph preparation
    cold_first_ms: float | None = None  # the first inference after that
    cold_start_ms: float | None = None  # cold_load_ms + cold_first_ms: from the file to the first answer
    cold_rss_mb: float | None = None  # the whole process's RSS right after the first inference, MiB
    # end to end per image (profile --end-to-end / --images): JPEG decode, the model's own preprocessing, the model
    e2e_ms_p50: float | None = None  # decode + preprocess + model, per image, batch 1
    e2e_ms_p90: float | None = None
    decode_ms_p50: float | None = None  # file -> 8-bit RGB image (decoder)
    decode_ms_p90: float | None = None
    preprocess_ms_p50: float | None = None  # resize, crop, normalise as the model's timm data config says
    preprocess_ms_p90: float | None = None
    e2e_model_ms_p50: float | None = None  # the model's share of those same images
    e2e_model_ms_p90: float | None = None
    e2e_model_share: float | None = None  # 0-1: the model's mean time over the whole's mean
    e2e_runs: int | None = None  # images timed
    e2e_photos: str | None = None  # what they were ("4 synthesized 4032x3024 JPEGs, q90 (12.2 MP, ...)")
    decoder: str | None = None  # the image library and its JPEG codec ("Pillow 13.0.0 (libjpeg-turbo 3.2.0)")
    layer_profile: str | None = None  # JSON (runtimes.layers.LayerProfile): profile --layers, operator by operator
    created_at: str = field(default_factory=now_iso)

    @property
    def published_top1_applies(self) -> bool:
        """Whether the published (pretrained, fp32) top-1 stands for this row's accuracy: the model in a float dtype,
        or a file checked to agree with it on real images (verdict ok). An int8 file unverified or rejected has no
        known accuracy, and fp32's published figure is not it."""
        if self.dtype == "int8" or self.variant_status not in (None, "ok"):
            return self.variant_status == "ok"
        return True

    @property
    def deployable(self) -> bool:
        """Measured, and not a variant rejected for disagreeing with eager fp32."""
        return self.ok and self.variant_status != "rejected"

    @property
    def ok(self) -> bool:
        """Whether the measurement succeeded."""
        return self.error is None

    @property
    def flagged(self) -> str | None:
        """Why this row's timings are not to be reused as measured figures (contended or self-contradicting), or
        None. A flag on any phase applies to the whole row: its batch-1 latency is on every row of the model."""
        parts = [f"contended ({self.contended})" if self.contended else "",
                 f"inconsistent ({self.inconsistent})" if self.inconsistent else ""]
        return "; ".join(p for p in parts if p) or None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile":
        """Build from a dict, ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class EvalResult:
    """Measured accuracy of one model on one labelled data set."""

    model: str
    tag: str
    dataset: str  # folder or CSV path
    images: int
    top1: float  # %
    top5: float  # %
    weights: str = "random"
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 1
    input_size: int | None = None
    images_per_s: float | None = None
    world_size: int = 1
    runtime: str = "torch"  # or "onnxruntime" (dtype "float32" or "int8": the deployed graph)
    recipe: str | None = None  # the int8 recipe, for onnxruntime int8
    agreement_top1: float | None = None  # onnxruntime: 0-1, images whose top-1 matches eager fp32's
    agreement_images: int | None = None  # onnxruntime: images the agreement was counted on
    top1_low: float | None = None  # %, the 95 % Wilson interval of top1 on these images
    top1_high: float | None = None  # %
    dataset_id: str | None = None  # the image list and labels hashed: the same data set wherever it lives
    fp32_top1: float | None = None  # graph runtimes: eager fp32's top-1 on the same images (drop = fp32_top1 - top1)
    drop_low: float | None = None  # points: the 95 % interval of that drop, paired on the same images (Newcombe)
    drop_high: float | None = None  # points
    variant_status: str | None = None  # graph runtimes: the verdict on its agreement over every evaluated image
    verdict_note: str | None = None  # why, when it is not ok (deploy.verdict's one wording)
    graph: str | None = None  # evaluate --graph: the file evaluated, as written
    max_accuracy_drop: float | None = None  # accuracy-aware int8: the top-1 points it was asked to stay within
    reverted_layers: list[str] | None = None  # accuracy-aware int8: the layers kept in float (the model's names)
    accuracy_met: bool | None = None  # accuracy-aware int8: False when no set of float layers met the limit
    quantizable_layers: int | None = None  # accuracy-aware int8: the layers int8 quantizes (reverted_layers among them)
    choice_drop_pts: float | None = None  # accuracy-aware int8: the drop on the images that chose the float layers
    file_mb: float | None = None  # graph runtimes: the evaluated file's size, MiB
    machine: str = ""
    machine_kind: str = ""  # the hardware without the host (machine.kind)
    torch_version: str = ""
    timm_version: str = ""
    created_at: str = field(default_factory=now_iso)

    @property
    def drop_pts(self) -> float | None:
        """Top-1 points lost against eager fp32 on the same images (graph runtimes)."""
        return None if self.fp32_top1 is None else self.fp32_top1 - self.top1

    @property
    def float_only(self) -> bool:
        """Accuracy-aware int8 that met its limit only with every quantizable layer in float, which is the fp32 graph
        (recommendation.ondata rejects it)."""
        every = self.quantizable_layers
        return self.accuracy_met is False and every is not None and 0 < every <= len(self.reverted_layers or [])

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalResult":
        """Build from a dict, ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# The unit each stored number is kept in (records, JSON, CSV): one scale per kind is shown (report.results).
FIELD_UNITS: dict[str, str] = {
    "batch_size": "images", "call_batch": "images per call", "input_size": "px", "top1_size": "px",
    "threads": "threads",
    "threads_requested": "threads", "params_m": "millions of parameters", "weights_mb": "MiB", "weights_mb_fp32": "MiB",
    "file_mb": "MiB", "peak_memory_mb": "MiB", "peak_reserved_mb": "MiB", "gflops": "GFLOP per image (2 per MAC)",
    "gmacs": "GMAC per image", "latency_ms_p50": "ms (batch 1)", "latency_ms_p90": "ms (batch 1)",
    "latency_ms_p99": "ms (batch 1)", "latency_ms_iqr": "ms (batch 1)", "throughput_img_s": "img/s",
    "throughput_iqr": "img/s", "images_per_s": "img/s", "efficiency": "fraction 0-1", "top1": "%", "top5": "%",
    "top1_low": "%", "top1_high": "%", "fp32_top1": "%", "agreement_top1": "fraction 0-1", "agreement_images": "images",
    "agreement_max_abs_diff": "logit units", "agreement_cosine": "cosine", "export_s": "s", "quantize_s": "s",
    "drop_low": "points of top-1", "drop_high": "points of top-1", "max_accuracy_drop": "points of top-1",
    "choice_drop_pts": "points of top-1", "images": "images", "world_size": "processes",
    "quantizable_layers": "layers", "runtime_memory_mb": "MiB",
    "others_cpu_cores": "cores (CPU time of other processes)",
    "slo_ms": "ms (p99 bound)", "serve_qps": "queries/s", "serve_target_qps": "queries/s", "serve_p50_ms": "ms",
    "serve_p90_ms": "ms", "serve_p99_ms": "ms", "serve_instances": "instances", "serve_threads": "threads per instance",
    "serve_max_batch": "images", "serve_max_wait_ms": "ms", "serve_min_queries": "queries",
    "serve_min_duration_s": "s", "serve_runs": "LoadGen runs", "serve_search_s": "s",
    "cold_import_ms": "ms (fresh process)", "cold_load_ms": "ms (fresh process)", "cold_first_ms": "ms (fresh process)",
    "cold_start_ms": "ms (fresh process)", "cold_rss_mb": "MiB", "e2e_ms_p50": "ms per image (batch 1)",
    "e2e_ms_p90": "ms per image (batch 1)", "decode_ms_p50": "ms per image", "decode_ms_p90": "ms per image",
    "preprocess_ms_p50": "ms per image", "preprocess_ms_p90": "ms per image", "e2e_model_ms_p50": "ms per image",
    "e2e_model_ms_p90": "ms per image", "e2e_model_share": "fraction 0-1", "e2e_runs": "images",
}
FRACTIONS = frozenset(k for k, unit in FIELD_UNITS.items() if unit == "fraction 0-1")  # shown as percent beside top-1
