"""What a node offers vischoose, found on the node itself: its machine facts (fingerprint and kind), the cores a
measurement may use, the versions of vischoose (and of its source), Python, torch, timm and each runtime, which
runtimes can run there, which of the models asked about its hub cache holds, and whether it is offline.

This module imports nothing from vischoose at its top: the fleet sends it by value (fleet.jobs.survey), so a node
where vischoose does not import still answers, and says why. The driver runs node_report() too, to compare.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "timm", "ray")  # besides vischoose itself and each runtime's module


def node_report(models: list[str]) -> dict[str, Any]:
    """This machine as the fleet sees it (plain values); {"error": ...} where vischoose does not import."""
    import platform
    import socket

    report: dict[str, Any] = {"python": platform.python_version(), "hostname": socket.gethostname()}
    try:
        from vischoose import machine
        from vischoose.errors import VischooseError
        from vischoose.measure import process
        from vischoose.runtimes import registry
    except (ImportError, SyntaxError) as err:  # another vischoose, or none: the report says which
        report["error"] = f"vischoose does not import: {type(err).__name__}: {err}"
        return report
    try:
        found = machine.facts()
    except VischooseError as err:
        report["error"] = str(err)
        return report
    runtimes = [r for r in registry.KINDS.values() if r.is_graph]
    source = {"vischoose source": source_digest(Path(machine.__file__).parent)}
    report.update(facts=found._asdict(), fingerprint=found.fingerprint, kind=found.kind,
                  usable_cores=process.usable_cores(),
                  versions={**versions(["vischoose"]), **source,
                            **versions([*PACKAGES, *(r.module for r in runtimes)])},
                  runtimes={r.name: r.missing() for r in runtimes}, **_weights(models))
    return report


def versions(modules: list[str]) -> dict[str, str | None]:
    """Each module's installed distribution version (None: not installed), read from metadata without importing."""
    from importlib import metadata

    owners = metadata.packages_distributions()
    found: dict[str, str | None] = {}
    for module in modules:
        found[module] = None
        for name in owners.get(module, [module]):
            try:
                found[module] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def source_digest(package: Path) -> str:
    """12 hex digits of every file of the package (relative names and bytes): the same code, whatever the version
    number says."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and p.suffix in (".py", ".toml")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _weights(models: list[str]) -> dict[str, Any]:
    """Which of the models the hub cache here holds, and whether the hub is off (HF_HUB_OFFLINE)."""
    from vischoose.errors import VischooseError
    from vischoose.models import catalog, hub

    cached = []
    for text in models:
        try:
            if hub.cached_weights(catalog.parse_model_ref(text)) is not None:
                cached.append(text)
        except VischooseError:  # a model this node's vischoose cannot name: not cached here
            continue
    return {"cached": cached, "offline": hub.is_offline()}
