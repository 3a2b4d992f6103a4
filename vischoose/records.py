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
    family: str | None = None
    weights: str = "random"  # "pretrained@<sha12>", "pretrained (local)" or "random"
    device_name: str = ""  # CPU model or GPU name
    machine: str = ""  # machine fingerprint
    threads: int | None = None
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
    peak_reserved_mb: float | None = None  # GPU only
    efficiency: float | None = None  # achieved FLOP/s over this machine's measured matmul peak
    top1: float | None = None  # published top-1 %
    top1_size: int | None = None  # the size the published top-1 was measured at
    error: str | None = None  # why this row failed (OOM, crash), else None
    created_at: str = field(default_factory=now_iso)

    @property
    def ok(self) -> bool:
        """Whether the measurement succeeded."""
        return self.error is None

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
    machine: str = ""
    torch_version: str = ""
    timm_version: str = ""
    created_at: str = field(default_factory=now_iso)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalResult":
        """Build from a dict, ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
