"""What an ExecuTorch program (.pte) says of itself, read from the file: the planned sizes of its "forward" input
and whether its batch is dynamic, and its precision from what XNNPACK runs. Used by runtimes.executorch's inspect,
for `evaluate --graph` and for reading back what a build wrote.

The program is read with ExecuTorch's own flatbuffer reader (`executorch.exir._serialize`, the reader its tools use;
a private module, so anything it raises makes the file unreadable, never a guess). Precision: a .pte records none,
but each XNNPACK delegate payload lists the datatype of every value it runs; integer (quantized) values mean int8,
only fp32 ones fp32. Anything else (another backend's payload, no payload, a payload that cannot be read) gives
"unknown": an int8 program must never be labelled fp32 because nothing said otherwise.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

UNREADABLE: tuple[type[BaseException], ...] = (RuntimeError, ValueError, KeyError, IndexError, TypeError, OSError,
                                               AttributeError)
XNNPACK = "XnnpackBackend"
QUANTIZED = frozenset({"qint8", "quint8", "qcint8", "qcint4", "qdint8", "qbint4", "qpint8", "qint32", "qcint32"})
QUANTIZE_OPS = ("quantize_per_tensor", "quantize_per_channel", "dequantize_per")  # left on the portable kernels
UNKNOWN = "unknown"
DATATYPE = r'"datatype": "xnn_datatype_(\w+)"'


def read_program(path: Path | str) -> Any:
    """The program's flatbuffer (executorch.exir's schema dataclasses).

    Raises:
        one of UNREADABLE: not a program this ExecuTorch reads.
    """
    from executorch.exir._serialize._program import deserialize_pte_binary

    data = Path(path).read_bytes()
    found = deserialize_pte_binary(data)
    return getattr(found, "program", found)


def _forward(program: Any) -> Any:
    plans = {plan.name: plan for plan in program.execution_plan}
    return plans.get("forward", program.execution_plan[0])


def input_sizes(program: Any) -> tuple[tuple[int, ...], bool]:
    """The first input's planned sizes (its largest, for a dynamic one) and whether its sizes may vary."""
    plan = _forward(program)
    tensor = plan.values[plan.inputs[0]].val
    return tuple(int(n) for n in tensor.sizes), int(getattr(tensor, "shape_dynamism", 0)) != 0


def precision(program: Any) -> str:
    """'int8' when XNNPACK runs integer values or quantize operators run outside it, 'fp32' when every delegate is
    XNNPACK's and runs only fp32 values, else 'unknown'."""
    plan = _forward(program)
    if any(any(op in o.name for op in QUANTIZE_OPS) for o in plan.operators):
        return "int8"
    payloads = [(d.id, d.processed) for d in plan.delegates]
    if not payloads or any(name != XNNPACK for name, _ in payloads):
        return UNKNOWN
    import subprocess

    types: set[str] = set()
    try:
        for _, reference in payloads:
            types |= _xnnpack_datatypes(_payload(program, reference))
    except (*UNREADABLE, subprocess.CalledProcessError, ImportError):
        return UNKNOWN
    if types & QUANTIZED:
        return "int8"
    return "fp32" if types == {"fp32"} else UNKNOWN


def _payload(program: Any, reference: Any) -> bytes:
    """A delegate's processed bytes, stored inline in the program or in a segment after it."""
    if int(reference.location) != 0:  # a segment: the payload lives outside the flatbuffer
        raise ValueError("delegate payload stored in a segment")
    return bytes(program.backend_delegate_data[reference.index].data)


def _xnnpack_datatypes(payload: bytes) -> set[str]:
    """The datatypes of the values in an XNNPACK payload (its flatbuffer decompiled to JSON with the flatc that
    ships with ExecuTorch, against XNNPACK's schema)."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import (
        XNNHeader,
        _get_schema_bytes,
    )
    from executorch.exir._serialize._flatbuffer import _flatc_decompile

    header = XNNHeader.from_bytes(payload[:XNNHeader.EXPECTED_LENGTH])
    graph = payload[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size]
    with tempfile.TemporaryDirectory(prefix="vischoose-pte-") as tmp:
        folder = Path(tmp)
        (folder / "schema.fbs").write_bytes(_get_schema_bytes())
        (folder / "graph.bin").write_bytes(graph)
        _flatc_decompile(tmp, str(folder / "schema.fbs"), str(folder / "graph.bin"))
        return set(re.findall(DATATYPE, (folder / "graph.json").read_text()))
