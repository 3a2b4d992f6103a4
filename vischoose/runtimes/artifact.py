"""What a runtime builds (Artifact) and what a file says about itself (FileFacts). Apart from runtimes.base so that
the registry, which every command loads, does not create these classes: only building, running or inspecting a file
needs them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Artifact:
    """A built, deployable file for one runtime at one precision (JSON-able: child processes receive it)."""

    path: str  # the file a user ships (.onnx, .pte, .tflite, .xml with its .bin beside it)
    runtime: str
    precision: str  # fp32 | bf16 | fp16 | int8
    file_mb: float  # MiB on disk, every file the runtime reads included
    build_s: float  # export (and lowering) seconds
    input_size: int  # square input side, px
    quantize_s: float | None = None
    recipe: str | None = None  # the int8 recipe's name
    calibration: str = "none"  # "images" (the user's), "random" (no images given) or "none" (not calibrated)
    calibration_images: int = 0
    note: str | None = None  # what to watch for: a recipe's caveat, a partly delegated program
    facts: dict[str, Any] = field(default_factory=dict)  # runtime-specific figures (delegated share, ...)

    def note_given_speed(self, note: str | None, img_s: float | None, reference_img_s: float | None) -> str | None:
        """`note` (one that holds this file's notes, '; '-joined) less the recipe's doubt about int8's speed (facts'
        speed_caveat) where a measurement contradicts it: this file ran faster than the fp32 reference timed beside
        it."""
        caveat = self.facts.get("speed_caveat")
        if not caveat or not note or not (img_s and reference_img_s) or img_s <= reference_img_s:
            return note
        return "; ".join(part for part in note.split("; ") if part != caveat) or None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Artifact":
        """The artifact a to_dict() described."""
        return cls(**data)


@dataclass(frozen=True)
class FileFacts:
    """What a deployable file records about itself, where its format has room (None: it does not say)."""

    precision: str | None = None  # what the file's operators show ("int8", "fp32"); "unknown" when they show neither
    input_size: int | None = None  # the square input side the file was built for; None: dynamic or unknown
    batch: tuple[int, int | None] | None = None  # the smallest and largest batch one call takes (None: no bound);
    # None: the file does not say
    input_dtype: str = "float32"  # the input tensor's type (a LiteRT int8 file takes int8)
    model: str | None = None  # the timm tag it was exported from (vischoose's ONNX metadata)
    extra: dict[str, Any] = field(default_factory=dict)  # runtime-specific facts the session needs (batch)
