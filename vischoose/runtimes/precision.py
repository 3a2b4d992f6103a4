"""The one table of precisions: short names (as in --precision and presets), torch dtypes, bytes per parameter,
and a deployment variant (a runtime at a precision). Pure data, no torch."""

from typing import NamedTuple

from vischoose.errors import UsageError

# short name -> the dtype name stored in Profile.dtype (int8 has no torch dtype of its own here: it is a graph's)
DTYPE_OF = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}
PRECISION_OF = {dtype: short for short, dtype in DTYPE_OF.items()}
PRECISIONS = tuple(DTYPE_OF)
TORCH_DTYPES = ("float32", "bfloat16", "float16")  # what torch eager runs (--dtype)
BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "int8": 1.0}
FIDELITY = {"fp32": 0, "bf16": 1, "fp16": 1, "int8": 2}  # which precision to keep when several fit: lowest first
UNKNOWN = "unknown"  # a file's precision that nothing in it shows: never guessed as fp32


def dtype_of(precision: str) -> str:
    """The dtype name of a precision (fp32 -> float32, ..., int8 -> int8).

    Raises:
        UsageError: an unknown precision.
    """
    if precision not in DTYPE_OF:
        raise UsageError(f"Unknown precision '{precision}' (expected one of: {', '.join(PRECISIONS)}).",
                         field="precision")
    return DTYPE_OF[precision]


def precision_of(dtype: str) -> str:
    """The short name of a dtype name (float32 -> fp32); a short name (and "unknown") is returned as it is."""
    return PRECISION_OF.get(dtype, dtype)


def bytes_per_param(dtype: str) -> float:
    """Bytes one parameter takes at a dtype (or precision)."""
    return BYTES_PER_PARAM[DTYPE_OF.get(dtype, dtype)]


def is_known(precision: str | None) -> bool:
    """Whether a file's precision was read from it (not None, not UNKNOWN)."""
    return precision is not None and precision != UNKNOWN


class Variant(NamedTuple):
    """One way a model can be deployed: a runtime at a precision (torch fp16, onnxruntime int8, ...). A NamedTuple,
    like the other small values `recommend` creates a class for at start-up: immutable and hashable as a frozen
    dataclass, and about a tenth of its class-creation cost (0.07 against 0.7 ms)."""

    runtime: str
    precision: str  # fp32 | bf16 | fp16 | int8

    @property
    def dtype(self) -> str:
        """The precision as a Profile dtype (float32, bfloat16, float16, int8)."""
        return DTYPE_OF[self.precision]

    @property
    def label(self) -> str:
        """'onnxruntime int8'."""
        return f"{self.runtime} {self.precision}"
