"""A model's parameter count without loading it: from the safetensors header of its weights (no torch: the header
is JSON naming each tensor's dtype and shape)."""

from __future__ import annotations

import json
from math import prod
from pathlib import Path

from vischoose.errors import CorruptWeightsError

# state-dict entries that are buffers, not parameters: batch-norm statistics, and integer index tables
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit


def read_header(path: Path) -> dict[str, dict]:
    """The tensor table of a safetensors file (name -> dtype, shape, data_offsets), without __metadata__.

    Raises:
        CorruptWeightsError: not a safetensors file (the header does not parse).
    """
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size <= MAX_HEADER_BYTES:
                raise ValueError(f"header length {size}")
            header = json.loads(fh.read(size))
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptWeightsError(f"{path}: not a readable safetensors file ({err}).") from err
    return {k: v for k, v in header.items() if k != "__metadata__"}


def parameter_count(path: Path) -> int:
    """Parameters in a safetensors state dict: the elements of its floating-point tensors, less batch-norm running
    statistics (buffers; timm counts `model.parameters()` only). Integer tables (indices) are buffers too."""
    return sum(prod(t["shape"]) for name, t in read_header(path).items()
               if t.get("dtype") in FLOAT_DTYPES and not name.endswith(BUFFER_SUFFIXES))
