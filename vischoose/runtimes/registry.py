"""The registry of deployment runtimes: a new runtime is one module in this folder and one line here.

Importing this module imports no runtime and no torch: each runtime module imports its own packages inside
the functions that use them.
"""

from __future__ import annotations

from pathlib import Path

from vischoose.errors import UsageError
from vischoose.runtimes.base import GraphRuntime, Runtime
from vischoose.runtimes.executorch import ExecuTorch
from vischoose.runtimes.litert import LiteRT
from vischoose.runtimes.onnxruntime import OnnxRuntime
from vischoose.runtimes.openvino import OpenVino
from vischoose.runtimes.torch_eager import TorchEager

RUNTIMES: dict[str, Runtime] = {r.name: r for r in (TorchEager(), OnnxRuntime(), ExecuTorch(), LiteRT(), OpenVino())}
TORCH = TorchEager.name  # the eager reference every graph is checked against
CATALOG_INT8 = OnnxRuntime.name  # the runtime whose int8 file sizes the catalog lists (int8_mib)


def names() -> tuple[str, ...]:
    """Every runtime vischoose knows, installed or not."""
    return tuple(RUNTIMES)


def get(name: str) -> Runtime:
    """The runtime called `name`.

    Raises:
        UsageError: a runtime vischoose does not know.
    """
    try:
        return RUNTIMES[name]
    except KeyError:
        raise UsageError(f"Unknown runtime '{name}' (expected one of: {', '.join(RUNTIMES)}).") from None


def is_graph(name: str) -> bool:
    """Whether a stored row's runtime ran an exported file (not torch itself); unknown names are not graphs."""
    runtime = RUNTIMES.get(name)
    return bool(runtime and runtime.is_graph)


def graph_runtimes(installed_only: bool = False) -> list[GraphRuntime]:
    """The runtimes that run exported files, in registry order (only those that can run here, if asked)."""
    return [r for r in RUNTIMES.values() if isinstance(r, GraphRuntime) and not (installed_only and r.missing())]


def formats() -> dict[str, GraphRuntime]:
    """The `vischoose export --format` values: each graph runtime's file format, in registry order."""
    return {r.format: r for r in graph_runtimes() if r.format}


def for_file(path: str | Path) -> GraphRuntime:
    """The runtime that runs a file, by its name's ending (.onnx, .pte, .tflite, .xml).

    Raises:
        UsageError: an ending no runtime writes.
    """
    suffix = Path(path).suffix.lower()
    for runtime in graph_runtimes():
        if runtime.suffix == suffix:
            return runtime
    known = ", ".join(f"{r.suffix} ({r.title})" for r in graph_runtimes())
    raise UsageError(f"No runtime runs '{Path(path).name}': vischoose knows {known}.",
                     hint="Give a file vischoose export wrote, keeping its name's ending.")


def title(name: str) -> str:
    """'ONNX Runtime' for a runtime name; the name itself for one this version does not know."""
    runtime = RUNTIMES.get(name)
    return runtime.title if runtime else name
