"""The registry of deployment runtimes: a new runtime is its kind in runtimes/kinds.py (what it is) and one module in
this folder (the code that builds and runs its files).

Importing this module imports no runtime's code and no torch: the kinds answer what the ranking, the presets and the
tables ask (names, titles, devices, precisions, whether installed), and a runtime's own module is imported when its
code is first asked for (`get`, RUNTIMES[name]); each module imports its own packages inside the functions that use
them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Iterator

from vischoose.errors import UsageError
from vischoose.runtimes import kinds
from vischoose.runtimes.base import GraphRuntime, Runtime

KINDS: dict[str, Runtime] = {k.name: k() for k in kinds.KINDS}  # name -> what the runtime is (no code to run it)
TORCH = kinds.TorchKind.name  # the eager reference every graph is checked against
CATALOG_INT8 = kinds.OnnxRuntimeKind.name  # the runtime whose int8 file sizes the catalog lists (int8_mib)


class Runtimes(MutableMapping[str, Runtime]):
    """name -> the runtime with its code, its module imported when first asked for (a test may put another in)."""

    def __init__(self) -> None:
        self.loaded: dict[str, Runtime] = {}

    def __getitem__(self, name: str) -> Runtime:
        found = self.loaded.get(name)
        if found is None:
            module, cls = KINDS[name].code.rsplit(".", 1)  # KeyError: not a runtime
            found = self.loaded[name] = getattr(importlib.import_module(f"vischoose.runtimes.{module}"), cls)()
        return found

    def __setitem__(self, name: str, runtime: Runtime) -> None:
        self.loaded[name] = runtime

    def __delitem__(self, name: str) -> None:
        del self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*KINDS, *self.loaded]))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, name: object) -> bool:
        return name in KINDS or name in self.loaded


RUNTIMES = Runtimes()


def names() -> tuple[str, ...]:
    """Every runtime vischoose knows, installed or not."""
    return tuple(KINDS)


def kind(name: str) -> Runtime:
    """What the runtime called `name` is (its facts, whether it can run here), without importing its code.

    Raises:
        UsageError: a runtime vischoose does not know.
    """
    return _known(KINDS, name)


def get(name: str) -> Runtime:
    """The runtime called `name`, its code imported.

    Raises:
        UsageError: a runtime vischoose does not know.
    """
    return _known(RUNTIMES, name)


def _known(found: Mapping[str, Runtime], name: str) -> Runtime:
    try:
        return found[name]
    except KeyError:
        raise UsageError(f"Unknown runtime '{name}' (expected one of: {', '.join(found)}).") from None


def is_graph(name: str) -> bool:
    """Whether a stored row's runtime ran an exported file (not torch itself); unknown names are not graphs."""
    runtime = KINDS.get(name)
    return bool(runtime and runtime.is_graph)


def graph_runtimes(installed_only: bool = False) -> list[GraphRuntime]:
    """The runtimes that run exported files, in registry order (only those that can run here, if asked)."""
    return [RUNTIMES[name] for name, k in KINDS.items()  # type: ignore[misc]
            if k.is_graph and not (installed_only and k.missing())]


def formats() -> dict[str, GraphRuntime]:
    """The `vischoose export --format` values: each graph runtime's file format, in registry order."""
    return {r.format: r for r in graph_runtimes() if r.format}


def for_file(path: str | Path) -> GraphRuntime:
    """The runtime that runs a file, by its name's ending (.onnx, .pte, .tflite, .xml).

    Raises:
        UsageError: an ending no runtime writes.
    """
    suffix = Path(path).suffix.lower()
    graphs = [k for k in KINDS.values() if k.is_graph]
    for k in graphs:
        if k.suffix == suffix:
            return RUNTIMES[k.name]  # type: ignore[return-value]
    known = ", ".join(f"{k.suffix} ({k.title})" for k in graphs)
    raise UsageError(f"No runtime runs '{Path(path).name}': vischoose knows {known}.",
                     hint="Give a file vischoose export wrote, keeping its name's ending.")


def title(name: str) -> str:
    """'ONNX Runtime' for a runtime name; the name itself for one this version does not know."""
    runtime = KINDS.get(name)
    return runtime.title if runtime else name
